"""The package's shape, read from its source: the import graph (imports inside functions and under
``TYPE_CHECKING`` counted) has no cycle and points downwards only, the ``timm:`` / ``torchvision:`` prefix is read
in one module, and no error raised outside the command line names a command-line flag.

``python tests/test_layers.py`` prints the graph's layers and any violation.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seprobe"

#: lower layers first; a module may import only from its own layer or below
LAYERS = (
    {"errors", "choices", "defaults", "interrupts", "io", "config", "devices", "distributed", "tables", "figures",
     "schema", "version"},
    {"data"},
    {"models", "paper"},
    {"cost", "probe", "training", "pruning"},
    {"report"},
    {"api"},
    {"studies"},
    {"cli", "__main__", "__init__"},
)
#: the one module that reads a model name's prefix
PREFIX_MODULE = "seprobe.models.sources"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports() -> list[tuple[str, str, list[str]]]:
    """(module, imported module, names taken from it) for every import statement, wherever it stands; a plain
    ``import x.y`` takes no names."""
    found = []
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                found.append((name, module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found += [(name, a.name, []) for a in node.names]
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the seprobe modules it imports."""
    mods = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, module, names in imports():
        # ``from pkg import mod`` depends on pkg.mod; ``from pkg import name`` on pkg
        targets = [f"{module}.{n}" if f"{module}.{n}" in mods else module for n in names] or [module]
        graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def missing_imports() -> list[str]:
    """``module: target`` for every import of a seprobe module that does not exist (an import inside a function
    fails only when it runs)."""
    mods = modules()
    return [f"{name}: {module}" for name, module, _ in imports() if module.startswith("seprobe") and module not in mods]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def unit(module: str) -> str:
    """``seprobe.models.factory`` -> ``models``; ``seprobe.api`` -> ``api``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if unit(module) in names)


def test_every_module_has_a_layer():
    assert all(any(unit(m) in names for names in LAYERS) for m in modules()), \
        [m for m in modules() if not any(unit(m) in names for names in LAYERS)]


def test_every_import_of_a_seprobe_module_exists():
    assert missing_imports() == []


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_packages():
    graph = import_graph()
    packages: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        packages[unit(a)] |= {unit(b) for b in targets if unit(b) != unit(a)}
    assert cycles(packages) == []


def test_imports_point_down():
    graph = import_graph()
    upward = [(a, b) for a, targets in graph.items() for b in targets
              if unit(a) != "__init__" and layer(b) > layer(a)]
    assert upward == []


def test_the_prefix_is_read_in_one_module():
    pattern = re.compile(r"""["'](timm|torchvision):["']""")
    readers = [m for m, path in modules().items() if pattern.search(path.read_text(encoding="utf-8"))]
    assert readers == [PREFIX_MODULE]


def _raised_messages(path: Path):
    """(line, text) of every string in the arguments of a ``raise X(...)``, and of every string that reads as an
    error message (``...; valid: ...``) wherever it stands: a message built in a variable and raised later."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            for arg in [*node.exc.args, *(k.value for k in node.exc.keywords)]:
                for part in ast.walk(arg):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        yield node.lineno, part.value
        elif isinstance(node, ast.JoinedStr) and any(
                isinstance(v, ast.Constant) and "valid:" in v.value for v in node.values):
            yield node.lineno, "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "valid:" in node.value:
            yield node.lineno, node.value


def test_no_flag_in_an_error_outside_the_command_line():
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    found = [f"{path.relative_to(PACKAGE)}:{line}: {text!r}" for name, path in modules().items()
             if not name.startswith("seprobe.cli") for line, text in _raised_messages(path) if flag.search(text)]
    assert found == []


if __name__ == "__main__":
    graph = import_graph()
    for i, names in enumerate(LAYERS):
        print(f"layer {i}: {', '.join(sorted(names))}")
    print("module cycles:", cycles(graph) or "none")
    for test in (test_every_module_has_a_layer, test_no_import_cycle_between_packages, test_imports_point_down,
                 test_the_prefix_is_read_in_one_module, test_no_flag_in_an_error_outside_the_command_line):
        try:
            test()
            print(f"{test.__name__}: ok")
        except AssertionError as e:
            print(f"{test.__name__}: FAILED {e}", file=sys.stderr)
