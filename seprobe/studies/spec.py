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
    paper = { params_m = 35.7, top1_err = 22.25, top5_err = 6.09 }
    note = "why the measured value differs from the paper's, when it does"

Everything is validated before anything runs: an unknown field, model or knob fails with the file, the key
and the valid choices.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SeprobeError

KINDS = ("complexity", "excitation", "timing", "activations", "ablation")
STUDY_FIELDS = ("title", "kind", "description", "figure", "defaults", "variants", "timing", "activations",
                "ablation", "reading")
VARIANT_FIELDS = ("label", "model", "knobs", "paper", "note")
PAPER_FIELDS = ("gflops", "mflops", "params_m", "top1_err", "top5_err", "gpu_train_ms", "cpu_inference_ms")
FIGURES = ("params", "gflops")
TIMING_FIELDS = ("device", "batch_size", "dtype", "channels_last", "warmup", "repeats", "input_size",
                 "inference_batch_size")
ACTIVATION_FIELDS = ("model", "weights", "data", "classes", "views", "channels", "samples_per_class", "batch_size")
#: an ablation study: the arguments of seprobe.probe.ablation.ablate, plus where the calibration images are
#: (``calibration_data`` with an optional ``calibration_labels`` file of ``<file>\t<wnid>`` lines, of which
#: ``calibration_samples_per_class`` are used; or ``calibration_per_class`` taken out of ``data``) and an optional
#: export check (``export_blocks`` in ``export_mode``: exported, reloaded and compared with the ablated network)
ABLATION_FIELDS = ("model", "weights", "data", "modes", "per_stage", "cumulative", "blocks", "stage",
                   "calibration_data", "calibration_labels", "calibration_samples_per_class", "calibration_per_class",
                   "calibration_views", "batch_size", "n_boot", "seed", "export_blocks", "export_mode")
#: the fields of each real-data kind that name files, relative to the study file's folder
_PATH_FIELDS = {"activations": ("weights", "data"), "ablation": ("weights", "data", "calibration_data",
                                                                 "calibration_labels")}
#: the paper's printed decimals, which decide whether a measured value "matches"
DECIMALS = {"gflops": 2, "mflops": 0, "params_m": 1}


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    knobs: dict[str, Any]
    paper: dict[str, float]
    note: str = ""


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

    def missing_inputs(self) -> list[str]:
        """The data or weights an activations or ablation study names that do not exist here."""
        table = self.ablation if self.kind == "ablation" else self.activations
        return [str(table[k]) for k in _PATH_FIELDS.get(self.kind, ())
                if k in table and isinstance(table[k], Path) and not table[k].exists()]


def _fail(path: Path, key: str, message: str) -> SeprobeError:
    return SeprobeError(f"{path}: {key}: {message}")


def _check_keys(path: Path, where: str, table: dict, valid: tuple[str, ...]) -> None:
    for key in table:
        if key not in valid:
            raise _fail(path, f"{where}{key}", f"unknown field {key!r}; valid: {', '.join(valid)}")


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; building every variant's model (on ``meta``) checks its knobs."""
    from ..models.registry import applicable_knobs, build_model, check_knobs

    path = Path(path)
    if not path.is_file():
        raise SeprobeError(f"study {str(path)!r} does not exist; valid: a .toml file such as studies/stages.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, "TOML", str(e)) from None
    _check_keys(path, "", data, STUDY_FIELDS)
    for required in ("title", "kind"):
        if required not in data:
            raise _fail(path, required, "missing; every study needs a title and a kind")
    kind = data["kind"]
    if kind not in KINDS:
        raise _fail(path, "kind", f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    activations = dict(data.get("activations", {}))
    _check_keys(path, "activations.", activations, ACTIVATION_FIELDS)
    if kind == "activations":
        for required in ("model", "weights", "data"):
            if required not in activations:
                raise _fail(path, f"activations.{required}", "missing; an activations study needs model, weights "
                            "and data")
        for key in ("weights", "data"):
            if activations[key] not in ("timm", "torchvision", "random"):
                activations[key] = (path.parent / activations[key]).resolve()
    ablation = dict(data.get("ablation", {}))
    _check_keys(path, "ablation.", ablation, ABLATION_FIELDS)
    if kind == "ablation":
        for required in ("model", "weights", "data"):
            if required not in ablation:
                raise _fail(path, f"ablation.{required}", "missing; an ablation study needs model, weights and data")
        for key in _PATH_FIELDS["ablation"]:
            if key in ablation and ablation[key] not in ("timm", "torchvision", "random"):
                ablation[key] = (path.parent / ablation[key]).resolve()
    elif kind != "activations" and "variants" not in data:
        raise _fail(path, "variants", "missing; every study of this kind needs variants")
    figure = data.get("figure")
    if figure is not None and figure not in FIGURES:
        raise _fail(path, "figure", f"unknown figure {figure!r}; valid: {', '.join(FIGURES)}")
    timing = data.get("timing", {})
    _check_keys(path, "timing.", timing, TIMING_FIELDS)
    defaults = data.get("defaults", {})
    variants = []
    for i, v in enumerate(data.get("variants", [])):
        where = f"variants[{i}]"
        _check_keys(path, f"{where}.", v, VARIANT_FIELDS)
        if "model" not in v or "label" not in v:
            raise _fail(path, where, "needs a label and a model")
        _check_keys(path, f"{where}.paper.", v.get("paper", {}), PAPER_FIELDS)
        try:
            knobs = applicable_knobs(v["model"], {**defaults, **v.get("knobs", {})})
            check_knobs(v["model"], knobs)
            build_model(v["model"], device="meta", **knobs)
        except SeprobeError as e:
            raise _fail(path, f"{where} ({v['label']})", str(e)) from None
        variants.append(Variant(v["label"], v["model"], knobs, dict(v.get("paper", {})), v.get("note", "")))
    return Study(path.stem, path, data["title"], kind, data.get("description", "").strip(), tuple(variants),
                 figure, timing, activations, data.get("reading", "").strip(), ablation)
