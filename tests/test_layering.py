"""The import graph points one way (DESIGN.md section 2)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["pivotal", "config", "crm", "dialer", "pacing", "dispatch", "console_web", "admin_api", "sim"]

#: What each package may import from the project. pivotal is the composition root and may import anything.
ALLOWED = {
    "config": set(),
    "pacing": set(),
    "crm": {"config"},
    "dialer": {"crm", "config", "pacing"},
    "dispatch": {"crm", "config", "pacing"},
    "console_web": {"dialer", "dispatch", "crm", "config", "pacing"},
    "admin_api": {"dialer", "dispatch", "crm", "config", "pacing"},
    "sim": {"config", "pacing"},
}


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_one_way(package: str) -> None:
    """No package imports pivotal or anything above it in the layering."""
    project = _imports(package) & set(PACKAGES)
    assert project - {package} <= ALLOWED[package]


def test_pacing_imports_only_the_standard_library() -> None:
    """pacing is pure math: standard library only."""
    assert _imports("pacing") <= set(sys.stdlib_module_names) | {"pacing"}
