"""The code stays ruff clean (the same check a reviewer runs)."""

from __future__ import annotations

import subprocess
import sys

from support import PROJECT_ROOT


def test_ruff_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "crawler", "tests", "bench"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
