"""The SENet paper's complexity figures (arXiv 1709.01507v4), as data, with what explains each difference.

GFLOPs are the paper's multiply-adds of one 224x224 image; parameters are in millions. A figure matches a
model when the model name and the knobs that change complexity agree; FC biases are not compared (the paper's
ablations drop them: at most 0.02 M parameters and 0.0001 GFLOPs for SE-ResNet-50).

The CIFAR errors of Tables 4 (CIFAR-10) and 5 (CIFAR-100) are accuracy figures of trained networks, a separate
kind of data: :data:`ACCURACIES`, looked up with :func:`paper_accuracy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import check_choice

_R101_152 = ("the paper's ResNet-101/152 base figures are the ResNet paper's rounded totals (7.6 and 11.3 G); "
             "the conv+fc multiply-adds of the Caffe architecture are 7.570 and 11.282 G; SE's increment (+0.014 "
             "and +0.020 G) is the paper's +0.02 G within its rounding")
_RESNEXT = ("the paper's ResNeXt figures exceed the conv+fc multiply-adds of the 32x4d architecture with the "
            "stride in the 3x3 conv (4.231 and 7.970 G) by 0.01-0.02 G, a source the paper does not state; "
            "SE's increment (+0.008 G for ResNeXt-50, +0.014 G for ResNeXt-101) is the same as for ResNet")
_CLOSED_FORM = ("the paper's parameter figure is 0.1 M above the closed form 25.557 M + (2/r)·Σ N_s·C_s² "
                "(+ biases); seprobe follows the closed form (the paper's own rounding)")


@dataclass(frozen=True)
class PaperFigure:
    table: str
    label: str
    model: str
    knobs: dict[str, Any] = field(default_factory=dict)
    gflops: float | None = None
    params_m: float | None = None
    note: str = ""
    mflops: float | None = None


FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("Table 2", "ResNet-50", "resnet50", gflops=3.86, params_m=25.6),
    PaperFigure("Table 2", "SE-ResNet-50", "se_resnet50", gflops=3.87, params_m=28.1),
    PaperFigure("Table 2", "ResNet-101", "resnet101", gflops=7.58, note=_R101_152),
    PaperFigure("Table 2", "SE-ResNet-101", "se_resnet101", gflops=7.60, note=_R101_152),
    PaperFigure("Table 2", "ResNet-152", "resnet152", gflops=11.30, note=_R101_152),
    PaperFigure("Table 2", "SE-ResNet-152", "se_resnet152", gflops=11.32, note=_R101_152),
    PaperFigure("Table 2", "ResNeXt-50 (32x4d)", "resnext50_32x4d", gflops=4.24, note=_RESNEXT),
    PaperFigure("Table 2", "SE-ResNeXt-50 (32x4d)", "se_resnext50_32x4d", gflops=4.25, note=_RESNEXT),
    PaperFigure("Table 2", "ResNeXt-101 (32x4d)", "resnext101_32x4d", gflops=7.99, note=_RESNEXT),
    PaperFigure("Table 2", "SE-ResNeXt-101 (32x4d)", "se_resnext101_32x4d", gflops=8.00, note=_RESNEXT),
    PaperFigure("Table 2", "VGG-16", "vgg16_bn", gflops=15.47),
    PaperFigure("Table 2", "SE-VGG-16", "se_vgg16_bn", gflops=15.48),
    PaperFigure("Table 2", "BN-Inception", "bn_inception", gflops=2.03),
    PaperFigure("Table 2", "SE-BN-Inception", "se_bn_inception", gflops=2.04, note=(
        "SE adds 0.0018 G (FCs 0.0006 G, scale 0.0012 G) to 2.0326 G, 2.03 rounded; the paper's 2.04 would need "
        "0.0074 G more; the difference is 0.3 %")),
    PaperFigure("Table 2", "Inception-ResNet-v2", "inception_resnet_v2", gflops=11.75, note=(
        "the published architecture (timm's inception_resnet_v2, whose 55.84 M parameters seprobe matches, and "
        "whose convolutions and FC layer fvcore counts to the same 13.156 G; 13.183 G with fvcore's defaults, "
        "which add BatchNorm and pooling) has 12 % more multiply-adds at 299x299 than the paper's 11.75 G; "
        "the paper does not say how it counted")),
    PaperFigure("Table 2", "SE-Inception-ResNet-v2", "se_inception_resnet_v2", gflops=11.76, note=(
        "the base differs as for Inception-ResNet-v2; SE adds 0.020 G, the paper's figures 0.01 G")),
    PaperFigure("Table 3", "MobileNet", "mobilenet_v1", mflops=569, params_m=4.2),
    PaperFigure("Table 3", "SE-MobileNet", "se_mobilenet_v1", mflops=572, params_m=4.7),
    PaperFigure("Table 3", "ShuffleNet", "shufflenet_v1_g3", mflops=140, params_m=1.8, note=(
        "the ShuffleNet paper's architecture table (g = 3, 1x) gives 137.5 M multiply-adds and 1.866 M parameters "
        "(BN and FC included): 1.8 % and 3.7 % below and above the rounded figures the SENet paper prints")),
    PaperFigure("Table 3", "SE-ShuffleNet", "se_shufflenet_v1_g3", mflops=142, params_m=2.4, note=(
        "the base differs as for ShuffleNet; SE adds 2.2 M multiply-adds and 0.61 M parameters, the paper's +2 M "
        "and +0.6 M")),
    PaperFigure("Table 10", "r = 2", "se_resnet50", {"reduction": 2}, params_m=45.7),
    PaperFigure("Table 10", "r = 4", "se_resnet50", {"reduction": 4}, params_m=35.7, note=_CLOSED_FORM),
    PaperFigure("Table 10", "r = 8", "se_resnet50", {"reduction": 8}, params_m=30.7, note=_CLOSED_FORM),
    PaperFigure("Table 10", "r = 32", "se_resnet50", {"reduction": 32}, params_m=26.9, note=_CLOSED_FORM),
    PaperFigure("Table 11", "max squeeze", "se_resnet50", {"squeeze": "max"}),
    PaperFigure("Table 12", "ReLU gate", "se_resnet50", {"gate": "relu"}),
    PaperFigure("Table 12", "tanh gate", "se_resnet50", {"gate": "tanh"}),
    PaperFigure("Table 13", "SE in stage 2 only", "se_resnet50", {"stages": (2,)}, gflops=3.86, params_m=25.6),
    PaperFigure("Table 13", "SE in stage 3 only", "se_resnet50", {"stages": (3,)}, gflops=3.86, params_m=25.7),
    PaperFigure("Table 13", "SE in stage 4 only", "se_resnet50", {"stages": (4,)}, gflops=3.86, params_m=26.4,
                note=_CLOSED_FORM.replace("(2/r)·Σ N_s·C_s²", "(2/16)·6·1024² = 26.343 M")),
    PaperFigure("Table 14", "SE-PRE", "se_resnet50", {"integration": "pre"}),
    PaperFigure("Table 14", "SE-POST", "se_resnet50", {"integration": "post"}),
    PaperFigure("Table 14", "SE-Identity", "se_resnet50", {"integration": "identity"}),
    PaperFigure("Table 15", "SE 3x3", "se_resnet50", {"integration": "3x3"}, gflops=3.86, params_m=25.8,
                note=_CLOSED_FORM.replace("(2/r)·Σ N_s·C_s²", "(2/16)·Σ N_s·W_s² on the 3x3 widths W_s")),
    PaperFigure("Table 16", "NoSqueeze", "se_resnet50", {"squeeze": "none"}, gflops=4.27, params_m=28.1),
)

#: Knob values that do not change a model's identity in the paper's tables.
_DEFAULTS = {"reduction": 16, "squeeze": "avg", "gate": "sigmoid", "stages": None, "drop_stage5": False,
             "integration": "standard", "num_classes": 1000, "stem_pool": None}
_IGNORED = {"bias"}


def _normalise(knobs: dict[str, Any]) -> dict[str, Any]:
    from .models.se_config import parse_stages

    out = {}
    for k, v in knobs.items():
        if k == "stages":
            v = parse_stages(v)
            if v == (2, 3, 4, 5):  # every stage of a ResNet: the default
                v = None
        if k in _IGNORED or _DEFAULTS.get(k, object()) == v:
            continue
        out[k] = v
    return out


def paper_figure(model: str, knobs: dict[str, Any]) -> PaperFigure | None:
    """The paper's figure for this model and configuration, if the paper prints one."""
    from .models.registry import get_spec

    knobs = _normalise(knobs)
    if knobs.get("stride_at") == ("3x3" if get_spec(model).family == "resnext" else "1x1"):  # the default
        knobs.pop("stride_at")
    for fig in FIGURES:
        if fig.model == model and _normalise(fig.knobs) == knobs:
            return fig
    return None


DATASETS = ("cifar10", "cifar100")

_PREACT = ("the paper's baseline is He et al. 2016's pre-activation network (\"Identity Mappings\"), its median "
           "of 5 runs")
_SHAKE = ("Shake-Shake 26 2x96d + Cutout on CIFAR-10, Shake-Even 29 2x4x64d + Cutout on CIFAR-100; seprobe has "
          "no Shake-Shake network")


@dataclass(frozen=True)
class PaperAccuracy:
    """A top-1 error (%) the paper prints for a network trained on CIFAR; ``model`` is the seprobe model it
    describes (``None`` where seprobe has none)."""

    table: str
    label: str
    model: str | None
    dataset: str
    top1_err: float
    note: str = ""


def _cifar(label: str, model: str | None, c10: tuple[float, float], c100: tuple[float, float],
           note: str = "") -> tuple[PaperAccuracy, ...]:
    """A row of Tables 4 and 5: (original, with SE) errors on CIFAR-10 and on CIFAR-100."""
    rows = []
    for table, dataset, (plain, with_se) in (("Table 4", "cifar10", c10), ("Table 5", "cifar100", c100)):
        rows.append(PaperAccuracy(table, label, model, dataset, plain, note))
        rows.append(PaperAccuracy(table, f"SE-{label}", model and f"se_{model}", dataset, with_se, note))
    return tuple(rows)


ACCURACIES: tuple[PaperAccuracy, ...] = (
    *_cifar("ResNet-110", "preact_resnet110_cifar", (6.37, 5.21), (26.88, 23.85), _PREACT),
    *_cifar("ResNet-164", "preact_resnet164_cifar", (5.46, 4.39), (24.33, 21.31), _PREACT),
    *_cifar("WRN-16-8", "wrn16_8_cifar", (4.27, 3.88), (20.43, 19.14)),
    *_cifar("Shake-Shake + Cutout", None, (2.56, 2.12), (15.85, 15.41), _SHAKE),
)


def paper_accuracy(model: str, dataset: str) -> PaperAccuracy | None:
    """The paper's top-1 error for a seprobe model on ``"cifar10"`` or ``"cifar100"``, if the paper prints one."""
    check_choice("dataset", dataset, DATASETS)
    return next((a for a in ACCURACIES if a.model == model and a.dataset == dataset), None)
