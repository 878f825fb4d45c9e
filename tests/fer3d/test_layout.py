"""The layout of the fer3d package: every module states its stage, no import cycle (lazy
imports inside functions count too), no private name imported from another module, and
the run directory's layout spelled in one module only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fer3d

ROOT = Path(fer3d.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported fer3d module, names taken from it) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            edges += [(a.name, []) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    edges.append((sub, []))
                elif base in modules:
                    edges.append((base, [alias.name]))
    return edges


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {target for target, _ in _imports(name, path, modules) if target != name}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycle_in_fer3d():
    graph = _graph()
    # A package's __init__ importing its own submodules is how re-exports work, not a cycle.
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_private_name_imported_across_modules():
    modules = _modules()
    private = [f"{name}: {target}.{n}" for name, path in modules.items()
               for target, names in _imports(name, path, modules) for n in names
               if n.startswith("_") and target != name]
    assert not private, private


def test_every_module_opens_with_its_stage():
    missing = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
               if "Stage:" not in (ast.get_docstring(ast.parse(p.read_text("utf-8"))) or "")]
    assert not missing, missing


def test_run_directory_layout_has_one_owner():
    """File names of the run directory are spelled in fer3d/campaign/rundir.py alone."""
    spelled = re.compile(r'"(fold\.json|epochs\.csv|logits\.npz|summary\.json|folds\.json|'
                         r'config\.json|weights\.pt|checkpoint\.pt|best\.pt)"|'
                         r'/ "(cells|claims|tensorboard)"|"(cells|claims)/|r\{[^}]*\}_f\{')
    owners = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                    if spelled.search(p.read_text(encoding="utf-8")))
    assert owners == ["campaign/rundir.py"], owners
