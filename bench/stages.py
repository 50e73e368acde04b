"""The pipelines alone, in process: the time of each stage of an article's path, and the
throughput of the whole path with 32 articles in flight (as in a crawl).

Used by bench/run.py; the articles are bench_pipelines.py's (the reference post's body with
lazy images, relative links and a script added, distinct titles).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench_pipelines import articles, run_pass
from scrapy.utils.test import get_crawler

from crawler.archive.service import ArchiveService
from crawler.pipelines.dedup import DedupPipeline
from crawler.pipelines.normalize import NormalizePipeline
from crawler.pipelines.validate import ValidatePipeline
from crawler.pipelines.write import WritePipeline
from crawler.post import cleaning
from crawler.settings import FALLBACK_IMAGE

STAGES = ("clean", "sanitize", "encode", "normalize_rest", "dedup", "validate", "write")


class _Timed:
    """Wraps a callable, adding the seconds it takes to ``totals[name]``."""

    def __init__(self, call: Callable[..., Any], name: str, totals: dict[str, float]) -> None:
        self.call, self.name, self.totals = call, name, totals

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return self.call(*args, **kwargs)
        finally:
            self.totals[self.name] += time.perf_counter() - began


class _TimedCleaner:
    def __init__(self, cleaner: Any, totals: dict[str, float]) -> None:
        self.clean = _Timed(cleaner.clean, "sanitize", totals)


def stage_times(count: int, output: Path) -> dict[str, float]:
    """Microseconds per article of each stage, one article after another on one thread."""
    totals: dict[str, float] = defaultdict(float)
    sanitizer, encode, body = cleaning._SANITIZER, cleaning.encode_for_post, cleaning.clean_body
    cleaning._SANITIZER = _TimedCleaner(sanitizer, totals)  # type: ignore[assignment]
    cleaning.encode_for_post = _Timed(encode, "encode", totals)  # type: ignore[assignment]
    timed_body = _Timed(body, "clean_body", totals)
    crawler = get_crawler(settings_dict={"OUTPUT_DIR": str(output)})
    assert crawler.stats is not None
    crawler.stats.open_spider()
    archive = ArchiveService(output, timedelta(hours=1))
    normalize = NormalizePipeline(crawler.stats, FALLBACK_IMAGE)
    dedup = DedupPipeline(crawler.stats, archive)
    validate = ValidatePipeline(crawler.stats)
    write = WritePipeline(crawler.stats, archive)
    import crawler.post.article as article_module

    article_module.clean_body = timed_body  # type: ignore[assignment]

    async def path() -> None:
        for item in articles(count):
            began = time.perf_counter()
            item = normalize.normalize(item)
            totals["normalize"] += time.perf_counter() - began
            for name, step in (("dedup", dedup.process_item), ("validate", validate.process_item)):
                began = time.perf_counter()
                item = step(item)
                totals[name] += time.perf_counter() - began
            began = time.perf_counter()
            await write.process_item(item)
            totals["write"] += time.perf_counter() - began

    try:
        asyncio.run(path())
    finally:
        archive.close()
        cleaning._SANITIZER, cleaning.encode_for_post = sanitizer, encode
        article_module.clean_body = body
    totals["clean"] = totals["clean_body"] - totals["sanitize"] - totals["encode"]
    totals["normalize_rest"] = totals["normalize"] - totals["clean_body"]
    return {name: totals[name] / count * 1e6 for name in STAGES}


def pipelines_rate(count: int, output: Path) -> float:
    """Articles per second through normalize -> dedup -> write, 32 in flight."""
    elapsed, written = run_pass(articles(count), output)
    assert written == count, f"{written} of {count} written"
    return count / elapsed
