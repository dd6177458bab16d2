"""The Python API as a hostile caller meets it: an argument of the wrong type (a dict for a Loader, a number for
a path, a string for a bool) is a SeprobeError naming the argument, raised before a network is built, an image
read or a file written; never a TypeError or AttributeError from deep inside, and never silently coerced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

import seprobe
from seprobe import SeprobeError
from seprobe.pruning.plan import PrunePlan

GOLDFISH, PUG = "n01443537", "n02110958"


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for wnid in (GOLDFISH, PUG):
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * i, 90, 10)).save(folder / f"{wnid}_{i}.png")
    return folder


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Any network built or image list read means the refusal came too late."""
    import seprobe.data.images as images
    import seprobe.models.factory as factory

    def late(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(factory, "get_network", late)
    monkeypatch.setattr(images, "discover", late)


#: (argument, wrong value, what the message must say is valid)
WRONG = [("out", 123, "a folder path (str or os.PathLike)"), ("out", "", "out is empty"),
         ("data", None, "a folder of images (str or os.PathLike)"), ("labels", 5, "a label file"),
         ("loader", {"batch_size": 2}, "a Loader or None"), ("overrides", {}, "an Overrides or None"),
         ("progress", "no", "True or False"), ("progress", 1, "True or False")]

CALLS = {
    "evaluate": (seprobe.evaluate, {}),
    "activations": (seprobe.activations, {"classes": ["goldfish", "pug"]}),
    "ablate": (seprobe.ablate, {}),
    "prune": (seprobe.prune, {"plan": PrunePlan(criterion="l1", keep_macs=0.5)}),
}


def _call(name, data, tmp_path, argument, value):
    fn, extra = CALLS[name]
    kwargs = {"model": "se_resnet18", "weights": "random", "data": data, **extra, argument: value}
    if name in ("activations", "ablate", "prune") and argument != "out":
        kwargs["out"] = tmp_path / "out"
    with pytest.raises(SeprobeError) as e:
        fn(**kwargs)
    assert not (tmp_path / "out").exists()
    return e.value


#: every call with every wrong argument it takes (evaluate writes no files: it has no ``out``)
CASES = [(n, a, v, ok) for n in sorted(CALLS) for a, v, ok in WRONG if not (n == "evaluate" and a == "out")]


@pytest.mark.parametrize("name,argument,value,valid", CASES, ids=[f"{n}-{a}={v!r}" for n, a, v, _ in CASES])
def test_a_wrong_type_names_the_argument_before_any_work(name, data, tmp_path, argument, value, valid):
    error = _call(name, data, tmp_path, argument, value)
    assert error.argument == argument and valid in str(error) and argument in str(error), str(error)


@pytest.mark.parametrize("name", ["ablate", "prune"])
def test_a_calibration_that_is_not_a_calibration_source(name, data, tmp_path):
    error = _call(name, data, tmp_path, "calibration", {"calibration_per_class": 1})
    assert error.argument == "calibration" and "valid: a CalibrationSource or None" in str(error)


def test_ablate_plan_and_export_types(data, tmp_path):
    assert _call("ablate", data, tmp_path, "plan", "identity").argument == "plan"
    assert _call("ablate", data, tmp_path, "export", 7).argument == "export"


def test_complexity_types():
    for models, argument in ((123, "models"), (None, "models"), ({"resnet18"}, "models")):
        with pytest.raises(SeprobeError) as e:
            seprobe.complexity(models)
        assert e.value.argument == argument and "valid: a model name, a ModelSource, or a list" in str(e.value)
    with pytest.raises(SeprobeError) as e:
        seprobe.complexity("resnet18", weights=5)
    assert e.value.argument == "weights" and "invalid weights 5 (int)" in str(e.value)
    for kwargs, argument in (({"per_block": "yes"}, "per_block"), ({"convention": {}}, "convention"),
                             ({"time": True}, "time"), ({"progress": False}, "progress")):
        with pytest.raises(SeprobeError) as e:
            seprobe.complexity("resnet18", **kwargs)
        assert e.value.argument == argument, kwargs


def test_train_types(data, tmp_path):
    for kwargs, argument in (({"progress": "yes"}, "progress"), ({"upscale": 1}, "upscale")):
        with pytest.raises(SeprobeError) as e:
            seprobe.train("resnet20_cifar", data, tmp_path / "run", **kwargs)
        assert e.value.argument == argument, kwargs
    assert not (tmp_path / "run").exists()


def test_a_path_like_is_a_path(data, tmp_path):
    """An ``os.PathLike`` other than Path is accepted where a path is (the check is the protocol, not the class)."""

    class Where(os.PathLike):
        def __fspath__(self):
            return str(data)

    with pytest.raises(AssertionError, match="work started"):  # past every check, into the listing
        seprobe.evaluate("se_resnet18", "random", Where())


def test_every_registered_model_checks_its_architecture_knobs():
    """``num_classes`` 0 or -1 is refused by every model that takes it (the ImageNet ResNets built a head of
    -1 outputs, a raw RuntimeError, or of none), as ArchConfig declares it."""
    from seprobe.models.registry import get_spec, list_models

    takes = [n for n in list_models() if "num_classes" in get_spec(n).knobs]
    assert {"resnet18", "se_resnet50", "resnet20_cifar", "se_resnext50_32x4d"} <= set(takes)
    for name in takes:
        for bad in (0, -1, True, 2.0):
            with pytest.raises(SeprobeError) as e:
                seprobe.complexity(name, num_classes=bad)
            assert e.value.argument == "num_classes" and "valid: an integer >= 1" in str(e.value), (name, bad)
