"""The training engine: recipe checks, the learning-rate curve, the in-memory augmentation, the step against a
hand-written PyTorch loop, bitwise resume after SIGKILL, two ranks against one, and every refusal.

Run as a script, this file is the worker of the subprocess tests: ``python tests/test_training.py MODE ...``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from seprobe.distributed import World, distributed_session
from seprobe.errors import SeprobeError
from seprobe.training import Recipe, TrainData, default_recipe, learning_rate, list_data, load_data, train
from seprobe.training.augment import crop_params, pad_crop_flip
from seprobe.training.loop import TIMING
from seprobe.training.steps import Stepper, param_groups
from tests.helpers import write_class_folders  # absolute: this file also runs as a script (the workers)

ROOT = Path(__file__).resolve().parents[1]
SIDE, TRAIN_PER_CLASS, VAL_PER_CLASS = 12, 16, 5


def tiny_net(batchnorm: bool = True, classes: int = 2) -> nn.Module:
    """A few hundred parameters: conv (+ BN) + ReLU + pool + linear; seeded, so every process builds the same."""
    torch.manual_seed(0)
    norm = [nn.BatchNorm2d(6)] if batchnorm else []
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), *norm, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, classes))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """DIR/train and DIR/test with two classes of random 12 x 12 images."""
    root = tmp_path_factory.mktemp("train-data")
    write_class_folders(root / "train", {"cat": TRAIN_PER_CLASS, "dog": TRAIN_PER_CLASS}, SIDE)
    write_class_folders(root / "test", {"cat": VAL_PER_CLASS, "dog": VAL_PER_CLASS}, SIDE, seed=1)
    return root


def small(**changes) -> Recipe:
    return Recipe(**{"epochs": 2, "batch_size": 8, "lr": 0.05, **changes})


def final_weights(out: Path) -> dict:
    return torch.load(out / "final.pth", weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- the recipe ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "invalid epochs 0; valid: an integer >= 1"),
    ("batch_size", 0, "invalid batch_size 0; valid: an integer >= 1"),
    ("batch_size", 2.5, "invalid batch_size 2.5"),
    ("lr", 0, "invalid lr 0; valid: a finite number > 0"),
    ("lr", math.inf, "invalid lr inf"),
    ("momentum", 1.0, "invalid momentum 1.0; valid: a finite number >= 0 and < 1"),
    ("weight_decay", -1e-4, "invalid weight_decay -0.0001"),
    ("schedule", "poly", "unknown schedule 'poly'; valid: 'step', 'cosine', 'onecycle'"),
    ("dtype", "float64", "unknown dtype 'float64'"),
    ("label_smoothing", 1.0, "invalid label_smoothing 1.0"),
    ("warmup_epochs", 200, "invalid warmup_epochs 200; valid: fewer than epochs"),
    ("milestones", (0.75, 0.5), "invalid milestones (0.75, 0.5); valid: increasing fractions"),
    ("milestones", (1.5,), "invalid milestone 1.5"),
    ("checkpoint_every", 0, "invalid checkpoint_every 0"),
    ("seed", -1, "invalid seed -1"),
    ("seed", 2**44, "invalid seed 17592186044416; valid: an integer >= 0 and <= 4294967295"),
    ("lr", 1e40, "invalid lr 1e+40; valid: a finite number > 0 and < 3.4028234663852886e+38"),
    ("compile", "yes", "invalid compile 'yes'; valid: True or False"),
])
def test_every_bad_recipe_value_is_one_line_naming_the_argument(field, value, message):
    with pytest.raises(SeprobeError) as e:
        Recipe(**{field: value})
    assert message in str(e.value) and "\n" not in str(e.value) and "--" not in str(e.value)


def test_onecycle_refuses_a_warmup_of_its_own():
    with pytest.raises(SeprobeError, match="warmup_epochs 1 with schedule 'onecycle'"):
        Recipe(schedule="onecycle", warmup_epochs=1)


def test_default_recipes_are_the_published_ones():
    cifar = default_recipe(32)
    assert (cifar.epochs, cifar.batch_size, cifar.lr, cifar.momentum, cifar.weight_decay, cifar.schedule,
            cifar.milestones) == (164, 128, 0.1, 0.9, 1e-4, "step", (0.5, 0.75))
    # 64k iterations at 391 steps per epoch (50,000 / 128, the last batch dropped): milestones near 32k and 48k
    assert round(0.5 * 164 * 390) == 31980 and round(0.75 * 164 * 390) == 47970
    imagenet = default_recipe(224, batch_size=512)
    assert (imagenet.epochs, imagenet.batch_size, imagenet.lr) == (90, 512, 0.2)
    assert [round(m * 90) for m in imagenet.milestones] == [30, 60]
    assert default_recipe(32, epochs=3).epochs == 3


# --- the learning rate -------------------------------------------------------------------------------------------

def _torch_curve(recipe: Recipe, total: int, make) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler = make(opt)
    curve = []
    for _ in range(total):
        curve.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return curve


def test_learning_rate_is_the_closed_form_at_every_step():
    spe = 7
    step = Recipe(epochs=8, lr=0.1, milestones=(0.5, 0.75))
    total = 8 * spe
    expected = _torch_curve(step, total, lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [28, 42], 0.1))
    np.testing.assert_allclose([learning_rate(step, s, spe) for s in range(total)], expected, rtol=1e-12)
    one = Recipe(epochs=8, lr=0.4, schedule="onecycle")
    expected = _torch_curve(one, total, lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.4, total_steps=total, cycle_momentum=False))
    np.testing.assert_allclose([learning_rate(one, s, spe) for s in range(total)], expected, rtol=1e-12)
    cosine = Recipe(epochs=8, lr=0.2, schedule="cosine", warmup_epochs=2)   # 14 warm-up steps
    assert learning_rate(cosine, 0, spe) == pytest.approx(0.2 / 14)
    assert learning_rate(cosine, 6, spe) == pytest.approx(0.2 * 7 / 14)
    assert learning_rate(cosine, 14, spe) == pytest.approx(0.2)
    assert learning_rate(cosine, 14 + 21, spe) == pytest.approx(0.1)      # half-way through the 42 cosine steps
    assert learning_rate(cosine, total - 1, spe) == pytest.approx(0.1 * (1 + math.cos(math.pi * 41 / 42)))
    warm_step = Recipe(epochs=8, lr=0.1, warmup_epochs=1, milestones=(0.5,))
    assert [learning_rate(warm_step, s, spe) for s in (0, 6, 7, 27, 28)] == pytest.approx(
        [0.1 / 7, 0.1, 0.1, 0.1, 0.01])


# --- parameter groups, gradients, the step --------------------------------------------------------------------------

def test_no_decay_group_holds_exactly_the_batchnorm_and_bias_parameters():
    from seprobe.models.registry import build_model

    model = build_model("se_resnet18", num_classes=10)
    decayed, exempt = param_groups(model, 1e-4, True)
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (1e-4, 0.0)
    expected = {n for n, _ in model.named_parameters() if n.endswith(".bias")} | {
        f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, nn.BatchNorm2d) for p in ("weight", "bias")}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in exempt["params"]} == expected
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(model.parameters()))
    assert any(".se." in n or "se" in n.split(".") for n in expected)  # the SE convolutions' biases are exempt
    assert len(param_groups(model, 1e-4, False)) == 1


def test_se_parameters_receive_gradients():
    from seprobe.models.registry import build_model
    from seprobe.models.se_block import SqueezeExcite

    model = build_model("se_resnet18", num_classes=10)
    stepper = Stepper(model, model, Recipe(), torch.device("cpu"))
    stepper.step(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]), 0.1)
    se = [(n, p) for m in model.modules() if isinstance(m, SqueezeExcite) for n, p in m.named_parameters()]
    assert len(se) == 8 * 4
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in se)


def test_a_few_steps_lower_the_loss_of_a_fixed_batch():
    model = tiny_net(classes=4)
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 4
    stepper = Stepper(model, model, Recipe(lr=0.1, weight_decay=0.0), torch.device("cpu"))
    losses = [float(stepper.step(x, y, 0.1)[0]) for _ in range(15)]
    assert losses[-1] < 0.8 * losses[0]


def test_a_few_steps_lower_the_loss_of_a_real_cifar_batch_for_se_resnet20(tmp_path):
    """SE-ResNet-20 on 8 airplanes and 8 automobiles of the shared CIFAR-10: memorising one batch lowers its loss
    (ten steps at lr 0.05 from ln 2 = 0.69 at initialisation, near chance, to below half of it)."""
    from seprobe.models.registry import build_model

    data = load_data(TrainData(_cifar_subset(tmp_path), samples_per_class=8, val_samples_per_class=1))
    x = (data.train.images.float() / 255 - torch.tensor(data.mean)[:, None, None]) / torch.tensor(data.std)[:, None,
                                                                                                             None]
    torch.manual_seed(0)
    model = build_model("se_resnet20_cifar", num_classes=2)
    stepper = Stepper(model, model, Recipe(lr=0.05, weight_decay=0.0), torch.device("cpu"))
    losses = [float(stepper.step(x, data.train.labels, 0.05)[0]) for _ in range(10)]
    assert losses[0] == pytest.approx(math.log(2), abs=0.3) and losses[-1] < 0.5 * losses[0], losses


# --- the in-memory augmentation ----------------------------------------------------------------------------------

def test_crop_of_the_padded_image_and_flip_are_the_hand_computed_slices():
    images = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8)
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [4, 4], [0, 8], [8, 1]])
    flips = torch.tensor([False, True, False, True, True, False])
    cut = pad_crop_flip(images, offsets, flips, pad=4)
    for k in range(6):
        padded = torch.zeros(3, 13, 15, dtype=torch.uint8)
        padded[:, 4:9, 4:11] = images[k]
        window = padded[:, offsets[k, 0]:offsets[k, 0] + 5, offsets[k, 1]:offsets[k, 1] + 7]
        assert torch.equal(cut[k], window.flip(-1) if flips[k] else window)
    assert torch.equal(pad_crop_flip(images, torch.full((6, 2), 4), torch.zeros(6, dtype=torch.bool), 4), images)
    o, f = crop_params(torch.Generator().manual_seed(0), 1000, 4)
    assert o.min() == 0 and o.max() == 8 and 400 < int(f.sum()) < 600


# --- the engine against a hand-written loop ----------------------------------------------------------------------

def _reference_run(data: Path, recipe: Recipe, per_class: int | None = None) -> list[dict]:
    """The CIFAR recipe in plain PyTorch on the first ``per_class`` images of each class folder of
    ``data/train``: the same order, crops and flips drawn from the same seeded generator; the weights after each
    step."""
    classes = sorted(d.name for d in (data / "train").iterdir())
    files = [sorted((data / "train" / c).iterdir())[:per_class] for c in classes]
    paths = [p for part in files for p in part]
    labels = torch.tensor([k for k, part in enumerate(files) for _ in part])
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                          for p in paths])
    side = pixels.shape[-1]
    mean = (pixels.double() / 255).mean((0, 2, 3)).float()
    std = (pixels.double() / 255).std((0, 2, 3), correction=0).float()
    model = tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    steps = len(paths) // recipe.batch_size
    after = []
    for epoch in range(recipe.epochs):
        g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
        order = torch.randperm(len(paths), generator=g)
        for s in range(steps):
            offsets = torch.randint(0, 9, (recipe.batch_size, 2), generator=g)
            flips = torch.randint(0, 2, (recipe.batch_size,), generator=g)
            index = order[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            crops = []
            for k, i in enumerate(index):
                padded = F.pad(pixels[i], (4, 4, 4, 4))
                crop = padded[:, offsets[k, 0]:offsets[k, 0] + side, offsets[k, 1]:offsets[k, 1] + side]
                crops.append(crop.flip(-1) if flips[k] else crop)
            x = (torch.stack(crops).float() / 255 - mean[None, :, None, None]) / std[None, :, None, None]
            for group in opt.param_groups:
                group["lr"] = recipe.lr * (0.1 if epoch * steps + s >= recipe.epochs * steps // 2 else 1)
            loss = F.cross_entropy(model(x), labels[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
            after.append({k: v.clone() for k, v in model.state_dict().items()})
    return after


@pytest.mark.parametrize("source", ["random", "cifar10"])
def test_the_engine_trains_the_weights_of_a_hand_written_loop(source, images, tmp_path, monkeypatch):
    """Step by step: a checkpoint after every step (``checkpoint_every=1``) holds the weights the hand-written
    loop has after that step (float32 kernels of one machine in another order: rtol 1e-5), on random images
    and on the first 16 images of two classes of the shared CIFAR-10."""
    import seprobe.training.checkpoint as checkpoint

    data, per_class = (images, None) if source == "random" else (_cifar_subset(tmp_path / "cifar"), TRAIN_PER_CLASS)
    recipe = small(milestones=(0.5,), checkpoint_every=1)
    saved, save = [], checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, state: (
        saved.append({k: v.clone() for k, v in state["model"].items()}), save(path, state)))
    result = train(tiny_net(), TrainData(data, samples_per_class=per_class, val_samples_per_class=per_class),
                   recipe, tmp_path / "run", progress=False)
    reference = _reference_run(data, recipe, per_class)
    assert len(saved) == len(reference) == 8   # 2 epochs of 32 // 8 steps
    for step, (engine, expected) in enumerate(zip(saved, reference, strict=True), 1):
        assert engine.keys() == expected.keys()
        for k in engine:
            torch.testing.assert_close(engine[k], expected[k], rtol=1e-5, atol=1e-6, msg=f"step {step}: {k}")
    torch.testing.assert_close(final_weights(tmp_path / "run"), reference[-1], rtol=1e-5, atol=1e-6)
    assert len(result.history) == 2 and list(result.history["lr"]) == pytest.approx([0.05, 0.005])


# --- outputs, interruption, failures -----------------------------------------------------------------------------

def test_outputs_are_written_and_final_weights_have_the_model_own_keys(images, tmp_path):
    model = tiny_net()
    result = train(model, TrainData(images), small(), tmp_path / "run", progress=False, meta={"model": "tiny"})
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint.pth", "curves.png", "curves.svg", "final.pth", "history.csv", "summary.md"]
    assert list(final_weights(tmp_path / "run")) == list(model.state_dict())
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr", "seconds",
                                     "images_per_s"]
    assert list(history["epoch"]) == [1, 2] and (history["val_top5"] == 1.0).all()  # 2 classes: top-5 is all
    assert result.data["train_images"] == 32 and result.data["val_images"] == 10
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "tiny" in summary and f"4-pixel zero padding, a random {SIDE} x {SIDE} crop and a horizontal flip" in summary
    pixels = np.stack([np.asarray(Image.open(p)) for p in sorted((images / "train").rglob("*.png"))]) / 255
    mean, std = pixels.mean((0, 1, 2)), pixels.std((0, 1, 2))  # the training set's, as He et al. normalise
    for name, expected in (("mean", mean), ("std", std)):  # written to 4 decimals: within half a unit of the 4th
        written = json.loads(re.search(rf"^\| {name} \| (\[.*\]) \|$", summary, re.M).group(1))
        assert written == pytest.approx(expected.tolist(), abs=5e-5 + 1e-12)
    saved = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert saved["format"] == "seprobe-train/1" and saved["epoch"] == 2 and saved["record"]["meta"] == {"model": "tiny"}


class _Hook:
    """A forward hook that acts at the ``at``-th training forward pass."""

    def __init__(self, at: int, action):
        self.calls, self.at, self.action = 0, at, action

    def __call__(self, module, inputs, output):
        if module.training:
            self.calls += 1
            if self.calls == self.at:
                return self.action(output)
        return None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_checkpoints_the_step_and_the_resumed_run_is_the_uninterrupted_one(images, tmp_path, signum):
    train(tiny_net(), TrainData(images), small(), tmp_path / "whole", progress=False)
    model = tiny_net()
    model.register_forward_hook(_Hook(6, lambda out: signal.raise_signal(signum)))
    with pytest.raises(KeyboardInterrupt):
        train(model, TrainData(images), small(), tmp_path / "cut", progress=False)
    saved = torch.load(tmp_path / "cut" / "checkpoint.pth", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1, 2)   # 4 steps an epoch: the 6th is epoch 2, step 2
    resumed = train(tiny_net(), TrainData(images), small(), tmp_path / "cut", resume=True, progress=False)
    assert_same_weights(final_weights(tmp_path / "cut"), final_weights(tmp_path / "whole"))
    whole = pd.read_csv(tmp_path / "whole" / "history.csv")
    pd.testing.assert_frame_equal(resumed.history.drop(columns=TIMING), whole.drop(columns=TIMING),
                                  check_exact=True, check_dtype=False)


def test_a_non_finite_loss_stops_with_the_epoch_and_step_and_keeps_the_last_good_checkpoint(images, tmp_path):
    model = tiny_net()
    model.register_forward_hook(_Hook(7, lambda out: out * float("nan")))
    with pytest.raises(SeprobeError, match=r"non-finite training loss at epoch 2, step 3 of 4") as e:
        train(model, TrainData(images), small(checkpoint_every=1), tmp_path / "run", progress=False)
    assert "\n" not in str(e.value)
    saved = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1, 2)
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_weights_that_blow_up_after_the_last_finite_loss_are_never_written_as_good(images, tmp_path):
    """lr 1e20 over two steps: both losses are finite, but the updates drive BatchNorm's running variance to inf;
    the epoch's end must not write that as the last good state, nor final.pth, and the message must not promise
    a checkpoint there is not."""
    with pytest.raises(SeprobeError) as e:
        train(tiny_net(), TrainData(images), small(epochs=1, batch_size=TRAIN_PER_CLASS, lr=1e20),
              tmp_path / "run", progress=False)
    message = str(e.value)
    assert re.match(r"non-finite \S+ in the network at the end of epoch 1; ", message) and "\n" not in message
    assert "no checkpoint.pth was written" in message and not (tmp_path / "run" / "checkpoint.pth").exists()
    assert not (tmp_path / "run" / "final.pth").exists()


def test_a_checkpoint_is_written_only_while_every_weight_and_buffer_is_finite(images, tmp_path):
    model = tiny_net()
    model.register_forward_hook(_Hook(7, lambda out: out * float("nan")))
    with pytest.raises(SeprobeError, match="checkpoint.pth holds the last good state"):
        train(model, TrainData(images), small(checkpoint_every=1), tmp_path / "run", progress=False)
    state = tiny_net().state_dict()
    for value in [float("inf"), float("nan")]:
        state["1.running_var"] = torch.full_like(state["1.running_var"], value)
        bad = tiny_net()
        bad.load_state_dict(state)
        with pytest.raises(SeprobeError, match=r"non-finite 1.running_var in the network at epoch 1, step 1 of 4"):
            train(bad, TrainData(images), small(checkpoint_every=1), tmp_path / f"bn-{value}",
                  progress=False)
        assert not (tmp_path / f"bn-{value}" / "checkpoint.pth").exists()


def test_a_folder_a_run_holds_is_refused_to_a_second_run(images, tmp_path, monkeypatch):
    """Two runs on one --out at once: the second is refused (the first's results would be overwritten), and the
    folder a run held is free again when it ends."""
    from seprobe.io import LOCK, folder_lock

    with folder_lock(tmp_path / "run", "out"):
        with pytest.raises(SeprobeError, match=r"out '.*run' is in use by another run; valid: one run a folder"):
            train(tiny_net(), TrainData(images), small(epochs=1), tmp_path / "run", progress=False)
        assert [p.name for p in (tmp_path / "run").iterdir()] == [LOCK]
    done = train(tiny_net(), TrainData(images), small(epochs=1), tmp_path / "run", progress=False)
    assert done.paths["final"].is_file() and not (tmp_path / "run" / LOCK).exists()


# --- refusals before any work ------------------------------------------------------------------------------------

def _files(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()} if folder.is_dir() else {}


def _refused(tmp_path, data: TrainData, recipe: Recipe = None, out=None, **options) -> str:
    out = out or tmp_path / "out"
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    files = _files(out)
    with pytest.raises(SeprobeError) as e:
        train(model, data, recipe or small(), out, progress=False, **options)
    assert_same_weights(model.state_dict(), before)
    assert _files(out) == files  # nothing written, nothing replaced
    assert "\n" not in str(e.value)
    return str(e.value)


class _OutOfMemoryWhen(nn.Module):
    """Raises CUDA's out-of-memory error in training or in evaluation mode, as a full GPU would."""

    def __init__(self, training: bool):
        super().__init__()
        self.net, self.fails_training = tiny_net(), training

    def forward(self, x):
        if self.training == self.fails_training:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


@pytest.mark.parametrize("training,doing", [(True, "training"), (False, "evaluating")])
def test_out_of_memory_names_the_batch_where_it_happens(images, tmp_path, training, doing):
    with pytest.raises(SeprobeError) as e:
        train(_OutOfMemoryWhen(training), TrainData(images), small(), tmp_path / "run", progress=False)
    assert str(e.value) == (f"out of memory on cpu {doing} at batch_size 8 (8 per rank); valid: a smaller "
                            "batch_size") and e.value.argument == "batch_size"


def test_bad_data_folders_are_refused_before_any_work(images, tmp_path):
    assert "does not exist" in _refused(tmp_path, TrainData(tmp_path / "missing"))
    assert "neither train/ + test/" in _refused(tmp_path, TrainData(images / "train"))
    other = tmp_path / "other"
    write_class_folders(other, {"cat": 2, "cow": 2}, SIDE)
    assert "val classes differ" in _refused(tmp_path, TrainData(images / "train", val=other))
    mixed = tmp_path / "mixed"
    write_class_folders(mixed / "train", {"cat": 2}, SIDE)
    write_class_folders(mixed / "test", {"cat": 2}, SIDE)
    Image.new("RGB", (SIDE + 2, SIDE)).save(mixed / "train" / "cat" / "wide.png")
    assert "all of one size" in _refused(tmp_path, TrainData(mixed), small(batch_size=1))
    broken = tmp_path / "broken"
    write_class_folders(broken / "train", {"cat": 2}, SIDE)
    write_class_folders(broken / "test", {"cat": 2}, SIDE)
    (broken / "train" / "cat" / "bad.png").write_bytes(b"not an image")
    assert "cannot be read" in _refused(tmp_path, TrainData(broken), small(batch_size=1))
    assert "invalid samples_per_class 0" in str(pytest.raises(SeprobeError, TrainData, images,
                                                              samples_per_class=0).value)


def test_bad_runs_are_refused_before_any_work(images, tmp_path):
    data = TrainData(images)
    assert "batch_size 64 for 32 training images" in _refused(tmp_path, data, small(batch_size=64))
    assert "batch_size 8 for 3 ranks" in _refused(tmp_path, data, world=World(size=3))
    assert "sync_bn on device 'cpu'; valid: sync_bn on CUDA only" in _refused(tmp_path, data, small(sync_bn=True))
    assert "invalid meta" in _refused(tmp_path, data, meta={"model": object()})
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert "is not empty" in _refused(tmp_path, data, out=full)
    assert (full / "notes.txt").read_text() == "mine"
    assert "does not exist" in _refused(tmp_path, data, out=tmp_path / "new", resume=True)


def test_resume_refuses_another_recipe_and_foreign_or_truncated_checkpoints(images, tmp_path):
    out = tmp_path / "run"
    train(tiny_net(), TrainData(images), small(epochs=1), out, progress=False, meta={"model": "tiny"})
    message = _refused(tmp_path, TrainData(images), small(epochs=1, lr=0.5), out=out, resume=True,
                       meta={"model": "tiny"})
    assert message.startswith("cannot resume: recipe.lr is 0.5 but the run was started with 0.05")
    assert "meta.model" in _refused(tmp_path, TrainData(images), small(epochs=1), out=out, resume=True,
                                    meta={"model": "other"})
    (out / "final.pth").unlink()
    blob = (out / "checkpoint.pth").read_bytes()
    (out / "checkpoint.pth").write_bytes(blob[:len(blob) // 2])
    assert "cannot be read" in _refused(tmp_path, TrainData(images), out=out, resume=True)
    torch.save({"format": "other/2"}, out / "checkpoint.pth")
    assert "format 'other/2'; valid: 'seprobe-train/1'" in _refused(tmp_path, TrainData(images), out=out,
                                                                   resume=True)


# --- hostile conditions: damaged checkpoints, broken images, surprising data, leftovers, moved data -------------

@pytest.fixture(scope="module")
def one_epoch(images, tmp_path_factory) -> Path:
    """A finished one-epoch run of :func:`tiny_net` on ``images`` (each test changes a copy)."""
    out = tmp_path_factory.mktemp("one-epoch") / "run"
    train(tiny_net(), TrainData(images), small(epochs=1), out, progress=False)
    return out


def _stopped_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` as if stopped after its last checkpoint (no final.pth): a resume restores its state."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "final.pth").unlink()
    return out


def _rewritten(out: Path, change) -> Path:
    """``out`` with its checkpoint replaced by ``change(state)``."""
    state = torch.load(out / "checkpoint.pth", weights_only=True)
    torch.save(change(state), out / "checkpoint.pth")
    return out


def _without(key):
    return lambda state: {k: v for k, v in state.items() if k != key}


@pytest.mark.parametrize("change,problem", [
    (lambda s: {"format": s["format"]}, "it has no 'record'"),
    (lambda s: {**s, "record": ["recipe"]}, "'record' is a list, not a dict"),
    (_without("epoch"), "it has no 'epoch'"),
    (_without("model"), "it has no 'model'"),
    (_without("optimizer"), "it has no 'optimizer'"),
    (_without("generator"), "it has no 'generator'"),
    (lambda s: {**s, "epoch": "1"}, "'epoch' is a str, not an integer >= 0"),
    (lambda s: {**s, "step": -1}, "'step' is an int, not an integer >= 0"),
    (lambda s: {**s, "record": {**s["record"], "meta": None}}, "record 'meta' is None, not a dict"),
    (lambda s: {**s, "record": {k: v for k, v in s["record"].items() if k != "data"}}, "'record' has no 'data'"),
    (lambda s: {**s, "sums": {"loss": 0.0}}, "'sums' has no 'hits'"),
    (lambda s: {**s, "rng": []}, "'rng' is not a list of random states (torch, cuda, numpy, python)"),
    (lambda s: {**s, "model": {"0.weight": 1.0}}, "model entry '0.weight' is not a named tensor"),
])
def test_a_checkpoint_of_the_format_with_broken_contents_is_one_line_naming_the_file(images, one_epoch, tmp_path,
                                                                                    change, problem):
    from seprobe.training.checkpoint import ResumeRefused

    out = _rewritten(_stopped_copy(one_epoch, tmp_path), change)
    message = _refused(tmp_path, TrainData(images), small(epochs=1), out=out, resume=True)
    assert message == (f"checkpoint {str(out / 'checkpoint.pth')!r} is incomplete or damaged: {problem}; valid: a "
                       "checkpoint.pth written by seprobe's training")
    with pytest.raises(ResumeRefused):  # a study trains such a run again from the start
        train(tiny_net(), TrainData(images), small(epochs=1), out, resume=True, progress=False)


def _two_groups(state):
    group = state["optimizer"]["param_groups"][0]
    state["optimizer"]["param_groups"] = [group, {**group, "params": []}]
    return state


def _short_buffer(state):
    state["optimizer"]["state"][0]["momentum_buffer"] = torch.zeros(1)
    return state


@pytest.mark.parametrize("change,problem", [
    # tiny_net is conv (0), BN (1), ReLU, pool, flatten, linear (5); without BN the linear layer is 4
    (lambda s: {**s, "model": tiny_net(batchnorm=False).state_dict()},
     "missing keys 1.weight, 1.bias, 1.running_mean and 4 more; unexpected keys 4.weight, 4.bias"),
    (lambda s: {**s, "model": tiny_net(classes=3).state_dict()},
     "shape mismatch 5.weight (3, 24) vs model (2, 24), 5.bias (3,) vs model (2,)"),
    (_two_groups, "2 optimiser groups for the model's 1"),
    (_short_buffer, "a momentum buffer (1,) for a parameter (6, 3, 3, 3)"),
])
def test_a_checkpoint_holding_another_networks_tensors_is_refused_before_decoding(images, one_epoch, tmp_path,
                                                                                 monkeypatch, change, problem):
    out = _rewritten(_stopped_copy(one_epoch, tmp_path), change)
    monkeypatch.setattr("seprobe.training.data.decode_all", _no_decoding)
    message = _refused(tmp_path, TrainData(images), small(epochs=1), out=out, resume=True)
    assert message == (f"checkpoint {str(out / 'checkpoint.pth')!r} holds another network's state ({problem}); "
                       "valid: resume with the model (and knobs) the run was started with")


def _no_decoding(*args, **kwargs):
    raise AssertionError("decoded before refusing")


class _Payload:
    """Unpickled without ``weights_only``, it would call ``os.getcwd`` (harmless here), as a hostile file
    would call anything: ``weights_only`` refuses it."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_a_checkpoint_with_code_is_refused_without_torchs_advice_to_run_it(images, one_epoch, tmp_path):
    """torch's error advises loading the file again with ``weights_only=False`` (which runs its code): the one
    line keeps what was refused and drops the advice."""
    out = _stopped_copy(one_epoch, tmp_path)
    torch.save({"format": "seprobe-train/1", "record": _Payload()}, out / "checkpoint.pth")
    message = _refused(tmp_path, TrainData(images), out=out, resume=True)
    assert message.startswith(f"checkpoint {str(out / 'checkpoint.pth')!r} cannot be read (UnpicklingError: ")
    assert "getcwd" in message
    assert not any(word in message for word in ("weights_only", "False", "trust", "safe_globals")), message


def _jpeg_folders(root: Path, side: int, per_class: dict[str, int]) -> Path:
    """``root/{train,test}/<class>/<i>.jpg``: random ``side`` x ``side`` JPEGs (noise: each a few kB)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, n in per_class.items():
            (root / split / c).mkdir(parents=True)
            for i in range(n if split == "train" else 1):
                pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpg", quality=95)
    return root


def _truncated(path: Path) -> Path:
    """``path`` cut to half its bytes: its header is whole (PIL opens it and reads its size), its pixels not."""
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])
    with Image.open(path) as im:
        assert im.size[0] > 0
    return path


def test_a_small_image_broken_past_its_header_is_one_line_naming_it(tmp_path):
    data = _jpeg_folders(tmp_path / "data", 32, {"cat": 4, "dog": 4})
    broken = _truncated(data / "train" / "dog" / "2.jpg")
    assert list_data(TrainData(data)).in_memory  # the listing reads headers only: it passes
    message = _refused(tmp_path, TrainData(data), small(epochs=1, batch_size=4))
    assert message.startswith(f"image {str(broken)!r} cannot be decoded (OSError: image file is truncated")
    assert message.endswith("valid: every training and validation image complete (copy it again, or remove it)")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_large_image_broken_past_its_header_stops_the_run_in_one_line_naming_it(tmp_path, workers):
    """Large images are decoded by the loader as training goes (its workers' exceptions would come back as a
    traceback): the broken one ends the run in one line, before any checkpoint."""
    from seprobe.data.images import Preprocessing

    data = _jpeg_folders(tmp_path / "data", 80, {"cat": 4, "dog": 4})
    broken = _truncated(data / "train" / "cat" / "1.jpg")
    spec = TrainData(data, preprocessing=Preprocessing(resize=72, crop=64), num_workers=workers)
    with pytest.raises(SeprobeError) as e:
        train(tiny_net(), spec, small(epochs=1, batch_size=4), tmp_path / "run", progress=False)
    assert str(e.value).startswith(f"training image cannot be decoded: {broken}: OSError: image file is truncated")
    assert "\n" not in str(e.value) and not (tmp_path / "run" / "checkpoint.pth").exists()


def test_an_empty_class_folder_or_a_single_class_is_refused(tmp_path):
    """An empty class folder would still get a place in the head (and a class never validated); one class
    trains to 100 % top-1 on nothing."""
    empty = tmp_path / "empty"
    for split, n in (("train", 2), ("test", 1)):
        write_class_folders(empty / split, {"cat": n, "dog": n}, SIDE)
        (empty / split / "emu").mkdir()
    assert _refused(tmp_path, TrainData(empty)).startswith(
        f"class folder {str(empty / 'train' / 'emu')!r} holds no image; valid: images directly inside every class "
        "folder of the training data")
    write_class_folders(empty / "train" / "emu", {"x": 0}, SIDE)  # an inner folder: still no image directly inside
    Image.new("RGB", (SIDE, SIDE)).save(empty / "train" / "emu" / "0.png")
    assert _refused(tmp_path, TrainData(empty)).startswith(
        f"class folder {str(empty / 'test' / 'emu')!r} holds no image; valid: images directly inside every class "
        "folder of the validation data")
    one = tmp_path / "one"
    write_class_folders(one / "train", {"cat": 4}, SIDE)
    write_class_folders(one / "test", {"cat": 2}, SIDE)
    assert _refused(tmp_path, TrainData(one), small(batch_size=2)).startswith(
        f"the training images of {str(one / 'train')!r} hold one class ('cat'); valid: at least two classes")
    _fake_cifar(tmp_path / "cifar", classes=1)
    assert _refused(tmp_path, TrainData(tmp_path / "cifar"), small(batch_size=2)).startswith(
        f"the training images of {str(tmp_path / 'cifar' / 'cifar-10-batches-py')!r} hold one class ('c0')")


@pytest.mark.parametrize("name", ["0-large.png", "z-large.png"])  # sorted before or after every small image
def test_one_large_image_among_small_ones_is_refused_wherever_it_sorts(tmp_path, name):
    data = tmp_path / "data"
    write_class_folders(data / "train", {"cat": 3, "dog": 3}, SIDE)
    write_class_folders(data / "test", {"cat": 1, "dog": 1}, SIDE)
    Image.new("RGB", (100, 80)).save(data / "train" / "cat" / name)
    message = _refused(tmp_path, TrainData(data))
    assert message.startswith("the training images mix small and large ones: ")
    assert f"{str(data / 'train' / 'cat' / '0.png')!r} is {SIDE}x{SIDE}" in message
    assert f"{str(data / 'train' / 'cat' / name)!r} is 100x80 (1 of 7 are larger than 64 pixels)" in message


def test_a_few_small_images_among_large_ones_are_read_like_the_others(tmp_path):
    """ImageNet holds a few images under 64 pixels: most images are large, so the run is a large-image one."""
    from seprobe.data.images import Preprocessing

    data = tmp_path / "data"
    write_class_folders(data / "train", {"a": 3, "b": 3}, 80)
    write_class_folders(data / "test", {"a": 1, "b": 1}, 80)
    Image.new("RGB", (20, 30)).save(data / "train" / "a" / "0-tiny.png")
    listing = list_data(TrainData(data, preprocessing=Preprocessing(resize=72, crop=64)))
    assert (listing.in_memory, listing.side, len(listing.train)) == (False, 64, 7)


def test_resuming_in_a_file_is_refused_in_words_of_the_run_folder(images, tmp_path):
    """The folder of a resume is no out (the command line's --resume DIR gives none): the words say resume."""
    (tmp_path / "run.txt").write_text("mine")
    with pytest.raises(SeprobeError) as e:
        train(tiny_net(), TrainData(images), small(), tmp_path / "run.txt", resume=True, progress=False)
    assert str(e.value) == (f"cannot resume in {str(tmp_path / 'run.txt')!r}: it is a file; valid: the folder of a "
                            "run started by seprobe's training (it holds checkpoint.pth)")
    assert e.value.argument is None and (tmp_path / "run.txt").read_text() == "mine"


def _killed_while_writing(target: Path) -> Path:
    """The temporary file seprobe's atomic write of ``target`` leaves when its process is killed (SIGKILL)
    half-way, by a real process killed so."""
    code = ("import os, signal, sys\nfrom seprobe.io import atomic_write\n"
            "atomic_write(sys.argv[1], lambda tmp: (tmp.write_bytes(b'half'), os.kill(os.getpid(), signal.SIGKILL)))")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL
    (left,) = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    return left


def test_a_resume_removes_what_a_killed_write_left_and_nothing_of_the_users(images, tmp_path):
    out = tmp_path / "cut"
    model = tiny_net()
    model.register_forward_hook(_Hook(6, lambda out: signal.raise_signal(signal.SIGINT)))
    with pytest.raises(KeyboardInterrupt):
        train(model, TrainData(images), small(), out, progress=False)
    left = [_killed_while_writing(out / name) for name in ("checkpoint.pth", "history.csv")]
    mine = [".notes.txt.abcd1234.tmp", "checkpoint.pth.abcd1234.tmp", ".checkpoint.pth.tmp",
            ".checkpoint.pth.abcd12345.tmp", "notes.txt"]
    for name in mine:
        (out / name).write_text("mine")
    train(tiny_net(), TrainData(images), small(), out, resume=True, progress=False)
    assert not any(p.exists() for p in left)
    assert {p.name for p in out.iterdir()} == {"checkpoint.pth", "history.csv", "final.pth", "summary.md",
                                               "curves.png", "curves.svg", *mine}
    assert all((out / name).read_text() == "mine" for name in mine)


def test_a_folder_holding_only_what_a_killed_write_left_takes_a_new_run(images, tmp_path):
    """A run killed while it wrote its first checkpoint leaves nothing to resume: the folder counts as empty."""
    left = _killed_while_writing(tmp_path / "run" / "checkpoint.pth")
    train(tiny_net(), TrainData(images), small(epochs=1), tmp_path / "run", progress=False)
    assert not left.exists() and (tmp_path / "run" / "final.pth").is_file()


def test_a_run_resumes_on_its_data_moved_to_another_folder_and_refuses_other_data(images, tmp_path):
    """The run's record keys the data by content: the same files under another folder name continue the run
    bitwise; the same names with other bytes, or the same files with other labels, are refused."""
    train(tiny_net(), TrainData(images), small(), tmp_path / "whole", progress=False)
    data, out = tmp_path / "data", tmp_path / "cut"
    shutil.copytree(images, data)
    model = tiny_net()
    model.register_forward_hook(_Hook(6, lambda out: signal.raise_signal(signal.SIGINT)))
    with pytest.raises(KeyboardInterrupt):
        train(model, TrainData(data), small(), out, progress=False)
    moved = data.rename(tmp_path / "elsewhere")
    other = shutil.copytree(moved, tmp_path / "other")
    Image.new("RGB", (SIDE, SIDE)).save(other / "train" / "cat" / "0.png")  # one image's bytes change
    assert "cannot resume: data.train_files is" in _refused(tmp_path, TrainData(other), out=out, resume=True)
    relabelled = shutil.copytree(moved, tmp_path / "relabelled")
    (relabelled / "train" / "cat" / "0.png").rename(relabelled / "train" / "dog" / "cat0.png")
    (relabelled / "train" / "dog" / "0.png").rename(relabelled / "train" / "cat" / "dog0.png")
    assert "cannot resume: data.train_files is" in _refused(tmp_path, TrainData(relabelled), out=out, resume=True)
    train(tiny_net(), TrainData(moved), small(), out, resume=True, progress=False)
    assert_same_weights(final_weights(out), final_weights(tmp_path / "whole"))
    # where the data is now, as the resume was given it: information, not compared
    assert torch.load(out / "checkpoint.pth", weights_only=True)["record"]["info"]["data"] == {
        "train": str(moved), "val": None, "train_labels": None, "val_labels": None}


# --- layouts -------------------------------------------------------------------------------------------------------

def _fake_cifar(root: Path, classes: int = 3, per_batch: int = 6) -> torch.Tensor:
    """torchvision's cifar-10-batches-py layout with tiny batches: the pickles hold numpy arrays, as its own do."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    everything = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [k % classes for k in range(per_batch)]
        everything.append((data, labels))
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": []}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(classes)], "num_vis": 3072}, f, protocol=2)
    return everything


def test_torchvision_cifar_files_are_read_by_their_layout(tmp_path):
    batches = _fake_cifar(tmp_path)
    data = load_data(TrainData(tmp_path, samples_per_class=7))
    assert data.layout == "torchvision cifar-10-batches-py" and data.class_names == ("c0", "c1", "c2")
    pixels = np.concatenate([d for d, _ in batches[:5]]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([lab for _, lab in batches[:5]])
    first = [i for c in range(3) for i in np.flatnonzero(labels == c)[:7]]
    assert torch.equal(data.train.labels, torch.from_numpy(labels[sorted(first)]))
    assert torch.equal(data.train.images, torch.from_numpy(pixels[sorted(first)]))
    assert torch.equal(data.val.images, torch.from_numpy(batches[5][0].reshape(-1, 3, 32, 32)))
    assert data.num_classes == 3 and not data.imagenet and data.in_memory
    assert data.mean == pytest.approx(tuple((pixels[sorted(first)] / 255).mean((0, 2, 3))), rel=1e-12)
    with pytest.raises(SeprobeError, match="upscale reads image files, and .*cifar-10-batches-py' holds CIFAR"):
        load_data(TrainData(tmp_path, upscale=True))
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(SeprobeError, match="test_batch' cannot be read .*os.system is not allowed"):
        load_data(TrainData(tmp_path))


def test_torchvision_cifar100_files_are_read_with_their_fine_labels(tmp_path):
    """cifar-100-python as torchvision's CIFAR100 leaves it: ``train``, ``test`` and ``meta`` pickles, 100 fine
    classes (the coarse 20 are not the task), pointed at directly or from the folder above it."""
    import pickle

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    parts = {}
    for name, n in (("train", 300), ("test", 100)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [k % 100 for k in range(n)]
        parts[name] = (data, fine)
        with open(folder / name, "wb") as f:
            pickle.dump({"filenames": [], "batch_label": name, "fine_labels": fine,
                         "coarse_labels": [k // 5 for k in fine], "data": data}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{k:02d}" for k in range(100)],
                     "coarse_label_names": [f"c{k}" for k in range(20)]}, f, protocol=2)
    for where in (tmp_path, folder):
        data = load_data(TrainData(where, samples_per_class=2))
        assert data.layout == "torchvision cifar-100-python" and data.num_classes == 100
        assert data.class_names[:2] == ("f00", "f01") and len(data.class_names) == 100
        fine = parts["train"][1]
        keep = sorted(i for c in range(100) for i in [j for j in range(300) if fine[j] == c][:2])  # file order
        assert torch.equal(data.train.labels, torch.tensor([parts["train"][1][i] for i in keep]))
        assert torch.equal(data.train.images, torch.from_numpy(parts["train"][0][keep].reshape(-1, 3, 32, 32)))
        assert torch.equal(data.val.labels, torch.tensor(parts["test"][1]))


def test_imagenet_wnid_folders_keep_imagenet_indices_and_a_1000_way_head(tmp_path):
    write_class_folders(tmp_path / "train", {"n01443537": 2, "n02110958": 2}, SIDE)
    write_class_folders(tmp_path / "val", {"n01443537": 1, "n02110958": 1}, SIDE)
    data = load_data(TrainData(tmp_path))
    assert data.imagenet and data.num_classes == 1000
    assert data.train.labels.tolist() == [1, 1, 254, 254] and data.val.labels.tolist() == [1, 254]


def test_large_images_go_through_the_loader_the_same_for_any_worker_count(tmp_path):
    from seprobe.data.images import Preprocessing

    write_class_folders(tmp_path / "data" / "train", {"a": 4, "b": 4}, 80)
    write_class_folders(tmp_path / "data" / "val", {"a": 2, "b": 2}, 80)
    finals = []
    for workers in (0, 2):
        spec = TrainData(tmp_path / "data", preprocessing=Preprocessing(resize=72, crop=64), num_workers=workers)
        result = train(tiny_net(), spec, small(epochs=1, batch_size=4), tmp_path / f"w{workers}", progress=False)
        assert not result.data["in_memory"] and result.data["side"] == 64
        finals.append(final_weights(tmp_path / f"w{workers}"))
    assert_same_weights(*finals)


def test_a_checkpoint_from_before_a_recipe_field_existed_resumes_with_its_default(images, tmp_path):
    """A checkpoint whose recipe lacks the fields added since (``freeze_bn``, ``clip_grad_norm``) trained with
    their defaults: it resumes; one that differs in a field it has is refused (ResumeRefused, a SeprobeError)."""
    from seprobe.training.checkpoint import ResumeRefused

    out = tmp_path / "run"
    train(tiny_net(), TrainData(images), small(epochs=1), out, progress=False)
    state = torch.load(out / "checkpoint.pth", weights_only=True)
    for name in ("freeze_bn", "clip_grad_norm"):
        del state["record"]["recipe"][name]
    torch.save(state, out / "checkpoint.pth")
    assert len(train(tiny_net(), TrainData(images), small(epochs=1), out, resume=True, progress=False).history) == 1
    with pytest.raises(ResumeRefused, match="cannot resume: recipe.lr is 0.07"):
        train(tiny_net(), TrainData(images), small(epochs=1, lr=0.07), out, resume=True, progress=False)


def test_a_clipped_step_moves_the_weights_by_lr_times_the_clip_norm():
    """Plain SGD (no momentum, no decay) with ``clip_grad_norm = c`` below the gradient's norm: the weights move
    by ``lr * c * |g| / (|g| + 1e-6)`` in L2 norm (torch's coefficient), in the gradient's direction; above it,
    by ``lr * |g|`` (float64: the difference of weights before and after keeps 1e-12 of its size)."""
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([0, 1] * 4)
    net = tiny_net(batchnorm=False).double()
    F.cross_entropy(net(x), y).backward()
    grad = torch.cat([p.grad.flatten() for p in net.parameters()])
    for clip in (0.5 * grad.norm().item(), 2 * grad.norm().item()):
        net = tiny_net(batchnorm=False).double()
        before = torch.cat([p.detach().flatten() for p in net.parameters()])
        recipe = Recipe(lr=0.1, momentum=0.0, weight_decay=0.0, clip_grad_norm=clip)
        Stepper(net, net, recipe, torch.device("cpu")).step(x, y, 0.1)
        moved = torch.cat([p.detach().flatten() for p in net.parameters()]) - before
        g = grad.norm().item()
        scale = min(1.0, clip / (g + 1e-6))  # clip_grad_norm_'s coefficient, its 1e-6 included
        assert moved.norm().item() == pytest.approx(0.1 * scale * g, rel=1e-9)
        assert F.cosine_similarity(moved, -grad, dim=0).item() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(SeprobeError, match="invalid clip_grad_norm 0; valid: a finite number > 0"):
        Recipe(clip_grad_norm=0)


def test_the_step_loss_is_the_hand_computed_label_smoothed_cross_entropy():
    """``label_smoothing = eps``: the loss ``Stepper.step`` returns is ``(1 - eps) * CE + eps * mean over the C
    classes of -log softmax`` (Szegedy et al. 2016's uniform smoothing; averaged over the batch) of the logits of
    the weights before the step, computed here in float64 from a copy of the network. The step is float32: the
    batch mean of 16 x 4 log-probabilities is within n u = 64 x 6e-8 = 3.8e-6 (relative) of the exact value,
    plus a few ulps for each log-sum-exp, so rel 1e-5; the plain cross-entropy is about 1 % away, far beyond."""
    import copy

    eps, classes = 0.2, 4
    x = 3 * torch.randn(16, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % classes
    net = tiny_net(batchnorm=False, classes=classes)
    with torch.no_grad():
        net[-1].weight.mul_(10)  # logits spread apart: the smoothed and plain losses differ clearly
    before = copy.deepcopy(net)
    with torch.no_grad():
        log_p = before(x).double().log_softmax(1)
    ce = -log_p[torch.arange(len(y)), y].mean().item()
    uniform = -log_p.mean(1).mean().item()  # the cross-entropy against the uniform distribution over the classes
    smoothed = (1 - eps) * ce + eps * uniform
    assert abs(smoothed - ce) > 100 * 1e-5 * smoothed   # the test tells the two apart
    loss, _ = Stepper(net, net, Recipe(lr=0.1, label_smoothing=eps), torch.device("cpu")).step(x, y, 0.1)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(smoothed, rel=1e-5)


def test_checkpoint_every_k_writes_after_the_steps_that_are_multiples_of_k(images, tmp_path, monkeypatch):
    """``checkpoint_every = 3`` over 2 epochs of 7 steps (14 images of two classes, batch 2): the global steps
    counted from 1 across epochs, a checkpoint after steps 3 and 6, at the end of epoch 1 (step 7), after steps
    9 and 12 (epoch 2, its steps 2 and 5) and at the end of epoch 2 (step 14); a multiple of 3 that ended an
    epoch would be written once. Seen by recording (epoch, steps done in it) at every write of the file."""
    import seprobe.training.checkpoint as checkpoint

    written, save = [], checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, state: (
        written.append((state["epoch"], state["step"])), save(path, state)))
    result = train(tiny_net(), TrainData(images, samples_per_class=7, val_samples_per_class=2),
                   small(epochs=2, batch_size=2, checkpoint_every=3), tmp_path / "run", progress=False)
    assert result.data["train_images"] == 14 and len(result.history) == 2
    spe = 7
    assert [epoch * spe + step for epoch, step in written] == [3, 6, 7, 9, 12, 14]
    assert written == [(0, 3), (0, 6), (1, 0), (1, 2), (1, 5), (2, 0)]


def test_frozen_batchnorm_keeps_its_statistics_and_trains_its_affine_parameters(images, tmp_path):
    """``freeze_bn``: the running statistics after an epoch are the initial ones, bit for bit (without it they
    move), while BatchNorm's weight and bias still learn."""
    initial = tiny_net().state_dict()
    for freeze in (True, False):
        train(tiny_net(), TrainData(images), small(epochs=1, freeze_bn=freeze), tmp_path / f"f{freeze}",
              progress=False)
        final = final_weights(tmp_path / f"f{freeze}")
        for key in ("1.running_mean", "1.running_var"):
            assert torch.equal(final[key], initial[key]) == freeze, key
        assert not torch.equal(final["1.weight"], initial["1.weight"])
    with pytest.raises(SeprobeError, match="invalid freeze_bn 1; valid: True or False"):
        Recipe(freeze_bn=1)


def test_upscaled_small_images_are_validated_as_evaluate_sees_them(images, tmp_path):
    """``upscale``: 12-pixel images are read from their files and brought to the crop (here 32) like large ones;
    the run's validation accuracy equals the network scored by hand on torchvision's resize + centre crop."""
    import torchvision.transforms as T

    from seprobe.data.images import Preprocessing

    pre = Preprocessing(resize=36, crop=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    spec = TrainData(images, preprocessing=pre, num_workers=0, upscale=True)
    data = load_data(spec)
    assert not data.in_memory and data.side == 32 and data.mean == pre.mean
    result = train(tiny_net(), spec, small(epochs=1, batch_size=4), tmp_path / "run", progress=False)
    net = tiny_net()
    net.load_state_dict(final_weights(tmp_path / "run"))
    net.eval()
    transform = T.Compose([T.Resize(36), T.CenterCrop(32), T.ToTensor(), T.Normalize(pre.mean, pre.std)])
    files = sorted((images / "test").glob("*/*.png"))
    x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    labels = torch.tensor([0 if f.parent.name == "cat" else 1 for f in files])
    with torch.no_grad():
        top1 = (net(x).argmax(1) == labels).float().mean().item()
    assert result.history["val_top1"].iloc[-1] == pytest.approx(top1, abs=1e-9)
    with pytest.raises(SeprobeError, match="invalid upscale 'yes'; valid: True or False"):
        TrainData(images, upscale="yes")


# --- subprocesses: SIGKILL and resume; two ranks -----------------------------------------------------------------

def _cifar_subset(tmp: Path) -> Path:
    """Two classes of the shared CIFAR-10, as links (no image is copied)."""
    cifar = ROOT.parent / "shared" / "data" / "cifar10"
    if not (cifar / "train" / "airplane").is_dir():
        pytest.skip(f"the shared CIFAR-10 is absent ({cifar}): this test trains on real images")
    for split in ("train", "test"):
        (tmp / split).mkdir(parents=True)
        for c in ("airplane", "automobile"):
            (tmp / split / c).symlink_to(cifar / split / c)
    return tmp


KILL_RECIPE = dict(epochs=3, batch_size=16, lr=0.05, checkpoint_every=1)


def _worker_train(data: str, out: str, mode: str) -> None:
    """``slow``: sleep in every training forward (so the parent can kill it mid-run); ``resume``: continue."""
    torch.set_num_threads(1)
    model = tiny_net()
    if mode == "slow":
        # 1 s a step: the kill lands within the first epoch's 4 steps even when the parent is slow to see the
        # first checkpoint on a loaded machine
        model.register_forward_hook(lambda m, i, o: time.sleep(1.0) if m.training else None)
    train(model, TrainData(data, samples_per_class=32, val_samples_per_class=16), Recipe(**KILL_RECIPE), out,
          resume=mode == "resume", progress=False)


def _worker_ranks(data: str, out: str) -> None:
    with distributed_session("cpu") as world:
        torch.set_num_threads(1)
        result = train(tiny_net(batchnorm=False), TrainData(data), small(epochs=2, batch_size=8), out,
                       world=world, progress=False)
        result.history.to_csv(Path(out) / f"rank{world.rank}.csv", index=False)


def _run_worker(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, *args], env=env, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_bitwise(tmp_path):
    data = _cifar_subset(tmp_path / "cifar")
    whole = _run_worker("train", str(data), str(tmp_path / "whole"), "plain")
    assert whole.wait(120) == 0, whole.stderr.read()
    cut = tmp_path / "cut"
    slow = _run_worker("train", str(data), str(cut), "slow")
    deadline = time.monotonic() + 120
    while not (cut / "checkpoint.pth").exists() and time.monotonic() < deadline and slow.poll() is None:
        time.sleep(0.01)
    slow.send_signal(signal.SIGKILL)
    slow.wait(30)
    saved = torch.load(cut / "checkpoint.pth", weights_only=True)
    assert saved["epoch"] == 0 and 0 < saved["step"] < 4   # mid-way through the first epoch of 4 steps
    resumed = _run_worker("train", str(data), str(cut), "resume")
    assert resumed.wait(120) == 0, resumed.stderr.read()
    assert_same_weights(final_weights(cut), final_weights(tmp_path / "whole"))
    one, two = (pd.read_csv(p / "history.csv").drop(columns=TIMING) for p in (tmp_path / "whole", cut))
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert len(one) == 3


@pytest.mark.slow
def test_two_ranks_train_the_weights_of_one_process(images, tmp_path):
    from .test_distributed import _torchrun_two, one_thread

    # 11 validation images: an odd count, whose last batch is partial, so that padding (DistributedSampler's)
    # would count an image twice and change the accuracies (k / 12 for k / 11)
    data = tmp_path / "data"
    shutil.copytree(images / "train", data / "train")
    write_class_folders(data / "test", {"cat": 6, "dog": 5}, SIDE, seed=2)
    _torchrun_two("ranks", data, tmp_path / "two", script=__file__)
    with one_thread():
        one = train(tiny_net(batchnorm=False), TrainData(data), small(epochs=2, batch_size=8), tmp_path / "one",
                    progress=False)
    assert one.data["val_images"] == 11
    two = final_weights(tmp_path / "two")
    for k, v in final_weights(tmp_path / "one").items():
        torch.testing.assert_close(two[k], v, rtol=1e-5, atol=1e-6)   # gradients summed in another order
    for rank in (0, 1):
        history = pd.read_csv(tmp_path / "two" / f"rank{rank}.csv")
        # evaluation is exact: every validation image once, the same counts as one process
        assert list(history["val_top1"]) == list(one.history["val_top1"])
        assert list(history["val_top5"]) == list(one.history["val_top5"])
        np.testing.assert_allclose(history["train_loss"], one.history["train_loss"], rtol=1e-5)
        assert list(history["train_top1"]) == list(one.history["train_top1"])
    assert not (tmp_path / "two" / "rank1").exists()


@pytest.mark.parametrize("options", [dict(dtype="bfloat16", channels_last=True, no_decay_bn_bias=True),
                                     dict(dtype="float16", schedule="cosine", warmup_epochs=1, label_smoothing=0.1)])
def test_mixed_precision_and_channels_last_train_on_the_cpu(images, tmp_path, options):
    data = load_data(TrainData(images))  # loaded once, as a caller sizing the head does
    result = train(tiny_net(classes=data.num_classes), data, small(**options), tmp_path / "run", progress=False)
    assert np.isfinite(result.history["train_loss"]).all() and len(result.history) == 2
    assert all(v.dtype != torch.bfloat16 for v in final_weights(tmp_path / "run").values())
    # float16 scales the loss (torch's GradScaler starts at 2^16 and halves on an overflow); bfloat16 needs none
    scaler = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)["scaler"]
    if options["dtype"] == "float16":
        assert math.log2(scaler["scale"]).is_integer() and 1 <= scaler["scale"] <= 2.0 ** 16
    else:
        assert scaler == {}


def test_recipe_is_plain_data():
    record = asdict(default_recipe(32))
    assert Recipe(**record) == default_recipe(32)


if __name__ == "__main__":
    {"train": _worker_train, "ranks": _worker_ranks}[sys.argv[1]](*sys.argv[2:])
