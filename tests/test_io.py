"""seprobe.io.atomic_write on its own, outside an output set (``-o``, an export, ``GateStats.save``): a write
that fails midway leaves the target as it was and no temporary file. And an output that cannot be written is
refused before any work."""

import os
from pathlib import Path

import pytest

from seprobe.errors import SeprobeError
from seprobe.io import atomic_write, check_output_dir, check_output_file

from .helpers import run_seprobe


def _half_then_fail(tmp):
    tmp.write_text("half a tab")  # something written, then the writer fails
    raise RuntimeError("the disk is full")


@pytest.mark.parametrize("existing", [None, "an older run's table\n"])
def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path, existing):
    target = tmp_path / "out.csv"
    if existing is not None:
        target.write_text(existing)
    with pytest.raises(RuntimeError, match="the disk is full"):
        atomic_write(target, _half_then_fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if existing is None else ["out.csv"])
    if existing is not None:
        assert target.read_text() == existing


def test_an_interrupted_write_cleans_up_too(tmp_path):
    def interrupted(tmp):
        tmp.write_bytes(b"\0" * 10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "gates.npz", interrupted)
    assert list(tmp_path.iterdir()) == []


def _half_written(f) -> None:
    """Write half a file to ``f`` (a path or a file object), then fail as a full disk does."""
    if hasattr(f, "write"):
        f.write(b"half")
    else:
        with open(f, "wb") as fh:
            fh.write(b"half")
    raise OSError("No space left on device")


@pytest.mark.parametrize("writer", ["export", "gate_stats", "tables"])
def test_the_writers_of_outputs_outside_a_set_leave_nothing_when_the_write_fails(tmp_path, monkeypatch, writer):
    """The same guarantee through the three writers that use atomic_write alone: ``seprobe ablate --export``
    (torch.save), ``GateStats.save`` (numpy), and ``-o FILE`` tables (the text write)."""
    import numpy as np
    import pandas as pd
    import torch

    from seprobe.models.ablated import export_ablated
    from seprobe.models.blocks import find_blocks
    from seprobe.models.registry import build_model
    from seprobe.probe.gate_stats import GateStats
    from seprobe.tables import write_tables

    target = tmp_path / {"export": "ablated.pth", "gate_stats": "gates.npz", "tables": "out.csv"}[writer]
    if writer == "export":
        model = build_model("se_resnet20_cifar").eval()
        monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: _half_written(f))
        call = lambda: export_ablated(model, find_blocks(model), {"SE_3_3": "identity"}, None, target,  # noqa: E731
                                      model_name="se_resnet20_cifar")
    elif writer == "gate_stats":
        stats = GateStats({"SE_2_1": (4, 0.0, 1.0)}, 2)
        monkeypatch.setattr(np, "savez_compressed", lambda f, *a, **k: _half_written(f))
        call = lambda: stats.save(target)  # noqa: E731
    else:
        import pathlib

        monkeypatch.setattr(pathlib.Path, "write_text", lambda self, *a, **k: _half_written(self))
        call = lambda: write_tables({"t": pd.DataFrame({"a": [1]})}, target, "csv", "models")  # noqa: E731
    with pytest.raises(OSError, match="No space left"):
        call()
    assert list(tmp_path.iterdir()) == []


# --- outputs that cannot be written, refused before any work ---------------------------------------------------------

#: a folder in which nothing can be created although ``os.access`` says yes to root: Linux's /proc
PROC = Path("/proc")


@pytest.mark.skipif(not (PROC / "self").is_dir(), reason="no Linux /proc here: no folder that refuses creation")
@pytest.mark.parametrize("check,given", [(check_output_dir, "/proc/seprobe-nope/run"),
                                         (check_output_file, "/proc/seprobe-nope.csv")])
def test_an_output_where_nothing_can_be_created_is_refused_before_any_work(check, given):
    with pytest.raises(SeprobeError) as e:
        check(given, "out")
    assert str(e.value).startswith(f"out {given!r}: nothing can be created in folder '/proc' (")
    assert str(e.value).endswith("); valid: a writable location") and e.value.argument == "out"


def test_the_creation_probe_leaves_nothing_and_a_writable_folder_passes(tmp_path):
    (tmp_path / "kept").write_text("x")
    check_output_dir(tmp_path / "new" / "run", "out")
    check_output_file(tmp_path / "table.csv", "output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # neither the outputs nor a probe


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder of mode 0o555")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(SeprobeError, match=r"folder '.*locked' is not writable; valid: a writable location"):
        check_output_dir(locked / "run", "out")


@pytest.mark.skipif(not (PROC / "self").is_dir(), reason="no Linux /proc here: no folder that refuses creation")
def test_the_command_line_refuses_an_unwritable_output_before_any_work(tmp_path):
    proc = run_seprobe("complexity", "--model", "resnet18", "-o", "/proc/seprobe-nope.csv", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("seprobe: error: --output '/proc/seprobe-nope.csv': nothing can be created in "
                               "folder '/proc' (") and lines[0].endswith("); valid: a writable location"), lines
