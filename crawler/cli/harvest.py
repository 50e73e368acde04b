"""One harvest: every selected source in one process, site sources first, then the feeds.

Site sources (``spider = "cnbeta"``, ``sitemap``, ``list``) run one after the other, each
crawl handed its :class:`~crawler.sources.Source`; then one ``feeds`` crawl reads every
selected feed. When a story comes from both, the richer page is archived first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.settings import Settings
from scrapy.utils.reactor import install_reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from crawler.cli.report import Report, SourceResult
from crawler.extensions import source_counts
from crawler.sources import Source


@dataclass
class Crawl:
    """One crawler of the harvest and the sources it reads."""

    spider: str
    arguments: dict[str, Any]
    sources: list[Source]


def plan(sources: list[Source]) -> list[Crawl]:
    """Site sources first, one crawl each; then one ``feeds`` crawl for all feeds."""
    crawls = [
        Crawl(spider=source.spider_name, arguments={"source": source}, sources=[source])
        for source in sources
        if not source.is_feed
    ]
    feeds = [source for source in sources if source.is_feed]
    if feeds:
        crawls.append(Crawl(spider="feeds", arguments={"sources": feeds}, sources=feeds))
    return crawls


def run(settings: Settings, crawls: list[Crawl], output_dir: Path) -> Report:
    """Run the crawls in one CrawlerProcess, one after the other; return the report."""
    started = datetime.now(UTC)
    began = time.monotonic()
    if not crawls:
        return Report(
            started.isoformat(timespec="seconds"),
            datetime.now(UTC).isoformat(timespec="seconds"),
            0.0,
            str(output_dir),
        )
    process = CrawlerProcess(settings)
    results: list[SourceResult] = []

    @inlineCallbacks
    def run_all() -> Generator[Deferred[Any], Any, None]:
        try:
            for crawl in crawls:
                crawler = process.create_crawler(crawl.spider)
                crawl_began = time.monotonic()
                failed = False
                try:
                    yield process.crawl(crawler, **crawl.arguments)
                except Exception:  # a spider that could not even start: its sources failed
                    failed = True
                results.extend(_results(crawler, crawl, time.monotonic() - crawl_began, failed))
        finally:
            with contextlib.suppress(RuntimeError):  # already stopping (Ctrl-C)
                reactor.stop()

    install_reactor(settings["TWISTED_REACTOR"])  # before twisted picks its default one
    from twisted.internet import reactor

    # Started from the running reactor, so that stopping it at the end always works, even
    # when every crawl fails at once.
    reactor.callWhenRunning(run_all)
    process.start(stop_after_crawl=False)
    return Report(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - began, 3),
        output=str(output_dir),
        sources=results,
    )


def _results(crawler: Crawler, crawl: Crawl, seconds: float, failed: bool) -> list[SourceResult]:
    stats = crawler.stats.get_stats() if crawler.stats else {}
    results = []
    for source in crawl.sources:
        counts = source_counts(stats, source.name)
        results.append(
            SourceResult(
                name=source.name,
                kind="feed" if source.is_feed else source.kind,
                seen=counts["seen"],
                new=counts["new"],
                duplicate=counts["duplicate"],
                dropped=counts["dropped"],
                failed=failed or bool(counts["failed"]) or stats.get("finish_reason") is None,
                seconds=round(
                    float(stats.get(f"source/{source.name}/seconds", 0))
                    if source.is_feed
                    else seconds,
                    3,
                ),
            )
        )
    return results
