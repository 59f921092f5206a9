"""One-way imports (STYLE.md practice 1): the config imports no other stage; model code never imports
training, data, CLI or optimizer code; data code never imports model code; no module imports itself
back through others (no cycles, function-level imports included). Checked on the source, so no module
has to be built."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dyadgen"

FORBIDDEN = {
    "config": ("dyadgen.data", "dyadgen.models", "dyadgen.encoders", "dyadgen.training", "dyadgen.eval",
               "dyadgen.commands", "dyadgen.cli", "dyadgen.pipeline", "dyadgen.io.audio", "dyadgen.io.video",
               "torch"),
    "models": ("dyadgen.data", "dyadgen.training", "dyadgen.cli", "dyadgen.commands", "dyadgen.pipeline",
               "dyadgen.preprocess", "torch.optim", "accelerate"),
    "data": ("dyadgen.models", "dyadgen.encoders", "dyadgen.training", "dyadgen.pipeline"),
    "encoders": ("dyadgen.data", "dyadgen.training", "dyadgen.commands", "dyadgen.cli"),
    "eval": ("dyadgen.training", "dyadgen.commands", "dyadgen.cli", "accelerate", "torch.optim"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative import: resolve against the file's package
                package = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join(package)
                names.add(f"{base}.{node.module}")
            else:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("area", sorted(FORBIDDEN))
def test_area_imports_stay_one_way(area):
    files = sorted((PACKAGE / area).rglob("*.py"))
    if not files:
        pytest.skip(f"dyadgen/{area} has no modules yet")
    offences = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in files
        for name in sorted(imported_modules(path))
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[area])
    ]
    assert not offences, "\n".join(offences)


def test_checker_sees_forbidden_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from dyadgen.training import loop\nimport torch.optim as optim\nfrom torch import nn\n")
    names = imported_modules(probe)
    assert {"dyadgen.training", "torch.optim", "torch.nn"} <= names


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """dyadgen module -> the dyadgen modules it imports anywhere in its file (function bodies too)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            while imported and imported not in modules:  # "pkg.mod.Name" -> "pkg.mod"
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(" -> ".join(trail[trail.index(nxt):] + [node, nxt]) if nxt in trail
                             else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycles():
    """Not even through an import inside a function: a cycle there is the same tangle, only hidden."""
    graph = import_graph()
    assert {"dyadgen.config.loading", "dyadgen.data.windows"} <= set(graph)
    assert "dyadgen.config.presets" in graph["dyadgen.config.loading"]
    found = cycles(graph)
    assert not found, "\n".join(found)


def test_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from dyadgen.data.windows import windows_needing\n")
    assert "dyadgen.data.windows" in imported_modules(probe)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert cycles({"a": {"b"}, "b": set()}) == []
