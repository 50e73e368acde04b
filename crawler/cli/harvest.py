"""One harvest: every selected source in one process, site sources first, then the feeds.

Site sources (``spider = "cnbeta"``, ``sitemap``, ``list``) run one after the other, each
crawl handed its :class:`~crawler.sources.Source`; then one ``feeds`` crawl reads every
selected feed. When a story comes from both, the richer page is archived first.

A SIGINT or SIGTERM stops the harvest promptly (:class:`Interruption`): the running crawl
stops gracefully, no further crawl starts, and the report says ``interrupted``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from scrapy.crawler import Crawler, CrawlerProcess, CrawlerRunner
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.ossignal import install_shutdown_handlers
from scrapy.utils.reactor import install_reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from crawler.cli.report import Report, SourceResult, signal_name
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
    """Run the crawls in one CrawlerProcess, one after the other; return the report.

    A SIGINT or SIGTERM stops the harvest (see :class:`Interruption`); the report is built
    all the same, from what the crawls did.
    """
    harvest = Harvest(crawls, output_dir)
    if not crawls:
        return harvest.report(None)
    install_reactor(settings["TWISTED_REACTOR"])  # before twisted picks its default one
    from twisted.internet import reactor

    process = CrawlerProcess(settings)
    interruption = Interruption(process, reactor)
    interruption.install()  # now: a signal while the process starts up counts too

    def run_all() -> None:
        def stop(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # already stopping (a second signal)
                reactor.stop()

        harvest.crawl_all(process, interruption).addBoth(stop)

    # Started from the running reactor, so that stopping it at the end always works, even
    # when every crawl fails at once.
    reactor.callWhenRunning(run_all)
    process.start(stop_after_crawl=False, install_signal_handlers=False)
    return harvest.report(interruption)


class Harvest:
    """The crawls of one harvest, run one after the other on a CrawlerRunner (the harvest's
    CrawlerProcess, or a test's runner on its running reactor), and the report of them."""

    def __init__(self, crawls: list[Crawl], output_dir: Path) -> None:
        self.crawls = crawls
        self.output_dir = output_dir
        self.started = datetime.now(UTC)
        self.began = time.monotonic()
        self.done: dict[int, list[SourceResult]] = {}  # crawl index -> its sources' results
        self.running: dict[int, tuple[Crawler, float]] = {}  # the crawl under way, its start

    @inlineCallbacks
    def crawl_all(
        self, runner: CrawlerRunner, interruption: Interruption
    ) -> Generator[Deferred[Any], Any, None]:
        for index, crawl in enumerate(self.crawls):
            if interruption.signum is not None:
                break  # the rest are reported as not run
            crawl_began = time.monotonic()
            crawler: Crawler | None = None
            start_error: str | None = None
            try:
                crawler = runner.create_crawler(crawl.spider)
                self.running[index] = (crawler, crawl_began)
                yield runner.crawl(crawler, **crawl.arguments)
            except Exception as error:  # its sources failed; the next crawl still runs
                start_error = f"crawl failed: {type(error).__name__}: {one_line(error)}"
                logger.error("%s (%s)", start_error, crawl.spider)
            self.running.pop(index, None)
            seconds = time.monotonic() - crawl_began
            self.done[index] = _results(
                _stats_of(crawler), crawl, seconds, start_error, interruption.name
            )

    def report(self, interruption: Interruption | None) -> Report:
        """What each source did; a crawl a second signal cut off reports what it had done,
        one a signal kept from starting is ``not run``."""
        signalled = interruption.name if interruption is not None else None
        results: list[SourceResult] = []
        for index, crawl in enumerate(self.crawls):
            if index in self.done:
                results += self.done[index]
            elif index in self.running:  # stopped at once by a second signal
                crawler, crawl_began = self.running[index]
                seconds = time.monotonic() - crawl_began
                results += _results(_stats_of(crawler), crawl, seconds, None, signalled)
            else:
                results += [_not_run(source) for source in crawl.sources]
        return Report(
            started=self.started.isoformat(timespec="seconds"),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            seconds=round(time.monotonic() - self.began, 3),
            output=str(self.output_dir),
            sources=results,
            interrupted_by=interruption.signum if interruption is not None else None,
        )


class Interruption:
    """The harvest's own SIGINT/SIGTERM handling, instead of Scrapy's (which stops the reactor
    once the running crawl is done, so that the crawls still to come are neither run nor
    reported).

    The first signal is remembered (the exit status says which it was) and stops every
    running crawl gracefully: ``Crawler.crawling`` turns False at once, so spiders stop
    yielding (crawler/spiders/feeds.py), the items already in the pipelines are finished,
    and no further crawl starts. A second signal stops the reactor at once: the report is
    built from whatever stats the crawls have. A third ends the process as the signal would.
    """

    def __init__(self, process: CrawlerRunner, reactor: Any) -> None:
        self.process = process
        self.reactor = reactor
        self.signum: int | None = None  # the first signal received
        self.received = 0

    @property
    def name(self) -> str | None:
        return signal_name(self.signum) if self.signum is not None else None

    def install(self) -> None:
        install_shutdown_handlers(self._received)

    def _received(self, signum: int, _frame: FrameType | None) -> None:
        # A signal handler: no logging here (the interrupted code may be writing to the same
        # stream); the reactor does the work.
        self.received += 1
        if self.received == 1:
            self.signum = signum
            for crawler in list(self.process.crawlers):  # spiders stop yielding at once,
                crawler.crawling = False  # even before the reactor gets its turn
            self.reactor.callFromThread(self._stop_gracefully, signum)
        elif self.received == 2:
            self.reactor.callFromThread(self._stop_now, signum)
        else:  # stuck even so: the default action of the signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _stop_gracefully(self, signum: int) -> None:
        logger.warning(
            "received %s: stopping; the posts in the pipelines are finished, no further "
            "entry or source is read (send it again to stop at once)",
            signal_name(signum),
        )
        for crawler in list(self.process.crawlers):
            self._stop_crawl(crawler)

    def _stop_crawl(self, crawler: Crawler) -> None:
        if crawler not in self.process.crawlers:
            return  # over
        crawler.crawling = False  # what spiders test to stop yielding
        engine = crawler._engine  # None until the crawl has one (Scrapy's own idiom)
        if engine is not None and engine.running:
            stopping = deferred_from_coro(engine.stop_async())
            stopping.addErrback(
                lambda failure: logger.error("could not stop the crawl: %s", failure.value)
            )
        else:  # still starting (or already ending): again, until it runs or is over
            self.reactor.callLater(0.05, self._stop_crawl, crawler)

    def _stop_now(self, signum: int) -> None:
        logger.warning(
            "received %s again: stopping at once; posts still in the pipelines are not "
            "written", signal_name(signum),
        )  # fmt: skip
        with contextlib.suppress(RuntimeError):  # already stopping
            self.reactor.stop()


def _stats_of(crawler: Crawler | None) -> dict[str, Any]:
    """A crawl's stats; empty for a crawl that failed before it had any."""
    try:
        return crawler.stats.get_stats() if crawler is not None else {}
    except RuntimeError:  # Crawler.stats is set only once the crawl has started
        return {}


def _results(
    stats: dict[str, Any],
    crawl: Crawl,
    seconds: float,
    start_error: str | None,
    interrupted: str | None = None,
) -> list[SourceResult]:
    """The results of a crawl's sources; ``interrupted``: the signal that stopped the harvest
    (a crawl it cut short fails none of its sources; those not done are ``interrupted``)."""
    finish = stats.get("finish_reason")
    cut = interrupted is not None and finish != "finished"
    ended_badly = None if finish == "finished" or cut else f"crawl ended: {finish or 'unfinished'}"
    results = []
    for source in crawl.sources:
        counts = source_counts(stats, source.name)
        reason = start_error or stats.get(f"source/{source.name}/reason") or ended_badly
        failed = bool(start_error or counts["failed"] or ended_badly)
        cut_short = (
            interrupted is not None
            and not failed
            and ((cut and not _feed_done(stats, source)) or _entries_left(stats, source))
        )
        drift = stats.get(f"source/{source.name}/drift") if not (failed or cut_short) else None
        if cut_short:
            reason = f"{interrupted} before it was done"
        elif drift and not reason:
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
                interrupted=cut_short,
                images_failed=int(stats.get(f"source/{source.name}/images_failed", 0)),
            )
        )
    return results


def _feed_done(stats: dict[str, Any], source: Source) -> bool:
    """A feed of a crawl cut short that was read to its end all the same: its time was
    recorded (every entry through the pipelines, or a 304) and its entries were not cut.
    A site source's crawl is its own: cut, it was not done."""
    return (
        source.is_feed
        and f"source/{source.name}/seconds" in stats
        and not _entries_left(stats, source)
    )


def _entries_left(stats: dict[str, Any], source: Source) -> bool:
    """The feed's spider stopped reading its entries (crawler/spiders/feeds.py)."""
    return bool(stats.get(f"source/{source.name}/interrupted"))


def _not_run(source: Source) -> SourceResult:
    """A source whose crawl a signal kept from starting."""
    return SourceResult(
        name=source.name,
        kind="feed" if source.is_feed else source.kind,
        reason="not run: interrupted",
        interrupted=True,
    )
