"""One harvest: every selected source in one process, site sources first, then the feeds.

Site sources (``spider = "cnbeta"``, ``sitemap``, ``list``) run one after the other, each
crawl handed its :class:`~crawler.sources.Source`; then one ``feeds`` crawl reads every
selected feed. When a story comes from both, the richer page is archived first.
"""

from __future__ import annotations

import contextlib
import logging
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
from crawler.drift import Drift
from crawler.extensions import source_counts
from crawler.post.cleaning import one_line
from crawler.sources import Source

logger = logging.getLogger(__name__)


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
                crawl_began = time.monotonic()
                crawler: Crawler | None = None
                start_error: str | None = None
                try:
                    crawler = process.create_crawler(crawl.spider)
                    yield process.crawl(crawler, **crawl.arguments)
                except Exception as error:  # its sources failed; the next crawl still runs
                    start_error = f"crawl failed: {type(error).__name__}: {one_line(error)}"
                    logger.error("%s (%s)", start_error, crawl.spider)
                seconds = time.monotonic() - crawl_began
                results.extend(_results(_stats_of(crawler), crawl, seconds, start_error))
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


def _stats_of(crawler: Crawler | None) -> dict[str, Any]:
    """A crawl's stats; empty for a crawl that failed before it had any."""
    try:
        return crawler.stats.get_stats() if crawler is not None else {}
    except RuntimeError:  # Crawler.stats is set only once the crawl has started
        return {}


def _results(
    stats: dict[str, Any], crawl: Crawl, seconds: float, start_error: str | None
) -> list[SourceResult]:
    finish = stats.get("finish_reason")
    ended_badly = None if finish == "finished" else f"crawl ended: {finish or 'unfinished'}"
    results = []
    for source in crawl.sources:
        counts = source_counts(stats, source.name)
        reason = start_error or stats.get(f"source/{source.name}/reason") or ended_badly
        failed = bool(start_error or counts["failed"] or ended_badly)
        drift = stats.get(f"source/{source.name}/drift") if not failed else None
        if drift and not reason:
            reason = f"drift: {Drift(**drift).describe()}"
        results.append(
            SourceResult(
                name=source.name,
                kind="feed" if source.is_feed else source.kind,
                seen=counts["seen"],
                new=counts["new"],
                duplicate=counts["duplicate"],
                dropped=counts["dropped"],
                failed=failed,
                seconds=round(
                    float(stats.get(f"source/{source.name}/seconds", 0))
                    if source.is_feed
                    else seconds,
                    3,
                ),
                reason=(reason or "failed without a reason") if failed else reason,
                drift=drift,
            )
        )
    return results
