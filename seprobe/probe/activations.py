"""Collect the excitation values of a trained SE network over labelled images (the paper's Sec. 7.2).

Forward hooks on the gate modules read ``s`` (Eq. 3) for every image and stream it into
:class:`~seprobe.probe.gate_stats.GateStats`; the same pass scores the model's top-1 / top-5 on the evaluation crops.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import torch

from ..devices import check_device
from ..distributed import World, current_world
from ..errors import SeprobeError
from .gate_stats import GateStats
from .gates import Gate, find_gates, gate_range
from .images import LabelledImages, ViewDataset, collate
from .loading import LoadedModel

#: The blocks of the paper's Fig. 6: the last block of stages 2-4 (just before downsampling), and stage 5.
PAPER_BLOCKS = ("SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3")


def choose_classes(images: LabelledImages, spec: str) -> list[int]:
    """The label indices of ``spec`` (ImageNet names, wnids, indices; or folder names for other trees),
    each of which must have images."""
    from .imagenet_classes import resolve_classes

    if images.imagenet:
        chosen = resolve_classes(spec)
    else:
        chosen = []
        for item in (s.strip() for s in spec.split(",") if s.strip()):
            if item not in images.class_names:
                raise SeprobeError(f"unknown class {item!r}; valid: {', '.join(images.class_names[:20])}")
            chosen.append(images.class_names.index(item))
    present = set(images.labels)
    for c in chosen:
        if c not in present:
            raise SeprobeError(f"no image of class {images.class_names[c]!r} in the data; valid: classes present "
                               "in the data")
    return chosen


def choose_blocks(gates: list[Gate], stages: list[int] | None = None, blocks: str | None = None) -> list[str]:
    """The blocks to plot: ``blocks`` by name, else those of ``stages``, else the paper's set where the model
    has all of it, else every block."""
    names = [g.name for g in gates]
    if blocks:
        shown = [b.strip() for b in blocks.split(",") if b.strip()]
        for b in shown:
            if b not in names:
                raise SeprobeError(f"unknown block {b!r}; valid: {', '.join(names)}")
        return shown
    if stages:
        shown = [g.name for g in gates if g.stage in stages]
        if not shown:
            valid = ", ".join(map(str, sorted({g.stage for g in gates})))
            raise SeprobeError(f"no SE block in stage {', '.join(map(str, stages))}; valid: {valid}")
        return shown
    return list(PAPER_BLOCKS) if set(PAPER_BLOCKS) <= set(names) else names


@dataclass
class ActivationRun:
    loaded: LoadedModel
    gates: list[Gate]
    images: LabelledImages
    views: int
    stats: GateStats
    evaluated: int = 0
    top1: float | None = None
    top5: float | None = None
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class GateRecorder:
    """Forward hooks that keep the latest output of every gate module, by block name."""

    def __init__(self, model: torch.nn.Module, gates: list[Gate]):
        self.values: dict[str, torch.Tensor] = {}
        self._handles = [model.get_submodule(g.gate_path).register_forward_hook(self._hook(g.name)) for g in gates]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self.values[name] = output.detach()
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def collect(loaded: LoadedModel, images: LabelledImages, *, views: int = 1, batch_size: int = 32,
            device: str = "cpu", num_workers: int = 0, blocks: list[str] | None = None, progress: bool = True,
            seed: int = 0, with_gates: bool = True, world: World | None = None) -> ActivationRun:
    """One pass over ``images`` (``views`` crops each): gate statistics of every SE block, and accuracy
    (``with_gates=False``: accuracy only, for any classifier).

    Under torchrun (``world``, by default that of the open :func:`~seprobe.distributed.distributed_session`)
    each rank takes its own contiguous share of the batches on ``world.device``, and the statistics, counts and
    failures are combined, so every rank returns the run of one process over all the images; only rank 0
    shows progress (the global count).
    """
    world = world or current_world()
    if world.distributed:
        device = world.device
        world.check_same("image list", image_list_digest(images, views, batch_size))
    check_device(device)
    model = loaded.model.to(device).eval()
    gates = find_gates(model, input_size=loaded.preprocessing.crop) if with_gates else []
    if with_gates and not gates:
        raise SeprobeError(f"{loaded.name} has no SE block that seprobe can find; valid: a model with SE "
                           "(seprobe se_*, timm SEModule/SqueezeExcite, torchvision SqueezeExcitation)")
    if blocks:
        known = {g.name for g in gates}
        for b in blocks:
            if b not in known:
                raise SeprobeError(f"unknown block {b!r} in {loaded.name}; valid: {', '.join(g.name for g in gates)}")
        gates = [g for g in gates if g.name in blocks]
    num_classes = len(images.class_names)
    stats = GateStats({g.name: (g.channels, *gate_range(model, g)) for g in gates}, num_classes)
    run = ActivationRun(loaded, gates, images, views, stats)
    dataset = ViewDataset(images, loaded.preprocessing, views, seed)
    # global item indices in the batches of one process, so views are seeded and scored as in one process
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=world.batches(len(dataset), batch_size),
                                         num_workers=num_workers, collate_fn=collate)
    recorder = GateRecorder(model, gates)
    correct1 = correct5 = evaluated = 0
    failed: list[str] = []
    score = images.imagenet
    bar = _progress(len(dataset), progress and world.is_main)
    start = time.perf_counter()
    read = 0
    try:
        with torch.inference_mode():
            batches = iter(loader)
            for _ in range(world.steps(len(dataset), batch_size)):  # a rank with one batch fewer idles a step
                x, labels, flat_index, bad = next(batches, (None, None, None, []))
                failed += bad
                if x is not None:
                    read += len(x)
                    logits = model(x.to(device))
                    for g in gates:  # in network order: the first non-finite block is named
                        stats.update(g.name, recorder.values[g.name], labels)
                    if not torch.isfinite(logits).all():
                        first_image = images.paths[int(flat_index[0]) // views]
                        raise SeprobeError(f"{loaded.name}: non-finite logits (NaN or inf) in the batch of "
                                           f"{first_image}; valid: finite weights and a finite, non-zero "
                                           "normalisation std")
                    if score and logits.shape[1] == 1000:
                        first = (flat_index % views) == 0
                        top5 = logits[first.to(device)].topk(5, dim=1).indices.cpu()
                        truth = labels[first].unsqueeze(1)
                        correct1 += (top5[:, :1] == truth).sum().item()
                        correct5 += (top5 == truth).any(1).sum().item()
                        evaluated += int(first.sum())
                bar.update(world.heartbeat(len(bad) + (0 if x is None else len(x))))
    finally:
        recorder.remove()
        bar.close()
    world.merge_stats(stats)
    correct1, correct5, run.evaluated, read = world.sum(correct1, correct5, evaluated, read)
    run.failed = world.concat(failed)
    run.seconds = time.perf_counter() - start
    if not read:
        example = f" (e.g. {run.failed[0]})" if run.failed else ""
        raise SeprobeError(f"none of the {len(images.paths)} images could be read{example}; valid: JPEG, PNG or "
                           "other images PIL can open")
    run.notes += list(images.notes) + stats.caveats(views)
    if run.evaluated:
        run.top1, run.top5 = correct1 / run.evaluated, correct5 / run.evaluated
    if loaded.random:
        run.notes.append("WARNING: random weights (--weights random): these gate values come from an untrained "
                         "network and say nothing about what SE learns")
    if any(v.dim() > 2 and v.shape[-1] > 1 for v in recorder.values.values()):
        run.notes.append("per-position gates (NoSqueeze) were averaged over positions: one value per channel "
                         "and image")
    if views > 1:
        run.notes.append(f"each image gave {views} views: the evaluation crop and {views - 1} augmented views "
                         "(random resized crops of 35-100 % of the area, random flips); accuracy uses the "
                         "evaluation crop only")
    if run.failed:
        run.notes.append(f"{len(set(run.failed))} unreadable images were skipped")
    return run


def image_list_digest(images: LabelledImages, views: int, batch_size: int) -> str:
    """What the ranks must agree on to shard the same items: file names (not folders, which may be mounted
    elsewhere on another node), labels, views and batch size."""
    text = repr((views, batch_size, images.labels, [p.name for p in images.paths]))
    return hashlib.sha256(text.encode()).hexdigest()


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=not enabled, desc="gates", dynamic_ncols=True, leave=False)
