"""Each option is declared once (seprobe.schema): the check, the command line's option and the study file's field
all come from the same field of a frozen dataclass, so a field added to the dataclass appears in all three."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated

import pytest

from seprobe import SeprobeError
from seprobe.cli.app import app, flag
from seprobe.cli.options import declared_params, given_values
from seprobe.cost.settings import FlopConvention, TimingSetup
from seprobe.data.overrides import Overrides
from seprobe.models.arch_config import ArchConfig
from seprobe.models.se_config import SEConfig
from seprobe.probe.ablation_plan import AblationPlan, CalibrationSource, Resampling
from seprobe.probe.loader import Loader
from seprobe.probe.reading import GateReading
from seprobe.schema import Bool, Int, Items, Number, Options, check_values, fields, from_table
from seprobe.studies.study_file import Budget, load_study
from seprobe.training.recipe import Recipe

#: the option dataclasses, and the command whose options are their fields
EXPOSED = {"train": (SEConfig, ArchConfig, Recipe), "complexity": (SEConfig, ArchConfig, FlopConvention, TimingSetup),
           "evaluate": (SEConfig, ArchConfig, Loader, Overrides),
           "activations": (SEConfig, ArchConfig, Loader, Overrides, GateReading),
           "ablate": (SEConfig, ArchConfig, Loader, Overrides, AblationPlan, CalibrationSource, Resampling)}


def command_params(name: str) -> set[str]:
    callback = next(c.callback for c in app.registered_commands if c.name == name)
    return set(inspect.signature(callback).parameters)


def test_every_option_dataclass_is_frozen_and_declares_its_fields():
    for cls in Options.registry:
        if cls.__module__.startswith("tests"):
            continue
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        declared = fields(cls)
        assert declared, cls
        for name, option in declared.items():
            if option.default is not dataclasses.MISSING:
                assert option.check(option.default) == option.default or isinstance(option.default, tuple), (cls, name)


@pytest.mark.parametrize("command", sorted(EXPOSED))
def test_the_command_line_offers_exactly_the_declared_fields(command):
    params = command_params(command)
    for cls in EXPOSED[command]:
        shown = {n for n, o in fields(cls).items() if o.spec.cli}
        assert shown <= params, (cls, shown - params)
        hidden = {n for n, o in fields(cls).items() if not o.spec.cli}
        assert not hidden & params - {"input_size"}, hidden & params  # complexity's own --input-size


def test_the_declared_flag_names_the_argument_in_errors():
    assert flag("stages") == "--se-stages"
    assert flag("no_decay_bn_bias") == "--no-decay-bn-bias"
    assert flag("bn") == "--count-bn"
    assert flag("batch_size") == "--batch-size"


def test_an_error_names_the_flag_of_the_command_that_runs(tmp_path):
    """``modes`` is ``--mode`` in ``ablate`` (its plan's) and the calibration's images per class ``--calibration``,
    whatever other commands call their fields."""
    from seprobe.cli.app import _command_flags

    flags = _command_flags(("ablate", "--model", "x"))
    assert (flags["modes"], flags["calibration_per_class"], flags["each_block"]) == (
        "--mode", "--calibration", "--each-block")
    assert _command_flags(("study", "run", "x.toml"))["budget"] == "--budget"


def test_a_list_option_may_be_repeated_or_comma_separated():
    assert given_values((GateReading,), {"stage": ["4", "5,3"], "blocks": None}) == {"stage": (4, 5, 3)}
    assert given_values((GateReading,), {"stage": []}) == {}
    assert given_values((AblationPlan,), {"modes": "both"}) == {"modes": ("identity", "mean")}
    assert AblationPlan(**given_values((AblationPlan,), {"modes": "mean,identity"})).modes == ("identity", "mean")
    assert given_values((AblationPlan,), {"cumulative": "kl"}) == {"cumulative": "kl"}
    assert given_values((AblationPlan,), {"cumulative": "SE_2_1,SE_3_1"}) == {"cumulative": ["SE_2_1", "SE_3_1"]}


def _table(cls, skip=()) -> dict:
    """A TOML table of every field of ``cls`` at a value that is not its default (tuples as arrays)."""
    values = {"modes": ["mean"], "blocks": ["SE_2_1"], "stage": 2, "per_stage": True, "each_block": True,
              "cumulative": "network", "gates": "all", "calibration_per_class": 2, "calibration_views": 3,
              "allow_overlap": True, "classes": ["goldfish", "pug"], "views": 2, "channels": 7, "bootstrap": 11,
              "seed": 5}
    values |= {"stage": [2, 3]} if cls is GateReading else {}  # the stages shown; the plan's one stage ablated
    return {n: values[n] for n in fields(cls) if n not in skip}


def test_probe_studies_accept_every_field_of_their_options(tmp_path):
    """An activations study takes every field of GateReading; an ablation study every field of AblationPlan,
    CalibrationSource and Resampling (a field added to them is a study key with no other edit)."""
    reading = _table(GateReading, skip=("blocks",))  # stage or blocks: both would be read, stage shown
    plan = _table(AblationPlan) | _table(Resampling) | _table(CalibrationSource, skip=(
        "calibration_data", "calibration_labels", "calibration_samples_per_class"))
    for kind, table in (("activations", reading), ("ablation", plan)):
        path = tmp_path / f"{kind}.toml"
        path.write_text(f'title = "t"\nkind = "{kind}"\n[{kind}]\nmodel = "se_resnet18"\nweights = "random"\n'
                        'data = "."\n' + "\n".join(f"{k} = {_toml(v)}" for k, v in table.items()) + "\n")
        read = getattr(load_study(path), kind)
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in read.items() if k in table} == table
    with pytest.raises(SeprobeError, match=r"ablation.modes: invalid value \['zero'\] \(an array\); expected an "
                                           r"array such as \[\"identity\", \"mean\"\], each 'identity', 'mean'"):
        path.write_text('title = "t"\nkind = "ablation"\n[ablation]\nmodel = "m"\nweights = "w"\ndata = "."\n'
                        'modes = ["zero"]\n')
        load_study(path)


def test_a_budget_accepts_every_recipe_field_but_the_seed(tmp_path):
    recipe = {n: o.default for n, o in fields(Recipe).items() if o.default is not None}
    table = {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items() if k != "seed"}
    budget = Budget.from_table("b", table, "b.toml: budgets.b.")
    assert budget.recipe == {k: v for k, v in recipe.items() if k != "seed"}
    with pytest.raises(SeprobeError, match="budgets.b.seed: unknown field 'seed'"):
        Budget.from_table("b", {"seed": 1}, "b.toml: budgets.b.")
    with pytest.raises(SeprobeError, match=r"budgets.b.lr: invalid value 0 \(an integer\); expected a finite "
                                           r"number > 0"):
        Budget.from_table("b", {"lr": 0}, "b.toml: budgets.b.")


def test_a_study_accepts_every_knob_and_every_timing_field(tmp_path):
    knobs = {n: o.default for cls in (SEConfig, ArchConfig) for n, o in fields(cls).items() if o.default is not None}
    timing = {n: list(o.default) if isinstance(o.default, tuple) else o.default
              for n, o in fields(TimingSetup).items()}
    lines = [f"{k} = {_toml(v)}" for k, v in knobs.items()]
    path = tmp_path / "s.toml"
    path.write_text('title = "t"\nkind = "complexity"\n[defaults]\n' + "\n".join(lines) + "\n[timing]\n"
                    + "\n".join(f"{k} = {_toml(v)}" for k, v in timing.items())
                    + '\n[[variants]]\nlabel = "a"\nmodel = "se_resnet50"\n')
    study = load_study(path)
    assert {k: v for k, v in study.variants[0].knobs.items() if k in knobs} == knobs
    assert study.timing == timing


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def test_the_python_api_takes_exactly_the_recipe_fields():
    from seprobe.api import _recipe

    assert _recipe({"epochs": 2, "milestones": [0.25]}, 32) == Recipe(epochs=2, milestones=(0.25,))
    with pytest.raises(SeprobeError, match="unknown recipe field 'weight_decy'; did you mean 'weight_decay'."):
        _recipe({"weight_decy": 0.1}, 32)
    with pytest.raises(SeprobeError, match=r"^invalid lr 0; valid: a finite number > 0 and < 3.40282"):
        _recipe({"lr": 0}, 32)


# --- a field added to an option dataclass: checked, on the command line and in study files, with no other edit ---

@dataclasses.dataclass(frozen=True)
class WithAKnob(Recipe):
    new_knob: Annotated[int, Int(2, 9, metavar="K", help="a knob added for the test")] = 3
    new_switch: Annotated[bool, Bool(flags=("--new-switch",))] = False
    new_list: Annotated[tuple[float, ...], Items(item=Number(0, 1), example="0.5")] = ()


def test_an_added_field_is_checked_offered_and_read_from_study_files():
    assert WithAKnob(new_knob=9).new_knob == 9
    with pytest.raises(SeprobeError, match=r"^invalid new_knob 1; valid: an integer >= 2 and <= 9$"):
        WithAKnob(new_knob=1)
    with pytest.raises(SeprobeError, match=r"^invalid new_switch 1; valid: True or False$"):
        WithAKnob(new_switch=1)
    params = declared_params(WithAKnob)
    assert {"new_knob", "new_switch", "new_list"} <= set(params) and set(fields(Recipe)) < set(params)
    option = params["new_knob"].annotation.__metadata__[0]
    assert (option.metavar, option.help) == ("K", "a knob added for the test")  # its flag: the test below
    assert given_values((WithAKnob,), {"new_list": "0.25,0.5", "new_knob": None}) == {"new_list": (0.25, 0.5)}
    read = from_table(WithAKnob, {"new_knob": 4, "new_list": [0.5]}, "x.toml: ")
    assert read == {"new_knob": 4, "new_list": (0.5,)}
    with pytest.raises(SeprobeError, match=r"x.toml: new_knob: invalid value '4' \(a string\); expected an integer "
                                           ">= 2 and <= 9"):
        from_table(WithAKnob, {"new_knob": "4"}, "x.toml: ")
    assert check_values(WithAKnob, {"new_knob": 5}) == {"new_knob": 5}


def test_the_command_line_parses_an_added_field_from_its_declaration():
    """The derived typer option reads the value and the dataclass checks it: a typer app built from the
    declared parameters alone."""
    import typer
    from typer.testing import CliRunner

    from seprobe.cli.options import declared_group, with_groups

    one = typer.Typer()
    seen = {}

    @one.command()
    @with_groups(declared_group("recipe", WithAKnob))
    def run(recipe: dict | None = None):
        seen.update(recipe)
        WithAKnob(**recipe)

    result = CliRunner().invoke(one, ["--new-knob", "7", "--new-switch", "--new-list", "0.1,0.2", "--epochs", "4"])
    assert result.exit_code == 0, result.output
    assert seen == {"new_knob": 7, "new_switch": True, "new_list": (0.1, 0.2), "epochs": 4}
