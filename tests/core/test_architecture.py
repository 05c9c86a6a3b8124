"""The code's shape, as the next engineer relies on it.

- dd_core has no import cycle. The graph holds every import statement of every module, those
  inside functions and under ``if TYPE_CHECKING`` included, so a cycle cannot hide behind a
  deferred import.
- dd_core imports nothing from dd_dagster or dagster.
- dd_dagster reaches dd_core through its two public modules only: ``dd_core`` (the user API)
  and ``dd_core.orchestration`` (what an orchestrator needs).
- dd_dagster and the benchmarks use no Dagster private module (``dagster._...``); what Dagster
  offers no public API for lives in ``dd_dagster/dagster_internals.py``, whose own tests fail on a
  Dagster upgrade that breaks it. (Tests may look inside Dagster to check what it recorded.)
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

DD_CORE = ROOT / "dd_core"
DD_DAGSTER = ROOT / "dd_dagster"
PUBLIC_FACES = {"dd_core", "dd_core.orchestration"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: Path, root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in package.rglob("*.py")}


def _graph(package: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    modules = _modules(package, root)
    return {
        name: {target for target, _ in _imports(path, set(modules), root) if target in modules and target != name}
        for name, path in modules.items()
    }


def _imports(path: Path, known: set[str], root: Path = ROOT) -> list[tuple[str, int]]:
    """(module imported, line) for every import statement in the file, at any depth."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in known else base, node.lineno))
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting, done = [], set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found:
                return found
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_dd_core_has_no_import_cycle():
    graph = _graph(DD_CORE)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import(tmp_path):
    """The check above is only as good as the graph: an import inside a function counts."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from pkg import a\n    return a\n")
    graph = _graph(package, root=tmp_path)
    assert _cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_dd_core_does_not_import_dagster_or_dd_dagster():
    modules = _modules(DD_CORE)
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in modules.values()
        for target, line in _imports(path, set(modules))
        if target.split(".")[0] in {"dagster", "dd_dagster"}
    ]
    assert not offenders, offenders


def test_dd_dagster_uses_only_dd_cores_public_faces():
    core = set(_modules(DD_CORE))
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in DD_DAGSTER.rglob("*.py")
        for target, line in _imports(path, core)
        if target.split(".")[0] == "dd_core" and target not in PUBLIC_FACES
    ]
    assert not offenders, offenders


def test_dd_dagster_imports_no_dagster_private_module():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in [*DD_DAGSTER.rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
        for target, line in _imports(path, set())
        if target.startswith("dagster._")
    ]
    assert not offenders, offenders
