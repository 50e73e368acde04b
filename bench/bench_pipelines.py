"""Throughput and memory of the article path: normalize -> dedup -> write, in process.

Feeds N articles (the reference post's 10 KB body with a few lazy images, relative links
and a script added, distinct titles) through the real pipelines into a temporary archive,
then runs them again (all duplicates). Prints articles per second for each pass and the peak
resident memory. Usage: ``python bench/bench_pipelines.py [N]`` (default 2000).
"""

from __future__ import annotations

import asyncio
import inspect
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from crawler.archive.file_writer import shared_file_writer
from crawler.archive.service import ArchiveService
from crawler.items import Article
from crawler.pipelines.dedup import DedupPipeline
from crawler.pipelines.normalize import NormalizePipeline
from crawler.pipelines.write import WritePipeline
from crawler.post.clean_worker import shared_workers, stop_shared_workers
from crawler.settings import (
    CLEAN_PROCESSES,
    FALLBACK_IMAGE,
    WRITE_BATCH_DELAY,
    WRITE_GROUP_COMMIT,
    WRITE_PROCESS,
)

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "fixtures" / "golden" / "cnbeta-2021-07-17.md"
EXTRA = (
    '<p><img src="/grey.gif" data-original="//img.example/{i}.jpg" onload="x()"></p>'
    '<script>track({i})</script><p><a href="/articles/tech/{i}.htm">related</a></p>'
)


def articles(count: int) -> list[Article]:
    text = REFERENCE.read_text(encoding="utf-8")
    body = text.split("<div>   \n", 1)[1].rsplit("   \n</div>", 1)[0]
    start = datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
    return [
        Article(
            title=f"阿里腾讯已悄然&quot;握手&quot; 第{i}篇",
            url=f"https://www.cnbeta.com.tw/articles/tech/{1_000_000 + i}.htm",
            published=start - timedelta(minutes=i),
            categories=["新媒体", "cnBeta", "最新"],
            author="cnBeta",
            body=body + EXTRA.format(i=i),
            source="bench",
            strip_selectors=[".topic"],
        )
        for i in range(count)
    ]


def run_pass(items: list[Article], output: Path) -> tuple[float, int]:
    crawler = get_crawler(
        settings_dict={
            "OUTPUT_DIR": str(output),
            "FALLBACK_IMAGE": FALLBACK_IMAGE,
            "CLEAN_PROCESSES": CLEAN_PROCESSES,  # as a crawl cleans
        }
    )
    crawler.stats.open_spider()
    archive = ArchiveService(output, timedelta(hours=1))  # what EXTENSIONS builds in a crawl
    if WRITE_PROCESS:
        archive.file_writer = shared_file_writer()  # as a crawl writes its post files
    archive.batch_delay = WRITE_BATCH_DELAY  # and batches and syncs them
    archive.group_commit = WRITE_GROUP_COMMIT
    pipelines = [
        NormalizePipeline.from_crawler(crawler),
        DedupPipeline(crawler.stats, archive),
        WritePipeline(crawler.stats, archive),
    ]
    written = 0
    in_flight = asyncio.Semaphore(32)  # items in the pipelines at once, as in a crawl

    async def one(item: Article) -> None:
        nonlocal written
        async with in_flight:
            try:
                for pipeline in pipelines:
                    item = pipeline.process_item(item)
                    if inspect.isawaitable(item):
                        item = await item
                written += 1
            except DropItem:
                pass  # duplicates on the second pass: that is what is measured

    async def feed() -> float:
        # The workers started first, as a crawl starts them while it fetches its first pages.
        await shared_workers(CLEAN_PROCESSES).warm_up()
        if archive.file_writer is not None:
            archive.file_writer.start()
        began = time.perf_counter()
        await asyncio.gather(*(one(item) for item in items))
        elapsed = time.perf_counter() - began
        await pipelines[0].close_spider()  # type: ignore[attr-defined]
        await stop_shared_workers()  # before asyncio.run closes their loop
        return elapsed

    elapsed = asyncio.run(feed())
    archive.close()
    return elapsed, written


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder)
        first, written = run_pass(articles(count), output)
        second, rewritten = run_pass(articles(count), output)
        size = sum(p.stat().st_size for p in output.glob("*/*/*.md"))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"articles: {count}, body ~{size // max(written, 1)} bytes per post")
    print(f"first pass (normalize+dedup+write): {count / first:8.1f} articles/s, {written} written")
    print(
        f"second pass (all duplicates):       {count / second:8.1f} articles/s, {rewritten} written"
    )
    print(f"peak RSS: {peak_mib:.1f} MiB")


if __name__ == "__main__":
    main()
