"""One way to get a network: :class:`ModelSource` says where it comes from, :func:`get_network` builds it.

A source is a model name (seprobe's zoo, ``timm:NAME[.tag]``, ``torchvision:NAME``), its weights and its
knobs, checked once when the source is made. The :class:`Network` it gives carries what every later step needs:
the module (weights loaded, eval mode), its SE blocks (:class:`~seprobe.models.blocks.SEBlockInfo`), its own
evaluation preprocessing, the registry entry of an seprobe model and the source of its counterpart without SE.

Weights: a checkpoint path (read with ``weights_only=True``, any layout seprobe knows, or a network exported by
``seprobe ablate`` or pruned by ``seprobe prune``, which says how to rebuild itself); ``"pretrained"`` (the
library's download: timm's or torchvision's for their models, timm's port of the official weights for the seprobe
SE-ResNets and ResNeXts timm has; ``"timm"`` and ``"torchvision"`` are its older names); or ``"random"`` (the
initialisation, seeded with :data:`RANDOM_SEED`: the same untrained network in every run and on every torchrun
rank).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.images import Preprocessing
from ..defaults import WEIGHT_SOURCES
from ..errors import SeprobeError
from .ablated import is_ablated_file, load_ablated
from .blocks import SEBlockInfo, find_blocks
from .checkpoints import build_from_timm, load_weights, pretrained_download, timm_equivalent
from .registry import ARCH_KNOBS, SE_KNOBS, ModelSpec, get_spec
from .sources import build_architecture, check_model_name, evaluation_preprocessing, is_foreign, library

#: the seed of ``weights="random"``
RANDOM_SEED = 0


def weights_kind(weights: Any) -> str:
    """``file``, ``pretrained``, ``timm``, ``torchvision`` or ``random``; a clear error for anything else."""
    if weights is None:
        raise SeprobeError("no weights given; valid: a checkpoint path, 'pretrained' (downloaded through timm or "
                           "torchvision), or 'random' (untrained: the figures then mean nothing)", argument="weights")
    if not isinstance(weights, (str, os.PathLike)):
        raise SeprobeError(f"invalid weights {weights!r} ({type(weights).__name__}); valid: a checkpoint path, "
                           "'pretrained' or 'random'", argument="weights")
    if weights in WEIGHT_SOURCES:
        return str(weights)
    if os.path.isdir(weights):
        raise SeprobeError(f"weights {str(weights)!r} is a folder; valid: a checkpoint file, 'pretrained' or "
                           "'random'", argument="weights")
    if not os.path.isfile(weights):
        raise SeprobeError(f"weights {str(weights)!r}: no such file; valid: a checkpoint path, 'pretrained' or "
                           "'random'", argument="weights")
    return "file"


@dataclass(frozen=True)
class ModelSource:
    """Where a network comes from: ``name``, ``weights`` and the model-zoo ``knobs`` of an seprobe model.

    Checked here, once: the name exists, the weights are a file or a source, every knob applies to the model
    and, for pretrained weights, the library can give them."""

    name: str
    weights: str = "random"
    knobs: Mapping[str, Any] = field(default_factory=dict)
    resolved: InitVar[ModelSpec | None] = None  # the registry entry, when the caller has looked it up
    _spec: ModelSpec | None = field(default=None, init=False, repr=False, compare=False)
    _kind: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self, resolved: ModelSpec | None):
        if resolved is None:
            check_model_name(self.name)
        if not isinstance(self.knobs, Mapping):
            raise SeprobeError(f"invalid knobs {self.knobs!r}; valid: a mapping of knob names to values",
                               argument="knobs")
        object.__setattr__(self, "knobs", {k: v for k, v in self.knobs.items() if v is not None})
        object.__setattr__(self, "weights", str(self.weights) if isinstance(self.weights, Path) else self.weights)
        kind = weights_kind(self.weights)
        object.__setattr__(self, "_kind", "pretrained" if kind in ("timm", "torchvision") else kind)
        lib = library(self.name)
        if lib is None:
            object.__setattr__(self, "_spec", (resolved or get_spec(self.name)).check_knobs(self.knobs))
            if kind == "torchvision":
                raise SeprobeError(f"weights 'torchvision' apply to torchvision:NAME models, not {self.name!r}; "
                                   "valid: 'pretrained', a checkpoint path, or 'random'", argument="weights")
        else:
            if self.knobs:
                raise SeprobeError(f"model knobs ({', '.join(self.knobs)}) apply to seprobe models, not "
                                   f"{self.name!r}; valid: leave them out for timm: and torchvision: models")
            if kind in ("timm", "torchvision") and kind != lib:
                raise SeprobeError(f"weights {kind!r} do not apply to {self.name}; valid: 'pretrained' ({lib}'s "
                                   "weights), a checkpoint path, or 'random'", argument="weights")

    @property
    def kind(self) -> str:
        """``file``, ``pretrained`` or ``random`` (checked once, when the source was made)."""
        return self._kind

    @property
    def spec(self) -> ModelSpec | None:
        """The registry entry of an seprobe model, looked up once (``None`` for timm and torchvision models)."""
        return self._spec

    @classmethod
    def applicable(cls, name: str, knobs: Mapping[str, Any]) -> ModelSource:
        """Untrained ``name`` with those of ``knobs`` that apply to it (SE knobs reach SE models only, none
        reach a foreign model); a knob that no model of its kind takes is an error."""
        if is_foreign(check_model_name(name)):
            return cls(name, "random", {})
        spec = get_spec(name)
        for k in knobs:
            if k not in spec.knobs and k not in SE_KNOBS:
                raise SeprobeError(f"unknown knob {k!r} for {name}; valid: {', '.join(spec.knobs)}", argument=k)
        return cls(name, "random", {k: v for k, v in knobs.items() if k in spec.knobs}, spec)

    def build(self, *, device: str | None = None, pretrained: bool = False) -> nn.Module:
        """The architecture, untrained unless ``pretrained`` (a foreign library's download)."""
        return build_architecture(self.name, self.knobs, pretrained=pretrained, device=device, spec=self._spec)

    @property
    def foreign(self) -> bool:
        return is_foreign(self.name)

    def plain(self) -> ModelSource | None:
        """The same network without SE: the registered SE-free model with the architecture knobs that still
        apply (``None`` for a model without SE, and for foreign models, whose counterpart is counted from the
        same trace)."""
        spec = self.spec
        if spec is None or not spec.has_se:
            return None
        return ModelSource(spec.plain, "random", {k: v for k, v in self.knobs.items() if k in ARCH_KNOBS})


@dataclass
class Network:
    """A network ready for analysis: ``model`` in eval mode with its weights, ``name`` as the outputs show it,
    its evaluation ``preprocessing``, the ``source`` it came from (``None`` for a module given as it is), whether
    its weights are ``random``, and (for an exported ablated network) what was done to each block.

    ``Network(module, "mine", Preprocessing(...))`` analyses any module of one's own."""

    model: nn.Module
    name: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    source: ModelSource | None = None
    random: bool = False
    ablated: dict[str, str] | None = None

    @cached_property
    def blocks(self) -> list[SEBlockInfo]:
        """The SE blocks, named at the evaluation crop (a foreign model is traced once, here)."""
        return find_blocks(self.model, input_size=self.preprocessing.crop)

    @property
    def input_size(self) -> int:
        return self.preprocessing.crop

    @property
    def weights(self) -> str:
        """Where the weights came from: the source's ``weights``, or ``as given`` for a module given as it is."""
        return str(self.source.weights) if self.source is not None else "as given"

    def block(self, name: str) -> SEBlockInfo:
        for b in self.blocks:
            if b.name == name:
                return b
        raise SeprobeError(f"unknown block {name!r} in {self.name}; valid: {', '.join(b.name for b in self.blocks)}")


def get_network(source: ModelSource, *, zeros: bool = False, seeded: bool = True) -> Network:
    """The network of ``source``, weights loaded, in eval mode. ``zeros``: an seprobe model with all-zero
    weights, built without paying for initialisation (for counting: shapes, not values, matter; zeros rather than
    ``to_empty``'s leftover memory, whose stray denormal floats make CPU convolutions several times slower);
    a checkpoint file is loaded all the same (an exported ablated network has its own architecture).
    ``seeded=False``: random weights drawn from the caller's random state, not from :data:`RANDOM_SEED`."""
    if zeros and source.kind == "random":
        return _network(source, _zeros(source))
    if source.kind == "random" and not seeded:
        return _network(source, source.build())
    if source.kind == "random":
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            torch.manual_seed(RANDOM_SEED)
            return _network(source, source.build())
    if source.kind == "file" and is_ablated_file(source.weights):
        return _ablated_network(source)
    if source.kind == "pretrained":
        return _network(source, _pretrained(source))
    model = source.build()
    load_weights(model, source.weights, layout="seprobe" if source.foreign else "auto")
    return _network(source, model)


def load_model(name: str, weights: str | os.PathLike | None, **knobs: Any) -> Network:
    """``get_network(ModelSource(name, weights, knobs))``: the model, weights loaded, in eval mode."""
    return get_network(ModelSource(name, weights, knobs))


def _network(source: ModelSource, model: nn.Module) -> Network:
    pre = evaluation_preprocessing(source.name, model, source.spec)
    return Network(model.eval(), source.name, pre, source, random=source.kind == "random")


def _zeros(source: ModelSource) -> nn.Module:
    model = source.build(device=None if source.foreign else "meta")
    if not source.foreign:
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                t.zero_()
    return model


def _pretrained(source: ModelSource) -> nn.Module:
    if source.foreign:
        return source.build(pretrained=True)
    timm_name = timm_equivalent(source.name, source.build(device="meta"))
    return pretrained_download(lambda: build_from_timm(timm_name, pretrained=True, **source.knobs),
                               f"the pretrained weights of {source.name}")


def _ablated_network(source: ModelSource) -> Network:
    """A network written by ``seprobe ablate``'s export or by ``seprobe prune``, with the preprocessing it
    recorded."""
    ablated = load_ablated(source.weights)
    what = ", ".join(w for w, done in (("pruned", ablated.pruning), ("ablated", ablated.blocks)) if done) or "exported"
    if ablated.model_name != source.name:
        raise SeprobeError(f"{source.weights} is a {what} {ablated.model_name}, not {source.name}; valid: model "
                           f"{ablated.model_name}", argument="model")
    for knob, value in source.knobs.items():  # the file's architecture is its own: a knob given must agree
        if knob not in ablated.knobs or ablated.knobs[knob] != value:
            recorded = f"{ablated.knobs[knob]!r}" if knob in ablated.knobs else "the default"
            raise SeprobeError(f"{knob} {value!r} does not match {source.weights}, written with {recorded}; valid: "
                               "leave it out (the file's own knobs are used)", argument=knob)
    source = ModelSource(source.name, source.weights, dict(ablated.knobs))
    pre = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in ablated.preprocessing.items()}) \
        if ablated.preprocessing else Preprocessing()
    return Network(ablated.model, f"{source.name} ({what}: {Path(source.weights).name})", pre, source,
                   ablated=ablated.blocks)
