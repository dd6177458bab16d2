"""What an SE block is worth in a trained network: evaluate it with chosen blocks replaced (``seprobe ablate``).

An SE block computes ``x~_c = s_c * u_c`` (Eq. 4) with ``s = gate(W2 . relu(W1 . z))`` (Eq. 3). Two
replacements of ``s``, installed as forward hooks on the gate modules of :func:`~seprobe.probe.gates.find_gates`
(a hook that returns a tensor replaces the module's output):

* ``identity``: ``s = 1``, the block is removed (the paper's reading of a saturated block, Sec. 7.2);
* ``mean``: ``s_c = E[s_c]`` over a calibration set, a fixed per-channel scale: the block's dependence on the
  input is removed, its average effect kept.

What is ablated (:func:`plan_ablations`): every block alone, a chosen set as one, each stage's blocks together,
and a cumulative curve that removes blocks one after another in a stated order (:func:`cumulative_plan`).

Each ablation is compared with the full network on the same images: top-1 / top-5 and their change with a 95 %
paired-bootstrap interval over images (:func:`paired_bootstrap`), the share of unchanged top-1 predictions and the
mean KL divergence ``KL(p_full || p_ablated)`` of the softmax. Every batch is decoded once and run through the full
network and every ablation of a phase before the next batch is read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..devices import check_device
from ..distributed import World, current_world
from ..errors import SeprobeError, check_choice
from .activations import image_list_digest
from .gates import Gate, find_gates
from .images import LabelledImages, ViewDataset, collate
from .loading import LoadedModel

MODES = ("identity", "mean")
#: how the cumulative curve orders the blocks: by the single-block KL or top-1 drop (least important first),
#: or in network order (first to last) or its reverse.
ORDERS = ("kl", "top1", "network", "reverse")
LEVEL = 0.95


@dataclass(frozen=True)
class Ablation:
    """One evaluation of the network with ``blocks`` replaced by ``mode``.

    ``group`` says how it was chosen: ``block`` (one block alone), ``set`` (a chosen set as one), ``stage``
    (one stage's blocks) or ``cumulative`` (the first ``step`` blocks of the cumulative order).
    """

    label: str
    group: str
    mode: str
    blocks: tuple[str, ...]
    step: int | None = None


def parse_blocks(gates: Sequence[Gate], blocks: str | Iterable[str]) -> tuple[str, ...]:
    """Block names from ``"SE_5_2,SE_5_3"`` or a list, each a block of the model, in network order."""
    names = [g.name for g in gates]
    chosen = [b.strip() for b in (blocks.split(",") if isinstance(blocks, str) else blocks) if b.strip()]
    if not chosen:
        raise SeprobeError(f"empty block set {blocks!r}; valid: one or more of {', '.join(names)}")
    for b in chosen:
        if b not in names:
            raise SeprobeError(f"unknown block {b!r}; valid: {', '.join(names)}")
    return tuple(n for n in names if n in chosen)


def stage_blocks(gates: Sequence[Gate], stage: int) -> tuple[str, ...]:
    found = tuple(g.name for g in gates if g.stage == stage)
    if not found:
        valid = ", ".join(map(str, sorted({g.stage for g in gates})))
        raise SeprobeError(f"no SE block in stage {stage}; valid: {valid}")
    return found


def check_modes(modes: str | Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip())
    if not chosen:
        raise SeprobeError(f"no ablation mode in {modes!r}; valid: {', '.join(MODES)} (or both)")
    for m in chosen:
        check_choice("ablation mode", m, MODES)
    return tuple(m for m in MODES if m in chosen)


def plan_ablations(gates: Sequence[Gate], modes: Iterable[str] = MODES, *, single: bool = True,
                   blocks: str | Iterable[str] | None = None, stage: int | None = None,
                   per_stage: bool = False) -> list[Ablation]:
    """The ablations of one phase, for each mode: every block alone (``single``), the ``blocks`` or ``stage``
    set as one, and each stage's blocks together (``per_stage``)."""
    modes = check_modes(modes)
    plan = []
    for mode in modes:
        if single:
            plan += [Ablation(g.name, "block", mode, (g.name,)) for g in gates]
        if blocks is not None:
            chosen = parse_blocks(gates, blocks)
            plan.append(Ablation("+".join(chosen), "set", mode, chosen))
        if stage is not None:
            plan.append(Ablation(f"stage {stage}", "set", mode, stage_blocks(gates, stage)))
        if per_stage:
            plan += [Ablation(f"stage {s}", "stage", mode, stage_blocks(gates, s))
                     for s in sorted({g.stage for g in gates})]
    if not plan:
        raise SeprobeError("nothing to ablate; valid: every block alone (default), --blocks, --stage, --per-stage "
                           "or --cumulative")
    return plan


def cumulative_order(gates: Sequence[Gate], singles: pd.DataFrame | None, mode: str, by: str) -> list[str]:
    """The blocks in the order the cumulative curve removes them. ``kl`` / ``top1``: least important first, by
    the single-block mean KL or top-1 change of ``mode`` (ties in network order); ``network`` / ``reverse``."""
    check_choice("cumulative order", by, ORDERS)
    names = [g.name for g in gates]
    if by == "network":
        return names
    if by == "reverse":
        return names[::-1]
    rows = singles[(singles["group"] == "block") & (singles["mode"] == mode)].set_index("label")
    if by == "kl":
        key = {n: float(rows.loc[n, "kl"]) for n in names}
    else:  # the largest top-1 drop last; KL breaks ties, as it sees what a small set's accuracy cannot
        key = {n: (-float(rows.loc[n, "top1_change"]), float(rows.loc[n, "kl"])) for n in names}
    return sorted(names, key=lambda n: (key[n], names.index(n)))


def cumulative_plan(order: Sequence[str], mode: str) -> list[Ablation]:
    """Remove ``order[0]``, then ``order[:2]``, ... every block: the curve of "how much SE can go"."""
    return [Ablation(f"+{order[k]}", "cumulative", mode, tuple(order[: k + 1]), step=k + 1) for k in range(len(order))]


# --- calibration: the per-channel mean gate of the mean mode ----------------------------------------------------

@dataclass
class Calibration:
    """The per-channel mean of every gate over the calibration images, and where those came from."""

    means: dict[str, torch.Tensor]
    source: str        # words for the outputs
    images: int
    overlap: int = 0   # calibration images that are also evaluation images


def split_per_class(images: LabelledImages, per_class: int) -> tuple[LabelledImages, LabelledImages]:
    """Take the first ``per_class`` images of every class (path order) out for calibration: (calibration,
    evaluation), disjoint by construction."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise SeprobeError(f"invalid --calibration {per_class!r}; valid: an integer >= 1 (images per class taken "
                           "out of the data for calibration)")
    taken: dict[int, int] = {}
    calib, rest = [], []
    for p, lab in zip(images.paths, images.labels, strict=True):
        if taken.get(lab, 0) < per_class:
            taken[lab] = taken.get(lab, 0) + 1
            calib.append((p, lab))
        else:
            rest.append((p, lab))
    if not rest:
        most = max(taken.values())
        raise SeprobeError(f"--calibration {per_class} takes every image for calibration (at most {most} per "
                           "class); valid: a smaller number, or --calibration-data DIR")

    def part(items):
        return LabelledImages(tuple(p for p, _ in items), tuple(lab for _, lab in items), images.class_names,
                              images.imagenet, images.layout)

    return part(calib), part(rest)


def overlap(evaluation: LabelledImages, calibration: LabelledImages) -> int:
    """Images (by resolved path) in both sets."""
    return len({Path(p).resolve() for p in evaluation.paths} & {Path(p).resolve() for p in calibration.paths})


def check_disjoint(evaluation: LabelledImages, calibration: LabelledImages, disjoint: bool = True) -> int:
    shared = overlap(evaluation, calibration)
    if shared and disjoint:
        raise SeprobeError(f"the calibration and evaluation sets share {shared} images; valid: disjoint sets "
                           "(another --calibration-data folder, or --calibration N per class), or allow overlap")
    return shared


def calibrate(loaded: LoadedModel, gates: Sequence[Gate], images: LabelledImages, *, views: int = 1,
              batch_size: int = 32, device: str = "cpu", num_workers: int = 0, progress: bool = True,
              seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-channel mean of every gate over ``images`` (``views`` crops each), from the activations pass
    (:func:`~seprobe.probe.activations.collect`)."""
    from .activations import collect

    if not images.paths:
        raise SeprobeError("no calibration image; valid: --calibration N >= 1 or a --calibration-data folder "
                           "with images")
    run = collect(loaded, images, views=views, batch_size=batch_size, device=device, num_workers=num_workers,
                  blocks=[g.name for g in gates], progress=progress, seed=seed)
    if run.failed and len(set(run.failed)) == len(images.paths) * views:
        raise SeprobeError("no calibration image could be read; valid: a folder of readable images")
    all_group = run.stats.all_group
    return {g.name: torch.from_numpy(run.stats.blocks[g.name].mean[all_group].copy()).float() for g in gates}


# --- the replacement --------------------------------------------------------------------------------------------

class GateReplacer:
    """Forward hooks on every gate; :meth:`apply` chooses which gates return a constant instead of ``s``.

    The constant is ``1`` (identity) or the calibration mean (mean), shaped ``1 x C x 1 x 1`` and expanded to
    the gate's output (so per-position NoSqueeze gates get it at every position).
    """

    def __init__(self, model: nn.Module, gates: Sequence[Gate], means: dict[str, torch.Tensor] | None = None):
        self.gates = {g.name: g for g in gates}
        self.means = means or {}
        self.active: dict[str, str] = {}
        self._handles = [model.get_submodule(g.gate_path).register_forward_hook(self._hook(g.name)) for g in gates]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            mode = self.active.get(name)
            if mode is None:
                return None
            c = output.shape[1]
            value = torch.ones(c) if mode == "identity" else self.means[name]
            shape = (1, c) + (1,) * (output.dim() - 2)
            return value.to(output.device, output.dtype).reshape(shape).expand_as(output)
        return hook

    def apply(self, ablation: Ablation | None) -> None:
        self.active = {} if ablation is None else dict.fromkeys(ablation.blocks, ablation.mode)
        if ablation is not None and ablation.mode == "mean":
            missing = [b for b in ablation.blocks if b not in self.means]
            if missing:
                raise SeprobeError(f"no calibration mean for {', '.join(missing)}; valid: calibrate before a "
                                   "mean ablation")

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


# --- per-image outcomes ------------------------------------------------------------------------------------------

@dataclass
class Outcomes:
    """Per image (columns, in data order) and per evaluation (rows: 0 = the full network, then each ablation)."""

    top1: np.ndarray      # (E, N) int64 predicted class
    correct1: np.ndarray  # (E, N) bool
    correct5: np.ndarray  # (E, N) bool
    kl: np.ndarray        # (E, N) float64, KL(full || this); 0 for the full network
    seen: np.ndarray      # (N,) bool: readable images


def _scored(images: LabelledImages, num_logits: int) -> bool:
    return (images.imagenet and num_logits == 1000) or (not images.imagenet and num_logits == len(images.class_names))


def run_phase(model: nn.Module, replacer: GateReplacer, images: LabelledImages, loaded: LoadedModel,
              ablations: Sequence[Ablation], *, batch_size: int = 32, device: str = "cpu", num_workers: int = 0,
              progress: bool = True, desc: str = "ablate", reuse: bool = True) -> tuple[Outcomes, list[str], bool]:
    """Evaluate the full network and every ablation on each batch in turn (the batch is decoded once; with
    ``reuse``, each ablation starts from the full pass's outputs before its first replaced gate, see
    :mod:`~seprobe.probe.prefix`). Returns the outcomes, the unreadable images and whether the labels could be
    scored.

    Under torchrun (the open :func:`~seprobe.distributed.distributed_session`) each rank evaluates its own
    contiguous share of one process's batches on its own device (each rank finds its own prefix-reuse frontiers
    on its first batch: they depend on the network only), and the per-image outcomes are gathered in image
    order, so every rank returns what one process would: the paired bootstrap, seeded, then gives the same
    intervals everywhere.
    """
    from tqdm import tqdm

    from .prefix import PrefixReuse

    world = current_world()
    if world.distributed:
        device = world.device
        world.check_same("image list", image_list_digest(images, 1, batch_size))
    n, e = len(images.paths), len(ablations) + 1
    out = Outcomes(np.zeros((e, n), np.int64), np.zeros((e, n), bool), np.zeros((e, n), bool),
                   np.zeros((e, n), np.float64), np.zeros(n, bool))
    shard = world.batches(n, batch_size)  # one process: the batches of a plain loader
    loader = torch.utils.data.DataLoader(ViewDataset(images, loaded.preprocessing), batch_sampler=shard,
                                         num_workers=num_workers, collate_fn=collate)
    failed: list[str] = []
    scored = True
    prefix = PrefixReuse(model, list(replacer.gates.values())) if reuse else None
    frontiers: list[tuple[str, ...]] = []
    bar = tqdm(total=n * e, unit="img", desc=desc, disable=not (progress and world.is_main), dynamic_ncols=True,
               leave=False)
    try:
        with torch.inference_mode():
            batches = iter(loader)
            for _ in range(world.steps(n, batch_size)):  # a rank with one batch fewer takes an empty step
                x, labels, index, bad = next(batches, (None, None, None, []))
                failed += bad
                done = len(bad) * e
                if x is not None:
                    x, idx = x.to(device), index.numpy()
                    out.seen[idx] = True
                    reference = None
                    if prefix is not None and not frontiers:
                        replacer.apply(None)
                        prefix.probe(x[:1])
                        frontiers = [prefix.frontier(a.blocks) for a in ablations]
                    for k, ablation in enumerate([None, *ablations]):
                        replacer.apply(ablation)
                        if prefix is None:
                            logits = model(x)
                        elif ablation is None:
                            with prefix.recording({p for f in frontiers for p in f}):
                                logits = model(x)
                        else:
                            with prefix.replaying(frontiers[k - 1]):
                                logits = model(x)
                        logits = logits.double()
                        scored = scored and _scored(images, logits.shape[1])
                        logp = torch.log_softmax(logits, dim=1)
                        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
                        truth = labels.unsqueeze(1)
                        out.top1[k, idx] = top5[:, 0].numpy()
                        out.correct1[k, idx] = (top5[:, :1] == truth).any(1).numpy()
                        out.correct5[k, idx] = (top5 == truth).any(1).numpy()
                        if reference is None:
                            reference = logp
                        else:
                            out.kl[k, idx] = (reference.exp() * (reference - logp)).sum(1).clamp(min=0).cpu().numpy()
                        done += len(x)
                        if not world.distributed:  # one process: the bar moves with every evaluation
                            bar.update(len(x) + (len(bad) * e if k == 0 else 0))
                total = world.heartbeat(done)  # the global count; stops here if another rank failed
                if world.distributed:
                    bar.update(total)
    finally:
        replacer.apply(None)
        bar.close()
    if world.distributed:
        out = _gather_outcomes(world, out, [i for batch in shard for i in batch])
        failed = world.concat(failed)
        scored = world.sum(int(not scored))[0] == 0
    return out, failed, scored


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


# --- statistics --------------------------------------------------------------------------------------------------

def paired_bootstrap(diff: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = LEVEL) -> np.ndarray:
    """Percentile intervals of the mean of each row of ``diff`` (E x N per-image paired differences, e.g.
    ablated minus full correctness), resampling images with replacement; the same resamples for every row.
    Returns an E x 2 array (low, high)."""
    diff = np.atleast_2d(np.asarray(diff, np.float64))
    n = diff.shape[1]
    if n == 0:
        raise SeprobeError("no image to bootstrap over; valid: at least one readable evaluation image")
    rng = np.random.default_rng(seed)
    means = np.empty((diff.shape[0], n_boot))
    chunk = max(1, min(n_boot, 4_000_000 // n))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size)  # one resample of the images per row
        means[:, start:start + size] = diff @ counts.T / n
    alpha = (1 - level) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=1).T


# --- cost --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockCost:
    """What one SE block costs: its parameters, its multiply-adds (the ``seprobe complexity --per-block``
    counting), and those of its scale (Eq. 4), which a ``mean`` block keeps unless folded."""

    params: int
    macs: int
    scale_macs: int
    channels: int


def block_costs(model: nn.Module, gates: Sequence[Gate], input_size: int) -> tuple[dict[str, BlockCost], int, int]:
    """Per block cost, and the whole model's multiply-adds and parameters, at one ``input_size`` image."""
    from ..cost.flops import DEFAULT, count_flops

    device = next(model.parameters()).device
    count = count_flops(model, torch.zeros(1, 3, input_size, input_size, device=device), list(gates))
    counted = DEFAULT.categories()
    costs = {}
    for g in gates:
        parts = count.per_block[g.name]
        costs[g.name] = BlockCost(
            params=sum(p.numel() for p in model.get_submodule(g.path).parameters()),
            macs=sum(v for part, v in parts.items() if f"se_{part}" in counted),
            scale_macs=parts.get("scale", 0) if "se_scale" in counted else 0,
            channels=g.channels)
    return costs, count.total(DEFAULT), sum(p.numel() for p in model.parameters())


def saved(costs: dict[str, BlockCost], blocks: Iterable[str], mode: str, folded: bool) -> tuple[int, int]:
    """Parameters and multiply-adds an ablation saves: all of an identity or folded mean block's; a mean block
    kept as a scale keeps ``C`` parameters and one multiply per element."""
    params = macs = 0
    for b in blocks:
        c = costs[b]
        keeps = mode == "mean" and not folded
        params += c.params - (c.channels if keeps else 0)
        macs += c.macs - (c.scale_macs if keeps else 0)
    return params, macs


# --- the whole sweep ---------------------------------------------------------------------------------------------

@dataclass
class AblationResult:
    loaded: LoadedModel
    gates: list[Gate]
    images: LabelledImages            # the evaluation images
    table: pd.DataFrame               # one row per evaluation (the full network first)
    calibration: Calibration | None
    costs: dict[str, BlockCost]
    total_macs: int
    total_params: int
    evaluated: int
    scored: bool
    orders: dict[str, list[str]] = field(default_factory=dict)   # mode -> cumulative order
    order_by: str | None = None
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    n_boot: int = 2000
    seed: int = 0
    outcomes: list[Outcomes] = field(default_factory=list)


def ablate(loaded: LoadedModel, images: LabelledImages, *, modes: str | Iterable[str] = MODES, single: bool = True,
           blocks: str | Iterable[str] | None = None, stage: int | None = None, per_stage: bool = False,
           cumulative: str | Sequence[str] | None = None, calibration: LabelledImages | None = None,
           calibration_per_class: int | None = None, calibration_views: int = 1, disjoint: bool = True,
           batch_size: int = 32, device: str = "cpu", num_workers: int = 0, progress: bool = True,
           n_boot: int = 2000, seed: int = 0, foldable: dict[str, bool] | None = None,
           reuse: bool = True) -> AblationResult:
    """Evaluate ``loaded`` on ``images`` with SE blocks replaced; every input is checked before any pass.

    ``cumulative``: an order (:data:`ORDERS`) or an explicit list of blocks. ``mean`` needs calibration images:
    ``calibration_per_class`` per class taken out of ``images``, or a separate ``calibration`` set (which must not
    share images with ``images`` unless ``disjoint=False``). ``foldable`` (block -> whether export folds its mean
    scale; default: :func:`seprobe.probe.folding.fold_targets`) decides the exported savings. ``reuse``: start
    each ablation from the full pass's outputs before its first replaced gate (same logits, less work).

    Under torchrun every pass is shared out among the ranks (:func:`run_phase`, and the calibration through
    :func:`~seprobe.probe.activations.collect`), on each rank's own device, and every rank returns the result of
    one process; the caller lets rank 0 alone write it.
    """
    if current_world().distributed:  # under torchrun: this rank's own device
        device = current_world().device
    check_device(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SeprobeError(f"invalid --batch-size {batch_size!r}; valid: an integer >= 1")
    model = loaded.model.to(device).eval()
    gates = find_gates(model, input_size=loaded.preprocessing.crop)
    if not gates:
        raise SeprobeError(f"{loaded.name} has no SE block that seprobe can find; valid: a model with SE "
                           "(seprobe se_*, timm SEModule/SqueezeExcite, torchvision SqueezeExcitation)")
    modes = check_modes(modes)
    plan = plan_ablations(gates, modes, single=single, blocks=blocks, stage=stage, per_stage=per_stage) \
        if (single or blocks is not None or stage is not None or per_stage) else []
    explicit_order = order_by = None
    if cumulative is not None:
        if isinstance(cumulative, str) and cumulative in ORDERS:
            order_by = cumulative
            if cumulative in ("kl", "top1") and not single:
                raise SeprobeError(f"--cumulative {cumulative} orders blocks by their single-block results; valid: "
                                   "keep every block alone in the sweep, or order network / reverse / a block list")
        else:
            parse_blocks(gates, cumulative)  # every name a block of the model
            names = cumulative.split(",") if isinstance(cumulative, str) else list(cumulative)
            explicit_order = [b.strip() for b in names if b.strip()]  # in the user's order
            if len(set(explicit_order)) != len(explicit_order):
                raise SeprobeError(f"--cumulative {cumulative!r} names a block twice; valid: each block once")
            order_by = "given"
    if not plan and cumulative is None:
        raise SeprobeError("nothing to ablate; valid: every block alone (default), --blocks, --stage, --per-stage "
                           "or --cumulative")
    if calibration_per_class is not None and calibration is not None:
        raise SeprobeError("both --calibration N and --calibration-data given; valid: one of them")
    if calibration_per_class is not None and (isinstance(calibration_per_class, bool)
                                              or not isinstance(calibration_per_class, int)
                                              or calibration_per_class < 1):
        raise SeprobeError(f"invalid --calibration {calibration_per_class!r}; valid: an integer >= 1 (images per "
                           "class taken out of the data for calibration)")
    if isinstance(calibration_views, bool) or not isinstance(calibration_views, int) or calibration_views < 1:
        raise SeprobeError(f"invalid --calibration-views {calibration_views!r}; valid: an integer >= 1")
    cal_info = None
    cal_images = None
    if "mean" in modes:
        if calibration_per_class is None and calibration is None:
            raise SeprobeError("--mode mean needs calibration images; valid: --calibration N (images per class "
                               "taken out of the data) or --calibration-data DIR")
        if calibration_per_class is not None:
            cal_images, images = split_per_class(images, calibration_per_class)
            source = (f"{calibration_per_class} image(s) per class taken out of the evaluation data "
                      f"({len(cal_images.paths)} images), disjoint from the {len(images.paths)} evaluation images")
            shared = 0
        else:
            cal_images = calibration
            shared = check_disjoint(images, calibration, disjoint)
            source = f"a separate calibration set of {len(calibration.paths)} images ({calibration.layout})"
            source += (f", sharing {shared} images with the evaluation set (overlap allowed)" if shared
                       else ", disjoint from the evaluation images")
        if not cal_images.paths:
            raise SeprobeError("no calibration image; valid: --calibration N >= 1 or a non-empty --calibration-data")
        if calibration_views > 1:
            source += f"; {calibration_views} views each (the evaluation crop and augmented crops)"
        cal_info = Calibration({}, source, len(cal_images.paths), shared)
    if not images.paths:
        raise SeprobeError("no evaluation image; valid: a --data folder with images")

    from .folding import fold_targets

    start = time.perf_counter()
    costs, total_macs, total_params = block_costs(model, gates, loaded.preprocessing.crop)
    if foldable is None:
        foldable = {name: target is not None for name, target in fold_targets(model, gates).items()}
    if cal_info is not None:
        cal_info.means = calibrate(loaded, gates, cal_images, views=calibration_views, batch_size=batch_size,
                                   device=device, num_workers=num_workers, progress=progress, seed=seed)
    replacer = GateReplacer(model, gates, cal_info.means if cal_info else None)
    result = AblationResult(loaded, gates, images, pd.DataFrame(), cal_info, costs, total_macs, total_params, 0,
                            True, order_by=order_by, n_boot=n_boot, seed=seed)
    try:
        rows = []
        first = None
        if plan:
            out, failed, scored = run_phase(model, replacer, images, loaded, plan, batch_size=batch_size,
                                            device=device, num_workers=num_workers, progress=progress,
                                            desc=f"ablate ({len(plan)} sets)", reuse=reuse)
            first = out
            result.outcomes.append(out)
            result.failed, result.scored = failed, scored
            rows += _rows(result, out, [None, *plan], foldable)
        if cumulative is not None:
            singles = pd.DataFrame(rows)
            cplan = []
            for mode in modes:
                order = explicit_order or cumulative_order(gates, singles, mode, order_by)
                result.orders[mode] = order
                cplan += cumulative_plan(order, mode)
            out, failed, scored = run_phase(model, replacer, images, loaded, cplan, batch_size=batch_size,
                                            device=device, num_workers=num_workers, progress=progress,
                                            desc=f"cumulative ({len(cplan)} sets)", reuse=reuse)
            result.outcomes.append(out)
            if first is None:
                result.failed, result.scored = failed, scored
            new = _rows(result, out, [None, *cplan], foldable)
            rows += new[1:] if first is not None else new
    finally:
        replacer.remove()
    result.seconds = time.perf_counter() - start
    result.table = pd.DataFrame(rows)
    result.evaluated = int(result.outcomes[0].seen.sum())
    result.notes += _notes(result)
    return result


def _rows(result: AblationResult, out: Outcomes, evaluations: list[Ablation | None],
          foldable: dict[str, bool]) -> list[dict]:
    seen = out.seen
    if not seen.any():
        raise SeprobeError("no evaluation image could be read; valid: a folder of readable images")
    c1, c5 = out.correct1[:, seen].astype(np.float64), out.correct5[:, seen].astype(np.float64)
    ci1 = paired_bootstrap(c1[1:] - c1[0], result.n_boot, result.seed)
    ci5 = paired_bootstrap(c5[1:] - c5[0], result.n_boot, result.seed)
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
        p_exp = m_exp = 0
        for b in blocks:
            p, m = saved(result.costs, (b,), mode, folded=foldable.get(b, False))
            p_exp, m_exp = p_exp + p, m_exp + m
        row.update(params_saved=p_eval, macs_saved=m_eval, params_saved_exported=p_exp, macs_saved_exported=m_exp,
                   macs_saved_pct=100 * m_exp / result.total_macs,
                   se_macs_removed_pct=100 * sum(result.costs[b].macs for b in blocks) / se_macs if se_macs else 0.0)
        rows.append(row)
    return rows


def _notes(result: AblationResult) -> list[str]:
    notes = []
    if result.loaded.random:
        notes.append("WARNING: random weights (--weights random): what an untrained network's SE blocks are worth "
                     "says nothing about a trained one")
    if not result.scored:
        notes.append("the labels do not index the model's outputs (not ImageNet-1k labels for a 1000-way "
                     "classifier): accuracy is not scored; agreement and KL compare with the full network")
    if result.failed:
        notes.append(f"{len(set(result.failed))} unreadable images were skipped")
    n = result.evaluated
    if result.scored and n:
        # the half-width of a 95 % interval for a change of accuracy that flips k images' outcomes both ways
        notes.append(f"on {n} images one image is {100 / n:.2f} % of accuracy; a change whose 95 % interval "
                     "(paired bootstrap over images, "
                     f"{result.n_boot} resamples, seed {result.seed}) contains 0 is within noise")
    return notes


def export_blocks(result: AblationResult, blocks: str | Iterable[str] | None, stage: int | None, mode: str,
                  path: str | Path, *, knobs: dict | None = None):
    """Write the network with one set (``blocks`` or ``stage``) ablated in ``mode`` to ``path``
    (:func:`seprobe.probe.folding.export_ablated`), using the calibration means of ``result``."""
    from .folding import export_ablated

    check_choice("export mode", mode, MODES)
    if (blocks is None) == (stage is None):
        raise SeprobeError("--export needs one set of blocks; valid: --blocks SE_a,SE_b or --stage N")
    chosen = parse_blocks(result.gates, blocks) if blocks is not None else stage_blocks(result.gates, stage)
    means = result.calibration.means if result.calibration is not None else None
    if mode == "mean" and not means:
        raise SeprobeError("--export-mode mean needs the calibration means; valid: --mode mean or both, with "
                           "--calibration N or --calibration-data DIR")
    return export_ablated(result.loaded.model, result.gates, dict.fromkeys(chosen, mode), means, path,
                          spec=result.loaded.name, knobs=knobs, preprocessing=result.loaded.preprocessing)
