"""What the import-linter contracts (pyproject.toml, run by `make test`) cannot say about the library's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LIBRARY = Path(__file__).resolve().parents[2] / "include" / "airloop"
#: Third-party modules whose internals airloop relies on: used by airloop.vendor alone.
VENDOR_ONLY = ("mlflow.data.dataset_source", "aiosmtpd.controller", "great_expectations")


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(LIBRARY.rglob("*.py"))]


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def test_no_function_imports_an_airloop_module():
    """Lazy imports are for heavy third-party libraries; a lazy airloop import would hide a cycle."""
    found = [
        f"{path.relative_to(LIBRARY)}:{sub.lineno} imports {name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for sub in ast.walk(node)
        for name in _imported(sub)
        if name == "airloop" or name.startswith("airloop.")
    ]
    assert found == []


def test_third_party_internals_are_reached_through_airloop_vendor():
    found = [
        f"{path.relative_to(LIBRARY)}:{node.lineno} imports {name}"
        for path, tree in _modules()
        if path.parent.name != "vendor"
        for node in ast.walk(tree)
        for name in _imported(node)
        if any(name == banned or name.startswith(f"{banned}.") for banned in VENDOR_ONLY)
    ]
    assert found == []


def test_the_checks_see_the_library():
    """A check that reads nothing passes for nothing: the library and its vendor seams are where they are said."""
    names = {path.relative_to(LIBRARY).as_posix() for path, _tree in _modules()}
    assert {"core/spec.py", "vendor/gx.py", "vendor/mlflow.py", "vendor/aiosmtpd.py"} <= names
