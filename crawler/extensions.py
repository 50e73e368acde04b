"""Scrapy extensions of the project."""

from __future__ import annotations

import logging
from typing import Any

from itemadapter import ItemAdapter
from scrapy import Spider, signals
from scrapy.crawler import Crawler

from crawler.pipelines.dedup import DuplicateItem

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

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SourceStats:
        return cls(crawler)

    def item_scraped(self, item: Any) -> None:
        self._count(item, "new")

    def item_dropped(self, item: Any, exception: BaseException) -> None:
        self._count(item, "duplicate" if isinstance(exception, DuplicateItem) else "dropped")

    def item_error(self, item: Any) -> None:
        self._count(item, "dropped")

    def spider_error(self, failure: Any, response: Any, spider: Spider) -> None:
        """A bug while reading a source's page fails that source."""
        meta = getattr(response, "meta", None) or {}
        source = meta.get("source_name") or getattr(spider, "source_name", spider.name)
        self.stats.inc_value(f"source/{source}/errors")
        self.stats.set_value(f"source/{source}/failed", 1)

    def _count(self, item: Any, what: str) -> None:
        source = ItemAdapter(item).get("source") or "unknown"
        self.stats.inc_value(f"source/{source}/{what}")

    def spider_closed(self, spider: Spider) -> None:
        for source in source_names(self.stats.get_stats()):
            counts = source_counts(self.stats.get_stats(), source)
            spider.logger.info(
                "source %s: %d seen, %d new, %d duplicate, %d dropped%s",
                source, counts["seen"], counts["new"], counts["duplicate"], counts["dropped"],
                ", FAILED" if counts["failed"] else "",
            )  # fmt: skip


def source_names(stats: dict[str, Any]) -> list[str]:
    """The sources that have counters in a crawl's stats, sorted."""
    return sorted({key.split("/")[1] for key in stats if key.startswith("source/")})


def source_counts(stats: dict[str, Any], source: str) -> dict[str, int]:
    """seen, new, duplicate, dropped and failed of one source (0 where absent)."""
    fields = ("seen", "new", "duplicate", "dropped", "failed")
    return {field: int(stats.get(f"source/{source}/{field}", 0)) for field in fields}
