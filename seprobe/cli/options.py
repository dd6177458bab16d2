"""Options several commands take, declared once (:class:`OptionGroup`: the model knobs, the inputs, the loader,
the preprocessing overrides): :func:`with_groups` adds a group's options to a command's signature and hands the
command one value per group."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..choices import Dtype
from ..cost.settings import FlopConvention, TimingSetup
from ..data.overrides import Overrides
from ..defaults import BATCH_SIZE, NUM_WORKERS
from ..errors import SeprobeError
from ..models.arch_config import ArchConfig
from ..models.se_config import SEConfig
from ..probe.ablation_plan import AblationPlan, CalibrationSource, Resampling
from ..probe.loader import Loader
from ..probe.reading import GateReading
from ..pruning.plan import PrunePlan
from ..schema import CHANNELS_LAST, COMPILE, DEVICE, DTYPE, Items, PathText, fields
from ..training.recipe import Recipe


@dataclass(frozen=True)
class OptionGroup:
    """Options several commands take, declared once: ``params`` join the command's signature, and the command
    receives ``build(values)`` as its argument ``name``."""

    name: str
    params: tuple[inspect.Parameter, ...]
    build: Callable[[dict[str, Any]], Any]


def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_groups(*groups: OptionGroup):
    """Add the options of ``groups`` to a command (after its own) and pass each group's value as one argument."""

    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)  # typer reads the evaluated annotations
        own = [p for p in sig.parameters.values() if p.name not in {g.name for g in groups}]

        def command(**values):
            for g in sorted(groups, key=lambda g: g.name == "inputs"):  # the inputs' defaults are read last
                values[g.name] = g.build({p.name: values.pop(p.name) for p in g.params})
            return fn(**values)

        command.__signature__ = sig.replace(parameters=own + [p for g in groups for p in g.params])
        command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        return command

    return decorate


def declared_params(*classes: type, exclude: tuple[str, ...] = (),
                    defaults: bool = False) -> dict[str, inspect.Parameter]:
    """The command-line options of option dataclasses' fields (:mod:`seprobe.schema`): each defaulting to
    ``None`` (not given: the dataclass's default, or the published recipe's, applies), or with ``defaults`` to
    the field's default (shown by ``--help``)."""
    params = {}
    for cls in classes:
        for name, option in fields(cls).items():
            if name in exclude or not option.spec.cli:
                continue
            spec = option.spec
            kind = spec.python_type() if defaults and not option.optional else spec.python_type() | None
            params[name] = _option(name, Annotated[kind, typer.Option(
                *option.flags, metavar=spec.metavar, help=spec.help or None)], option.default if defaults else None)
    return params


def given_values(classes: tuple[type, ...], values: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line, by field name, text parsed as each field's spec reads it."""
    options = {n: o for cls in classes for n, o in fields(cls).items()}
    given = {}
    for name, x in values.items():
        if isinstance(x, (list, tuple)) and isinstance(options[name].spec, Items):  # repeated, or S,S
            x = ",".join(map(str, x)) if x else None
        if x is None:
            continue
        given[name] = options[name].spec.parse(name, x) if isinstance(x, str) and \
            options[name].spec.python_type() in (str, list[str]) else x
    return given


def declared_group(name: str, *classes: type, exclude: tuple[str, ...] = (), defaults: bool = False,
                   build: Callable[..., Any] | None = None) -> OptionGroup:
    """An :class:`OptionGroup` of the fields of ``classes``; the command receives the given ones as a dict
    (with ``defaults``: every one, as :func:`declared_params` says), or ``build(**given)``."""
    params = declared_params(*classes, exclude=exclude, defaults=defaults)

    def value(v: dict[str, Any]) -> Any:
        given = given_values(classes, v)
        return given if build is None else build(**given)

    return OptionGroup(name, tuple(params.values()), value)


#: the option dataclasses whose fields are command-line options
DECLARED = (SEConfig, ArchConfig, Recipe, FlopConvention, TimingSetup, Loader, Overrides, AblationPlan,
            CalibrationSource, GateReading, Resampling, PrunePlan)
#: the model-zoo knobs: the SE knobs and the architecture knobs
KNOBS = declared_group("knobs", SEConfig, ArchConfig)
#: the training recipe's fields (``seprobe train``): those given change the published recipe
RECIPE = declared_group("recipe", Recipe)
#: ``seprobe complexity``: what the total counts, and how ``--time`` times
CONVENTION = declared_group("convention", FlopConvention, defaults=True)
TIMING = declared_group("timing", TimingSetup, defaults=True)
#: ``seprobe activations``: the classes compared and the blocks shown (the given ones, as the API's keywords)
READING = declared_group("reading", GateReading)
#: the probes' preprocessing imposed on the model's own
PREPROCESSING = declared_group("overrides", Overrides, build=Overrides)
#: ``seprobe ablate``: what is ablated, and the ``mean`` mode's calibration images (``None``: none given)
PLAN = declared_group("plan", AblationPlan, build=AblationPlan)
CALIBRATION = declared_group("calibration", CalibrationSource,
                             build=lambda **given: CalibrationSource(**given) if given else None)
RESAMPLING = declared_group("resampling", Resampling, defaults=True)
#: ``seprobe prune``: the criterion, the allocation and the target
PRUNE_PLAN = declared_group("plan", PrunePlan, build=PrunePlan)


def declared_path(argument: str) -> bool:
    """Whether ``argument`` is a declared option whose value is a file or folder (a :class:`PathText`)."""
    return any(isinstance(getattr(fields(cls).get(argument), "spec", None), PathText) for cls in DECLARED)


def declared_flag(argument: str) -> str | None:
    """The flag of a declared option whose flag is not its name with dashes (``stages``: ``--se-stages``)."""
    for cls in DECLARED:
        option = fields(cls).get(argument)
        if option is not None and option.spec.cli:
            return option.flags[0].split("/")[0]
    return None


#: options of the same meaning in several commands (declared in :mod:`seprobe.schema`)
DeviceOpt = Annotated[str, typer.Option(metavar=DEVICE.metavar, help=DEVICE.help)]
DtypeOpt = Annotated[Dtype, typer.Option(help=DTYPE.help)]
ChannelsLastOpt = Annotated[bool, typer.Option(*CHANNELS_LAST.flags, help=CHANNELS_LAST.help)]
CompileOpt = Annotated[bool, typer.Option(*COMPILE.flags, help=COMPILE.help)]


EXAMPLE = "seprobe {command} --model timm:tf_mobilenetv3_small_100 --weights PATH.pth --data DIR{extra}"


@dataclass(frozen=True)
class Inputs:
    model: str
    weights: str
    data: Path
    labels: Path | None


def inputs_group(command: str, extra: str = "") -> OptionGroup:
    """``--model --weights --data --labels``, each from the option or else the defaults (config file,
    environment); all missing ones are named at once, with an example."""

    def build(v: dict[str, Any]) -> Inputs:
        from ..config import load_defaults

        defaults = load_defaults()
        values = {k: x if x is not None else defaults.get(k) for k, x in v.items()}
        if v["model"] is not None and v["model"] != defaults.get("model") and v["weights"] is None:
            values["weights"] = None  # the default weights belong to the default model
        missing = [f"--{k}" for k in ("model", "weights", "data") if values[k] is None]
        if missing:
            raise SeprobeError(
                f"missing {', '.join(missing)}; e.g. {EXAMPLE.format(command=command, extra=extra)} (or set them once "
                "in seprobe.toml, [tool.seprobe] of pyproject.toml, or SEPROBE_MODEL / SEPROBE_WEIGHTS / SEPROBE_DATA)")
        return Inputs(values["model"], values["weights"], Path(values["data"]),
                      Path(values["labels"]) if values["labels"] else None)

    return OptionGroup("inputs", (
        _option("model", Annotated[str | None, typer.Option(
            "--model", "-m", metavar="NAME",
            help="seprobe name, timm:NAME[.tag] or torchvision:NAME [default: config]")]),
        _option("weights", Annotated[str | None, typer.Option(
            metavar="PATH|pretrained|random",
            help="checkpoint path, 'pretrained' (timm/torchvision download) or 'random' [default: config]")]),
        _option("data", Annotated[Path | None, typer.Option(
            metavar="DIR",
            help="images: wnid_name files, class folders, or a flat folder + --labels [default: config]")]),
        _option("labels", Annotated[Path | None, typer.Option(
            metavar="FILE", help="label file for a flat folder ('<file> <label>' lines)")]),
    ), build)


def loader_group(command: str) -> OptionGroup:
    """``--batch-size --device --num-workers`` (:class:`~seprobe.probe.loader.Loader`'s fields, at ``command``'s
    defaults); under torchrun each rank's pass runs on its own device
    (:func:`~seprobe.probe.evaluation.pass_device`)."""
    params = declared_params(Loader, defaults=True)
    own = {"batch_size": BATCH_SIZE[command], "num_workers": NUM_WORKERS[command]}
    params = {n: p.replace(default=own.get(n, p.default)) for n, p in params.items()}
    return OptionGroup("loader", tuple(params.values()), lambda v: Loader(**v))


BudgetOpt = Annotated[
    str | None, typer.Option(metavar="NAME", help="training studies: the budget to train with (e.g. cpu, paper)")
]
ReportsOutOpt = Annotated[
    Path | None, typer.Option(metavar="DIR", help="report folder (default: reports/ beside studies/)")
]
