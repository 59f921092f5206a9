"""One-way imports (STYLE.md practice 1): packages by stage in layers, each importing only from the layers
below it (commands -> stages -> models/encoders -> media/io/config); model code never imports training,
data, CLI or optimizer code; no module imports itself back through others (no cycles, function-level
imports included); an import inside a function is only ever an optional dependency, commented. Checked
on the source, so no module has to be built."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dyadgen"

# A module may import dyadgen code of its own package or of a lower layer; the base layer (the root
# utilities, io/ and config/) imports only itself, and so does the command layer on top. Every package is in
# exactly one layer.
LAYERS = {
    0: ("", "errors", "clock", "compat", "devices", "io", "config"),
    1: ("media",),  # decoding a dialogue video into the two people's frames and audio
    2: ("data",),  # corpus reading and the synthetic corpus
    3: ("models", "encoders"),  # peers: neither imports the other
    4: ("cache",),  # preprocessing through the frozen encoders, shards, windows, loader
    5: ("inference",),
    6: ("training",),  # writes an inference folder at the end of a run
    7: ("eval",),  # generates through inference
    8: ("bench",),
    9: ("commands", "cli", "__main__"),
}
LAYER = {package: rank for rank, packages in LAYERS.items() for package in packages}

FORBIDDEN = {  # third-party code a layer must not need
    "config": ("torch",),
    "models": ("torch.optim", "accelerate"),
    "data": ("torch",),
    "eval": ("accelerate", "torch.optim"),
}
# the only libraries a function may import on first use (optional extras or platform wheels), each with a
# comment that says so; everything else is imported at the top of its module
OPTIONAL = ("matplotlib", "sklearn", "dlib", "torchmetrics", "peft", "opensmile", "xformers", "wandb", "decord")
# compat.py's patches load what they patch on use (model code imports compat and must not load accelerate)
ON_USE_IN_COMPAT = ("accelerate", "torch.distributed", "torch.testing")


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
def test_a_layer_never_needs_the_libraries_it_must_not(area):
    files = sorted((PACKAGE / area).rglob("*.py"))
    assert files, f"dyadgen/{area} has no modules"
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
    assert {"dyadgen.config.loading", "dyadgen.cache.windows"} <= set(graph)
    assert "dyadgen.config.presets" in graph["dyadgen.config.loading"]
    found = cycles(graph)
    assert not found, "\n".join(found)


def test_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from dyadgen.cache.windows import windows_needing\n")
    assert "dyadgen.cache.windows" in imported_modules(probe)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def package_of(module: str) -> str:
    """dyadgen.cache.windows -> cache; dyadgen.errors -> errors; dyadgen -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        here = package_of(module)
        for target in sorted(targets):
            there = package_of(target)
            if there == here or (LAYER[here] == LAYER[there] and LAYER[here] in (0, max(LAYERS))):
                continue  # within a package; the base and the command layer use their own (cycles: below)
            if LAYER[there] >= LAYER[here]:
                found.append(f"{module} (layer {LAYER[here]}) imports {target} (layer {LAYER[there]})")
    return found


def test_every_package_has_a_layer_and_a_one_line_purpose():
    graph = import_graph()
    packages = {package_of(m) for m in graph}
    assert packages <= set(LAYER), f"place new packages in LAYERS: {sorted(packages - set(LAYER))}"
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and len(doc.split(".")[0]) > 20, f"dyadgen/{folder.name}/__init__.py: say what the package is"


def test_packages_import_only_from_lower_layers():
    """commands -> bench -> eval -> training -> inference -> cache -> models/encoders -> data -> media ->
    io/config: a stage never reaches up (evaluation never imports training, data never imports the cache)."""
    found = upward_imports(import_graph())
    assert not found, "\n".join(found)


def test_layer_checker_sees_an_upward_import():
    graph = {"dyadgen.data.layout": {"dyadgen.cache.windows", "dyadgen.io.audio"},
             "dyadgen.cache.windows": {"dyadgen.cache.shards", "dyadgen.data.layout"},
             "dyadgen.io.audio": {"dyadgen.errors"}}
    assert upward_imports(graph) == ["dyadgen.data.layout (layer 2) imports dyadgen.cache.windows (layer 4)"]


def function_level_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, commented) of every import inside a function; commented when the line or
    the comment line right above it says why."""
    lines = path.read_text().splitlines()
    found = {}
    for func in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                    found[node.lineno] = (name or "", "#" in lines[node.lineno - 1] or above.startswith("#"))
    return [(line, name, commented) for line, (name, commented) in sorted(found.items())]


def lazy_import_offences(path: Path) -> list[str]:
    where = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
    allowed = OPTIONAL + (ON_USE_IN_COMPAT if path.name == "compat.py" else ())
    offences = []
    for line, name, commented in function_level_imports(path):
        if not any(name == lib or name.startswith(lib + ".") for lib in allowed):
            offences.append(f"{where}:{line} imports {name} inside a function: import it at the top")
        elif not commented:
            offences.append(f"{where}:{line} imports {name} on first use without a comment saying why")
    return offences


def test_imports_inside_functions_are_only_optional_dependencies_and_say_so():
    offences = [o for path in sorted(PACKAGE.rglob("*.py")) for o in lazy_import_offences(path)]
    assert not offences, "\n".join(offences)


def test_lazy_import_checker_sees_a_hidden_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from dyadgen.cache import windows\n\n\ndef g():\n    import sklearn\n\n\n"
                     "def h():\n    # optional (the eval extra)\n    import dlib\n")
    offences = lazy_import_offences(probe)
    assert len(offences) == 2
    assert "dyadgen.cache inside a function" in offences[0] and "sklearn on first use without" in offences[1]
