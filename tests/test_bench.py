"""bench/run.py --smoke runs end to end and reports every measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import background_job

ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "server", "crawl_nopipe_s", "crawl_nopipe_rate", "crawl_full_s", "crawl_full_rate",
    "crawl_full_written", "crawl_ratio", "crawl_full_peak_rss", "rerun_s", "rerun_written",
    "rerun_speedup", "rerun_peak_rss", "durable_write_ceiling", "dedup_us_1000",
    "crawl_nopipe_cpu_ms", "crawl_full_cpu_ms", "feedparser_rate", "feedparser_stock_rate",
    "feeds_crawl_s", "feeds_written", "feeds_rate", "feeds_ratio", "feeds_ratio_stock",
    "feeds_peak_rss", "pipelines_rate", "file_create_us_before", "file_create_us_after",
    "pipelines_vs_ceiling", "large_30_crawl_s", "large_30_peak_rss", "reindex_s",
    "reindex_peak_rss", *(f"stage_{s}_us" for s in (
        "clean", "sanitize", "encode", "normalize_rest", "dedup", "validate", "write"
    )),
}  # fmt: skip


@background_job
def smoke_run(folder: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The benchmark at its smoke sizes, in the background (it is a subprocess)."""
    output = folder / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    results = json.loads(output.read_text(encoding="utf-8")) if output.exists() else {}
    return done, results


def test_smoke_run_reports_every_measurement(
    smoke_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    done, results = smoke_run
    assert done.returncode == 0, done.stderr
    assert results.keys() >= KEYS
    assert results["crawl_full_written"]["value"] == 60
    assert results["rerun_written"]["value"] == 0
    # 3 feeds of 10 entries, every entry a post; every stage took some time.
    assert results["feeds_written"]["value"] == 30
    assert all(results[key]["value"] > 0 for key in KEYS if key.startswith("stage_"))
    # The large run's one size (30 articles at smoke size), then reindex of that archive.
    assert results["large_30_crawl_s"]["note"] == "exit 0, 30 of 30"
    assert results["reindex_s"]["note"] == "exit 0, 30 posts"
