"""A real browser for the console tests: Debian's Chromium driven by Playwright (it cannot download its own here).

A machine without Chromium gets it from Debian's packages when the tests run as root (CI does), so the README's
single test command needs nothing installed by hand; elsewhere the browser tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
#: Screenshots of the browser tests (CI keeps the folder as the run's artifacts).
ARTIFACTS = Path(os.environ.get("PIVOTAL_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
_lock = threading.Lock()


def chromium() -> Path:
    with _lock:
        if CHROMIUM.exists():
            return CHROMIUM
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("Chromium is not installed: apt-get install -y chromium (as root) to run the browser tests")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=True)
            subprocess.run(install, env=env, capture_output=True, timeout=900, check=True)
        return CHROMIUM
