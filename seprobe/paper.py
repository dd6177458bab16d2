"""The SENet paper's complexity figures (arXiv 1709.01507v4), as data, with what explains each difference.

GFLOPs are the paper's multiply-adds of one 224x224 image; parameters are in millions. A figure matches a
model when the model name and the knobs that change complexity agree; FC biases are not compared (the paper's
ablations drop them: at most 0.02 M parameters and 0.0001 GFLOPs for SE-ResNet-50).

The figures SE's successors print for their modules on ResNet-50 (ECA-Net, CBAM: their recipes, their counting)
are :data:`SUCCESSORS`, named by the same kind of key (``"CBAM Table 4: ResNet-50 + CBAM"``).

The CIFAR errors of Tables 4 (CIFAR-10) and 5 (CIFAR-100) are accuracy figures of trained networks, a separate
kind of data: :data:`ACCURACIES`, looked up with :func:`paper_accuracy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import check_choice


@dataclass(frozen=True)
class PaperFigure:
    """One row of one of the paper's tables: the model and knobs it describes, what the paper prints for it
    (complexity, ImageNet top-1 / top-5 error in %, time in ms), and what explains a difference from seprobe's
    count. Studies name a row by its :attr:`key`."""

    table: str
    label: str
    model: str
    knobs: dict[str, Any] = field(default_factory=dict)
    gflops: float | None = None
    params_m: float | None = None
    note: str = ""
    mflops: float | None = None
    top1_err: float | None = None
    top5_err: float | None = None
    gpu_train_ms: float | None = None
    cpu_inference_ms: float | None = None

    @property
    def key(self) -> str:
        """``"Table 10: r = 4"``: the table and the row's label."""
        return f"{self.table}: {self.label}"

    def values(self) -> dict[str, float]:
        """The figures the paper prints for this row."""
        return {k: v for k in VALUES if (v := getattr(self, k)) is not None}


#: the figures a row may hold, in the order reports show them
VALUES = ("gflops", "mflops", "params_m", "top1_err", "top5_err", "gpu_train_ms", "cpu_inference_ms")


FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("Table 2", "ResNet-50", "resnet50", gflops=3.86, params_m=25.6, top1_err=24.8, top5_err=7.48),
    PaperFigure("Table 2", "SE-ResNet-50", "se_resnet50", gflops=3.87, params_m=28.1, top1_err=23.29, top5_err=6.62),
    PaperFigure("Table 2", "ResNet-101", "resnet101", gflops=7.58, top1_err=23.17, top5_err=6.52, note=(
        "the paper's figure is the ResNet paper's rounded 7.6 G; the conv+fc multiply-adds of the Caffe "
        "ResNet-101 are 7.570 G")),
    PaperFigure("Table 2", "SE-ResNet-101", "se_resnet101", gflops=7.6, top1_err=22.38, top5_err=6.07, note=(
        "the base differs as for ResNet-101; SE adds 0.014 G (FCs 0.005 G, scale 0.009 G), the paper's +0.02 "
        "G within its rounding of both figures")),
    PaperFigure("Table 2", "ResNet-152", "resnet152", gflops=11.3, top1_err=22.42, top5_err=6.34, note=(
        "the paper's figure is the ResNet paper's rounded 11.3 G; the conv+fc multiply-adds of the Caffe "
        "ResNet-152 are 11.282 G")),
    PaperFigure("Table 2", "SE-ResNet-152", "se_resnet152", gflops=11.32, top1_err=21.57, top5_err=5.73, note=(
        "the base differs as for ResNet-152; SE's increment (+0.020 G) matches the paper's +0.02 G")),
    PaperFigure("Table 2", "ResNeXt-50 (32x4d)", "resnext50_32x4d", gflops=4.24, top1_err=22.11, top5_err=5.9, note=(
        "the conv+fc multiply-adds of ResNeXt-50 (32x4d) with the stride in the 3x3 conv are 4.231 G (3.768 G"
        " with it in the 1x1); the paper's extra 0.01 G has no stated source")),
    PaperFigure("Table 2", "SE-ResNeXt-50 (32x4d)", "se_resnext50_32x4d", gflops=4.25, top1_err=21.1, top5_err=5.49,
                note=(
        "the base differs as for ResNeXt-50; SE's increment (+0.008 G) matches the paper's +0.01 G")),
    PaperFigure("Table 2", "ResNeXt-101 (32x4d)", "resnext101_32x4d", gflops=7.99, top1_err=21.18, top5_err=5.57,
                note=(
        "the conv+fc multiply-adds of ResNeXt-101 (32x4d), stride in the 3x3 conv, are 7.970 G; the paper's "
        "extra 0.02 G has no stated source")),
    PaperFigure("Table 2", "SE-ResNeXt-101 (32x4d)", "se_resnext101_32x4d", gflops=8.0, top1_err=20.7, top5_err=5.01,
                note=(
        "the base differs as for ResNeXt-101; SE adds 0.014 G, as for SE-ResNet-101, where the paper's "
        "rounded figures add 0.01 G")),
    PaperFigure("Table 2", "VGG-16", "vgg16_bn", gflops=15.47, top1_err=27.02, top5_err=8.81),
    PaperFigure("Table 2", "SE-VGG-16", "se_vgg16_bn", gflops=15.48, top1_err=25.22, top5_err=7.7),
    PaperFigure("Table 2", "BN-Inception", "bn_inception", gflops=2.03, top1_err=25.38, top5_err=7.89),
    PaperFigure("Table 2", "SE-BN-Inception", "se_bn_inception", gflops=2.04, top1_err=24.23, top5_err=7.14, note=(
        "SE adds 0.0018 G (FCs 0.0006 G, scale 0.0012 G) to 2.0326 G, 2.03 rounded; the paper's 2.04 would "
        "need 0.0074 G more: a 0.3 % difference")),
    PaperFigure("Table 2", "Inception-ResNet-v2", "inception_resnet_v2", gflops=11.75, top1_err=20.37, top5_err=5.21,
                note=(
        "the published architecture (timm's inception_resnet_v2, whose 55.84 M parameters seprobe matches "
        "exactly, and whose convolutions and FC layer fvcore counts to the same 13.156 G; 13.183 G with "
        "fvcore's defaults, which add BatchNorm and pooling) has 12 % more multiply-adds at 299x299 than the "
        "paper's 11.75 G; the paper does not say how it counted")),
    PaperFigure("Table 2", "SE-Inception-ResNet-v2", "se_inception_resnet_v2", gflops=11.76, top1_err=19.8,
                top5_err=4.79, note=(
        "the base differs as for Inception-ResNet-v2; SE adds 0.020 G (FCs 0.008 G, scale 0.012 G), the "
        "paper's figures 0.01 G")),
    PaperFigure("Table 3", "MobileNet", "mobilenet_v1", mflops=569, params_m=4.2),
    PaperFigure("Table 3", "SE-MobileNet", "se_mobilenet_v1", mflops=572, params_m=4.7),
    PaperFigure("Table 3", "ShuffleNet", "shufflenet_v1_g3", mflops=140, params_m=1.8, note=(
        "the ShuffleNet paper's architecture table (g = 3, 1x; bottleneck a quarter of the output width, "
        "stage 2's first 1x1 conv ungrouped) gives 137.5 M multiply-adds and 1.866 M parameters, BN and FC "
        "included: 1.8 % below and 3.7 % above the rounded figures the SENet paper prints")),
    PaperFigure("Table 3", "SE-ShuffleNet", "se_shufflenet_v1_g3", mflops=142, params_m=2.4, note=(
        "the base differs as for ShuffleNet; SE adds 2.2 M multiply-adds and 0.61 M parameters, the paper's "
        "+2 M and +0.6 M")),
    PaperFigure("Table 10", "r = 2", "se_resnet50", {"reduction": 2}, params_m=45.7, top1_err=22.29, top5_err=6.0),
    PaperFigure("Table 10", "r = 4", "se_resnet50", {"reduction": 4}, params_m=35.7, top1_err=22.25, top5_err=6.09,
                note=(
        "the closed form gives 25.557 + 20.120 / 4 = 35.617 M, 35.6 M rounded; the paper prints 35.7 M (its "
        "own rounding)")),
    PaperFigure("Table 10", "r = 8", "se_resnet50", {"reduction": 8}, params_m=30.7, top1_err=22.26, top5_err=5.99,
                note=(
        "the closed form gives 25.557 + 20.120 / 8 = 30.587 M, 30.6 M rounded; the paper prints 30.7 M (its "
        "own rounding)")),
    PaperFigure("Table 10", "r = 32", "se_resnet50", {"reduction": 32}, params_m=26.9, top1_err=22.72, top5_err=6.2,
                note=(
        "the closed form gives 25.557 + 20.120 / 32 = 26.814 M, 26.8 M rounded; the paper prints 26.9 M (its "
        "own rounding)")),
    PaperFigure("Table 11", "max squeeze", "se_resnet50", {"squeeze": "max"}, top1_err=22.57, top5_err=6.09, note=(
        "Table 11 prints no cost; a max squeeze is one compare per element where avg is one add, so the cost "
        "is avg's")),
    PaperFigure("Table 12", "ReLU gate", "se_resnet50", {"gate": "relu"}, top1_err=23.47, top5_err=6.98),
    PaperFigure("Table 12", "tanh gate", "se_resnet50", {"gate": "tanh"}, top1_err=23.0, top5_err=6.38),
    PaperFigure("Table 13", "SE in stage 2 only", "se_resnet50", {"stages": (2,)}, gflops=3.86, params_m=25.6,
                top1_err=23.03, top5_err=6.48),
    PaperFigure("Table 13", "SE in stage 3 only", "se_resnet50", {"stages": (3,)}, gflops=3.86, params_m=25.7,
                top1_err=23.04, top5_err=6.32),
    PaperFigure("Table 13", "SE in stage 4 only", "se_resnet50", {"stages": (4,)}, gflops=3.86, params_m=26.4,
                top1_err=22.68, top5_err=6.22, note=(
        "the closed form gives 25.557 + (2/16) * 6 * 1024^2 = 26.343 M, 26.3 M rounded; the paper prints 26.4"
        " M (its own rounding; with FC biases the model has 26.350 M)")),
    PaperFigure("Table 14", "SE-PRE", "se_resnet50", {"integration": "pre"}, top1_err=22.23, top5_err=6.0, note=(
        "on each unit's input: the first unit of a stage has the previous stage's (narrower) width, so "
        "slightly fewer parameters than standard")),
    PaperFigure("Table 14", "SE-POST", "se_resnet50", {"integration": "post"}, top1_err=22.78, top5_err=6.35),
    PaperFigure("Table 14", "SE-Identity", "se_resnet50", {"integration": "identity"}, top1_err=22.2, top5_err=6.15),
    PaperFigure("Table 15", "SE 3x3", "se_resnet50", {"integration": "3x3"}, gflops=3.86, params_m=25.8,
                top1_err=22.48, top5_err=6.02, note=(
        "the closed form on the 3x3 widths gives 25.557 + (2/16) * sum_s N_s * W_s^2 = 25.714 M, 25.7 M "
        "rounded; the paper prints 25.8 M (its own rounding)")),
    PaperFigure("Table 16", "NoSqueeze", "se_resnet50", {"squeeze": "none"}, gflops=4.27, params_m=28.1,
                top1_err=22.93, top5_err=6.39, note=(
        "the FCs at every position add (2/16) * sum_s N_s * C_s^2 * H_s * W_s = 0.411 G; the per-position "
        "gate (5.5 M values) is not counted, as the paper's figure implies (4.28 with it)")),
    PaperFigure("Table 12", "Sigmoid", "se_resnet50", {"gate": "sigmoid"}, gflops=3.87, params_m=28.1, top1_err=22.28,
                top5_err=6.03),
    PaperFigure("Table 14", "SE (standard)", "se_resnet50", {"integration": "standard"}, gflops=3.87, params_m=28.1,
                top1_err=22.28, top5_err=6.03),
    PaperFigure("Table 10", "ResNet-50", "resnet50", params_m=25.6, top1_err=23.3, top5_err=6.55),
    PaperFigure("Table 10", "r = 16", "se_resnet50", {"reduction": 16}, params_m=28.1, top1_err=22.28, top5_err=6.03),
    PaperFigure("Table 11", "ResNet-50", "resnet50", gflops=3.86, params_m=25.6, top1_err=23.3, top5_err=6.55),
    PaperFigure("Table 11", "SE (avg)", "se_resnet50", {"squeeze": "avg"}, gflops=3.87, params_m=28.1, top1_err=22.28,
                top5_err=6.03),
    PaperFigure("Table 13", "ResNet-50", "resnet50", gflops=3.86, params_m=25.6, top1_err=23.3, top5_err=6.55),
    PaperFigure("Table 13", "all stages", "se_resnet50", gflops=3.87, params_m=28.1, top1_err=22.28, top5_err=6.03),
    PaperFigure("Section 4", "ResNet-50", "resnet50", gpu_train_ms=190, cpu_inference_ms=164),
    PaperFigure("Section 4", "SE-ResNet-50", "se_resnet50", gpu_train_ms=209, cpu_inference_ms=167),
)

_ECA_UNITS = ("ECA-Net prints parameters in units of 2^20, not 10^6")
_CBAM_FLOPS = ("CBAM's GFLOPs count convolutions and FCs only, not the gates' scales (Eq. 4): one multiply per "
               "element of every recalibrated map")

#: What SE's successors print for ResNet-50 and their modules on it (ImageNet, each paper's own recipe): ECA-Net
#: (Wang et al., CVPR 2020, arXiv 1910.03151v4; Table 1: the SE variants, with k = 3; Table 2: the modules
#: compared), CBAM (Woo et al., ECCV 2018, arXiv 1807.06521; Table 4). SRM (Lee et al., ICCV 2019) prints no
#: cost of its own; its definition gives 4C parameters per block.
SUCCESSORS: tuple[PaperFigure, ...] = (
    PaperFigure("ECA-Net Table 2", "ResNet-50", "resnet50", gflops=3.86, params_m=24.37, top1_err=24.8, note=(
        f"{_ECA_UNITS}: 25,557,032 / 2^20 = 24.37")),
    PaperFigure("ECA-Net Table 2", "SENet", "se_resnet50", {"bias": False}, gflops=3.87, params_m=26.77,
                top1_err=23.29, note=(
        f"{_ECA_UNITS}: SE-ResNet-50 without FC biases, 28,071,976 / 2^20 = 26.77; its error is the SENet "
        "paper's (Table 2)")),
    PaperFigure("ECA-Net Table 2", "CBAM", "se_resnet50", {"attention": "cbam", "bias": False}, gflops=3.87,
                params_m=26.77, top1_err=22.66, note=(
        f"{_ECA_UNITS}: CBAM-ResNet-50 without FC biases, 28,073,576 / 2^20 = 26.77; its 3.87 GFLOPs are SE's "
        "row again, where seprobe counts 3.8754 for CBAM (3.8644 without the scales, as CBAM's own Table 4: "
        "3.864); its error is CBAM's (Table 4)")),
    PaperFigure("ECA-Net Table 2", "ECA-Net", "se_resnet50", {"attention": "eca", "eca_kernel": (3, 5, 5, 7)},
                gflops=3.86, params_m=24.37, top1_err=22.52, note=(
        f"{_ECA_UNITS}: 25,557,112 / 2^20 = 24.37, the 80 parameters of kernels 3, 5, 5, 7 (per stage, as the "
        "released models) included; the abstract's 4.7e-4 GFLOPs for the modules is not seprobe's count of any "
        "of their parts (1-D convolutions 86,272 multiply-adds, gates 15,104, scales 5.52 M, squeezes 5.52 M "
        "additions)")),
    PaperFigure("ECA-Net Table 1", "SE-Var1", "se_resnet50", {"attention": "se_var1"}, top1_err=24.0),
    PaperFigure("ECA-Net Table 1", "SE-Var2", "se_resnet50", {"attention": "se_var2"}, top1_err=22.93),
    PaperFigure("ECA-Net Table 1", "SE-Var3", "se_resnet50", {"attention": "se_var3"}, top1_err=22.58),
    PaperFigure("ECA-Net Table 1", "ECA (k = 3)", "se_resnet50", {"attention": "eca", "eca_kernel": 3},
                top1_err=22.57),
    PaperFigure("CBAM Table 4", "ResNet-50", "resnet50", gflops=3.858, params_m=25.56, top1_err=24.56,
                top5_err=7.5),
    PaperFigure("CBAM Table 4", "ResNet-50 + SE", "se_resnet50", gflops=3.86, params_m=28.09, top1_err=23.14,
                top5_err=6.7, note=(
        f"{_CBAM_FLOPS}: SE-ResNet-50 without them is 3.8605 GFLOPs, 3.860 as printed")),
    PaperFigure("CBAM Table 4", "ResNet-50 + CBAM", "se_resnet50", {"attention": "cbam"}, gflops=3.864,
                params_m=28.09, top1_err=22.66, top5_err=6.31, note=(
        f"{_CBAM_FLOPS}, channel nor spatial: without them CBAM-ResNet-50 is 3.8644 GFLOPs (SE's FCs twice, "
        "for the average and the max descriptor, and the 7x7 spatial convolutions), 3.864 as printed")),
)

#: Knob values that do not change a model's identity in the paper's tables.
_DEFAULTS = {"reduction": 16, "squeeze": "avg", "gate": "sigmoid", "stages": None, "drop_stage5": False,
             "integration": "standard", "num_classes": 1000, "stem_pool": None, "attention": "se",
             "excitation": "bottleneck", "spatial": "none"}
_IGNORED = {"bias"}


def _normalise(knobs: dict[str, Any]) -> dict[str, Any]:
    from .models.se_config import parse_stages

    out = {}
    for k, v in knobs.items():
        if isinstance(v, list):  # a study file's array (an eca_kernel per stage)
            v = tuple(v)
        if k == "stages":
            v = parse_stages(v)
            if v == (2, 3, 4, 5):  # every stage of a ResNet: the default
                v = None
        if k in _IGNORED or _DEFAULTS.get(k, object()) == v:
            continue
        out[k] = v
    return out


def paper_figure(model: str, knobs: dict[str, Any], family: str | None = None) -> PaperFigure | None:
    """The paper's complexity figure for this model and configuration (the first table that prints one), else
    its first row for it, if the paper has one; ``family``: the model's (its registry entry's, else looked up)."""
    knobs = _normalise(knobs)
    if family is None:
        from .models.registry import get_spec

        family = get_spec(model).family
    if knobs.get("stride_at") == ("3x3" if family == "resnext" else "1x1"):  # the default
        knobs.pop("stride_at")
    rows = [fig for fig in FIGURES if fig.model == model and _normalise(fig.knobs) == knobs]
    costed = [fig for fig in rows if fig.gflops is not None or fig.mflops is not None or fig.params_m is not None]
    return (costed or rows or [None])[0]


def by_key(key: str) -> PaperFigure:
    """The row named ``key`` (:attr:`PaperFigure.key`), or an error with the closest keys."""
    from .errors import SeprobeError, suggest

    rows = (*FIGURES, *SUCCESSORS)
    for fig in rows:
        if fig.key == key:
            return fig
    raise SeprobeError(f"no row {key!r} in the papers' tables{suggest(key, [f.key for f in rows])}; valid: a key "
                       "of seprobe.paper.FIGURES or SUCCESSORS such as 'Table 10: r = 4'")


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
