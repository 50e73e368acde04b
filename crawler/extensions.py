"""Scrapy extensions of the project."""

from __future__ import annotations

import logging
from typing import Any

from itemadapter import ItemAdapter
from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector
from twisted.python.failure import Failure

from crawler.archive.service import ArchiveService
from crawler.drift import drift_of, is_empty_run
from crawler.pipelines.dedup import DuplicateItem
from crawler.pipelines.write import WriteFailed
from crawler.post.cleaning import one_line

ROBOTSTXT_LOGGER = "scrapy.downloadermiddlewares.robotstxt"


class _RobotsTxtFailureAsOneLine(logging.Filter):
    """A robots.txt that cannot be fetched: one INFO line instead of an ERROR with traceback.

    The site is then unreachable for the request that follows too, and the spider reports
    that failure itself (one line and a stat); robots.txt-less sites are crawled as allowed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "robots.txt not fetched for " + str(record.msg)
        return True


class QuietRobotsTxtFailures:
    """Installs :class:`_RobotsTxtFailureAsOneLine` for the crawl's lifetime."""

    def __init__(self) -> None:
        self.filter = _RobotsTxtFailureAsOneLine()
        logging.getLogger(ROBOTSTXT_LOGGER).addFilter(self.filter)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> QuietRobotsTxtFailures:
        return cls()


class SourceStats:
    """Per-source counters, and one summary line per source when the crawl ends.

    Spiders count ``source/<name>/seen`` (entries or articles they listed) and set
    ``source/<name>/failed`` when the source could not be read. This extension counts what
    the pipelines did with each source's items: ``new`` (written), ``duplicate`` and
    ``dropped``.
    """

    def __init__(self, crawler: Crawler) -> None:
        assert crawler.stats is not None
        self.stats = crawler.stats
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(self.item_dropped, signal=signals.item_dropped)
        crawler.signals.connect(self.item_error, signal=signals.item_error)
        crawler.signals.connect(self.spider_error, signal=signals.spider_error)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.engine_stopped, signal=signals.engine_stopped)
        self.engine_errors = _EngineErrors()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SourceStats:
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        # Errors Scrapy's engine logs itself (a spider's start() that raised, a component
        # that broke) reach no callback or pipeline signal: they fail the crawl's sources.
        self.engine_errors.stats, self.engine_errors.spider = self.stats, spider
        logging.getLogger(ENGINE_LOGGER).addHandler(self.engine_errors)

    def engine_stopped(self) -> None:
        logging.getLogger(ENGINE_LOGGER).removeHandler(self.engine_errors)

    def item_scraped(self, item: Any) -> None:
        self._count(item, "new")

    def item_dropped(self, item: Any, exception: BaseException) -> None:
        self._count(item, "duplicate" if isinstance(exception, DuplicateItem) else "dropped")
        if isinstance(exception, WriteFailed):  # the archive could not take it: not a drop
            mark_failed(self.stats, _source_of(item), f"write failed: {exception.errno_name}")

    def item_error(self, item: Any, failure: Failure) -> None:
        """A bug in a pipeline: the item is lost for this run, its source failed."""
        self._count(item, "dropped")
        mark_failed(self.stats, _source_of(item), f"pipeline error: {_describe(failure)}")

    def spider_error(self, failure: Failure, response: Any, spider: Spider) -> None:
        """A bug while reading a source's page fails that source."""
        meta = getattr(response, "meta", None) or {}
        source = meta.get("source_name") or _spider_source(spider)
        self.stats.inc_value(f"source/{source}/errors")
        url = getattr(response, "url", "")
        mark_failed(self.stats, source, f"error reading {url}: {_describe(failure)}")

    def _count(self, item: Any, what: str) -> None:
        self.stats.inc_value(f"source/{_source_of(item)}/{what}")

    def spider_closed(self, spider: Spider) -> None:
        for source in source_names(self.stats.get_stats()):
            counts = source_counts(self.stats.get_stats(), source)
            spider.logger.info(
                "source %s: %d seen, %d new, %d duplicate, %d dropped%s",
                source, counts["seen"], counts["new"], counts["duplicate"], counts["dropped"],
                ", FAILED" if counts["failed"] else "",
            )  # fmt: skip


ENGINE_LOGGER = "scrapy.core.engine"


class _EngineErrors(logging.Handler):
    """Marks every source of the crawl FAILED when Scrapy's engine logs an error."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.stats: StatsCollector | None = None
        self.spider: Spider | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.stats is None or self.spider is None:
            return
        # Scrapy writes the traceback into the message; keep its first and last lines.
        lines = [line for line in record.getMessage().splitlines() if line.strip()] or ["?"]
        head = lines[0].split(" Traceback (most recent call last)")[0]
        error = record.exc_info[1] if record.exc_info else None
        last = f"{type(error).__name__}: {error}" if error else lines[-1].strip()
        reason = one_line(head if last in head else f"{head} ({last})")
        for source in getattr(self.spider, "sources_read", []):
            mark_failed(self.stats, source.name, reason)


class DriftMonitor:
    """When a crawl ends, flags each of its sources whose pages no longer give what they used
    to (crawler/drift.py): ``source/<name>/drift`` in the stats, a WARNING line, and DRIFT
    in the harvest's report. Consecutive empty runs are remembered in the archive's state.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.min_rate = settings.getfloat("DRIFT_MIN_EXTRACTION")
        self.min_pages = settings.getint("DRIFT_MIN_PAGES")
        self.max_empty_runs = settings.getint("DRIFT_EMPTY_RUNS")
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DriftMonitor:
        return cls(crawler)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        sources = getattr(spider, "sources_read", [])
        if reason != "finished" or not sources:
            return  # an interrupted or broken crawl says nothing about the sites
        stats = self.crawler.stats
        snapshot = stats.get_stats()
        archive = ArchiveService.of(self.crawler)
        for source in sources:
            if snapshot.get(f"source/{source.name}/failed"):
                continue  # not reached: a failure, not drift
            empty_runs = archive.count_empty_run(source.name, is_empty_run(snapshot, source.name))
            drift = drift_of(
                snapshot,
                source.name,
                self.min_rate,
                self.min_pages,
                empty_runs,
                self.max_empty_runs,
            )
            if drift is not None:
                stats.set_value(f"source/{source.name}/drift", drift.as_dict())
                spider.logger.warning("source %s: DRIFT: %s", source.name, drift.describe())


def _source_of(item: Any) -> str:
    return ItemAdapter(item).get("source") or "unknown"


def _spider_source(spider: Spider) -> str:
    source = getattr(spider, "source", None)
    return getattr(source, "name", None) or spider.name


def _describe(failure: Failure) -> str:
    """``ExceptionType: message`` of a failure, one line."""
    return one_line(f"{failure.type.__name__}: {failure.getErrorMessage()}")


def mark_failed(stats: StatsCollector, source: str, reason: str) -> None:
    """The source did not do its job: FAILED in the report, with the first reason given."""
    stats.set_value(f"source/{source}/failed", 1)
    if not stats.get_value(f"source/{source}/reason"):
        stats.set_value(f"source/{source}/reason", one_line(reason))


def source_names(stats: dict[str, Any]) -> list[str]:
    """The sources that have counters in a crawl's stats, sorted."""
    return sorted({key.split("/")[1] for key in stats if key.startswith("source/")})


def source_counts(stats: dict[str, Any], source: str) -> dict[str, int]:
    """seen, new, duplicate, dropped and failed of one source (0 where absent)."""
    fields = ("seen", "new", "duplicate", "dropped", "failed")
    return {field: int(stats.get(f"source/{source}/{field}", 0)) for field in fields}
