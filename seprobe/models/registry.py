"""The model zoo: ``build_model(name, **knobs)``, ``list_models()`` and each model's SE-free counterpart.

Every model takes the architecture knobs (``num_classes``, ``stride_at``, ``stem_pool``); SE models also take
the SE knobs of :class:`~seprobe.models.se_config.SEConfig` (``reduction``, ``squeeze``, ``gate``, ``bias``,
``stages``, ``drop_stage5``, ``integration``, and the block's parts ``attention``, ``excitation``, ``spatial``,
``eca_kernel``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.images import Preprocessing
from ..errors import SeprobeError
from ..schema import fields
from . import cifar_resnet
from .arch_config import ArchConfig
from .inception import BNInception, InceptionResNetV2
from .mobilenet_v1 import MobileNetV1
from .resnet import SEBasicBlock, SEBottleneck, SEResNet
from .se_config import SEConfig
from .shufflenet_v1 import ShuffleNetV1
from .vgg import SEVGG

SE_KNOBS = tuple(fields(SEConfig))
ARCH_KNOBS = tuple(fields(ArchConfig))


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, its family, whether it carries SE and its counterpart without SE."""

    name: str
    family: str
    has_se: bool
    plain: str
    build: Callable[..., nn.Module]
    knobs: tuple[str, ...]
    description: str
    input_size: int = 224      # the side the model is measured at (the paper's)
    min_input_size: int = 32   # the smallest side its forward pass accepts
    evaluation: Preprocessing | None = None  # its evaluation transform, where not ImageNet's usual one

    def check_knobs(self, knobs: dict[str, Any]) -> ModelSpec:
        """This spec, after checking that every knob name applies to the model."""
        for knob in knobs:
            if knob not in self.knobs:
                if knob in SE_KNOBS:
                    raise SeprobeError(f"knob {knob!r} applies only to models with SE; {self.name} has none (try "
                                       f"se_{self.name})", argument=knob)
                raise SeprobeError(f"unknown knob {knob!r} for {self.name}; valid: {', '.join(self.knobs)}",
                                   argument=knob)
        ArchConfig(**{k: v for k, v in knobs.items() if k in ARCH_KNOBS})  # each value as declared
        return self

    def create(self, device: torch.device | str | None = None, **knobs: Any) -> nn.Module:
        """The network with ``knobs`` (checked), on ``device`` (``"meta"``: no memory, no initialisation)."""
        self.check_knobs(knobs)
        with torch.device(device) if device is not None else contextlib.nullcontext():
            with _initialisers_skipped() if str(device) == "meta" else contextlib.nullcontext():
                return self.build(**knobs)


@contextlib.contextmanager
def _initialisers_skipped():
    """``torch.nn.init``'s in-place initialisers as no-ops: a meta tensor has no values to fill, and torch draws
    them anyway, through its Python reference kernels (3 ms a call: 10 s for every registered model)."""
    saved = {name: fn for name, fn in vars(nn.init).items() if name.endswith("_") and not name.startswith("_")
             and callable(fn)}
    for name in saved:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


_MODELS: dict[str, ModelSpec] = {}


def _register_resnets() -> None:
    configs = {
        "resnet18": (SEBasicBlock, [2, 2, 2, 2], 1, 64, "ResNet-18"),
        "resnet34": (SEBasicBlock, [3, 4, 6, 3], 1, 64, "ResNet-34"),
        "resnet50": (SEBottleneck, [3, 4, 6, 3], 1, 64, "ResNet-50"),
        "resnet101": (SEBottleneck, [3, 4, 23, 3], 1, 64, "ResNet-101"),
        "resnet152": (SEBottleneck, [3, 8, 36, 3], 1, 64, "ResNet-152"),
        "resnext50_32x4d": (SEBottleneck, [3, 4, 6, 3], 32, 4, "ResNeXt-50 (32x4d)"),
        "resnext101_32x4d": (SEBottleneck, [3, 4, 23, 3], 32, 4, "ResNeXt-101 (32x4d)"),
    }
    for name, (block, layers, groups, width, title) in configs.items():
        family = "resnext" if name.startswith("resnext") else "resnet"
        # Where the paper's own models put the stride: Caffe ResNets in the 1x1 conv, the official SE-ResNeXt
        # models (as ported by Cadene and timm's legacy_seresnext) in the 3x3 conv.
        # Both are Caffe models, with Caffe's ceil-mode stem pool; a ResNet asked for the 3x3 stride gets
        # torchvision's padded pool unless stem_pool says otherwise (SEResNet's rule).
        stride_at = "3x3" if family == "resnext" else "1x1"
        stem_pool = "ceil" if family == "resnext" else None

        def plain(block=block, layers=layers, groups=groups, width=width, stride_at=stride_at, stem_pool=stem_pool,
                  **arch):
            return SEResNet(block, layers, groups=groups, width_per_group=width, stride_at=stride_at,
                            stem_pool=stem_pool, **arch)

        def with_se(block=block, layers=layers, groups=groups, width=width, stride_at=stride_at,
                    stem_pool=stem_pool, **knobs):
            arch = {k: v for k, v in knobs.items() if k in ARCH_KNOBS}
            se = SEConfig(**{k: v for k, v in knobs.items() if k in SE_KNOBS})
            return SEResNet(block, layers, groups=groups, width_per_group=width, se=se, stride_at=stride_at,
                            stem_pool=stem_pool, **arch)

        register(ModelSpec(name, family, False, name, plain, ARCH_KNOBS, title))
        register(ModelSpec(f"se_{name}", family, True, name, with_se, ARCH_KNOBS + SE_KNOBS, f"SE-{title}"))


def _register_others() -> None:
    """The paper's other SE families (Tables 2 and 3): each takes ``num_classes`` and the SE knobs."""
    families = {
        "vgg16_bn": (SEVGG, "vgg", "VGG-16 (BN)", 224, 32),
        "bn_inception": (BNInception, "inception", "BN-Inception", 224, 32),
        "inception_resnet_v2": (InceptionResNetV2, "inception", "Inception-ResNet-v2", 299, 75),
        "mobilenet_v1": (MobileNetV1, "mobilenet", "MobileNet 1.0-224 (v1)", 224, 32),
        "shufflenet_v1_g3": (ShuffleNetV1, "shufflenet", "ShuffleNet 1x (g=3) (v1)", 224, 32),
    }
    for name, (cls, family, title, size, smallest) in families.items():

        def with_se(cls=cls, num_classes=1000, **knobs):
            return cls(num_classes=num_classes, se=SEConfig(**knobs))

        register(ModelSpec(name, family, False, name, cls, ("num_classes",), title, size, smallest))
        register(ModelSpec(f"se_{name}", family, True, name, with_se, ("num_classes",) + SE_KNOBS, f"SE-{title}",
                           size, smallest))


def _register_cifar() -> None:
    """The CIFAR networks of Tables 4 and 5 (:mod:`~seprobe.models.cifar_resnet`), measured at 32x32; they take
    ``num_classes`` (10 by default) and the SE knobs, with stages 1..3."""
    for name, (*_, title) in cifar_resnet.CIFAR_MODELS.items():

        def plain(name=name, num_classes=10):
            return cifar_resnet.cifar_resnet(name, num_classes=num_classes)

        def with_se(name=name, num_classes=10, **knobs):
            return cifar_resnet.cifar_resnet(name, num_classes=num_classes, se=cifar_resnet.se_config(**knobs))

        size, smallest = 32, cifar_resnet.MIN_INPUT_SIZE
        pre = cifar_resnet.EVALUATION
        register(ModelSpec(name, "cifar_resnet", False, name, plain, ("num_classes",), title, size, smallest, pre))
        register(ModelSpec(f"se_{name}", "cifar_resnet", True, name, with_se, ("num_classes",) + SE_KNOBS,
                           f"SE-{title}", size, smallest, pre))


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    _MODELS[spec.name] = spec
    return spec


def list_models(se: bool | None = None) -> list[str]:
    """Registered model names, sorted; ``se=True`` / ``False`` keeps only the models with / without SE."""
    return sorted(n for n, s in _MODELS.items() if se is None or s.has_se == se)


def get_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise SeprobeError(f"unknown model {name!r}; valid: {', '.join(list_models())}") from None


def check_knobs(name: str, knobs: dict[str, Any]) -> ModelSpec:
    """The model's spec, after checking that every knob name applies to it."""
    return get_spec(name).check_knobs(knobs)


def build_model(name: str, *, device: torch.device | str | None = None, **knobs: Any) -> nn.Module:
    """Build a registered model, e.g. ``build_model("se_resnet50", reduction=8, stages=[2, 3, 4])``.

    ``device="meta"`` builds it without memory or initialisation (for counting parameters or shapes).
    Unknown names and invalid knob values raise :class:`~seprobe.errors.SeprobeError`.
    """
    return get_spec(name).create(device, **knobs)


def applicable_knobs(name: str, knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs that apply to ``name``: SE knobs are dropped for a model without SE (so one set of knobs can
    serve a list of models, some with SE and some without)."""
    spec = get_spec(name)
    return {k: v for k, v in knobs.items() if spec.has_se or k not in SE_KNOBS}


def plain_counterpart(name: str, knobs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The same network without SE: its registered name and the architecture knobs that still apply."""
    spec = check_knobs(name, knobs)
    return spec.plain, {k: v for k, v in knobs.items() if k in ARCH_KNOBS}


_register_resnets()
_register_others()
_register_cifar()


def models_table(**knobs: Any):
    """One row per registered model: name, family, SE or not, parameters (built on ``meta``, no memory)."""
    import pandas as pd

    rows = []
    for name in list_models():
        spec = _MODELS[name]
        applicable = {k: v for k, v in knobs.items() if k in spec.knobs}
        model = build_model(name, device="meta", **applicable)
        rows.append({
            "model": name,
            "description": spec.description,
            "se": spec.has_se,
            "params": sum(p.numel() for p in model.parameters()),
            "input_size": spec.input_size,
            "without_se": spec.plain,
        })
    return pd.DataFrame(rows)
