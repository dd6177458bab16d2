"""The closed sets of values seprobe's knobs and options take, as ``Literal`` types.

One source for each set: the models validate against these tuples and the command line offers them as choices,
so ``--help`` lists them in full and a bad value fails before anything is built. Torch-free, so that the command
line can check its options without importing torch.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Eq. 2 (avg), Table 11 (max), Table 16 (none = NoSqueeze); CBAM's channel branch (avgmax: both descriptors
#: through the one excitation) and SRM's style pooling (meanstd: each channel's mean and standard deviation)
SqueezeName = Literal["avg", "max", "none", "avgmax", "meanstd"]
#: SE's Eq. 3 (bottleneck); the ECA-Net paper's SE-Var1 (none), SE-Var2 (diagonal), SE-Var3 (full) and ECA
#: (conv1d); SRM's style integration (srm: a channel-wise FC of the two statistics, then BatchNorm)
ExcitationName = Literal["bottleneck", "none", "diagonal", "full", "conv1d", "srm"]
SpatialName = Literal["none", "cbam"]              # a spatial gate after the channel gate: CBAM's, or none
AttentionName = Literal["se", "eca", "cbam", "srm", "se_var1", "se_var2", "se_var3"]  # published modules, as parts
GateName = Literal["sigmoid", "tanh", "relu", "hardsigmoid"]  # Eq. 3's sigma, Table 12
Integration = Literal["standard", "pre", "post", "identity", "3x3"]  # Fig. 5, Tables 14 and 15
StrideAt = Literal["1x1", "3x3"]                   # where a ResNet bottleneck downsamples (Sec. 3.3)
StemPool = Literal["ceil", "pad"]                  # Caffe's ceil-mode stem max-pool, or torchvision's padded one
Dtype = Literal["float32", "bfloat16", "float16"]
Interpolation = Literal["bilinear", "bicubic", "nearest"]
Format = Literal["table", "csv", "json", "markdown"]
#: what an ablated gate becomes: 1, its calibration mean, or the constant :data:`CONSTANT_GATE`
Replacement = Literal["identity", "mean", "constant"]
ExportMode = Replacement  # an exported network has one
#: which gates of a CBAM network an ablation's sweeps take: the channel gates (s), the spatial gates (M_s), all
GateSet = Literal["channel", "spatial", "all"]
Schedule = Literal["step", "cosine", "onecycle"]  # the learning-rate schedule of seprobe train
#: what ``seprobe prune`` ranks channels by: the excitation (its mean over the calibration images, or its largest
#: class mean), filter L1 norm, BatchNorm |gamma|, first-order Taylor, or a seeded random order (the control)
Criterion = Literal["gate", "gate_max", "l1", "bn", "taylor", "random"]
#: how ``seprobe prune`` spreads a target over the channel groups: one threshold for all, or one fraction each
Allocation = Literal["global", "uniform"]
#: which channel groups ``seprobe prune`` may cut: those an SE gate scales (every criterion alike), or every group
PruneScope = Literal["gated", "all"]

SQUEEZES: tuple[str, ...] = get_args(SqueezeName)
GATES: tuple[str, ...] = get_args(GateName)
EXCITATIONS: tuple[str, ...] = get_args(ExcitationName)
SPATIALS: tuple[str, ...] = get_args(SpatialName)
ATTENTIONS: tuple[str, ...] = get_args(AttentionName)
INTEGRATIONS: tuple[str, ...] = get_args(Integration)
STRIDES: tuple[str, ...] = get_args(StrideAt)
STEM_POOLS: tuple[str, ...] = get_args(StemPool)
DTYPES: tuple[str, ...] = get_args(Dtype)
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
FORMATS: tuple[str, ...] = get_args(Format)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
CRITERIA: tuple[str, ...] = get_args(Criterion)
ALLOCATIONS: tuple[str, ...] = get_args(Allocation)
PRUNE_SCOPES: tuple[str, ...] = get_args(PruneScope)
REPLACEMENTS: tuple[str, ...] = get_args(Replacement)
EXPORT_MODES: tuple[str, ...] = REPLACEMENTS
GATE_SETS: tuple[str, ...] = get_args(GateSet)
#: the modes ``both`` names, and what an ablation runs by default with calibration images
BOTH_MODES: tuple[str, ...] = ("identity", "mean")
#: the ``constant`` mode's gate value: a sigmoid gate's at zero excitation (sigmoid(0)), the middle of its range,
#: for a channel gate (every ``s_c``) and a spatial gate (every position of ``M_s``) alike
CONSTANT_GATE = 0.5
#: CBAM's spatial gate is named by its block's name and this suffix (``SE_2_1.spatial``); the channel gate by the
#: block's name alone
SPATIAL_SUFFIX = ".spatial"
