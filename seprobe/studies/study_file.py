"""Studies: one declarative TOML file per table of the paper, run into a table of measured vs paper values.

A study file::

    title = "Table 10: reduction ratio r"
    kind = "complexity"            # complexity | excitation | timing | activations | ablation
    description = "..."
    figure = "params"              # optional: a seaborn bar chart of params or gflops, measured vs paper
                                   # (training: "params", each variant's error difference against its cost)
    columns = ["step_time"]        # optional, complexity: more columns (COLUMNS); step_time times, with [timing]
    [defaults]                     # knobs for every variant (SE knobs reach only the SE models)
    bias = false
    [[variants]]
    label = "r = 4"
    model = "se_resnet50"
    knobs = { reduction = 4 }
    paper = "Table 10: r = 4"      # the paper's row (seprobe.paper.FIGURES), with its figures and notes
    note = "..."                   # a variant without a row of the paper may say what it is

Everything is validated before anything runs: an unknown field, model or knob fails with the file, the key
and the valid choices.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, ClassVar

from ..choices import ALLOCATIONS, CRITERIA, EXPORT_MODES
from ..cost.settings import TimingSetup
from ..defaults import BATCH_SIZE, NUM_WORKERS, WEIGHT_SOURCES
from ..errors import SeprobeError
from ..models.arch_config import ArchConfig
from ..models.se_config import SEConfig
from ..paper import by_key
from ..probe.ablation_plan import BLOCKS, AblationPlan, CalibrationSource, Resampling
from ..probe.reading import GateReading
from ..pruning.plan import PrunePlan
from ..schema import (
    Bool,
    Choice,
    Custom,
    Int,
    Items,
    Number,
    Option,
    Options,
    PathText,
    Text,
    check_toml,
    fields,
    from_table,
    toml_type,
)

KINDS = ("complexity", "excitation", "timing", "activations", "ablation", "training")
FIGURES = ("params", "gflops")
#: a complexity study's optional columns: the multiply-adds without the gates' scales (Eq. 4; the convention of
#: CBAM's and ECA-Net's tables), and each variant's training step timed against the first variant's, interleaved
#: (with ``[timing]``; such a study runs with the timing studies)
COLUMNS = ("gflops_without_scales", "step_time")


@dataclass(frozen=True)
class FieldType:
    """What a study field holds: the Python types TOML gives for it, and how to say so in an error."""

    types: tuple[type, ...]
    expected: str
    items: type | None = None   # for arrays: the type of every item

    def check(self, path: Path, key: str, value: Any) -> None:
        ok = isinstance(value, self.types) and not (isinstance(value, bool) and bool not in self.types)
        if ok and isinstance(value, list) and self.items is not None:
            ok = all(isinstance(x, self.items) and not isinstance(x, bool) for x in value)
        if not ok:
            raise _fail(path, key, f"invalid value {value!r} ({toml_type(value)}); expected {self.expected}")


TEXT = FieldType((str,), "a string")
TABLE = FieldType((dict,), "a table")

STUDY_FIELDS: dict[str, FieldType] = {
    "title": TEXT, "kind": TEXT, "description": TEXT, "figure": TEXT, "defaults": TABLE,
    "variants": FieldType((list,), "an array of tables ([[variants]])", items=dict), "timing": TABLE,
    "activations": TABLE, "ablation": TABLE, "training": TABLE, "budgets": TABLE, "reading": TEXT, "pruning": TABLE,
    "columns": FieldType((list,), "an array of strings", items=str)}
VARIANT_FIELDS: dict[str, FieldType] = {"label": TEXT, "model": TEXT, "knobs": TABLE, "paper": TEXT, "note": TEXT,
                                        "weights": TEXT, "ablate": TABLE, "prune": TABLE}
#: every knob a registered model takes (see seprobe.models.registry), checked as the models check it
KNOB_OPTIONS = {**fields(SEConfig), **fields(ArchConfig)}
#: a timing study's ``[timing]``: the fields of :class:`~seprobe.cost.settings.TimingSetup`, and the batch of the
#: inference timing (the training step's is ``batch_size``)
TIMING_EXTRA = {"inference_batch_size": Option("inference_batch_size", Int(1), 1, False)}
#: the inputs of an activations or ablation study, and its pass's batch
_INPUTS = (Option("model", Text(), None, False), Option("weights", PathText(), None, False),
           Option("data", PathText(), None, False), Option("batch_size", Int(1), BATCH_SIZE["studies"], False))
#: an activations study's ``[activations]``: the fields of :class:`~seprobe.probe.reading.GateReading`, its
#: inputs and their selection
ACTIVATIONS_EXTRA = {o.name: o for o in (*_INPUTS, Option("labels", PathText(), None, True),
                                         Option("samples_per_class", Int(1), None, True))}
#: an ablation study's ``[ablation]``: the fields of :class:`~seprobe.probe.ablation_plan.AblationPlan` and
#: :class:`~seprobe.probe.ablation_plan.CalibrationSource`, and these: the inputs, the pass, the bootstrap's
#: (:class:`~seprobe.probe.ablation_plan.Resampling`), and an
#: optional export check (``export_blocks`` in ``export_mode``: exported, reloaded and compared with the ablated
#: network)
ABLATION_EXTRA = {o.name: o for o in (
    *_INPUTS, *fields(Resampling).values(), Option("export_blocks", BLOCKS, None, True),
    Option("export_mode", Choice(choices=EXPORT_MODES, what="export mode"), "mean", False))}


def ablation_options(table: Mapping[str, Any]) -> tuple[AblationPlan, CalibrationSource | None]:
    """An ablation study's plan and calibration images, from its checked ``[ablation]`` table."""
    plan = AblationPlan(**{k: v for k, v in table.items() if k in fields(AblationPlan)})
    calibration = {k: v for k, v in table.items() if k in fields(CalibrationSource)}
    return plan, CalibrationSource(**calibration) if calibration else None


#: the fields of each real-data kind that name files, relative to the study file's folder
_PATH_FIELDS = {"activations": ("weights", "data", "labels"),
                "ablation": ("weights", "data", "calibration_data", "calibration_labels"),
}
#: the paper's printed decimals, which decide whether a measured value "matches"
DECIMALS = {"gflops": 2, "mflops": 0, "params_m": 1}


@dataclass(frozen=True)
class Ablate(Options):
    """A training variant's ``ablate``: its starting network is ``[training] weights`` with these SE blocks
    (``stage`` or ``blocks``) ablated and exported (seprobe.ablate's export: ``identity`` removed, ``mean`` and
    ``constant`` folded), calibrated on the training part."""

    mode: Annotated[str, Choice(choices=EXPORT_MODES, what="mode")]
    stage: Annotated[int | None, Int(1)] = None
    blocks: Annotated[tuple[str, ...] | None, BLOCKS] = None

    def validate(self) -> None:
        if (self.stage is None) == (self.blocks is None):
            raise SeprobeError("needs one of stage and blocks: the SE blocks to ablate", argument="ablate")

    def record(self) -> dict[str, Any]:
        """As the start's record (``start.json``) keeps it: the given fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in (("stage", self.stage),
                ("blocks", self.blocks), ("mode", self.mode)) if v is not None}


@dataclass(frozen=True)
class Budget(Options):
    """A training study's ``[budgets.NAME]``: ``recipe``, the fields of :class:`~seprobe.training.Recipe` it
    changes in the published one (any but ``seed``: each run's is one of the study's seeds), and how its runs
    are set up: images per class, device, torch threads, loader processes."""

    name: str
    recipe: Mapping[str, Any]
    description: Annotated[str, Text()] = ""
    samples_per_class: Annotated[int | None, Int(1)] = None
    val_samples_per_class: Annotated[int | None, Int(1)] = None
    device: Annotated[str, Text()] = "cpu"
    threads: Annotated[int | None, Int(1)] = None
    num_workers: Annotated[int, Int(0)] = NUM_WORKERS["train"]

    #: the recipe's fields a budget may not set
    NOT_RECIPE: ClassVar[tuple[str, ...]] = ("seed",)

    @classmethod
    def from_table(cls, name: str, table: dict, where: str) -> Budget:
        from ..training.recipe import Recipe

        recipe = {n: o for n, o in fields(Recipe).items() if n not in cls.NOT_RECIPE}
        values = from_table(cls, table, where, exclude=("name", "recipe"), extra=recipe)
        return cls(name, {k: values.pop(k) for k in recipe if k in values}, **values)

    @property
    def epochs(self) -> int | None:
        return self.recipe.get("epochs")

    def run_recipe(self, seed: int) -> dict[str, Any]:
        """The recipe fields of one run: the budget's changes and the run's seed."""
        return {**self.recipe, "seed": seed}


@dataclass(frozen=True)
class PruningSweep(Options):
    """A training study's ``[pruning]``: the start (``[training] weights``) pruned by every ``criteria`` x
    ``keep_macs`` (``allocation`` as :class:`~seprobe.pruning.plan.PrunePlan` says), each scored before any
    fine-tuning on the evaluation images (the held-out part, or ``data/test``) and timed against the unpruned
    network (inference, the models interleaved, ``inference_batch_size`` images a pass); calibrated as the
    variants' ``prune`` starts are, on the first ``calibration_samples_per_class`` training images of each class.
    The variants with ``prune`` are the fine-tuned arms."""

    criteria: Annotated[tuple[str, ...], Items(item=Choice(choices=CRITERIA), item_name="criterion",
                                                example="gate,l1")]
    keep_macs: Annotated[tuple[float, ...], Items(item=Number(0, 1, open_low=True, closed_high=True),
                                                   item_name="fraction", example="0.9,0.5")]
    allocation: Annotated[str, Choice(choices=ALLOCATIONS)] = "global"
    inference_batch_size: Annotated[int, Int(1)] = 32

    def plans(self) -> list[PrunePlan]:
        return [PrunePlan(criterion=c, allocation=self.allocation, keep_macs=f)
                for c in self.criteria for f in self.keep_macs]


def _seeds(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                       for v in value):
        raise SeprobeError(f"invalid value {value!r}; expected an array of integers >= 0 such as [0, 1, 2]")
    if not value or len(set(value)) != len(value):
        raise SeprobeError(f"invalid seeds {list(value)!r}; valid: distinct integers", argument=name)
    return tuple(value)


def _folders(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
        raise SeprobeError(f"invalid value {value!r}; expected an array of image folders such as "
                           "[\"../data/imagenet\"]")
    return tuple(value)


@dataclass(frozen=True)
class TrainingSpec(Options):
    """A training study's ``[training]``: every (variant, seed) trained by :func:`seprobe.train` on ``data`` with
    the named ``budget``; the variant labelled ``baseline`` is what the others are compared with, seed by seed
    (and the one labelled ``also_against`` too, in columns ``vs_<slug>_diff``, ...);
    ``dataset`` names the paper's figures to show (cifar10, cifar100); ``runs`` the study whose runs folder it
    shares (a run of the same variant, seed and budget is trained once for both); ``holdout_per_class`` splits
    ``data`` (read with ``labels``) in two, the last N of each class held out; ``evaluate``: more image folders
    scored before and after training. Paths are relative to the study file's folder (resolved when read)."""

    data: Annotated[Path, PathText()]
    seeds: Annotated[tuple[int, ...], Custom(checker=_seeds, own_error=True, description="an array of integers")]
    baseline: Annotated[str, Text()]
    budget: Annotated[str, Text()]
    also_against: Annotated[str | None, Text()] = None
    weights: Annotated[str | Path, PathText()] = "random"
    dataset: Annotated[str | None, Text()] = None
    runs: Annotated[str | None, Text()] = None
    labels: Annotated[Path | None, PathText()] = None
    holdout_per_class: Annotated[int | None, Int(1)] = None
    upscale: Annotated[bool, Bool()] = False
    evaluate: Annotated[tuple[Path, ...], Custom(checker=_folders, own_error=True,
                                                  description="an array of image folders")] = ()
    calibration_samples_per_class: Annotated[int, Int(1)] = 10

    PATHS: ClassVar[tuple[str, ...]] = ("data", "labels", "weights")

    @classmethod
    def from_table(cls, table: dict, path: Path) -> TrainingSpec:
        values = from_table(cls, table, f"{path}: training.")
        required = [n for n, o in fields(cls).items() if o.default is dataclasses.MISSING]
        for name in required:
            if name not in values:
                raise _fail(path, f"training.{name}", "missing; a training study needs data, seeds, a baseline "
                            "and a budget")
        if "holdout_per_class" not in values:
            for key in ("labels",):  # calibration_samples_per_class also sizes a pruned start's from data/train
                if key in values:
                    raise _fail(path, f"training.{key}", "applies with holdout_per_class (one folder split in "
                                "two); valid: holdout_per_class, or data with train/ and test/")
        for key in cls.PATHS:
            if key in values and values[key] not in WEIGHT_SOURCES:
                values[key] = (path.parent / values[key]).resolve()
        values["evaluate"] = tuple((path.parent / folder).resolve() for folder in values.get("evaluate", ()))
        return cls(**values)

    def paths(self) -> list[Path]:
        return [p for p in (self.data, self.labels, self.weights, *self.evaluate) if isinstance(p, Path)]


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    knobs: dict[str, Any]
    paper: dict[str, float]
    note: str = ""
    weights: str | Path | None = None   # a training variant's own starting weights
    ablate: Ablate | None = None        # a training variant's ablated start
    prune: PrunePlan | None = None      # a training variant's pruned start


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    title: str
    kind: str
    description: str
    variants: tuple[Variant, ...]
    figure: str | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    activations: dict[str, Any] = field(default_factory=dict)  # paths made relative to the study file's folder
    reading: str = ""
    ablation: dict[str, Any] = field(default_factory=dict)     # likewise
    training: TrainingSpec | None = None
    budgets: dict[str, Budget] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    pruning: PruningSweep | None = None

    @property
    def requested_as(self) -> str:
        """The kind that decides whether ``seprobe reports`` runs the study: its own, or ``timing`` for a
        complexity study that times."""
        return "timing" if "step_time" in self.columns else self.kind

    def missing_inputs(self) -> list[str]:
        """The data or weights an activations or ablation study names that do not exist here."""
        if self.kind == "training":
            paths = [*self.training.paths(), *(v.weights for v in self.variants)]
        else:
            table = self.ablation if self.kind == "ablation" else self.activations
            paths = [table[k] for k in _PATH_FIELDS.get(self.kind, ()) if k in table]
        return [str(p) for p in paths if isinstance(p, Path) and not p.exists()]


def _fail(path: Path, key: str, message: str) -> SeprobeError:
    return SeprobeError(f"{path}: {key}: {message}")


def _check_table(path: Path, where: str, table: dict, fields: dict[str, FieldType], known_only: bool = True) -> None:
    """Every key of ``table`` known (unless ``known_only`` is false: the model then names what it takes), every
    known value of its type."""
    for key, value in table.items():
        if key in fields:
            fields[key].check(path, f"{where}{key}", value)
        elif known_only:
            raise _fail(path, f"{where}{key}", f"unknown field {key!r}; valid: {', '.join(fields)}")


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document of ``path``; one :class:`SeprobeError` for a missing, non-UTF-8 or invalid file."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SeprobeError(f"study {str(path)!r} {what}; valid: a .toml file such as studies/stages.toml")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise _fail(path, "encoding", f"not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                    "valid: a TOML file in UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, "TOML", f"{e}; valid: a TOML document (https://toml.io)") from None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file: every field of its type, every model and knob known (each variant's
    model is built on ``meta``, which checks the knobs' values), before anything runs."""
    from ..models.factory import ModelSource
    from ..models.registry import applicable_knobs, build_model, check_knobs
    from ..models.sources import library

    path = Path(path)
    data = read_toml(path)
    _check_table(path, "", data, STUDY_FIELDS)
    for required in ("title", "kind"):
        if required not in data:
            raise _fail(path, required, "missing; every study needs a title and a kind")
    kind = data["kind"]
    if kind not in KINDS:
        raise _fail(path, "kind", f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    activations = from_table(GateReading, data.get("activations", {}), f"{path}: activations.",
                             extra=ACTIVATIONS_EXTRA)
    if kind == "activations":
        for required in ("model", "weights", "data"):
            if required not in activations:
                raise _fail(path, f"activations.{required}", "missing; an activations study needs model, weights "
                            "and data")
        for key in _PATH_FIELDS["activations"]:
            if key in activations and activations[key] not in WEIGHT_SOURCES:
                activations[key] = (path.parent / activations[key]).resolve()
    ablation = from_table(AblationPlan, data.get("ablation", {}), f"{path}: ablation.",
                          extra={**fields(CalibrationSource), **ABLATION_EXTRA})
    if kind == "ablation":
        for required in ("model", "weights", "data"):
            if required not in ablation:
                raise _fail(path, f"ablation.{required}", "missing; an ablation study needs model, weights and data")
        for key in _PATH_FIELDS["ablation"]:
            if key in ablation and ablation[key] not in WEIGHT_SOURCES:
                ablation[key] = (path.parent / ablation[key]).resolve()
        try:
            ablation_options(ablation)
        except SeprobeError as e:
            raise _fail(path, "ablation", str(e)) from None
    elif kind != "activations" and "variants" not in data:
        raise _fail(path, "variants", "missing; every study of this kind needs variants")
    figure = data.get("figure")
    if figure is not None and figure not in FIGURES:
        raise _fail(path, "figure", f"unknown figure {figure!r}; valid: {', '.join(FIGURES)}")
    if figure not in (None, "params") and kind == "training":
        raise _fail(path, "figure", f"unknown figure {figure!r} for a training study; valid: params (the error "
                    "difference against the parameters added and the step time)")
    timing = data.get("timing", {})
    from_table(TimingSetup, timing, f"{path}: timing.", extra=TIMING_EXTRA)
    columns = tuple(data.get("columns", ()))
    for column in columns:
        if column not in COLUMNS:
            raise _fail(path, "columns", f"unknown column {column!r}; valid: {', '.join(COLUMNS)}")
    if columns and kind != "complexity":
        raise _fail(path, "columns", f"applies to complexity studies only, not to kind {kind!r}")
    if "step_time" in columns and not timing:
        raise _fail(path, "columns", "step_time needs a [timing] table (device, batch_size, ...) to time with")
    defaults = data.get("defaults", {})
    _check_knobs(path, "defaults.", defaults)
    variants = []
    for i, v in enumerate(data.get("variants", [])):
        where = f"variants[{i}]"
        _check_table(path, f"{where}.", v, VARIANT_FIELDS)
        if "model" not in v or "label" not in v:
            raise _fail(path, where, "needs a label and a model")
        if "knobs" in v:
            _check_knobs(path, f"{where}.knobs.", v["knobs"])
        try:
            if library(v["model"]) is not None:  # timm: / torchvision: take no knobs, not even the defaults
                knobs = dict(v.get("knobs", {}))
                if find_spec(library(v["model"])) is not None:  # without timm the run says how to get it
                    ModelSource(v["model"], "random", knobs)
            else:
                knobs = applicable_knobs(v["model"], {**defaults, **v.get("knobs", {})})
                check_knobs(v["model"], knobs)
                build_model(v["model"], device="meta", **knobs)
        except SeprobeError as e:
            raise _fail(path, f"{where} ({v['label']})", str(e)) from None
        weights, ablate = _start(path, kind, where, v)
        prune = _prune(path, kind, where, v)
        row = None
        if "paper" in v:
            try:
                row = by_key(v["paper"])
            except SeprobeError as e:
                raise _fail(path, f"{where}.paper", str(e)) from None
            if "note" in v:
                raise _fail(path, f"{where}.note", f"the paper's row {row.key!r} has its note in seprobe.paper; "
                            "valid: the note there, or no paper row")
        variants.append(Variant(v["label"], v["model"], knobs, row.values() if row else {},
                                row.note if row else v.get("note", ""), weights, ablate, prune))
    training, budgets = _training(path, kind, data, variants)
    pruning = None
    if "pruning" in data:
        if kind != "training":
            raise _fail(path, "pruning", f"applies to training studies only, not to kind {kind!r}")
        values = from_table(PruningSweep, data["pruning"], f"{path}: pruning.")
        try:
            pruning = PruningSweep(**values)
        except (SeprobeError, TypeError) as e:
            raise _fail(path, "pruning", str(e) if isinstance(e, SeprobeError) else "needs criteria and keep_macs "
                        "(arrays)") from None
    return Study(path.stem, path, data["title"], kind, data.get("description", "").strip(), tuple(variants),
                 figure, timing, activations, data.get("reading", "").strip(), ablation, training, budgets,
                 columns, pruning)


def _prune(path: Path, kind: str, where: str, v: dict) -> PrunePlan | None:
    """A training variant's ``prune``: its start is ``[training] weights`` pruned as this plan says."""
    if "prune" not in v:
        return None
    if kind != "training":
        raise _fail(path, f"{where}.prune", f"applies to training studies only, not to kind {kind!r}")
    if "ablate" in v or "weights" in v:
        raise _fail(path, f"{where}.prune", "a pruned start is [training] weights pruned; valid: prune without "
                    "ablate or weights")
    values = from_table(PrunePlan, v["prune"], f"{path}: {where}.prune.")
    try:
        return PrunePlan(**values)
    except SeprobeError as e:
        raise _fail(path, f"{where}.prune", str(e)) from None


def _start(path: Path, kind: str, where: str, v: dict) -> tuple[str | Path | None, Ablate | None]:
    """A training variant's own starting point: its ``weights`` (a path made relative to the study's folder)
    and its ``ablate`` table, checked."""
    for key in ("weights", "ablate"):
        if key in v and kind != "training":
            raise _fail(path, f"{where}.{key}", f"applies to training studies only, not to kind {kind!r}")
    weights = v.get("weights")
    if weights is not None and weights not in WEIGHT_SOURCES:
        weights = (path.parent / weights).resolve()
    if "ablate" not in v:
        return weights, None
    values = from_table(Ablate, v["ablate"], f"{path}: {where}.ablate.")
    try:
        return weights, Ablate(**values)
    except (SeprobeError, TypeError):
        raise _fail(path, f"{where}.ablate", "needs one of stage and blocks: the SE blocks to ablate, and a mode "
                    f"({', '.join(EXPORT_MODES)})") from None


def _check_knobs(path: Path, where: str, table: dict) -> None:
    """The model-zoo knobs of a table checked as the models check them (other keys: the model names what it
    takes); the table keeps its values as written."""
    for key, value in table.items():
        if key in KNOB_OPTIONS:
            check_toml(KNOB_OPTIONS[key], value, f"{path}: {where}{key}")


def evaluation_set_name(folder: Path) -> str:
    """An evaluation folder's name in a training report's columns (``imagenet-samples`` -> ``imagenet_samples``)."""
    return re.sub(r"[^a-z0-9]+", "_", folder.name.lower()).strip("_")


def _training(path: Path, kind: str, data: dict, variants: list[Variant]) -> tuple[TrainingSpec | None, dict]:
    """The ``[training]`` table and the budgets, checked."""
    budgets = {}
    for name, table in data.get("budgets", {}).items():
        FieldType((dict,), "a table ([budgets.NAME])").check(path, f"budgets.{name}", table)
        try:
            budgets[name] = Budget.from_table(name, table, f"{path}: budgets.{name}.")
        except SeprobeError as e:
            raise e if str(e).startswith(str(path)) else _fail(path, f"budgets.{name}", str(e)) from None
    if kind != "training":
        if "training" in data:
            raise _fail(path, "training", f"applies to training studies only, not to kind {kind!r}")
        return None, budgets
    try:
        training = TrainingSpec.from_table(data.get("training", {}), path)
    except SeprobeError as e:
        raise e if str(e).startswith(str(path)) else _fail(path, "training", str(e)) from None
    labels = [v.label for v in variants]
    if training.baseline not in labels:
        raise _fail(path, "training.baseline", f"no variant labelled {training.baseline!r}; valid: "
                    f"{', '.join(labels)}")
    if training.also_against is not None and training.also_against not in labels:
        raise _fail(path, "training.also_against", f"no variant labelled {training.also_against!r}; valid: "
                    f"{', '.join(labels)}")
    if training.budget not in budgets:
        raise _fail(path, "training.budget", f"no budget {training.budget!r}; valid: {', '.join(budgets)}")
    if len(set(labels)) != len(labels):
        raise _fail(path, "variants", "two variants share a label; valid: distinct labels (each names its runs)")
    names = [evaluation_set_name(f) for f in training.evaluate]
    names += ["heldout"] if training.holdout_per_class is not None else []
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(path, "training.evaluate", f"two evaluation sets named {twice[0]!r} (a folder's name, or the "
                    "held-out part's 'heldout'); valid: folders of distinct names")
    if any(v.ablate for v in variants) and training.holdout_per_class is None:
        raise _fail(path, "variants", "an ablated start is calibrated on the training part of a holdout split; "
                    "valid: holdout_per_class in [training]")
    return training, budgets


def check_unique_names(studies: Iterable[Study]) -> None:
    """Raise if two studies share a name (their file stem): each writes ``<name>.md``, so one would silently
    overwrite the other's report."""
    seen: dict[str, Path] = {}
    for s in studies:
        if s.name in seen and seen[s.name].resolve() != s.path.resolve():
            raise SeprobeError(f"two studies named {s.name!r}: {seen[s.name]} and {s.path} would write the same "
                               f"report {s.name}.md; valid: study files with different names")
        seen.setdefault(s.name, s.path)
