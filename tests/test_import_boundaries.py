"""One-way imports (STYLE.md practice 1): model code never imports training, data, CLI or optimizer
code; data code never imports model code. Checked on the source, so no module has to be built."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dyadgen"

FORBIDDEN = {
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
