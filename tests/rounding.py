"""How far two runs of the same float32 network may differ, for tests that compare runs batched differently.

A CPU's float32 kernels are chosen per batch shape, thread count and CPU (oneDNN/MKL dispatch), and different
kernels sum in different orders: the same image gives logits and gates a few roundings apart. Every value that
seprobe accumulates from them (KL, gate means and sums of squares) is then computed in float64, whose own rounding
(``2**-53``) is some 1e9 times smaller. A test that compares two batchings therefore allows the float32
discrepancy, carried through the float64 arithmetic by its derivative -- derived below, never a bare number.
Integer quantities (counts, correct images, histograms, top-1 indices) stay compared exactly.
"""

from __future__ import annotations

import math

F32_ROUNDING = 2.0**-24   # float32 unit roundoff: one rounding moves a value by at most this much relative
F64_ROUNDING = 2.0**-53   # the same for float64

# How many roundings of the largest value a network's output may move by between two kernel choices. se_resnet18
# chains 18 weighted layers and 16 SE FCs, and each kernel choice re-rounds every one of them; between batchings
# (13 images vs shards of 2 vs one by one) and thread counts (1 vs 2) the logits of a random se_resnet18 at 32 x 32
# were measured 6 to 10 roundings of max|logit| apart on a 2-core x86 machine, 3.8e-12 of KL apart on an AMD EPYC.
# 32 leaves room for other CPUs' kernels without hiding a real difference (an ablation moves a logit by ~1e-3).
ROUNDINGS = 32


def float32_error(scale: float) -> float:
    """The largest discrepancy between two kernel choices' float32 outputs whose magnitudes are at most ``scale``."""
    return ROUNDINGS * F32_ROUNDING * scale


def kl_tolerance(kl: float, logit_scale: float, classes: int) -> float:
    """How far two batchings' mean KL(p || q) over images may differ, for a mean of ``kl``.

    Per image KL = sum_j p_j (log p_j - log q_j), p = softmax(z) of the full network, q of the ablated one, in
    float64 from float32 logits z, z'. A logit error dz, dz' (each at most ``e = float32_error(logit_scale)``)
    moves it, to first order, by

        sum_j p_j (log(p_j / q_j) - KL) dz_j  +  sum_j (q_j - p_j) dz'_j
        <= e * (E_p |log(p/q) - KL|  +  ||p - q||_1)
        <= e * (sqrt(Var_p log(p/q))  +  sqrt(2 KL))          (Cauchy-Schwarz; Pinsker)
        ~= e * 2 sqrt(2 KL)                                   (Var_p log(p/q) = 2 KL + O(KL^1.5) for small changes)

    and the mean over images of 2 sqrt(2 KL_i) is at most 2 sqrt(2 mean KL) (sqrt is concave). The float64
    arithmetic adds a rounding of each |log p_j| <= log(classes) + 2 * logit_scale, weighted by p_j (sum 1).
    """
    f32 = float32_error(logit_scale) * 2 * math.sqrt(2 * kl)
    f64 = 4 * F64_ROUNDING * (math.log(classes) + 2 * logit_scale)
    return f32 + f64


def mean_tolerance(scale: float, count: int) -> float:
    """Two batchings' float64 means of ``count`` float32 values (each at most ``scale``): the mean is 1-Lipschitz
    in the largest change of a value, and ``count`` float64 additions round by at most ``count`` roundings."""
    return float32_error(scale) + count * F64_ROUNDING * scale


def std_tolerance(scale: float, count: int) -> float:
    """The same for the sample standard deviation (ddof 1) of ``count >= 2`` values: it moves by at most
    ||dx - mean(dx)||_2 / sqrt(count - 1) <= sqrt(count / (count - 1)) * max |dx|, plus the float64 rounding."""
    return math.sqrt(count / (count - 1)) * float32_error(scale) + count * F64_ROUNDING * scale


def m2_tolerance(m2: float, scale: float, count: int) -> float:
    """The same for M2 = sum (x - mean)^2 = ||x - mean||_2^2 of ``count`` values: with ||dx - mean(dx)||_2 <=
    sqrt(count) * e, (a + d)^2 - a^2 <= 2 a d + d^2 with a = sqrt(M2), d = sqrt(count) * e; plus ``count``
    float64 roundings of each (x - mean)^2 <= scale^2."""
    d = math.sqrt(count) * float32_error(scale)
    return 2 * math.sqrt(m2) * d + d * d + 2 * count * F64_ROUNDING * scale * scale
