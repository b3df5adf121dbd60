"""ruff and mypy are part of the test suite, so "the tests pass" includes "the code is clean"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    """`ruff check` and `ruff format --check` report nothing."""
    check = _run(str(BIN / "ruff"), "check", ".")
    assert check.returncode == 0, check.stdout
    fmt = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_mypy_strict_is_clean() -> None:
    """mypy --strict over every package (configured in pyproject.toml) reports nothing."""
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout
