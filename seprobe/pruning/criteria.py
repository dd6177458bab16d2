"""Channel scores: one number per channel of each channel group (:class:`~seprobe.models.pruning.ChannelGroup`),
higher meaning more worth keeping (the criteria of :mod:`~seprobe.pruning.plan`).

A group's channel is one decision however many layers it crosses, so each criterion reads it everywhere it is:
the gate of every SE block that scales it (a ResNet stage's stream is scaled by every block of the stage) is
averaged, the L1 norms of every filter that writes it are summed, the ``|gamma|`` of every BatchNorm that
normalises it averaged, and the Taylor terms of those BatchNorms summed before they are squared (a group's
importance is the change of the loss when the whole group's channel goes: Molchanov et al. 2019, Eq. 8 with the
group's parameters together).

The gate scores come from :class:`~seprobe.probe.gate_stats.GateStats` (one pass over the calibration images,
streamed, merged across torchrun ranks), so a torchrun launch scores what one process does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.images import LabelledImages
from ..distributed import current_world
from ..errors import SeprobeError
from ..models.factory import Network
from ..models.pruning import ChannelGroup
from ..probe.activations import collect
from ..probe.evaluation import ImagePass, Loader

#: the criteria that read the gates, and those that need labelled calibration images
GATE_CRITERIA = ("gate", "gate_max")
NEEDS_IMAGES = ("gate", "gate_max", "taylor")


def _inside(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def writers(model: nn.Module, group: ChannelGroup) -> list[str]:
    """The convolutions (not an SE block's) whose output channels are the group's."""
    return [c.path for c in group.cuts if c.tensor == "weight" and c.dim == 0 and not _inside(c.path, group.se_paths)
            and isinstance(model.get_submodule(c.path), nn.modules.conv._ConvNd)]


def norms(model: nn.Module, group: ChannelGroup) -> list[str]:
    """The BatchNorms (not an SE block's: SRM's) with affine terms on the group's channels."""
    return [c.path for c in group.cuts if c.tensor == "weight" and not _inside(c.path, group.se_paths)
            and isinstance(model.get_submodule(c.path), nn.modules.batchnorm._BatchNorm)]


def l1_scores(model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, np.ndarray]:
    """Sum over the group's writers of each output filter's L1 norm (Li et al. 2017)."""
    out = {}
    for g in groups:
        paths = writers(model, g)
        if not paths:
            raise SeprobeError(f"criterion 'l1' cannot score group {g.name}: no convolution writes it; valid: "
                               "another criterion", argument="criterion")
        total = sum(model.get_submodule(p).weight.detach().abs().flatten(1).sum(1).double() for p in paths)
        out[g.name] = total.cpu().numpy()
    return out


def bn_scores(model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, np.ndarray]:
    """Mean over the group's BatchNorms of ``|gamma|`` (Liu et al. 2017). A network whose every ``gamma`` is the
    same number (BatchNorm folded into the convolutions, as the TFLite MobileNetV3 weights are) cannot be ranked
    this way, and is refused."""
    out = {}
    for g in groups:
        paths = norms(model, g)
        if not paths:
            raise SeprobeError(f"criterion 'bn' cannot score group {g.name}: no BatchNorm with affine terms "
                               "normalises it; valid: l1, taylor, random or a gate criterion", argument="criterion")
        gammas = [model.get_submodule(p).weight.detach().abs().double() for p in paths]
        out[g.name] = (sum(gammas) / len(gammas)).cpu().numpy()
    values = np.concatenate(list(out.values())) if out else np.zeros(0)
    if values.size and np.ptp(values) == 0:
        raise SeprobeError(f"criterion 'bn' cannot rank these channels: every BatchNorm |gamma| is {values[0]:g} "
                           "(BatchNorm folded into the convolutions?); valid: l1, taylor, random or a gate "
                           "criterion", argument="criterion")
    return out


def random_scores(groups: Sequence[ChannelGroup], seed: int) -> dict[str, np.ndarray]:
    """Independent uniform scores, drawn in group order from ``seed``: a random channel order within each group
    (and, with global allocation, across groups)."""
    rng = np.random.default_rng(seed)
    return {g.name: rng.random(g.width) for g in groups}


def gate_scores(network: Network, groups: Sequence[ChannelGroup], images: LabelledImages, loader: Loader, *,
                criterion: str, views: int = 1, seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """``gate``: each channel's mean gate over ``images`` (every image alike; ``views`` crops each, as the
    ``mean`` ablation's calibration), averaged over the group's SE blocks; ``gate_max``: the largest of its
    class means (classes with images), averaged the same way."""
    names = sorted({n for g in groups for n in g.gates})
    run = collect(network, images, loader, views=views, seed=seed, blocks=names, progress=progress)
    stats = run.stats
    seen = stats.blocks[names[0]].count[:stats.all_group] > 0 if names else np.zeros(0, bool)
    out = {}
    for g in groups:
        per_block = []
        for name in g.gates:
            b = stats.blocks[name]
            per_block.append(b.mean[stats.all_group] if criterion == "gate" else b.mean[:stats.all_group][seen].max(0))
        out[g.name] = np.mean(per_block, axis=0)
    return out


def taylor_scores(network: Network, groups: Sequence[ChannelGroup], images: LabelledImages, loader: Loader, *,
                  views: int = 1, seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """First-order Taylor importance of each channel on its group's BatchNorms: per calibration batch,
    ``(sum over the group's BatchNorms of gamma * dL/dgamma + beta * dL/dbeta)^2`` with ``L`` the batch's mean
    cross-entropy, averaged over batches (Molchanov et al. 2019's FO score on BN, the group's terms together).
    BatchNorm uses its running statistics (evaluation mode): the network scored is the network pruned."""
    model = network.model
    paths = {g.name: norms(model, g) for g in groups}
    for g in groups:
        if not paths[g.name]:
            raise SeprobeError(f"criterion 'taylor' cannot score group {g.name}: no BatchNorm with affine terms "
                               "normalises it; valid: l1, random or a gate criterion", argument="criterion")
    images_pass = ImagePass(images, network.preprocessing, loader, views=views, seed=seed, progress=progress,
                            desc="taylor")
    model = model.to(images_pass.device).eval()
    wanted = {p for ps in paths.values() for p in ps}
    bns = {p: model.get_submodule(p) for p in wanted}
    sums = {g.name: np.zeros(g.width) for g in groups}
    batches = 0
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for bn in bns.values():
            bn.weight.requires_grad_(True)
            bn.bias.requires_grad_(True)
        for batch in images_pass:
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                logits = model(batch.x)
                images_pass.check_finite(logits, batch, "taylor")
                loss = nn.functional.cross_entropy(logits, batch.labels.to(logits.device))
                loss.backward()
            for g in groups:
                term = sum((bns[p].weight * bns[p].weight.grad + bns[p].bias * bns[p].bias.grad).detach()
                           for p in paths[g.name])
                sums[g.name] += term.double().cpu().numpy() ** 2
            batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in model.named_parameters():
            p.requires_grad_(requires[n])
    images_pass.finish()
    world = current_world()
    (total,) = world.sum(batches)
    return {name: world.all_reduce(s) / total for name, s in sums.items()}


def scores(network: Network, groups: Sequence[ChannelGroup], criterion: str, *, images: LabelledImages | None,
           loader: Loader, seed: int = 0, views: int = 1, progress: bool = True) -> dict[str, np.ndarray]:
    """The scores of ``criterion`` for every channel of ``groups`` (group name -> one value per channel);
    ``views`` crops of each calibration image (the criteria that read images), ``seed`` their augmentation's and
    ``random``'s."""
    if criterion in NEEDS_IMAGES and images is None:
        raise SeprobeError(f"criterion {criterion!r} needs calibration images; valid: calibration_per_class (images "
                           "per class taken out of the data) or calibration_data, or criterion l1, bn or random",
                           argument="calibration_per_class")
    if criterion in GATE_CRITERIA:
        ungated = [g.name for g in groups if not g.gates]
        if ungated:
            raise SeprobeError(f"criterion {criterion!r} reads SE gates, and no gate scales group "
                               f"{ungated[0]}; valid: scope 'gated', or l1, bn, taylor, random",
                               argument="criterion")
        return gate_scores(network, groups, images, loader, criterion=criterion, views=views, seed=seed,
                           progress=progress)
    if criterion == "l1":
        return l1_scores(network.model, groups)
    if criterion == "bn":
        return bn_scores(network.model, groups)
    if criterion == "taylor":
        return taylor_scores(network, groups, images, loader, views=views, seed=seed, progress=progress)
    return random_scores(groups, seed)
