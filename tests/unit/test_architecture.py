"""The package's shape: no import cycle, no class too large to read, nothing imports the CLI."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ctm_m3l"
MAX_CLASS_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path], unresolved: list | None = None) -> set[str]:
    """The package modules ``name`` imports, at the top or inside functions (an import put in a
    function to dodge a cycle is still a cycle); imports of no package module go to
    ``unresolved``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ctm_m3l")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("ctm_m3l"):
                continue
            for alias in node.names:  # "from pkg import module" imports the module
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    if unresolved is not None:
        unresolved += [f"{name} imports {m}" for m in sorted(found) if m not in modules]
    return {m for m in found if m in modules and m != name}


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_package_has_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_every_package_import_names_a_module():
    """A relative import inside a function runs only when called: a wrong one (``from .model``
    in a subpackage) must fail here, not in a user's run."""
    modules, unresolved = _modules(), []
    for name, path in modules.items():
        _imports(name, path, modules, unresolved)
    assert unresolved == []


def test_nothing_imports_the_cli():
    importers = sorted(name for name, imported in _graph().items() if "ctm_m3l.cli" in imported)
    assert importers == []


def test_no_class_is_over_400_lines_and_model_py_is_short():
    sizes = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                sizes[f"{path.relative_to(PACKAGE)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert {k: v for k, v in sizes.items() if v > MAX_CLASS_LINES} == {}
    assert len((PACKAGE / "model.py").read_text().splitlines()) <= 350
