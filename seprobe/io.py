"""Writing results so that nothing is lost: each file atomically, and a run's files all together or not at all.

* :func:`atomic_write` writes a hidden temporary file beside the target and renames it into place: the target is
  either its old self or complete. New files get the permissions the umask allows (``mkstemp`` alone would make
  them 0600), a replaced file keeps its mode. A symbolic link is written through (its target is replaced, the link
  stays); a target that is not a regular file (``/dev/stdout``, a pipe) is written to directly, never replaced.
* Inside :func:`output_set`, renames wait until the block ends: the run's files then appear together (with SIGINT
  and SIGTERM held back for the few renames: :func:`seprobe.interrupts.signals_held`), or, on any error or
  interrupt, none of them does, no temporary file is left and folders the set created are removed again.
* :func:`check_output_file` / :func:`check_output_dir` refuse an unwritable location before any long work.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeprobeError, check_path
from .interrupts import clean_up_on_interrupt, signals_held


@dataclass
class _Staged:
    renames: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary file, target)
    created_dirs: list[Path] = field(default_factory=list)


_STAGED: contextvars.ContextVar[_Staged | None] = contextvars.ContextVar("seprobe_output_set", default=None)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_parents(folder: Path, staged: _Staged | None) -> None:
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise SeprobeError(f"cannot create folder {str(d)!r}: {e.strerror}") from None
        if staged is not None:
            staged.created_dirs.append(d)


def _resolve_target(path: Path) -> Path:
    """Where writing ``path`` lands: a symbolic link's final target (written through), else ``path``."""
    if path.is_symlink():
        real = Path(os.path.realpath(path))
        if real.exists() or not path.exists():
            return real
        # the link works but its target has no name in the file system (``/dev/stdout`` onto a pipe)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path``; on any error ``path`` is left untouched.

    Inside :func:`output_set` the move waits for the end of the set. Returns ``path``."""
    path = Path(path)
    target = _resolve_target(path)
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise SeprobeError(f"cannot write {str(path)!r}: it is a folder; valid: a file path")
        with clean_up_on_interrupt():
            return _write_through(path, target, write)
    with clean_up_on_interrupt():
        return _stage(path, target, write)


def _stage(path: Path, target: Path, write: Callable[[Path], None]) -> Path:
    staged = _STAGED.get()
    _make_parents(target.parent, staged)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    with signals_held():  # the temporary file is registered for clean-up before anything can interrupt
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as e:
            raise SeprobeError(f"cannot write {str(path)!r}: {e.strerror}") from None
        os.close(fd)
        tmp = Path(name)
        if staged is not None:
            staged.renames.append((tmp, target))
    try:
        write(tmp)
        os.chmod(tmp, mode)
        if staged is None:
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_through(path: Path, target: Path, write: Callable[[Path], None]) -> Path:
    """A device or a pipe (``-o /dev/stdout``): written to directly; there is nothing there to replace."""
    with tempfile.TemporaryDirectory(prefix="seprobe-") as d:
        tmp = Path(d) / target.name
        write(tmp)
        with open(tmp, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def output_set() -> Iterator[None]:
    """Every :func:`atomic_write` inside the block lands together when the block ends, or none does."""
    if _STAGED.get() is not None:  # nested: the outer set decides
        yield
        return
    with clean_up_on_interrupt():
        yield from _land_together()


def _land_together() -> Iterator[None]:
    staged = _Staged()
    token = _STAGED.set(staged)
    try:  # an interrupt anywhere before the renames (the block, the reset, the moment before they start) discards
        try:
            yield
        finally:
            _STAGED.reset(token)
        with signals_held():
            for tmp, target in staged.renames:
                os.replace(tmp, target)
    except BaseException:
        with signals_held():
            _discard(staged)  # after the renames: nothing left to discard, the folders hold the files
        raise


def _discard(staged: _Staged) -> None:
    for tmp, _ in staged.renames:
        tmp.unlink(missing_ok=True)
    for d in reversed(staged.created_dirs):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: nothing of the user's is removed


def pending_files(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder``, counting those the current output set will write."""
    found = {p.resolve() for p in folder.glob(pattern)} if folder.is_dir() else set()
    staged = _STAGED.get()
    if staged is not None:
        found |= {t.resolve() for _, t in staged.renames if t.parent.resolve() == folder.resolve()
                  and t.match(pattern)}
    return sorted(found)


def read_pending_text(path: Path) -> str:
    """The text ``path`` will hold once the current output set lands."""
    staged = _STAGED.get()
    if staged is not None:
        for tmp, target in reversed(staged.renames):
            if target.resolve() == path.resolve():
                return tmp.read_text(encoding="utf-8")
    return path.read_text(encoding="utf-8")


def _writable_ancestor(folder: Path, what: str, path: Path | None = None) -> None:
    """Refuse ``folder`` (to be made, with its missing parents) unless its nearest existing ancestor is a folder
    in which something can be created; errors name ``path`` (the output given: a file in ``folder``), by default
    ``folder`` itself."""
    path = folder if path is None else path
    p = folder
    while not p.exists():
        if p.is_symlink():
            raise SeprobeError(f"{what} {str(path)!r}: {str(p)!r} is a broken link; valid: a writable location",
                               argument=what)
        p = p.parent
    if not p.is_dir():
        raise SeprobeError(f"{what} {str(path)!r}: {str(p)!r} is a file, not a folder; valid: a path in a folder",
                           argument=what)
    if not os.access(p, os.W_OK | os.X_OK):
        raise SeprobeError(f"{what} {str(path)!r}: folder {str(p)!r} is not writable; valid: a writable location",
                           argument=what)
    refused = _creation_refused(p)
    if refused:
        raise SeprobeError(f"{what} {str(path)!r}: nothing can be created in folder {str(p)!r} ({refused}); valid: "
                           "a writable location", argument=what)


def _creation_refused(folder: Path) -> str | None:
    """Why nothing can be created in ``folder``, tried with an empty folder made and removed at once; ``None``
    when it can. ``os.access`` answers yes to root for ``/proc`` and for a full disk, where the outputs would
    fail only after the work."""
    with signals_held():  # the probe is removed before a Ctrl-C acts
        try:
            probe = tempfile.mkdtemp(prefix=".seprobe-probe-", dir=folder)
        except OSError as e:
            return e.strerror or type(e).__name__
        os.rmdir(probe)
    return None


def replaces(output: str | os.PathLike, source: str | os.PathLike) -> bool:
    """Whether writing ``output`` would replace the file ``source`` (the same file, through any path or link):
    an input that would be lost when the outputs land, refused by the caller before any work."""
    return Path(source).is_file() and _resolve_target(Path(output)).resolve() == Path(source).resolve()


def check_output_file(path: str | os.PathLike | None, what: str = "output") -> None:
    """Refuse, before any work, an output file that cannot be written."""
    if path is None:
        return
    check_path(what, path, "a file path")
    path = Path(path)
    target = _resolve_target(path)
    if target.is_dir():
        raise SeprobeError(f"{what} {str(path)!r} is a folder; valid: a file path", argument=what)
    if target.exists():
        if not os.access(target, os.W_OK):
            raise SeprobeError(f"{what} {str(path)!r} is not writable; valid: a writable file path", argument=what)
        if not target.is_file():
            return  # a device or pipe, written through
    _writable_ancestor(target.parent, what, path)


def check_output_dir(path: str | os.PathLike, what: str = "out") -> None:
    """Refuse, before any work, an output folder that cannot be created or written."""
    check_path(what, path, "a folder path")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SeprobeError(f"{what} {str(path)!r} is a file; valid: a folder (new or existing)", argument=what)
    _writable_ancestor(path, what)


#: the file that holds a folder for one run (:func:`folder_lock`); a folder that holds only it counts as empty
LOCK = ".seprobe.lock"


_WHAT = object()  # folder_lock's default argument: the one ``what`` names


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str, argument: str | None | object = _WHAT) -> Iterator[None]:
    """Hold ``folder`` for this process: another that asks while it is held is refused at once. The lock is the
    kernel's (``flock``), so a process killed with SIGKILL holds nothing; without ``fcntl`` (Windows) there is
    none. ``what`` names the folder in the refusal, ``argument`` the Python argument it is about (``what``
    itself by default; None: none, for words such as ``run folder``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with clean_up_on_interrupt():
        yield from _held(Path(folder), what, fcntl, what if argument is _WHAT else argument)


def _held(folder: Path, what: str, fcntl, argument: str | None) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SeprobeError(f"{what} {str(folder)!r} is in use by another run; valid: one run a folder at a "
                               f"time (wait for it to end, or another {what})", argument=argument) from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)

