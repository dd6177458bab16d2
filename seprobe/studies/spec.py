"""Studies: one declarative TOML file per table of the paper, run into a table of measured vs paper values.

A study file::

    title = "Table 10: reduction ratio r"
    kind = "complexity"            # complexity | excitation | timing | activations | ablation
    description = "..."
    figure = "params"              # optional: a seaborn bar chart of params or gflops, measured vs paper
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

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..defaults import WEIGHT_SOURCES
from ..errors import SeprobeError
from ..paper import by_key

KINDS = ("complexity", "excitation", "timing", "activations", "ablation", "training")
FIGURES = ("params", "gflops")


@dataclass(frozen=True)
class FieldType:
    """What a study field holds: the Python types TOML gives for it, and how to say so in an error."""

    types: tuple[type, ...]
    expected: str
    positive: bool = False      # integers must be >= 1
    items: type | None = None   # for arrays: the type of every item

    def check(self, path: Path, key: str, value: Any) -> None:
        ok = isinstance(value, self.types) and not (isinstance(value, bool) and bool not in self.types)
        if ok and isinstance(value, list) and self.items is not None:
            ok = all(isinstance(x, self.items) and not isinstance(x, bool) for x in value)
        if ok and self.positive and isinstance(value, int) and value < 1:
            ok = False
        if not ok:
            raise _fail(path, key, f"invalid value {value!r} ({_toml_type(value)}); expected {self.expected}")


TEXT = FieldType((str,), "a string")
BOOL = FieldType((bool,), "true or false (a TOML boolean, without quotes)")
COUNT = FieldType((int,), "an integer >= 1 (without quotes)", positive=True)
NUMBER = FieldType((int, float), "a number (without quotes)")
TABLE = FieldType((dict,), "a table")
CLASSES = FieldType((str, list), "a string such as \"goldfish,pug\" or an array of strings", items=str)

STUDY_FIELDS: dict[str, FieldType] = {
    "title": TEXT, "kind": TEXT, "description": TEXT, "figure": TEXT, "defaults": TABLE,
    "variants": FieldType((list,), "an array of tables ([[variants]])", items=dict), "timing": TABLE,
    "activations": TABLE, "ablation": TABLE, "training": TABLE, "budgets": TABLE, "reading": TEXT}
VARIANT_FIELDS: dict[str, FieldType] = {"label": TEXT, "model": TEXT, "knobs": TABLE, "paper": TEXT, "note": TEXT,
                                        "weights": TEXT, "ablate": TABLE}
#: a training variant's ``ablate``: its starting network is ``[training] weights`` with these SE blocks ablated
#: and exported (seprobe.ablate's export: ``identity`` removed, ``mean`` folded), calibrated on the training part
ABLATE_FIELDS: dict[str, FieldType] = {"stage": COUNT, "blocks": FieldType(
    (str, list), "a string such as \"SE_5_1,SE_5_2\" or an array of strings", items=str), "mode": TEXT}
#: every knob a registered model takes (see seprobe.models.registry), by type; values are then checked by the model
KNOB_FIELDS: dict[str, FieldType] = {
    "reduction": COUNT, "squeeze": TEXT, "gate": TEXT, "bias": BOOL,
    "stages": FieldType((list, str), "an array of stage numbers such as [2, 3] or a string such as \"2,3\"",
                        items=int),
    "drop_stage5": BOOL, "integration": TEXT, "num_classes": COUNT, "stride_at": TEXT, "stem_pool": TEXT}
TIMING_FIELDS: dict[str, FieldType] = {
    "device": TEXT, "batch_size": COUNT, "dtype": TEXT, "channels_last": BOOL,
    "warmup": FieldType((int,), "an integer >= 0 (without quotes)"), "repeats": COUNT, "input_size": COUNT,
    "inference_batch_size": COUNT}
ACTIVATION_FIELDS: dict[str, FieldType] = {
    "model": TEXT, "weights": TEXT, "data": TEXT, "labels": TEXT, "classes": CLASSES, "views": COUNT,
    "channels": COUNT, "samples_per_class": COUNT, "batch_size": COUNT}
NAMES = FieldType((str, list), "a string such as \"SE_5_1,SE_5_2\" or an array of strings", items=str)
#: an ablation study: the arguments of seprobe.probe.ablation.ablate, plus where the calibration images are
#: (``calibration_data`` with an optional ``calibration_labels`` file, of which ``calibration_samples_per_class``
#: are used; or ``calibration_per_class`` taken out of ``data``) and an optional export check (``export_blocks`` in
#: ``export_mode``: exported, reloaded and compared with the ablated network)
ABLATION_FIELDS: dict[str, FieldType] = {
    "model": TEXT, "weights": TEXT, "data": TEXT, "modes": NAMES, "per_stage": BOOL, "cumulative": NAMES,
    "blocks": NAMES, "stage": COUNT, "calibration_data": TEXT, "calibration_labels": TEXT,
    "calibration_samples_per_class": COUNT, "calibration_per_class": COUNT, "calibration_views": COUNT,
    "batch_size": COUNT, "bootstrap": COUNT, "seed": FieldType((int,), "an integer (without quotes)"),
    "export_blocks": NAMES, "export_mode": TEXT}
#: a training study: every (variant, seed) trained by seprobe.train on ``data`` with the named ``budget``
#: (``[budgets.NAME]``: the recipe fields to change in the published one, and the images per class); the
#: variant labelled ``baseline`` is what the others are compared with, seed by seed; ``dataset`` names the
#: paper's figures to show (cifar10, cifar100); ``runs`` the study whose runs folder it shares (a run of the same
#: variant, seed and budget is trained once for both)
TRAINING_FIELDS: dict[str, FieldType] = {
    "data": TEXT, "weights": TEXT, "seeds": FieldType((list,), "an array of integers such as [0, 1, 2]", items=int),
    "baseline": TEXT, "budget": TEXT, "dataset": TEXT, "runs": TEXT, "labels": TEXT, "holdout_per_class": COUNT,
    "upscale": BOOL, "evaluate": FieldType((list,), "an array of image folders such as [\"../data/imagenet\"]",
                                           items=str), "calibration_samples_per_class": COUNT}
BUDGET_FIELDS: dict[str, FieldType] = {
    "epochs": COUNT, "batch_size": COUNT, "lr": NUMBER, "momentum": NUMBER, "weight_decay": NUMBER,
    "no_decay_bn_bias": BOOL, "schedule": TEXT, "warmup_epochs": NUMBER, "label_smoothing": NUMBER, "dtype": TEXT,
    "channels_last": BOOL, "compile": BOOL, "checkpoint_every": COUNT, "freeze_bn": BOOL,
    "clip_grad_norm": NUMBER, "samples_per_class": COUNT,
    "val_samples_per_class": COUNT, "device": TEXT, "threads": COUNT, "num_workers": FieldType(
        (int,), "an integer >= 0 (without quotes)"), "description": TEXT}
#: the fields of each real-data kind that name files, relative to the study file's folder
_PATH_FIELDS = {"activations": ("weights", "data", "labels"),
                "ablation": ("weights", "data", "calibration_data", "calibration_labels"),
                "training": ("data", "labels", "weights")}
#: the paper's printed decimals, which decide whether a measured value "matches"
DECIMALS = {"gflops": 2, "mflops": 0, "params_m": 1}


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    knobs: dict[str, Any]
    paper: dict[str, float]
    note: str = ""
    weights: str | Path | None = None                      # a training variant's own starting weights
    ablate: dict[str, Any] = field(default_factory=dict)   # a training variant's ablated start (ABLATE_FIELDS)


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
    training: dict[str, Any] = field(default_factory=dict)     # likewise
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def missing_inputs(self) -> list[str]:
        """The data or weights an activations or ablation study names that do not exist here."""
        table = {"ablation": self.ablation, "training": self.training}.get(self.kind, self.activations)
        paths = [table[k] for k in _PATH_FIELDS.get(self.kind, ()) if k in table]
        if self.kind == "training":
            paths += [*self.training.get("evaluate", []), *(v.weights for v in self.variants)]
        return [str(p) for p in paths if isinstance(p, Path) and not p.exists()]


def _fail(path: Path, key: str, message: str) -> SeprobeError:
    return SeprobeError(f"{path}: {key}: {message}")


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


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
    activations = dict(data.get("activations", {}))
    _check_table(path, "activations.", activations, ACTIVATION_FIELDS)
    if kind == "activations":
        for required in ("model", "weights", "data"):
            if required not in activations:
                raise _fail(path, f"activations.{required}", "missing; an activations study needs model, weights "
                            "and data")
        for key in _PATH_FIELDS["activations"]:
            if key in activations and activations[key] not in WEIGHT_SOURCES:
                activations[key] = (path.parent / activations[key]).resolve()
    ablation = dict(data.get("ablation", {}))
    _check_table(path, "ablation.", ablation, ABLATION_FIELDS)
    if kind == "ablation":
        for required in ("model", "weights", "data"):
            if required not in ablation:
                raise _fail(path, f"ablation.{required}", "missing; an ablation study needs model, weights and data")
        for key in _PATH_FIELDS["ablation"]:
            if key in ablation and ablation[key] not in WEIGHT_SOURCES:
                ablation[key] = (path.parent / ablation[key]).resolve()
    elif kind != "activations" and "variants" not in data:
        raise _fail(path, "variants", "missing; every study of this kind needs variants")
    figure = data.get("figure")
    if figure is not None and figure not in FIGURES:
        raise _fail(path, "figure", f"unknown figure {figure!r}; valid: {', '.join(FIGURES)}")
    timing = data.get("timing", {})
    _check_table(path, "timing.", timing, TIMING_FIELDS)
    defaults = data.get("defaults", {})
    _check_table(path, "defaults.", defaults, KNOB_FIELDS, known_only=False)
    variants = []
    for i, v in enumerate(data.get("variants", [])):
        where = f"variants[{i}]"
        _check_table(path, f"{where}.", v, VARIANT_FIELDS)
        if "model" not in v or "label" not in v:
            raise _fail(path, where, "needs a label and a model")
        _check_table(path, f"{where}.knobs.", v.get("knobs", {}), KNOB_FIELDS, known_only=False)
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
                                row.note if row else v.get("note", ""), weights, ablate))
    training, budgets = _training(path, kind, data, variants)
    return Study(path.stem, path, data["title"], kind, data.get("description", "").strip(), tuple(variants),
                 figure, timing, activations, data.get("reading", "").strip(), ablation, training, budgets)


def _start(path: Path, kind: str, where: str, v: dict) -> tuple[str | Path | None, dict]:
    """A training variant's own starting point: its ``weights`` (a path made relative to the study's folder)
    and its ``ablate`` table, checked."""
    from ..probe.ablation_plan import MODES

    for key in ("weights", "ablate"):
        if key in v and kind != "training":
            raise _fail(path, f"{where}.{key}", f"applies to training studies only, not to kind {kind!r}")
    weights = v.get("weights")
    if weights is not None and weights not in WEIGHT_SOURCES:
        weights = (path.parent / weights).resolve()
    ablate = dict(v.get("ablate", {}))
    _check_table(path, f"{where}.ablate.", ablate, ABLATE_FIELDS)
    if ablate:
        if ("stage" in ablate) == ("blocks" in ablate):
            raise _fail(path, f"{where}.ablate", "needs one of stage and blocks: the SE blocks to ablate")
        if ablate.get("mode") not in MODES:
            raise _fail(path, f"{where}.ablate.mode", f"invalid mode {ablate.get('mode')!r}; valid: "
                        f"{', '.join(MODES)}")
        if isinstance(ablate.get("blocks"), str):
            ablate["blocks"] = [b.strip() for b in ablate["blocks"].split(",")]
    return weights, ablate


def evaluation_set_name(folder: Path) -> str:
    """An evaluation folder's name in a training report's columns (``imagenet-samples`` -> ``imagenet_samples``)."""
    return re.sub(r"[^a-z0-9]+", "_", folder.name.lower()).strip("_")


def _check_recipe(path: Path, name: str, budget: dict) -> None:
    """A budget's recipe values, checked as :class:`~seprobe.training.Recipe` checks them (before any run)."""
    from ..training.recipe import Recipe, default_recipe

    if budget.get("num_workers", 0) < 0:
        raise _fail(path, f"budgets.{name}.num_workers", f"invalid value {budget['num_workers']}; expected an "
                    "integer >= 0")
    fields = {k: v for k, v in budget.items() if k in Recipe.__dataclass_fields__ and k != "batch_size"}
    try:
        default_recipe(32, budget.get("batch_size"), **fields)
    except SeprobeError as e:
        raise _fail(path, f"budgets.{name}", str(e)) from None


def _training(path: Path, kind: str, data: dict, variants: list[Variant]) -> tuple[dict, dict]:
    """The ``[training]`` table (its data path made relative to the study's folder) and the budgets, checked."""
    training = dict(data.get("training", {}))
    _check_table(path, "training.", training, TRAINING_FIELDS)
    budgets = dict(data.get("budgets", {}))
    for name, budget in budgets.items():
        FieldType((dict,), "a table ([budgets.NAME])").check(path, f"budgets.{name}", budget)
        _check_table(path, f"budgets.{name}.", budget, BUDGET_FIELDS)
        _check_recipe(path, name, budget)
    if kind != "training":
        return training, budgets
    for required in ("data", "seeds", "baseline", "budget"):
        if required not in training:
            raise _fail(path, f"training.{required}", "missing; a training study needs data, seeds, a baseline "
                        "and a budget")
    if not training["seeds"] or len(set(training["seeds"])) != len(training["seeds"]):
        raise _fail(path, "training.seeds", f"invalid seeds {training['seeds']!r}; valid: distinct integers")
    labels = [v.label for v in variants]
    if training["baseline"] not in labels:
        raise _fail(path, "training.baseline", f"no variant labelled {training['baseline']!r}; valid: "
                    f"{', '.join(labels)}")
    if training["budget"] not in budgets:
        raise _fail(path, "training.budget", f"no budget {training['budget']!r}; valid: {', '.join(budgets)}")
    if len(set(labels)) != len(labels):
        raise _fail(path, "variants", "two variants share a label; valid: distinct labels (each names its runs)")
    for key in _PATH_FIELDS["training"]:
        if key in training and training[key] not in WEIGHT_SOURCES:
            training[key] = (path.parent / training[key]).resolve()
    training["evaluate"] = [(path.parent / folder).resolve() for folder in training.get("evaluate", [])]
    names = [evaluation_set_name(f) for f in training["evaluate"]]
    names += ["heldout"] if "holdout_per_class" in training else []
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(path, "training.evaluate", f"two evaluation sets named {twice[0]!r} (a folder's name, or the "
                    "held-out part's 'heldout'); valid: folders of distinct names")
    if "holdout_per_class" not in training:
        for key in ("labels", "calibration_samples_per_class"):
            if key in training:
                raise _fail(path, f"training.{key}", "applies with holdout_per_class (one folder split in two); "
                            "valid: holdout_per_class, or data with train/ and test/")
    if any(v.ablate for v in variants) and "holdout_per_class" not in training:
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
