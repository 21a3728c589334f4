"""The package layout's rules: registries resolve, dependencies point downwards, no module imports the CLI."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

from hf_unlearn.cli.main import COMMANDS
from hf_unlearn.demo.methods import DEMO_METHODS
from hf_unlearn.trainers import METHODS, import_path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_unlearn"


def imported_modules(path: Path) -> set[str]:
    """Every ``hf_unlearn`` module a file imports, at any depth of the file (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("hf_unlearn")}


@pytest.mark.parametrize(
    "registry",
    [
        {name: spec for name, (spec, _) in COMMANDS.items()},
        DEMO_METHODS,
        {f"{name}.{i}": spec for name, pair in METHODS.items() for i, spec in enumerate(pair)},
    ],
    ids=["commands", "demo_methods", "trainer_methods"],
)
def test_every_registry_entry_names_something_callable(registry):
    for name, spec in registry.items():
        assert callable(import_path(spec)), (name, spec)


def test_no_library_module_imports_the_command_line():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        imports = imported_modules(path)
        if relative.parts[0] != "cli":
            assert not {m for m in imports if m.startswith("hf_unlearn.cli")}, relative
        elif relative.name not in ("main.py", "__main__.py"):
            assert "hf_unlearn.cli.main" not in imports, f"{relative} imports the dispatcher"
    assert not list(PACKAGE.glob("*_cli.py"))


def test_every_name_imported_from_the_package_exists():
    """A moved module or name breaks no importer: tests, benchmarks and scripts included."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    missing = []
    for path in files + list((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hf_unlearn"):
                module = importlib.import_module(node.module)
                missing += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if not hasattr(module, alias.name)
                    and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
                ]
    assert not missing


def test_every_package_folder_is_a_regular_package():
    """setuptools' find_packages ships only folders with an ``__init__.py`` (a namespace folder would import from
    a checkout but be missing from the wheel)."""
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists()) == []
