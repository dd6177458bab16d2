"""seprobe.io.atomic_write on its own, outside an output set (``-o``, an export, ``GateStats.save``): a write
that fails midway leaves the target as it was and no temporary file."""

import pytest

from seprobe.io import atomic_write


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
