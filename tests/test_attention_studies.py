"""The studies of SE's successors: the papers' figures (seprobe.paper.SUCCESSORS) against hand counts of the
modules' definitions, the complexity study's extra columns, and the study file's checks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import seprobe
from seprobe import SeprobeError
from seprobe.paper import SUCCESSORS, by_key
from seprobe.studies.regenerate import run_studies
from seprobe.studies.runs import _decimals, _without_scales, run_study
from seprobe.studies.study_file import load_study

ROOT = Path(__file__).resolve().parents[1]

#: ResNet-50 (torchvision's layout): blocks per stage, the width SE recalibrates, and the map's side at 224
STAGES = ((3, 256, 56), (4, 512, 28), (6, 1024, 14), (3, 2048, 7))
RESNET50_PARAMS, RESNET50_MACS = 25_557_032, 3_857_973_248  # torchvision's count; the paper's 3.86 G
SUM_C = sum(n * c for n, c, _ in STAGES)                     # 15,104: one weight per channel and block
SUM_C2 = sum(n * c * c for n, c, _ in STAGES)                # 20,119,552: SE-Var3's C x C per block
SUM_HW = sum(n * s * s for n, _, s in STAGES)                # 13,867 positions where a spatial gate acts


def _params(key: str) -> int:
    row = by_key(key)
    return seprobe.complexity(row.model, **row.knobs).results[0].params


@pytest.mark.slow
def test_the_successors_parameters_are_the_papers_figures_in_their_units():
    """ECA-Net prints parameters in units of 2^20, CBAM in 10^6: each row's printed figure is the hand count of
    its module's definition on ResNet-50, rounded in its paper's unit."""
    se_fcs = 2 * SUM_C2 // 16                                # W1, W2 at r = 16, no biases
    se_biases = sum(n * (c // 16 + c) for n, c, _ in STAGES)
    hand = {"ECA-Net Table 2: ResNet-50": RESNET50_PARAMS,
            "ECA-Net Table 2: SENet": RESNET50_PARAMS + se_fcs,
            "ECA-Net Table 2: CBAM": RESNET50_PARAMS + se_fcs + 16 * (2 * 49 + 2),  # 7x7 conv 2 -> 1, BN(1)
            "ECA-Net Table 2: ECA-Net": RESNET50_PARAMS + 3 * 3 + 4 * 5 + 6 * 5 + 3 * 7,  # the abstract's 80
            "CBAM Table 4: ResNet-50": RESNET50_PARAMS,
            "CBAM Table 4: ResNet-50 + SE": RESNET50_PARAMS + se_fcs + se_biases,
            "CBAM Table 4: ResNet-50 + CBAM": RESNET50_PARAMS + se_fcs + se_biases + 16 * 100}
    for key, count in hand.items():
        assert _params(key) == count, key
        unit = 2 ** 20 if key.startswith("ECA-Net") else 1e6
        assert round(count / unit, 2) == by_key(key).params_m, key
    assert _params("ECA-Net Table 1: SE-Var2") == RESNET50_PARAMS + SUM_C
    assert _params("ECA-Net Table 1: SE-Var3") == RESNET50_PARAMS + SUM_C2
    assert seprobe.complexity("se_resnet50", attention="srm").results[0].params == RESNET50_PARAMS + 4 * SUM_C


@pytest.mark.slow
def test_cbams_multiply_adds_are_its_tables_without_the_scales():
    """CBAM's 3.864 GFLOPs: ResNet-50's, SE's FCs twice (average and max descriptor) and the 7x7 spatial
    convolutions (2 x 49 per position), no scale: the closed form, and the printed figure rounded."""
    fcs = 2 * SUM_C2 // 16
    closed = RESNET50_MACS + 2 * fcs + 98 * SUM_HW
    row = by_key("CBAM Table 4: ResNet-50 + CBAM")
    assert _without_scales(seprobe.complexity(row.model, **row.knobs).results[0]) == round(closed / 1e9, 4)
    assert round(closed / 1e9, 3) == row.gflops
    se = by_key("CBAM Table 4: ResNet-50 + SE")
    assert round((RESNET50_MACS + fcs) / 1e9, 3) == se.gflops


def test_every_successor_row_is_reachable_and_uses_real_knobs():
    for row in SUCCESSORS:
        assert by_key(row.key) is row
        seprobe.models.se_config.SEConfig(**{k: v for k, v in row.knobs.items()})  # the knobs are the model's


def test_figures_compare_at_the_decimals_their_paper_prints():
    assert _decimals("gflops", 3.858) == 3 and _decimals("gflops", 3.86) == 2 and _decimals("gflops", 4.0) == 2
    assert _decimals("params_m", 28.09) == 2 and _decimals("params_m", 25.6) == 1 and _decimals("mflops", 569) == 0


STUDY = """title = "tiny attention"
kind = "complexity"
columns = ["gflops_without_scales", "step_time"]
[timing]
device = "cpu"
batch_size = 2
input_size = 32
warmup = 1
repeats = 2
[[variants]]
label = "none"
model = "resnet20_cifar"
[[variants]]
label = "CBAM"
model = "se_resnet20_cifar"
knobs = { attention = "cbam" }
"""


def _write(tmp_path, text: str) -> Path:
    (tmp_path / "studies").mkdir(exist_ok=True)
    path = tmp_path / "studies" / "tiny.toml"
    path.write_text(text)
    return path


def test_a_complexity_study_times_its_variants_against_the_first(tmp_path):
    """The step time columns (interleaved, ratio to the first variant) and the count without scales: for CIFAR
    CBAM-ResNet-20 the scales are its 9 blocks' channel and spatial products, 2 * sum N C H W."""
    study = load_study(_write(tmp_path, STUDY))
    assert study.requested_as == "timing"
    table = run_study(study).table.set_index("variant")
    assert pd.isna(table.loc["none", "step_ratio"]) and table.loc["CBAM", "step_ratio"] > 0
    assert (table["train_step_ms"] > 0).all()
    macs = seprobe.complexity("se_resnet20_cifar", attention="cbam").results[0].total
    scales = 2 * 3 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)
    assert table.loc["CBAM", "gflops_without_scales"] == round((macs - scales) / 1e9, 4)
    with pytest.raises(SeprobeError, match="tiny skipped: a timing study, run only when asked"):
        run_studies([study.path], tmp_path / "out", skip_kinds=["timing"])


@pytest.mark.parametrize("old,new,message", [
    ('"step_time"]', '"seconds"]', "columns: unknown column 'seconds'; valid: gflops_without_scales, step_time"),
    ('kind = "complexity"', 'kind = "timing"', "columns: applies to complexity studies only, not to kind 'timing'"),
    ("[timing]\ndevice = \"cpu\"\nbatch_size = 2\ninput_size = 32\nwarmup = 1\nrepeats = 2\n", "",
     "columns: step_time needs a [timing] table"),
    ('columns = ["gflops_without_scales", "step_time"]', 'columns = "step_time"', "columns: invalid value"),
])
def test_a_bad_column_is_refused_at_loading(tmp_path, old, new, message):
    assert old in STUDY
    path = _write(tmp_path, STUDY.replace(old, new))
    with pytest.raises(SeprobeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(path)


def test_the_committed_attention_study_loads_and_runs_with_the_timing_studies():
    study = load_study(ROOT / "studies" / "attention.toml")
    assert study.requested_as == "timing"
    assert {v.knobs.get("attention") for v in study.variants} >= {"se_var1", "se_var2", "se_var3", "eca", "cbam",
                                                                   "srm"}
