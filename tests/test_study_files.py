"""Study files as a hostile user writes them: every field of its type, named with its file and key."""



import pytest

from seprobe import SeprobeError
from seprobe.studies.study_file import check_unique_names, load_study

STUDY = """
title = "t"
kind = "{kind}"
{top}
[defaults]
{defaults}
[[variants]]
label = "a"
model = "se_resnet50"
{variant}
"""


def write_study(tmp_path, name="s", kind="complexity", top="", defaults="", variant=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(kind=kind, top=top, defaults=defaults, variant=variant))
    return path


@pytest.mark.parametrize("where,line,key,value,expected", [
    ("defaults", 'drop_stage5 = "false"', "defaults.drop_stage5", "'false'", "true or false"),
    ("defaults", 'bias = "false"', "defaults.bias", "'false'", "true or false"),
    ("defaults", 'stages = [2, "x"]', "defaults.stages", "[2, 'x']", "an array of stage numbers"),
    ("defaults", "reduction = 0", "defaults.reduction", "0", "an integer r >= 1"),
    ("defaults", "reduction = 16.0", "defaults.reduction", "16.0", "an integer r >= 1"),
    ("variant", 'knobs = "fast"', "variants[0].knobs", "'fast'", "a table"),
    ("variant", 'paper = { gflops = 3.87 }', "variants[0].paper", "{'gflops': 3.87}", "a string"),
    ("variant", "note = 3", "variants[0].note", "3", "a string"),
    ("top", '[timing]\nbatch_size = "8"', "timing.batch_size", "'8'", "an integer >= 1"),
    ("top", "[timing]\nchannels_last = 1", "timing.channels_last", "1", "true or false"),
    ("top", "description = 5", "description", "5", "a string"),
])
def test_study_values_of_the_wrong_type_are_named(tmp_path, where, line, key, value, expected):
    """Strings are not booleans: `drop_stage5 = "false"` used to drop stage 5."""
    path = write_study(tmp_path, **{where: line})
    with pytest.raises(SeprobeError) as e:
        load_study(path)
    message = str(e.value)
    assert "\n" not in message
    assert str(path) in message and f"{key}:" in message and value in message and expected in message, message


def test_study_files_that_are_not_utf8_or_not_toml(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('title = "Café"\nkind = "complexity"\n'.encode("latin-1"))
    with pytest.raises(SeprobeError, match=r"latin.toml: encoding: not UTF-8 text \(byte 0xe9 at offset 12\)"):
        load_study(latin)
    broken = tmp_path / "broken.toml"
    broken.write_text('title = "t\nkind = 3')
    with pytest.raises(SeprobeError, match=r"broken.toml: TOML: .*valid: a TOML document"):
        load_study(broken)
    with pytest.raises(SeprobeError, match="is a folder"):
        load_study(tmp_path)


def test_a_correct_study_still_loads(tmp_path):
    path = write_study(tmp_path, defaults="bias = false\nstages = [2, 3]", top='[timing]\nbatch_size = 8')
    study = load_study(path)
    assert study.variants[0].knobs == {"bias": False, "stages": [2, 3]} and study.timing == {"batch_size": 8}


def test_two_studies_with_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_study(tmp_path / "a", name="x"), write_study(tmp_path / "b", name="x")
    check_unique_names([load_study(one), load_study(write_study(tmp_path, name="y"))])
    with pytest.raises(SeprobeError, match=r"two studies named 'x': .*a/x.toml and .*b/x.toml"):
        check_unique_names([load_study(one), load_study(two)])
