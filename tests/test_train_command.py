"""``seprobe train`` / ``seprobe.train``: the command over the training engine (tests/test_training.py tests the
engine itself). Each check is computed independently of what is checked: the weights a run writes, evaluated by
``seprobe.evaluate`` on the validation folder, give the accuracy the run recorded; a head sized from the data's
class folders; refusals before any work leave the folders as they were."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import seprobe
from seprobe import SeprobeError
from seprobe.models.ablated import export_ablated
from seprobe.models.blocks import find_blocks

from .children import seprobe_child
from .helpers import env_without_defaults, run_seprobe, run_seprobe_many

CLASSES = ("cat", "dog", "frog")


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory) -> Path:
    """DIR/train (6 per class) and DIR/test (4 per class), 32 x 32 images, three classes."""
    root = tmp_path_factory.mktemp("cifar-like")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{k}.png")
    return root


RECIPE = {"epochs": 1, "batch_size": 6, "lr": 0.02}


def test_the_weights_written_are_evaluated_at_the_accuracy_recorded(cifar_like, tmp_path):
    done = seprobe.train("resnet20_cifar", cifar_like, tmp_path / "run", recipe=RECIPE, progress=False)
    assert done.head is None  # a CIFAR network built for the data's three classes
    assert len(done.run.history) == 1 and {p.name for p in done.written} >= {"final.pth", "history.csv",
                                                                             "summary.md", "curves.png"}
    evaluation = seprobe.evaluate("resnet20_cifar", tmp_path / "run" / "final.pth", cifar_like / "test",
                                  progress=False, num_classes=3)
    assert evaluation.images == 12
    assert evaluation.top1 == pytest.approx(done.run.final["val_top1"], abs=1e-12)
    assert evaluation.top5 == pytest.approx(done.run.final["val_top5"], abs=1e-12)


def test_an_imagenet_network_gets_a_head_for_the_data(cifar_like, tmp_path):
    torch.manual_seed(0)
    torch.save(seprobe.build_model("se_resnet18").state_dict(), tmp_path / "imagenet.pth")
    done = seprobe.train("se_resnet18", cifar_like, tmp_path / "run", weights=tmp_path / "imagenet.pth",
                         recipe={**RECIPE, "lr": 1e-9}, progress=False)
    assert done.head is not None and "new 3-way head at fc" in done.head and "1000 outputs" in done.head
    final = torch.load(tmp_path / "run" / "final.pth", weights_only=True)
    assert final["fc.weight"].shape == (3, 512)
    kept = torch.load(tmp_path / "imagenet.pth", weights_only=True)
    # the body is the checkpoint's: six steps at lr 1e-9 move no weight by 1e-6 (gradients and weights are O(1))
    for key in ("conv1.weight", "layer4.1.se.fc2.weight"):
        assert (final[key] - kept[key]).abs().max() < 1e-6


def test_random_weights_are_built_with_the_data_classes_from_the_seed(cifar_like, tmp_path):
    a = seprobe.train("se_resnet18", cifar_like, tmp_path / "a", recipe={**RECIPE, "epochs": 1, "lr": 1e-9},
                      progress=False)
    assert a.head is None
    torch.manual_seed(0)
    reference = seprobe.build_model("se_resnet18", num_classes=3).state_dict()  # seed 0: the recipe's
    final = torch.load(tmp_path / "a" / "final.pth", weights_only=True)
    assert final["fc.weight"].shape == (3, 512)
    assert (final["fc.weight"] - reference["fc.weight"]).abs().max() < 1e-6  # lr 1e-9: the initial weights


def test_a_torchvision_network_trains_with_a_new_head_and_its_weights_load_back(cifar_like, tmp_path):
    done = seprobe.train("torchvision:resnet18", cifar_like, tmp_path / "run", recipe=RECIPE, progress=False)
    assert done.head == "a new 3-way head at fc (the network had 1000 outputs)"
    final = torch.load(tmp_path / "run" / "final.pth", weights_only=True)
    assert final["fc.weight"].shape == (3, 512)
    import torchvision

    model = torchvision.models.resnet18(num_classes=3)
    model.load_state_dict(final)  # the torchvision layout itself, strict


def test_an_exported_ablated_network_can_be_fine_tuned_and_the_result_loads_like_the_export(cifar_like, tmp_path):
    """final.pth of a run started from an export keeps the export's record (a plain state dict would fit no
    architecture seprobe builds): it loads as the export does and scores the accuracy the run recorded, also
    when training gave it a new head (10 outputs -> the data's 3)."""
    for classes in (3, 10):
        torch.manual_seed(0)
        model = seprobe.build_model("se_resnet20_cifar", num_classes=classes).eval()
        start, out = tmp_path / f"ablated{classes}.pth", tmp_path / f"run{classes}"
        export_ablated(model, find_blocks(model), {"SE_3_3": "identity"}, None, start, model_name="se_resnet20_cifar",
                       knobs={"num_classes": classes})
        done = seprobe.train("se_resnet20_cifar", cifar_like, out, weights=start, recipe=RECIPE, progress=False)
        assert (done.head is None) == (classes == 3)
        final = torch.load(out / "final.pth", weights_only=True)
        weights = final["state_dict"]
        assert final["format"] == "seprobe-ablated/1" and final.get("num_classes") == (None if classes == 3 else 3)
        assert not any(k.startswith("layer3.2.se.") for k in weights) and any(k.startswith("layer3.1.se.")
                                                                               for k in weights)
        assert weights["fc.weight"].shape == (3, 64)
        evaluation = seprobe.evaluate("se_resnet20_cifar", out / "final.pth", cifar_like / "test", progress=False)
        assert evaluation.images == 12
        assert evaluation.top1 == pytest.approx(done.run.final["val_top1"], abs=1e-12)
        # the run's checkpoint.pth is the same network: it evaluates as final.pth and starts another run
        again = seprobe.evaluate("se_resnet20_cifar", out / "checkpoint.pth", cifar_like / "test", progress=False)
        assert again.top1 == evaluation.top1 and again.top5 == evaluation.top5
        more = seprobe.train("se_resnet20_cifar", cifar_like, tmp_path / f"more{classes}",
                             recipe={**RECIPE, "lr": 1e-9}, weights=out / "checkpoint.pth", progress=False)
        assert more.head is None
        kept = torch.load(tmp_path / f"more{classes}" / "final.pth", weights_only=True)["state_dict"]
        assert kept.keys() == weights.keys() and (kept["fc.weight"] - weights["fc.weight"]).abs().max() < 1e-6


def test_a_checkpoint_of_an_earlier_run_is_a_starting_point(cifar_like, tmp_path):
    seprobe.train("resnet20_cifar", cifar_like, tmp_path / "first", recipe=RECIPE, progress=False)
    again = seprobe.train("resnet20_cifar", cifar_like, tmp_path / "second", recipe={**RECIPE, "lr": 1e-9},
                          weights=tmp_path / "first" / "checkpoint.pth", progress=False, num_classes=3)
    assert again.head is None
    first = torch.load(tmp_path / "first" / "final.pth", weights_only=True)
    second = torch.load(tmp_path / "second" / "final.pth", weights_only=True)
    # the second run starts from the first's weights: at lr 1e-9 no weight moves by 1e-6 (BatchNorm's running
    # statistics move whatever the learning rate)
    weights = [k for k in first if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert weights and all((second[k] - first[k]).abs().max() < 1e-6 for k in weights)


@pytest.mark.parametrize("recipe,argument", [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"),
                                             ({"bogus": 1}, "recipe"), ({"seed": -1}, "seed")])
def test_bad_recipes_are_refused_before_any_work(cifar_like, tmp_path, recipe, argument):
    with pytest.raises(SeprobeError) as e:
        seprobe.train("resnet20_cifar", cifar_like, tmp_path / "run", recipe=recipe, progress=False)
    assert argument in str(e.value) and e.value.argument == argument
    assert not (tmp_path / "run").exists()


def test_a_new_run_into_a_non_empty_folder_is_refused(cifar_like, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(SeprobeError, match="is not empty"):
        seprobe.train("resnet20_cifar", cifar_like, tmp_path / "run", recipe=RECIPE, progress=False)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


def test_every_refusal_comes_before_the_images_are_decoded(cifar_like, tmp_path, monkeypatch):
    """Decoding is the long part of a start (about 16 s for CIFAR-10): what would refuse the run is checked first."""
    seprobe.train("resnet20_cifar", cifar_like, tmp_path / "done", recipe=RECIPE, progress=False)
    seprobe.train("se_resnet20_cifar", cifar_like, tmp_path / "se", recipe=RECIPE, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before refusing")

    monkeypatch.setattr("seprobe.training.data.decode_all", no_decoding)
    cases = [("full", {}, False, "is not empty"),
             ("empty", {}, True, "does not exist"),
             ("done", {"lr": 0.03}, True, "cannot resume: recipe.lr is 0.03 but the run was started with 0.02"),
             ("done", {"seed": 1}, True, "recipe.seed is 1"),
             ("new", {"batch_size": 19}, False, "invalid batch_size 19 for 18 training images"),
             ("new", {"sync_bn": True}, False, "sync_bn on device 'cpu'")]
    for out, change, resume, needle in cases:
        with pytest.raises(SeprobeError) as e:
            seprobe.train("resnet20_cifar", cifar_like, tmp_path / out, recipe={**RECIPE, **change}, resume=resume,
                          progress=False)
        assert needle in str(e.value), (out, change, str(e.value))
    with pytest.raises(SeprobeError, match="reduction is 8 but the run was started without it"):
        seprobe.train("se_resnet20_cifar", cifar_like, tmp_path / "se", recipe=RECIPE, resume=True, progress=False,
                      reduction=8)
    assert not (tmp_path / "new").exists() and [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


#: options of ``seprobe train`` refused in one line, and a word of it
BAD_OPTIONS = [
    (["--out", "a", "--resume", "b"], "one of --out DIR"),
    (["--out", "a", "--epochs", "0"], "invalid --epochs 0"),
    (["--out", "a", "--lr", "nan"], "invalid --lr nan"),
    (["--out", "a", "--schedule", "linear"], "'linear' is not one of"),
    (["--out", "a", "--train-data", "."], "one of --data DIR"),
    (["--out", "a", "--weights", "nowhere.pth"], "no such file"),
]


@pytest.mark.slow
def test_bad_options_are_one_line(cifar_like, tmp_path):
    folders = [tmp_path / str(i) for i in range(len(BAD_OPTIONS))]
    for folder in folders:
        folder.mkdir()
    runs = run_seprobe_many([(["train", "--model", "resnet20_cifar", "--data", cifar_like, *args], folder)
                             for (args, _), folder in zip(BAD_OPTIONS, folders, strict=True)])
    for proc, (args, needle), folder in zip(runs, BAD_OPTIONS, folders, strict=True):
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, (args, proc.stderr)
        assert not (folder / "a").exists()


@pytest.mark.slow
def test_the_command_trains_and_resumes_as_the_function(cifar_like, tmp_path):
    common = ["train", "--model", "resnet20_cifar", "--data", cifar_like, "--epochs", "2", "--batch-size", "6",
              "--lr", "0.02", "--num-workers", "0"]
    one_thread = env_without_defaults(OMP_NUM_THREADS="1")  # as this process (tests/conftest.py): the same kernels
    proc = run_seprobe(*common, "--out", "run", "--format", "json", cwd=tmp_path, env=one_thread)
    assert proc.returncode == 0, proc.stderr
    # stdout is the result alone (the epoch lines are progress, on stderr): it parses, as the history file
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    printed = pd.DataFrame(json.loads(proc.stdout)["tables"]["history"])
    assert printed["val_top1"].tolist() == pytest.approx(history["val_top1"].tolist(), abs=1e-9)
    assert "val top-1" in proc.stderr and "wrote" in proc.stderr
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "run").iterdir()}
    again = run_seprobe(*common, "--resume", "run", cwd=tmp_path)  # finished: reported as such, left as it is
    assert again.returncode == 0, again.stderr
    assert "had finished all its epochs; nothing was trained or written" in again.stderr and "wrote" not in again.stderr
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "run").iterdir()} == before
    assert "val top-1" in again.stdout
    other = run_seprobe(*common[:-4], "--lr", "0.03", "--resume", "run", cwd=tmp_path)
    assert other.returncode == 2 and "cannot resume: recipe.lr is 0.03" in other.stderr, other.stderr
    done = seprobe.train("resnet20_cifar", cifar_like, tmp_path / "api", recipe={"epochs": 2, "batch_size": 6,
                                                                                 "lr": 0.02}, progress=False)
    command = torch.load(tmp_path / "run" / "final.pth", weights_only=True)
    function = torch.load(tmp_path / "api" / "final.pth", weights_only=True)
    assert all(torch.equal(command[k], function[k]) for k in function)
    assert done.run.final["val_top1"] == pytest.approx(float(history["val_top1"].iloc[-1]), abs=1e-12)
    # seprobe evaluate on the weights the command wrote: the run's own validation figures, as the function gives
    scored = run_seprobe("evaluate", "--model", "resnet20_cifar", "--weights", "run/final.pth", "--data",
                         cifar_like / "test", "--num-classes", "3", "--format", "json", cwd=tmp_path, env=one_thread)
    assert scored.returncode == 0, scored.stderr
    row = json.loads(scored.stdout)["tables"]["evaluation"][0]
    evaluation = seprobe.evaluate("resnet20_cifar", tmp_path / "run" / "final.pth", cifar_like / "test",
                                  progress=False, num_classes=3)
    assert (row["top1"], row["top5"], row["images"]) == (evaluation.top1, evaluation.top5, evaluation.images)
    assert row["top1"] == pytest.approx(float(history["val_top1"].iloc[-1]), abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_command_stopped_by_a_signal_checkpoints_exits_130_and_resumes(cifar_like, tmp_path, sig):
    """The signal lands after the first epoch's line (11 epochs of 3 steps remain): a checkpoint of the current
    step is written, the command says so in one line and exits 130, and ``--resume`` finishes the run."""
    common = ["train", "--model", "resnet20_cifar", "--data", cifar_like, "--epochs", "12", "--batch-size", "6",
              "--lr", "0.02", "--num-workers", "0"]
    with seprobe_child(*common, "--out", "run", cwd=tmp_path, env=env_without_defaults()) as child:
        assert child.wait_for("epoch 1/12: train loss"), "no epoch line"
        child.send_signal(sig)
        code, out, err = child.finish()
    assert code == 130 and "seprobe: interrupted" in err and "Traceback" not in err, err
    saved = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert 1 <= saved["epoch"] < 12 and not (tmp_path / "run" / "final.pth").exists()
    done = run_seprobe(*common, "--resume", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 12


# --- resuming from the run's record; a full disk --------------------------------------------------------------------

TWO_EPOCHS = {**RECIPE, "epochs": 2}


def _stopped_run(data, out, monkeypatch) -> Path:
    """A two-epoch run stopped as on Ctrl-C once its first epoch is written (its checkpoint holds epoch 1)."""
    from seprobe.training import loop

    end = loop._Run.end_epoch

    def end_then_stop(run):
        row = end(run)
        if run.epoch == 1:
            signal.raise_signal(signal.SIGINT)
        return row

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(loop._Run, "end_epoch", end_then_stop)
        seprobe.train("resnet20_cifar", data, out, recipe=TWO_EPOCHS, progress=False)
    assert torch.load(Path(out) / "checkpoint.pth", weights_only=True)["epoch"] == 1
    return Path(out)


def _assert_same_final(a: Path, b: Path) -> None:
    one, two = (torch.load(p / "final.pth", weights_only=True) for p in (a, b))
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def test_a_run_resumes_from_its_record_alone_in_another_working_folder(cifar_like, tmp_path, monkeypatch):
    """``seprobe.train(out=DIR, resume=True)``: the model, data and recipe are the record's; the data was named
    relative to another working folder (kept as an absolute path). The run ends bitwise as an uninterrupted one."""
    seprobe.train("resnet20_cifar", cifar_like, tmp_path / "whole", recipe=TWO_EPOCHS, progress=False)
    shutil.copytree(cifar_like, tmp_path / "a" / "data")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _stopped_run("data", "../run", monkeypatch)
    monkeypatch.chdir(tmp_path / "b")  # "data" names nothing here
    done = seprobe.train(out=tmp_path / "run", resume=True, progress=False)
    assert done.model == "resnet20_cifar" and list(done.run.history["epoch"]) == [1, 2]
    _assert_same_final(tmp_path / "run", tmp_path / "whole")
    whole = pd.read_csv(tmp_path / "whole" / "history.csv").drop(columns=["seconds", "images_per_s"])
    pd.testing.assert_frame_equal(done.run.history.drop(columns=["seconds", "images_per_s"]), whole,
                                  check_dtype=False)


def test_options_given_beside_a_resume_must_be_the_records(cifar_like, tmp_path, monkeypatch):
    """Each option given with resume is compared with the run's record, the refusal naming it, before any
    image is decoded; those the studies give (every one, as the run started) are accepted."""
    out = _stopped_run(cifar_like, tmp_path / "run", monkeypatch)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    torch.save({}, tmp_path / "other.pth")
    monkeypatch.setattr("seprobe.training.data.decode_all", lambda *a, **k: pytest.fail("decoded before refusing"))
    cases = [({"model": "se_resnet20_cifar"}, "meta.model is 'se_resnet20_cifar' but the run was started with "
                                              "'resnet20_cifar'"),
             ({"recipe": {"lr": 0.5}}, "recipe.lr is 0.5 but the run was started with 0.02"),
             ({"recipe": {"epochs": 3}}, "recipe.epochs is 3 but the run was started with 2"),
             ({"samples_per_class": 2}, "data.samples_per_class is 2 but the run was started with None"),
             ({"val_samples_per_class": 1}, "data.val_samples_per_class is 1 but the run was started with None"),
             ({"upscale": True}, "data.upscale is True but the run was started with False"),
             ({"num_classes": 10}, "num_classes 10 does not fit the data's 3 classes")]
    for given, needle in cases:
        with pytest.raises(SeprobeError) as e:
            seprobe.train(out=out, resume=True, progress=False, **given)
        assert needle in str(e.value) and "\n" not in str(e.value), (given, str(e.value))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    done = seprobe.train("resnet20_cifar", cifar_like, out, weights="random", recipe=TWO_EPOCHS, resume=True,
                         samples_per_class=None, upscale=False, progress=False)
    assert list(done.run.history["epoch"]) == [1, 2]


def test_a_resume_needs_what_a_new_run_needs_when_the_record_lacks_it(cifar_like, tmp_path, monkeypatch):
    """A run started by the training engine with its own meta (or by an earlier seprobe) does not record its
    model: a resume without one says which option to give; a new run without a model or data is refused too."""
    out = _stopped_run(cifar_like, tmp_path / "run", monkeypatch)
    state = torch.load(out / "checkpoint.pth", weights_only=True)
    del state["record"]["meta"]["model"], state["record"]["info"]
    torch.save(state, out / "checkpoint.pth")
    with pytest.raises(SeprobeError) as e:
        seprobe.train(out=out, resume=True, progress=False)
    assert str(e.value) == (f"the run in {str(out)!r} does not record its model; valid: give model as the run was "
                            "started with") and e.value.argument == "model"
    with pytest.raises(SeprobeError) as e:
        seprobe.train("resnet20_cifar", out=out, resume=True, progress=False)
    assert "does not record its data" in str(e.value) and e.value.argument == "data"
    for given, argument in (({"data": cifar_like}, "model"), ({"model": "resnet20_cifar"}, "data"), ({}, "model")):
        with pytest.raises(SeprobeError) as e:
            seprobe.train(out=tmp_path / "new", progress=False, **given)
        assert str(e.value).startswith(f"{argument} is not given; valid: ") and e.value.argument == argument
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_the_command_resumes_from_the_run_folder_alone(cifar_like, tmp_path, monkeypatch):
    """``seprobe train --resume DIR``, no other option, from another working folder: the run ends bitwise as the
    uninterrupted one (one thread, as this process: the same kernels). An option beside it is compared with the
    record; a resume folder that is a file is refused in words of the run folder, not of --out."""
    seprobe.train("resnet20_cifar", cifar_like, tmp_path / "whole", recipe=TWO_EPOCHS, progress=False)
    shutil.copytree(cifar_like, tmp_path / "a" / "data")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _stopped_run("data", "../run", monkeypatch)
    one_thread = env_without_defaults(OMP_NUM_THREADS="1")
    other = run_seprobe("train", "--resume", tmp_path / "run", "--lr", "0.5", cwd=tmp_path / "b", env=one_thread)
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "cannot resume: recipe.lr is 0.5 but the run was started with 0.02" in other.stderr
    done = run_seprobe("train", "--resume", tmp_path / "run", cwd=tmp_path / "b", env=one_thread)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "resnet20_cifar" in done.stdout
    _assert_same_final(tmp_path / "run", tmp_path / "whole")
    (tmp_path / "b" / "run.txt").write_text("mine")
    proc = run_seprobe("train", "--resume", "run.txt", cwd=tmp_path / "b")
    assert proc.returncode == 2 and proc.stderr == ("seprobe: error: cannot resume in 'run.txt': it is a file; valid: "
                                                    "the folder of a run started by seprobe's training (it holds "
                                                    "checkpoint.pth)\n")


def _file_size_limit(limit: int):
    """For a child's preexec_fn: files it writes may not grow past ``limit`` bytes (writes beyond fail with
    EFBIG: CPython ignores SIGXFSZ), as on a full disk."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_loses_nothing(cifar_like, tmp_path, monkeypatch):
    """Each child may write files of half a checkpoint at most: the checkpoint of a resumed run's next epoch
    and a new run's first fail (torch's zip writer, EFBIG). One line says so and whether an earlier checkpoint
    is intact; it is, byte for byte, no temporary file is left, and the run resumes once there is room."""
    out = _stopped_run(cifar_like, tmp_path / "run", monkeypatch)
    kept = (out / "checkpoint.pth").read_bytes()
    limit, one_thread = _file_size_limit(len(kept) // 2), env_without_defaults(OMP_NUM_THREADS="1")
    common = ["--epochs", "2", "--batch-size", "6", "--lr", "0.02"]
    resumed = run_seprobe("train", "--resume", out, cwd=tmp_path, env=one_thread, preexec_fn=limit)
    fresh = run_seprobe("train", "--model", "resnet20_cifar", "--data", cifar_like, *common, "--out", tmp_path / "new",
                        cwd=tmp_path, env=one_thread, preexec_fn=limit)
    for proc, where, said in ((resumed, out, "the previous checkpoint.pth is intact: resume once there is room"),
                              (fresh, tmp_path / "new", "no checkpoint.pth was written before this one")):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        error = proc.stderr.rstrip("\n").split("\n")[-1]  # after the progress bars
        assert error.startswith(f"seprobe: error: cannot write checkpoint {str(where / 'checkpoint.pth')!r}: ")
        assert error.endswith(said) and proc.stderr.count("seprobe: error") == 1, proc.stderr
        assert not any(p.name.endswith(".tmp") for p in where.iterdir())
    assert (out / "checkpoint.pth").read_bytes() == kept and not (tmp_path / "new" / "checkpoint.pth").exists()
    done = seprobe.train(out=out, resume=True, progress=False)
    assert list(done.run.history["epoch"]) == [1, 2]
