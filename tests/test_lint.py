"""House style is checked by the same command that runs the tests: ruff over every Python file we own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_ruff_is_clean():
    beside = Path(sys.executable).parent / "ruff"             # the venv the tests run in
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: it is in the dev extras"
    proc = subprocess.run([ruff, "check", "--output-format", "concise", "infra", "scripts", "tests", "policy"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_module_compiles():
    proc = subprocess.run([sys.executable, "-m", "compileall", "-q", "infra", "scripts", "policy"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
