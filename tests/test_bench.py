"""bench/run.py --smoke runs end to end and reports every measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "server", "crawl_nopipe_s", "crawl_nopipe_rate", "crawl_full_s", "crawl_full_rate",
    "crawl_full_written", "crawl_ratio", "crawl_full_peak_rss", "rerun_s", "rerun_written",
    "rerun_speedup", "rerun_peak_rss", "durable_write_ceiling", "dedup_us_1000",
}  # fmt: skip


def test_smoke_run_reports_every_measurement(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(output.read_text(encoding="utf-8"))
    assert results.keys() >= KEYS
    assert results["crawl_full_written"]["value"] == 200
    assert results["rerun_written"]["value"] == 0
