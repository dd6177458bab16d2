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
