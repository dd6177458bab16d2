"""One pruning: score the channels of a trained network, allocate the target, cut (exactly), and evaluate the
network before and after on the same held-out images (:func:`prune`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import nn

from ..data.images import LabelledImages
from ..errors import SeprobeError
from ..models.factory import Network
from ..models.heads import num_outputs
from ..models.pruning import ChannelGroup, channel_groups, prune_channels
from ..probe.activations import collect
from ..probe.evaluation import Loader, scored
from .allocation import Cost, Counter, allocate, check_reachable, normalised
from .criteria import NEEDS_IMAGES, scores
from .plan import PrunePlan


@dataclass
class Accuracy:
    top1: float | None
    top5: float | None
    images: int
    unreadable: list[str] = field(default_factory=list)  # the images the pass could not decode: skipped


@dataclass
class PruneResult:
    """What one pruning did: the groups it could cut, their scores, the channels kept, the cost and the accuracy
    before and after (before fine-tuning), on the same images."""

    network: Network
    pruned: nn.Module
    plan: PrunePlan
    groups: list[ChannelGroup]
    scores: dict[str, np.ndarray]
    keep: dict[str, list[int]]
    before: Cost
    after: Cost
    accuracy_before: Accuracy
    accuracy_after: Accuracy
    calibration_images: int = 0
    calibration_views: int = 1
    notes: list[str] = field(default_factory=list)

    def kept(self, g: ChannelGroup) -> list[int]:
        return self.keep.get(g.name, list(range(g.width)))

    def channels_table(self) -> pd.DataFrame:
        """One row per channel group: its width before and after, and its SE blocks."""
        return pd.DataFrame([{"group": g.name, "kind": g.kind, "width": g.width, "kept": len(self.kept(g)),
                              "kept_fraction": round(len(self.kept(g)) / g.width, 4), "gates": ",".join(g.gates)}
                             for g in self.groups])

    def scores_table(self) -> pd.DataFrame:
        """One row per channel: its score, the score its group's mean divides it by for global allocation, and
        whether it was kept."""
        norm = normalised(self.scores)
        rows = []
        for g in self.groups:
            kept = set(self.kept(g))
            rows += [{"group": g.name, "channel": c, "score": float(self.scores[g.name][c]),
                      "normalised": float(norm[g.name][c]), "kept": c in kept} for c in range(g.width)]
        return pd.DataFrame(rows)

    def summary_table(self) -> pd.DataFrame:
        target, fraction = self.plan.target
        b, a = self.before, self.after
        return pd.DataFrame([{
            "model": self.network.name, "weights": self.network.weights, "criterion": self.plan.criterion,
            "allocation": self.plan.allocation, "scope": self.plan.scope, "target": target, "fraction": fraction,
            "params_before": b.params, "params_after": a.params, "params_kept": round(a.params / b.params, 4),
            "macs_before": b.macs, "macs_after": a.macs, "macs_kept": round(a.macs / b.macs, 4),
            "channels_before": sum(g.width for g in self.groups),
            "channels_after": sum(len(self.kept(g)) for g in self.groups),
            "top1_before": self.accuracy_before.top1, "top1_after": self.accuracy_after.top1,
            "top5_before": self.accuracy_before.top5, "top5_after": self.accuracy_after.top5,
            "images": self.accuracy_after.images, "calibration_images": self.calibration_images,
            "calibration_views": self.calibration_views,
            "input_size": self.network.input_size, "seed": self.plan.seed}])

    def text(self) -> str:
        s = self.summary_table().iloc[0]
        lines = [f"{self.network.name}: criterion {s['criterion']}, {s['allocation']} allocation, {s['target']} "
                 f"{s['fraction']:g} ({s['scope']} groups)",
                 f"  parameters     {s['params_before']:>14,} -> {s['params_after']:>14,}  "
                 f"({s['params_kept']:.3f} kept)",
                 f"  multiply-adds  {s['macs_before']:>14,} -> {s['macs_after']:>14,}  ({s['macs_kept']:.3f} kept, "
                 f"at {s['input_size']}x{s['input_size']})",
                 f"  channels       {s['channels_before']:>14,} -> {s['channels_after']:>14,}",
                 *([f"  top-1          {s['top1_before']:>14.4f} -> {s['top1_after']:>14.4f}  (before "
                    f"fine-tuning, {s['images']} images{self._skipped()})",
                    f"  top-5          {s['top5_before']:>14.4f} -> {s['top5_after']:>14.4f}"]
                   if pd.notna(s['top1_after']) else ["  (not evaluated)"]), ""]
        table = self.channels_table()
        width = max(len(n) for n in table["group"])
        lines.append(f"  {'group':<{width}}  kind      width  kept")
        lines += [f"  {r.group:<{width}}  {r.kind:<8} {r.width:>6} {r.kept:>5}" for r in table.itertuples()]
        return "\n".join([*lines, *self.notes, ""])

    def _skipped(self) -> str:
        n = len(self.accuracy_before.unreadable)
        return f", {n} unreadable images skipped" if n else ""


def prunable_groups(model: nn.Module, plan: PrunePlan, name: str) -> list[ChannelGroup]:
    """The groups ``plan.scope`` lets the criterion cut (refused when there is none)."""
    groups = channel_groups(model)
    chosen = [g for g in groups if g.gates] if plan.scope == "gated" else groups
    if not chosen:
        raise SeprobeError(f"no channel group of {name} is scaled by an SE gate (a network without SE); valid: "
                           "scope 'all' with criterion l1, bn, taylor or random, or an SE network", argument="scope")
    return chosen


def check_images(network: Network, images: LabelledImages, what: str, argument: str) -> None:
    """The images' labels must be the network's outputs (ImageNet labels for a 1000-way classifier, or one output
    per class), for the accuracy and for the criteria that read labels."""
    outputs = num_outputs(network.model)
    if not scored(images, outputs):
        classes = "ImageNet-1k classes" if images.imagenet else f"{len(images.class_names)} classes"
        raise SeprobeError(f"the {what} ({images.layout}: {classes}) are not what {network.name} predicts "
                           f"({outputs} outputs); valid: images of the network's own classes (ImageNet images for "
                           "a 1000-way classifier, or one output per class)", argument=argument)


def accuracy(network: Network, images: LabelledImages, loader: Loader, progress: bool) -> Accuracy:
    run = collect(network, images, loader, with_gates=False, progress=progress)
    return Accuracy(run.top1, run.top5, run.evaluated, sorted(set(run.failed)))


def prune(network: Network, images: LabelledImages, plan: PrunePlan, loader: Loader = Loader(), *,
          calibration: LabelledImages | None = None, views: int = 1, progress: bool = True,
          evaluate: bool = True) -> PruneResult:
    """Prune ``network`` as ``plan`` says, scoring on ``calibration`` images (``views`` crops each) and evaluating
    on ``images`` (disjoint: the caller splits them; ``evaluate=False``: not evaluated, the accuracies are
    ``None``). Everything that can be refused is refused before the first image is read."""
    groups = prunable_groups(network.model, plan, network.name)
    check_images(network, images, "evaluation images", "data")
    if calibration is not None and plan.criterion in NEEDS_IMAGES:
        check_images(network, calibration, "calibration images", "calibration_data")
    counter = Counter(network.model, network.blocks, network.input_size)
    full = counter({})
    check_reachable(plan, groups, counter, full)
    channel_scores = scores(network, groups, plan.criterion, images=calibration, loader=loader, seed=plan.seed,
                            views=views, progress=progress)
    keep = allocate(plan, groups, channel_scores, counter, full)
    pruned = prune_channels(network.model, keep).eval()
    after = counter(keep)
    unscored = Accuracy(None, None, len(images.paths))
    before_acc = accuracy(network, images, loader, progress) if evaluate else unscored
    after_acc = accuracy(Network(pruned, f"{network.name} (pruned)", network.preprocessing, network.source),
                         images, loader, progress) if evaluate else unscored
    return PruneResult(network, pruned, plan, groups, channel_scores, keep, full, after, before_acc, after_acc,
                       len(calibration.paths) if calibration is not None else 0, views)
