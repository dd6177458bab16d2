"""Studies and reports: fresh, deterministic, validated, consistent with the paper's figures."""

import tomllib
from pathlib import Path

import pytest

from seprobe import SeprobeError
from seprobe.paper import FIGURES, SUCCESSORS, _normalise
from seprobe.studies.reports import figure, write_report
from seprobe.studies.runs import run_study
from seprobe.studies.study_file import load_study

from .helpers import run_seprobe

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.toml"))
REGENERATED = [p for p in STUDIES if load_study(p).requested_as in ("complexity", "excitation")]


def _cli(*args, cwd=ROOT):
    return run_seprobe(*args, cwd=cwd)


@pytest.mark.slow
def test_committed_reports_are_fresh(tmp_path):
    """Regenerate every complexity report and compare it byte for byte with the committed one."""
    proc = _cli("study", "run", *map(str, REGENERATED), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for study in REGENERATED:
        for suffix in (".md", ".csv"):
            committed = ROOT / "reports" / f"{study.stem}{suffix}"
            fresh = tmp_path / f"{study.stem}{suffix}"
            assert committed.read_bytes() == fresh.read_bytes(), f"{committed} is stale: run `seprobe reports`"
        if load_study(study).figure:
            assert (ROOT / "reports" / f"{study.stem}.png").is_file()
    index = (ROOT / "reports" / "README.md").read_text()
    assert all(f"[{p.stem}]({p.stem}.md)" in index for p in REGENERATED)


def test_reports_explain_every_difference():
    for md in (ROOT / "reports").glob("*.md"):
        assert "UNEXPLAINED" not in md.read_text(), md


@pytest.mark.slow
def test_regeneration_is_byte_identical(tmp_path):
    result = run_study(load_study(ROOT / "studies" / "reduction_ratio.toml"))
    first = [p.read_bytes() for p in write_report(result, tmp_path / "a")]
    second = [p.read_bytes() for p in write_report(run_study(result.study), tmp_path / "b")]
    assert first == second
    figure(result, tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "a" / "reduction_ratio.png").read_bytes()


def test_studies_name_rows_of_the_paper_that_describe_their_variants():
    """The paper's figures are typed once (seprobe.paper): a study names a row, and the row is about the variant's
    model and configuration."""
    named = 0
    for path in STUDIES:
        data = tomllib.loads(path.read_text())
        for raw, v in zip(data.get("variants", []), load_study(path).variants, strict=True):
            if "paper" not in raw:
                continue
            assert isinstance(raw["paper"], str), (path.name, v.label)  # a key, not numbers typed again
            row = next(f for f in (*FIGURES, *SUCCESSORS) if f.key == raw["paper"])
            assert row.model == v.model and _normalise(row.knobs) == _normalise(v.knobs), (path.name, v.label)
            assert v.paper == row.values() and v.note == row.note
            named += 1
    assert named >= 40


BAD = {
    "unknown_field.toml": ('title = "x"\nkind = "complexity"\ncolour = "red"\n[[variants]]\nlabel = "a"\n'
                           'model = "resnet50"\n', "colour: unknown field 'colour'; valid: title, kind"),
    "unknown_model.toml": ('title = "x"\nkind = "complexity"\n[[variants]]\nlabel = "a"\nmodel = "se_resnet51"\n',
                           "variants[0] (a): unknown model 'se_resnet51'; valid: bn_inception"),
    "bad_knob.toml": ('title = "x"\nkind = "complexity"\n[[variants]]\nlabel = "a"\nmodel = "se_resnet50"\n'
                      'knobs = { reduktion = 4 }\n', "variants[0] (a): unknown knob 'reduktion' for se_resnet50"),
    "bad_value.toml": ('title = "x"\nkind = "complexity"\n[[variants]]\nlabel = "a"\nmodel = "se_resnet50"\n'
                       'knobs = { squeeze = "median" }\n', "unknown squeeze 'median'; valid: 'avg', 'max', 'none'"),
    "bad_kind.toml": ('title = "x"\nkind = "accuracy"\n[[variants]]\nlabel = "a"\nmodel = "resnet50"\n',
                      "kind: unknown kind 'accuracy'; valid: complexity, excitation, timing"),
    "bad_paper.toml": ('title = "x"\nkind = "complexity"\n[[variants]]\nlabel = "a"\nmodel = "resnet50"\n'
                       'paper = "Table 2: ResNet-5"\n', "variants[0].paper: no row 'Table 2: ResNet-5' in the papers' "
                       "tables; did you mean 'Table 2: ResNet-50'"),
    "not_toml.toml": ('title = "x\n', "not_toml.toml: TOML:"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_study_names_file_key_and_choices(tmp_path, name):
    text, message = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SeprobeError, match=None) as err:
        load_study(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.slow
def test_a_failing_study_touches_no_report(tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "stages.md").write_text("old report\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD["unknown_model.toml"][0])
    proc = _cli("study", "run", str(ROOT / "studies" / "stages.toml"), str(bad), "--out", str(out))
    assert proc.returncode == 2 and "unknown model 'se_resnet51'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["stages.md"] and (out / "stages.md").read_text() == "old report\n"


@pytest.mark.slow
def test_timing_study_runs_small(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('title = "t"\nkind = "timing"\n[timing]\nbatch_size = 2\ninput_size = 32\nwarmup = 1\n'
                    'repeats = 2\n[[variants]]\nlabel = "R18"\nmodel = "resnet18"\n'
                    'paper = "Section 4: ResNet-50"\n'
                    '[[variants]]\nlabel = "SE-R18"\nmodel = "se_resnet18"\n')
    result = run_study(load_study(path))
    t = result.table
    assert set(zip(t["variant"], t["mode"], strict=True)) == {("R18", "inference"), ("SE-R18", "inference"),
                                                              ("R18", "train"), ("SE-R18", "train")}
    assert (t["median_ms"] > 0).all()
    assert t.set_index(["variant", "mode"]).loc[("R18", "train"), "paper_ms"] == 190
    assert any("SE-R18 / R18 (train): time ratio" in n for n in result.notes)
    assert "threads" in result.context[0]


def test_activations_reading_quotes_the_committed_figures():
    """The written reading of the real-data analysis cites numbers; they must be the committed ones."""
    import pandas as pd

    spec = pd.read_csv(ROOT / "reports" / "activations" / "specificity.csv").set_index("block")
    reading = load_study(ROOT / "studies" / "activations.toml").reading
    for block, column, text in [("SE_4_1", "between_class_std", "0.017"), ("SE_4_4", "between_class_std", "0.001"),
                                ("SE_5_1", "between_class_std", "0.073"), ("SE_5_3", "between_class_std", "0.116"),
                                ("SE_5_2", "mean_gate", "0.09"), ("SE_2_1", "share_above_0.9", "1")]:
        assert f"{spec.loc[block, column]:.3f}".rstrip("0").rstrip(".").startswith(text.rstrip("0").rstrip(".")), \
            (block, column)
        assert text in reading
    assert round(100 * spec.loc["SE_4_1", "share_above_0.9"]) == 83 and "83 %" in reading


def test_tiny_imagenet_reading_quotes_the_committed_figures():
    """The comparison of the 20-images-per-class run with the one-image-per-class run cites both committed tables."""
    import pandas as pd

    tiny = pd.read_csv(ROOT / "reports" / "activations_tiny" / "specificity.csv").set_index("block")
    one = pd.read_csv(ROOT / "reports" / "activations" / "specificity.csv").set_index("block")
    reading = load_study(ROOT / "studies" / "activations_tiny.toml").reading
    eta = tiny["class_specificity"].dropna()
    assert f"{eta.min():.2f}-{eta.max():.2f}" in reading
    for block in eta.index:
        assert f"{block} {eta[block]:.2f}" in reading, block
    for block in ("SE_4_2", "SE_5_1", "SE_5_3"):
        assert f"{block} {one.loc[block, 'between_class_std']:.3f} -> {tiny.loc[block, 'between_class_std']:.3f}" \
            in reading, block
    # chance level of eta^2 with K groups of N values: (K - 1) / (N - 1)
    counts = pd.read_csv(ROOT / "reports" / "activations_tiny" / "gates.csv")
    n = int(counts.loc[counts["class_index"] == -1, "count"].iloc[0])
    assert n == 4000 and f"199 / 3999 = {199 / 3999:.2f}" in reading
    varying = eta.index  # SE_2_1's gates are constant: no class_specificity
    order = lambda df: list(df.loc[varying, "between_class_std"].sort_values(ascending=False, kind="stable").index)  # noqa: E731,E501
    swapped = [(a, b) for a, b in zip(order(one), order(tiny), strict=True) if a != b]
    assert sorted(swapped) == [("SE_4_2", "SE_5_2"), ("SE_5_2", "SE_4_2")] and "(SE_4_2 and SE_5_2)" in reading


def test_activation_and_ablation_reports_are_written_from_their_results(tmp_path):
    """The report of an activations and of an ablation study, on a network with gates known by construction
    (the real-data studies run these paths with --with-activations / --with-ablation only)."""
    from seprobe.probe.ablation import ablate
    from seprobe.probe.activations import collect, specificity_table
    from seprobe.probe.evaluation import Loader
    from seprobe.studies.result import StudyResult
    from seprobe.studies.study_file import Study

    from .helpers import GOLDFISH, PUG, identity_model, write_flat_images

    root = write_flat_images(tmp_path / "flat", [f"{GOLDFISH}_0.png", f"{PUG}_1.png"], (10, 200, 30))
    from seprobe.data.images import discover

    images = discover(root)
    run = collect(identity_model(), images, Loader(2), progress=False)
    study = Study("acts", tmp_path / "acts.toml", "acts", "activations", "", (), activations={"channels": 2})
    written = write_report(StudyResult(study, specificity_table(run, [1, 254]), [], [], activation_run=run,
                                       classes=[1, 254]), tmp_path / "out")
    assert {p.name for p in written} >= {"acts.md", "acts.csv", "summary.md", "fig6_class_means.png"}
    result = ablate(identity_model(), images, progress=False, bootstrap=20)
    study = Study("abl", tmp_path / "abl.toml", "abl", "ablation", "", ())
    written = write_report(StudyResult(study, result.table, [], [], ablation_result=result), tmp_path / "out")
    assert {p.name for p in written} >= {"abl.md", "ablation.csv", "summary.md", "blocks.png"}
