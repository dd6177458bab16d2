"""Two CPU processes (gloo) give exactly the results of one; a failure on one rank stops both, reported once.

The multi-process tests launch this file as a worker: under ``torchrun`` (the user's path) for the results, and
as two plain processes with torchrun's variables set by hand for the failures, so each rank's exit status and
stderr can be read on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from seprobe.data.imagenet_classes import imagenet_classes
from seprobe.data.images import LabelledImages, Preprocessing, discover
from seprobe.distributed import DistributedError, World, distributed_session
from seprobe.errors import SeprobeError
from seprobe.models.factory import load_model
from seprobe.probe.activations import collect
from seprobe.probe.evaluation import Loader
from seprobe.probe.gate_stats import GateStats

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32           # input side: se_resnet18 runs at 32 x 32 (stage 5 at 1 x 1), fast enough for a test
IMAGES = 13         # odd: neither the images nor the batches divide by two ranks
RUNS = {"views": dict(views=2, loader=Loader(3)), "accuracy": dict(loader=Loader(2), with_gates=False),
        "one_image": dict(loader=Loader(4))}


# --- the worker (python tests/test_distributed.py MODE ...) -----------------------------------------------------

def _loaded(checkpoint):
    loaded = load_model("se_resnet18", str(checkpoint))
    return replace(loaded, preprocessing=Preprocessing(resize=SIZE, crop=SIZE))


def _worker_collect(data: str, checkpoint: str, out: str) -> None:
    """Every run of RUNS; each rank saves what it ends with (all ranks must hold the combined result)."""
    images = discover(data)
    with distributed_session("cpu") as world:
        folder = Path(out) / f"rank{world.rank}"
        folder.mkdir(parents=True)
        summary = {"world": world.size}
        for name, options in RUNS.items():
            subset = images if name != "one_image" else LabelledImages(images.paths[:1], images.labels[:1],
                                                                      images.class_names, True, images.layout)
            run = collect(_loaded(checkpoint), subset, progress=False, **options)
            run.stats.save(folder / f"{name}.npz")
            summary[name] = {"top1": run.top1, "top5": run.top5, "evaluated": run.evaluated}
        mine = [i for batch in world.batches(len(images.paths), 3) for i in batch]
        summary["records"] = world.gather_records([images.paths[i].name for i in mine], mine)
        (folder / "summary.json").write_text(json.dumps(summary))


def _ablate(data: str, checkpoint: str, out: str | None = None):
    """A sweep with both phases and both modes: every block alone, then the cumulative curve ordered by the
    single-block KL; calibrated on the same images (through the distributed activations pass)."""
    from seprobe import AblationPlan, CalibrationSource, Overrides, ablate

    return ablate("se_resnet18", checkpoint, data, plan=AblationPlan(modes=["identity", "mean"], cumulative="kl"),
                  calibration=CalibrationSource(calibration_data=data, allow_overlap=True), bootstrap=300, seed=3,
                  loader=Loader(2), out=out, progress=False, overrides=Overrides(resize=SIZE, crop=SIZE)).result


def _worker_ablate(data: str, checkpoint: str, out: str) -> None:
    """Each rank saves the table it ends with; rank r is given its own output folder (rank 0 alone writes)."""
    with distributed_session("cpu") as world:
        folder = Path(out) / f"rank{world.rank}"
        folder.mkdir(parents=True)
        result = _ablate(data, checkpoint, str(folder / "outputs"))
        result.table.to_pickle(folder / "table.pkl")
        (folder / "summary.json").write_text(json.dumps({"world": world.size, "orders": result.orders,
                                                         "evaluated": result.evaluated, "scored": result.scored,
                                                         "failed": result.failed}))


def _worker_fail(data: str, checkpoint: str, out: str, how: str) -> None:
    """Rank 1 fails (``folder``: its image folder is missing; ``loop``: its model raises at its 2nd batch;
    ``subset``: it sees one image fewer); rank 0 would write ``out`` on success."""
    rank = int(os.environ["RANK"])
    with distributed_session("cpu") as world:
        images = discover(data if not (how == "folder" and rank == 1) else data + "-missing")
        if how == "subset" and rank == 1:
            images = LabelledImages(images.paths[1:], images.labels[1:], images.class_names, True, images.layout)
        loaded = _loaded(checkpoint)
        if how == "loop" and rank == 1:
            calls = []

            def boom(module, inputs):
                calls.append(1)
                if len(calls) == 2:
                    raise RuntimeError("injected failure on the second batch")
            loaded.model.register_forward_pre_hook(boom)
        run = collect(loaded, images, Loader(2), progress=False)
        if world.is_main:
            Path(out).write_text(str(run.top1))


def _worker(argv: list[str]) -> None:
    """Like the command line: a SeprobeError is one line on stderr (unless another rank prints it), exit 2."""
    try:
        {"collect": _worker_collect, "ablate": _worker_ablate, "fail": _worker_fail}[argv[0]](*argv[1:])
    except SeprobeError as e:
        if not getattr(e, "quiet", False):
            print(f"seprobe: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _worker(sys.argv[1:])


# --- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random se_resnet18 (non-trivial BatchNorm), saved as a checkpoint, and IMAGES noise images labelled so
    that the accuracy is known from a plain forward pass: 5 labelled with the model's top-1 class, 4 with its
    3rd choice (top-5 but not top-1), 4 with a class outside its top 5. Also returns the largest |logit|, the
    scale of the float32 discrepancies between batchings (tests/rounding.py)."""
    from seprobe import build_model

    from .conftest import randomize_batchnorm

    tmp = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("se_resnet18")).eval()
    checkpoint = tmp / "se_resnet18.pth"
    torch.save(model.state_dict(), checkpoint)
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for _ in range(IMAGES)]
    transform = Preprocessing(resize=SIZE, crop=SIZE).eval_transform()
    with torch.no_grad():
        logits = model(torch.stack([transform(Image.fromarray(p)) for p in pixels]))
    top5 = logits.topk(5, dim=1).indices
    wnids = [c.wnid for c in imagenet_classes()]
    data = tmp / "images"
    data.mkdir()
    for k, p in enumerate(pixels):
        if k < 5:
            label = int(top5[k, 0])
        elif k < 9:
            label = int(top5[k, 2])
        else:
            label = next(c for c in range(1000) if c not in top5[k])
        Image.fromarray(p).save(data / f"{wnids[label]}_img{k:02d}.png")
    return data, checkpoint, {"top1": 5 / IMAGES, "top5": 9 / IMAGES}, float(logits.abs().max())


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(*args: str) -> list[subprocess.CompletedProcess]:
    """Two ranks started by hand, with the variables torchrun would set."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                                  LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


# --- sharding ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("items,batch,size", [(13, 3, 2), (13, 2, 2), (1, 4, 2), (0, 4, 3), (100, 7, 4),
                                              (5, 1, 8)])
def test_shards_are_one_process_batches_each_once(items, batch, size):
    one = World().batches(items, batch)
    shards = [World(rank=r, size=size).batches(items, batch) for r in range(size)]
    assert [b for s in shards for b in s] == one          # contiguous runs of the same batches, in order
    assert sorted(i for b in one for i in b) == list(range(items))
    lengths = [len(s) for s in shards]
    assert max(lengths) - min(lengths) <= 1 and max(lengths) == World(size=size).steps(items, batch)


def test_a_bad_world_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DistributedError, match="WORLD_SIZE='two'; valid: a positive integer"), \
            distributed_session("cpu"):
        pass
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DistributedError, match="torchrun's variables are incomplete"), distributed_session("cpu"):
        pass
    for k, v in dict(LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        with pytest.raises(DistributedError, match=f"2 ranks on this node but {gpus} GPU.*NCCL needs") as e, \
                distributed_session("cuda"):
            pass
        assert e.value.quiet  # LOCAL_RANK 1: LOCAL_RANK 0 of the node says it
    with pytest.raises(DistributedError, match="device .cuda:1. under torchrun; valid: cuda"), \
            distributed_session("cuda:1"):
        pass


# --- two processes ------------------------------------------------------------------------------------------------

def _torchrun_two(mode: str, *args, script: str = __file__) -> None:
    """``script``'s worker ``mode`` (this file's by default) on two ranks, as ``torchrun --standalone
    --nproc-per-node 2`` starts them."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           script, mode, *(str(a) for a in args)],
                          capture_output=True, text=True, env=_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def one_thread():
    """As each rank runs (OMP_NUM_THREADS=1): float32 kernels round by thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_processes_give_the_results_of_one(setup, tmp_path):
    from .rounding import mean_tolerance, std_tolerance  # here: this file also runs as a script (the worker)

    data, checkpoint, expected, _ = setup
    _torchrun_two("collect", data, checkpoint, tmp_path)
    images = discover(data)
    for name, options in RUNS.items():
        subset = images if name != "one_image" else LabelledImages(images.paths[:1], images.labels[:1],
                                                                  images.class_names, True, images.layout)
        with one_thread():
            one = collect(_loaded(checkpoint), subset, progress=False, **options)
        for rank in range(2):
            summary = json.loads((tmp_path / f"rank{rank}" / "summary.json").read_text())
            assert summary["world"] == 2
            assert summary[name] == {"top1": one.top1, "top5": one.top5, "evaluated": one.evaluated}
            two = GateStats.load(tmp_path / f"rank{rank}" / f"{name}.npz")
            assert set(two.blocks) == set(one.stats.blocks) and (name == "accuracy") == (not two.blocks)
            for block, b in one.stats.blocks.items():
                t = two.blocks[block]
                np.testing.assert_array_equal(t.count, b.count)
                np.testing.assert_array_equal(t.hist, b.hist)
                # the ranks' batches are other shapes than one process's: float32 gates (<= 1) a few roundings
                # apart, carried through the float64 mean and standard deviation (tests/rounding.py)
                n = b.count[:, None]
                assert (np.abs(t.mean - b.mean) <= np.vectorize(mean_tolerance)(1.0, n)).all()
                several = np.broadcast_to(n >= 2, b.mean.shape)
                std_tol = np.vectorize(std_tolerance)(1.0, np.maximum(n, 2))
                assert (np.abs(t.std() - b.std()) <= std_tol)[several].all()
                np.testing.assert_array_equal(t.std()[~several], b.std()[~several])  # no or one image
    # the accuracy known by construction, and the views: 2 per image, all images counted once
    assert (one_run := json.loads((tmp_path / "rank0" / "summary.json").read_text()))["accuracy"] == \
        {**expected, "evaluated": IMAGES}
    assert one_run["views"]["evaluated"] == IMAGES
    assert GateStats.load(tmp_path / "rank0" / "views.npz").blocks["SE_5_2"].count[1000] == 2 * IMAGES
    assert one_run["records"] == [p.name for p in images.paths]


@pytest.mark.slow
def test_two_processes_ablate_as_one(setup, tmp_path):
    """IMAGES = 13 at batch size 2: 7 batches, 4 on rank 0 and 3 on rank 1 (whose last batch holds one image)."""
    from .rounding import kl_tolerance

    data, checkpoint, _, logit_scale = setup
    _torchrun_two("ablate", data, checkpoint, tmp_path)
    with one_thread():
        one = _ablate(str(data), str(checkpoint))
    assert len(one.table) == 1 + 2 * 8 + 2 * 8 and one.scored and one.evaluated == IMAGES
    assert one.table.loc[0, "top1"] == 5 / IMAGES and one.table.loc[0, "top5"] == 9 / IMAGES  # by construction
    exact = ["label", "group", "mode", "step", "blocks", "n_blocks", "images", "top1", "top5", "top1_change",
             "top5_change", "top1_low", "top1_high", "top5_low", "top5_high", "within_noise", "params_saved",
             "macs_saved", "params_saved_exported", "macs_saved_exported", "agreement"]
    for rank in range(2):
        summary = json.loads((tmp_path / f"rank{rank}" / "summary.json").read_text())
        assert summary == {"world": 2, "orders": one.orders, "evaluated": IMAGES, "scored": True, "failed": []}
        two = pd.read_pickle(tmp_path / f"rank{rank}" / "table.pkl")
        assert list(two.columns) == list(one.table.columns)
        pd.testing.assert_frame_equal(two[exact], one.table[exact], check_exact=True)
        # float32 logits of other batch shapes, a few roundings apart; the KL's float64 arithmetic carries them
        # in proportion to sqrt(KL) (tests/rounding.py): 1e-9 for the smallest KL here, 1e-6 for the largest
        kl_tol = [kl_tolerance(kl, logit_scale, classes=1000) for kl in one.table["kl"]]
        assert (np.abs(two["kl"] - one.table["kl"]) <= kl_tol).all(), (two["kl"] - one.table["kl"]).abs().max()
    assert (tmp_path / "rank0" / "outputs").is_dir() and any((tmp_path / "rank0" / "outputs").iterdir())
    assert not (tmp_path / "rank1" / "outputs").exists()  # rank 0 alone writes


@pytest.mark.slow
@pytest.mark.parametrize("how,message", [("folder", "rank 1: data folder"),
                                         ("loop", "rank 1: RuntimeError: injected failure on the second batch"),
                                         ("subset", "rank 1 sees another image list than rank 0")])
def test_a_failing_rank_stops_both_with_the_message_once(setup, tmp_path, how, message):
    data, checkpoint, *_ = setup
    result = tmp_path / "result.txt"
    ranks = _two_ranks("fail", str(data), str(checkpoint), str(result), how)
    assert [p.returncode for p in ranks] == [2, 2], [p.stderr for p in ranks]
    errors = [line for p in ranks for line in p.stderr.splitlines() if line.startswith("seprobe: error:")]
    assert len(errors) == 1 and message in errors[0] and errors[0] in ranks[0].stderr
    assert not result.exists() and all(p.stdout == "" for p in ranks)
