"""The code stays ruff clean (the same checks a reviewer runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import PROJECT_ROOT


@pytest.mark.parametrize(
    "command", [("check",), ("format", "--check")], ids=["ruff check", "ruff format --check"]
)
def test_ruff_passes(command: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "crawler", "tests", "bench"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
