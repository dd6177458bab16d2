"""An empty path on the command line (``--out ''``, ``--out=``) is refused in one line: typer reads it as
``Path('')``, the current folder, into which ``seprobe prune --out=`` wrote its network before."""

from __future__ import annotations

import os

import pytest
import typer.main

from seprobe.cli.app import app, main

#: options whose value is a file or folder, as their help shows them, and path arguments (``--weights`` is PATH:
#: a file, ``random`` or ``pretrained``)
PATH_METAVARS = {"FILE", "DIR"}


def _path_options() -> list[tuple[tuple[str, ...], str]]:
    found = []

    def walk(command, prefix):
        for name, sub in getattr(command, "commands", {}).items():
            if hasattr(sub, "commands"):
                walk(sub, (*prefix, name))
                continue
            for p in sub.params:
                if p.param_type_name == "option" and p.metavar in PATH_METAVARS:
                    found.append(((*prefix, name), next(o for o in p.opts if o.startswith("--"))))
                elif p.param_type_name == "argument":
                    found.append(((*prefix, name), ""))

    walk(typer.main.get_command(app), ())
    return found


PATH_OPTIONS = _path_options()


def test_the_path_options_are_found():
    """The listing the tests below run through holds the options a user writes into (a hand count)."""
    by_command = {}
    for command, option in PATH_OPTIONS:
        by_command.setdefault(" ".join(command), set()).add(option)
    assert by_command["prune"] >= {"--out", "--data", "--labels"}
    assert by_command["train"] >= {"--data", "--out", "--resume", "--train-data", "--val-data"}
    assert by_command["study run"] >= {"", "--out"} and "--output" in by_command["complexity"]
    assert len(PATH_OPTIONS) >= 25


def _run(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return stop.value.code, err


#: each option given empty as ``--out ''`` and as ``--out=`` (an argument, as ``''`` only)
SPELLINGS = [(c, o, s) for c, o in PATH_OPTIONS for s in (("separate", "equals") if o else ("separate",))]


@pytest.mark.parametrize("command,option,spelling", SPELLINGS, ids=[f"{' '.join(c)} {o} {s}" for c, o, s in SPELLINGS])
def test_an_empty_path_is_one_line_and_touches_nothing(tmp_path, monkeypatch, capsys, command, option, spelling):
    given = [option, ""] if spelling == "separate" else [option + "="]
    argv = [*command, *(given if option else [""])]
    code, err = _run(tmp_path, monkeypatch, capsys, argv)
    assert code == 2 and len(err) == 1, err
    named = option or "STUDY.toml"
    assert err[0] == f"seprobe: error: {named} is empty; valid: a path ('.' for the current folder)", err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command,rest", [
    ("complexity", []), ("evaluate", ["--data", "{data}"]),
    ("prune", ["--data", "{data}", "--criterion", "l1", "--keep-macs", "0.5", "--out", "{run}"]),
    ("train", ["--data", "{data}", "--out", "{run}"])])
def test_empty_weights_are_one_line(tmp_path, monkeypatch, capsys, command, rest):
    """``--weights`` is a file, ``random`` or ``pretrained``: empty, it is no such file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "cwd").mkdir()
    rest = [w.format(data=tmp_path / "data", run=tmp_path / "run") for w in rest]
    code, err = _run(tmp_path / "cwd", monkeypatch, capsys, [command, "--model", "resnet18", "--weights=", *rest])
    assert code == 2 and err == ["seprobe: error: --weights '': no such file; valid: a checkpoint path, "
                                 "'pretrained' or 'random'"], err
    assert sorted(os.listdir(tmp_path)) == ["cwd", "data"] and os.listdir(tmp_path / "cwd") == []


def test_a_value_that_only_ends_in_equals_is_not_an_empty_path(tmp_path, monkeypatch, capsys):
    """``--classes a=`` or a folder named ``x=`` is a value, not an empty option."""
    (tmp_path / "x=").mkdir()
    code, err = _run(tmp_path, monkeypatch, capsys, ["evaluate", "--model", "resnet18", "--data", "x="])
    assert code == 2 and "is empty" not in err[-1], err
