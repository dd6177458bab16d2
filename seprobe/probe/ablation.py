"""What an SE block is worth in a trained network: evaluate it with chosen blocks replaced (``seprobe ablate``).

An SE block computes ``x~_c = s_c * u_c`` (Eq. 4) with ``s = gate(W2 . relu(W1 . z))`` (Eq. 3). The plan
(:class:`~seprobe.probe.ablation_plan.AblationPlan`) says which gates are replaced by ``1`` (``identity``), by
their calibration mean (``mean``, :mod:`~seprobe.probe.calibration`) or by 1/2 (``constant``), through the gate
hooks of :mod:`~seprobe.probe.hooks`: a block's channel gate, named by the block, and CBAM's spatial gate, named
``<block>.spatial``, each a gate of its own (with its own cost, :func:`~seprobe.cost.se_blocks.block_costs`).

Each ablation is compared with the full network on the same images: top-1 / top-5 and their change with a 95 %
paired-bootstrap interval over images (:func:`~seprobe.probe.bootstrap.paired_bootstrap`), the share of unchanged
top-1 predictions and the mean KL divergence ``KL(p_full || p_ablated)`` of the softmax. Every batch is decoded
once and run through the full network and every ablation of a phase before the next batch is read; with
``reuse``, each ablation starts from the full pass's outputs before its first replaced gate
(:mod:`~seprobe.probe.prefix`): the same logits, less work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..choices import EXPORT_MODES
from ..cost.se_blocks import BlockCost, block_costs, saved
from ..data.images import LabelledImages
from ..defaults import BOOTSTRAP
from ..distributed import World
from ..errors import SeprobeError, check_choice, check_int
from ..models.ablated import Export, export_ablated
from ..models.blocks import SEBlockInfo
from ..models.factory import Network
from .ablation_plan import Ablation, AblationPlan, CalibrationSource, cumulative_order, cumulative_plan
from .bootstrap import LEVEL, paired_bootstrap
from .calibration import GateMeans, calibrate, split
from .evaluation import ImagePass, Loader, pass_device, score, scored
from .hooks import GateHooks
from .prefix import PrefixReuse


@dataclass
class Outcomes:
    """Per image (columns, in data order) and per evaluation (rows: 0 = the full network, then each ablation)."""

    top1: np.ndarray      # (E, N) int64 predicted class
    correct1: np.ndarray  # (E, N) bool
    correct5: np.ndarray  # (E, N) bool
    kl: np.ndarray        # (E, N) float64, KL(full || this); 0 for the full network
    seen: np.ndarray      # (N,) bool: readable images


def run_phase(network: Network, hooks: GateHooks, images: LabelledImages, ablations: Sequence[Ablation],
              loader: Loader = Loader(), *, progress: bool = True, desc: str = "ablate",
              reuse: bool = True) -> tuple[Outcomes, list[str], bool]:
    """Evaluate the full network and every ablation on each batch in turn. Returns the outcomes, the unreadable
    images and whether the labels could be scored.

    Under torchrun each rank evaluates its own contiguous share of one process's batches on its own device
    (each rank finds its own prefix-reuse frontiers on its first batch: they depend on the network only), and
    the per-image outcomes are gathered in image order, so every rank returns what one process would: the
    paired bootstrap, seeded, then gives the same intervals everywhere.
    """
    n, e = len(images.paths), len(ablations) + 1
    out = Outcomes(np.zeros((e, n), np.int64), np.zeros((e, n), bool), np.zeros((e, n), bool),
                   np.zeros((e, n), np.float64), np.zeros(n, bool))
    images_pass = ImagePass(images, network.preprocessing, loader, progress=progress, desc=desc, work=e)
    model = network.model
    prefix = PrefixReuse(model, list(hooks.blocks.values())) if reuse else None
    frontiers: list[tuple[str, ...]] = []
    ok = True
    try:
        with torch.inference_mode():
            for batch in images_pass:
                idx = batch.index.numpy()
                out.seen[idx] = True
                if prefix is not None and not frontiers:
                    hooks.replace()
                    prefix.probe(batch.x[:1])
                    frontiers = [prefix.frontier(a.blocks) for a in ablations]
                reference = None
                for k, ablation in enumerate([None, *ablations]):
                    logits = _forward(model, hooks, prefix, frontiers, k, ablation, batch.x)
                    images_pass.check_finite(logits, batch, network.name)
                    logits = logits.double()
                    ok = ok and scored(images, logits.shape[1])
                    logp = torch.log_softmax(logits, dim=1)
                    top1, hit1, hit5 = score(logits, batch.labels)
                    out.top1[k, idx], out.correct1[k, idx], out.correct5[k, idx] = top1, hit1, hit5
                    if reference is None:
                        reference = logp
                    else:
                        out.kl[k, idx] = (reference.exp() * (reference - logp)).sum(1).clamp(min=0).cpu().numpy()
    finally:
        hooks.replace()
    world = images_pass.world
    if world.distributed:
        out = _gather_outcomes(world, out, images_pass.items())
        ok = world.sum(int(not ok))[0] == 0
    images_pass.finish()
    return out, images_pass.failed, ok


def _forward(model: nn.Module, hooks: GateHooks, prefix: PrefixReuse | None, frontiers, k: int,
             ablation: Ablation | None, x: torch.Tensor) -> torch.Tensor:
    """The full network (``k = 0``, recording what the ablations reuse) or ablation ``k``."""
    hooks.replace(dict.fromkeys(ablation.blocks, ablation.mode) if ablation is not None else None)
    if prefix is None:
        return model(x)
    if ablation is None:
        with prefix.recording({p for f in frontiers for p in f}):
            return model(x)
    with prefix.replaying(frontiers[k - 1]):
        return model(x)


def _gather_outcomes(world: World, out: Outcomes, mine: list[int]) -> Outcomes:
    """Every rank's image columns, put together in image order (a rank's unread images stay unseen)."""
    columns = world.gather_records([(out.top1[:, i], out.correct1[:, i], out.correct5[:, i], out.kl[:, i],
                                     bool(out.seen[i])) for i in mine], mine)
    if len(columns) != out.seen.size:
        raise ValueError(f"{len(columns)} image columns gathered for {out.seen.size} images")
    top1, c1, c5, kl, seen = zip(*columns, strict=True) if columns else ((),) * 5
    e = out.top1.shape[0]

    def stack(cols, like):
        return np.stack(cols, axis=1) if cols else np.zeros((e, 0), like.dtype)

    return Outcomes(stack(top1, out.top1), stack(c1, out.correct1), stack(c5, out.correct5), stack(kl, out.kl),
                    np.asarray(seen, bool))


@dataclass
class AblationResult:
    network: Network
    blocks: list[SEBlockInfo]
    images: LabelledImages            # the evaluation images
    modes: tuple[str, ...]
    table: pd.DataFrame               # one row per evaluation (the full network first)
    calibration: GateMeans | None
    costs: dict[str, BlockCost]
    total_macs: int
    total_params: int
    evaluated: int = 0
    scored: bool = True
    orders: dict[str, list[str]] = field(default_factory=dict)   # mode -> cumulative order
    order_by: str | None = None       # an order of ORDERS, "given", or None (no cumulative curve)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bootstrap: int = BOOTSTRAP
    seed: int = 0
    level: float = LEVEL
    mean_skipped: bool = False        # the default modes without calibration images: identity alone
    outcomes: list[Outcomes] = field(default_factory=list)


def ablate(network: Network, images: LabelledImages, plan: AblationPlan = AblationPlan(), loader: Loader = Loader(),
           *, calibration: CalibrationSource | None = None, calibration_images: LabelledImages | None = None,
           bootstrap: int = BOOTSTRAP, seed: int = 0, progress: bool = True, reuse: bool = True) -> AblationResult:
    """Evaluate ``network`` on ``images`` with SE blocks replaced as ``plan`` says; every input is checked before
    any pass. ``mean`` needs ``calibration`` (and, for a separate set, its images read: ``calibration_images``).

    Under torchrun every pass is shared out among the ranks, on each rank's own device, and every rank returns
    the result of one process; the caller lets rank 0 alone write it.
    """
    check_int("bootstrap", bootstrap)
    if not network.blocks:
        raise SeprobeError(f"{network.name} has no SE block that seprobe can find; valid: a model with SE "
                           "(seprobe se_*, timm SEModule/SqueezeExcite, torchvision SqueezeExcitation)")
    blocks = list(network.blocks)
    plan.check(blocks)
    modes = plan.resolve_modes(calibration is not None)
    if "mean" in modes and calibration is None:
        raise SeprobeError("mode 'mean' needs calibration images; valid: calibration_per_class (images per class "
                           "taken out of the data) or calibration_data (a folder)", argument="modes")
    cal_images = shared = None
    if calibration is not None and calibration.images is not None and calibration_images is None:
        calibration_images = calibration.images.read()
    if "mean" in modes:
        cal_images, images, shared = split(calibration, images, calibration_images)
    if not images.paths:
        raise SeprobeError("no evaluation image; valid: a data folder with images", argument="data")
    phase1 = plan.evaluations(blocks, modes)
    start = time.perf_counter()
    network.model.to(pass_device(loader)).eval()
    costs, total_macs, total_params = block_costs(network.model, blocks, network.input_size)
    cal = None
    if cal_images is not None:
        means = calibrate(network, blocks, cal_images, loader, views=calibration.calibration_views, progress=progress,
                          seed=seed)
        cal = GateMeans(means, calibration, len(cal_images.paths), cal_images.layout, len(images.paths), shared)
    result = AblationResult(network, blocks, images, modes, pd.DataFrame(), cal, costs, total_macs, total_params,
                            order_by=("given" if plan.cumulative is not None and not isinstance(plan.cumulative, str)
                                      else plan.cumulative), bootstrap=bootstrap, seed=seed,
                            mean_skipped=plan.modes is None and calibration is None)
    foldable = {b.name: b.fold is not None for b in blocks}
    rows: list[dict] = []
    with GateHooks(network.model, blocks, cal.means if cal else None) as hooks:
        if phase1:
            out, result.failed, result.scored = run_phase(network, hooks, images, phase1, loader, progress=progress,
                                                          desc=f"ablate ({len(phase1)} sets)", reuse=reuse)
            result.outcomes.append(out)
            rows += _rows(result, out, [None, *phase1], foldable)
        if plan.cumulative is not None:
            singles = pd.DataFrame(rows)
            phase2 = []
            for mode in modes:
                order = cumulative_order(blocks, singles, mode, plan.cumulative, plan.gates)
                result.orders[mode] = order
                phase2 += cumulative_plan(order, mode)
            out, failed, ok = run_phase(network, hooks, images, phase2, loader, progress=progress,
                                        desc=f"cumulative ({len(phase2)} sets)", reuse=reuse)
            result.outcomes.append(out)
            if not phase1:
                result.failed, result.scored = failed, ok
            new = _rows(result, out, [None, *phase2], foldable)
            rows += new[1:] if phase1 else new
    result.seconds = time.perf_counter() - start
    result.table = pd.DataFrame(rows)
    result.evaluated = int(result.outcomes[0].seen.sum())
    return result


def _rows(result: AblationResult, out: Outcomes, evaluations: list[Ablation | None],
          foldable: dict[str, bool]) -> list[dict]:
    seen = out.seen
    c1, c5 = out.correct1[:, seen].astype(np.float64), out.correct5[:, seen].astype(np.float64)
    ci1 = paired_bootstrap(c1[1:] - c1[0], result.bootstrap, result.seed, result.level)
    ci5 = paired_bootstrap(c5[1:] - c5[0], result.bootstrap, result.seed, result.level)
    se_macs = sum(c.macs for c in result.costs.values())
    rows = []
    for k, ab in enumerate(evaluations):
        blocks = () if ab is None else ab.blocks
        row = {"label": "full network" if ab is None else ab.label, "group": "full" if ab is None else ab.group,
               "mode": "none" if ab is None else ab.mode, "step": ab.step if ab is not None else None,
               "blocks": ",".join(blocks), "n_blocks": len(blocks), "images": int(seen.sum())}
        if result.scored:
            row.update(top1=c1[k].mean(), top5=c5[k].mean(), top1_change=c1[k].mean() - c1[0].mean(),
                       top5_change=c5[k].mean() - c5[0].mean())
            if ab is None:
                row.update(top1_low=0.0, top1_high=0.0, top5_low=0.0, top5_high=0.0)
            else:
                row.update(top1_low=ci1[k - 1, 0], top1_high=ci1[k - 1, 1], top5_low=ci5[k - 1, 0],
                           top5_high=ci5[k - 1, 1])
            row["within_noise"] = None if ab is None else bool(row["top1_low"] <= 0 <= row["top1_high"])
        row["agreement"] = float((out.top1[k, seen] == out.top1[0, seen]).mean())
        row["kl"] = float(out.kl[k, seen].mean())
        mode = "identity" if ab is None else ab.mode
        p_eval, m_eval = saved(result.costs, blocks, mode, folded=False)
        p_exp, m_exp = saved(result.costs, blocks, mode, folded=foldable)
        row.update(params_saved=p_eval, macs_saved=m_eval, params_saved_exported=p_exp, macs_saved_exported=m_exp,
                   macs_saved_pct=100 * m_exp / result.total_macs,
                   se_macs_removed_pct=100 * sum(result.costs[b].macs for b in blocks) / se_macs if se_macs else 0.0)
        rows.append(row)
    return rows


def export_blocks(result: AblationResult, blocks: Sequence[str], mode: str, path) -> Export:
    """Write the network with ``blocks`` (gate names) ablated in ``mode`` to ``path``
    (:func:`~seprobe.models.ablated.export_ablated`), using the calibration means of ``result``."""
    check_choice("export mode", mode, EXPORT_MODES, argument="export_mode")
    means = result.calibration.means if result.calibration is not None else None
    if mode == "mean" and not means:
        raise SeprobeError("export mode 'mean' needs the calibration means; valid: modes with 'mean', and "
                           "calibration images", argument="export_mode")
    net = result.network
    if net.source is None:
        raise SeprobeError(f"{net.name} was given as a module, so an export could not say how to rebuild it; valid: "
                           "a network from get_network(ModelSource(...))", argument="export")
    return export_ablated(net.model, result.blocks, dict.fromkeys(blocks, mode), means, path,
                          model_name=net.source.name,
                          knobs=net.source.knobs, preprocessing=net.preprocessing)
