"""What the pruning tests compute by hand: the logits of a network with channels set to zero where they are
written (a pruned network must give the same), and the modules that write each channel group of a ResNet, read from
the architecture (seprobe/models/resnet.py, cifar_resnet.py), not from the groups the library finds."""

from collections.abc import Mapping, Sequence

import torch

from seprobe.models.cifar_resnet import OptionAShortcut
from seprobe.models.pruning import ScatterShortcut
from seprobe.models.resnet import SEBottleneck


def logits(model, x):
    with torch.no_grad():
        return model(x)


def zeroed_logits(model, kept_at: Mapping[str, Sequence[int]], x):
    """The logits of ``model`` with the output channels of each module path of ``kept_at`` not in its kept list
    set to zero."""
    hooks = []
    for path, kept in kept_at.items():
        def zero(module, inputs, output, kept=kept):
            output = output.clone()
            output[:, sorted(set(range(output.shape[1])) - set(kept))] = 0
            return output

        hooks.append(model.get_submodule(path).register_forward_hook(zero))
    try:
        return logits(model, x)
    finally:
        for h in hooks:
            h.remove()


def resnet_layers(model) -> list[str]:
    return [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]


def resnet_writers(model) -> dict[str, list[str]]:
    """Group name -> the modules whose outputs are its channels where they are written (the integration moves no
    write point: an SE block reads a map, scales it, and a zero channel stays zero): a stage's stream is written by
    every unit's last BatchNorm and by its first unit's shortcut (option A, a pruned stream's scatter, or the
    projection's BatchNorm), and by the stem's BatchNorm where the first unit has no shortcut (else the stem is its
    own group); the inner widths by ``bn1`` (and ``bn2`` in a bottleneck)."""
    first = 2 if hasattr(model, "layer4") else 1  # the ImageNet ResNets' stages are 2..5, the CIFAR ones' 1..3
    writers = {}
    if isinstance(model.layer1[0].downsample, torch.nn.Sequential):
        writers["stem"] = ["bn1"]
    for number, name in enumerate(resnet_layers(model)):
        layer = model.get_submodule(name)
        stage = f"stage{first + number}"
        bottleneck = isinstance(layer[0], SEBottleneck)
        writers[stage] = [f"{name}.{b}.{'bn3' if bottleneck else 'bn2'}" for b in range(len(layer))]
        shortcut = layer[0].downsample
        if shortcut is None:
            writers[stage].append("bn1")
        elif isinstance(shortcut, (OptionAShortcut, ScatterShortcut)):
            writers[stage].append(f"{name}.0.downsample")
        else:
            writers[stage].append(f"{name}.0.downsample.1")
        for b in range(len(layer)):
            writers[f"{name}.{b}.conv1"] = [f"{name}.{b}.bn1"]
            if bottleneck:
                writers[f"{name}.{b}.conv2"] = [f"{name}.{b}.bn2"]
    return writers


def zeroed_resnet_logits(model, keep: Mapping[str, Sequence[int]], x):
    """The logits of a ResNet with the channels of each group not in ``keep`` zeroed on every module that writes
    them (:func:`resnet_writers`)."""
    writers = resnet_writers(model)
    return zeroed_logits(model, {path: kept for group, kept in keep.items() for path in writers[group]}, x)


def close(expected, actual, rel: float, floor: float = 0.0):
    """Equal to float rounding: within ``rel`` of the logits' scale (their largest magnitude, at least ``floor``;
    small in a network whose gates shrink its stream)."""
    scale = max(floor, expected.abs().max().item())
    assert scale > 0 and (expected - actual).abs().max().item() <= rel * scale
