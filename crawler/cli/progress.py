"""A live progress line on a terminal (tqdm), for a person watching a harvest."""

from __future__ import annotations

from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from tqdm import tqdm

from crawler.pipelines.dedup import DuplicateItem


class ProgressDisplay:
    """Pages fetched, posts written and duplicates of the running crawl.

    Enabled by the ``PROGRESS_DISPLAY`` setting, which the harvest command sets only when
    stderr is a terminal: cron and pipes get no progress output.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.bar: tqdm | None = None
        self.counts = {"new": 0, "duplicate": 0, "dropped": 0}
        for handler, signal in (
            (self.spider_opened, signals.spider_opened),
            (self.response_received, signals.response_received),
            (self.item_scraped, signals.item_scraped),
            (self.item_dropped, signals.item_dropped),
            (self.spider_closed, signals.spider_closed),
        ):
            crawler.signals.connect(handler, signal=signal)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressDisplay:
        if not crawler.settings.getbool("PROGRESS_DISPLAY"):
            raise NotConfigured
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        self.bar = tqdm(desc=spider.name, unit=" pages", leave=True, dynamic_ncols=True)

    def response_received(self, **_: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def item_scraped(self, **_: Any) -> None:
        self._count("new")

    def item_dropped(self, exception: BaseException, **_: Any) -> None:
        self._count("duplicate" if isinstance(exception, DuplicateItem) else "dropped")

    def _count(self, what: str) -> None:
        self.counts[what] += 1
        if self.bar is not None:
            self.bar.set_postfix(self.counts, refresh=False)

    def spider_closed(self, **_: Any) -> None:
        if self.bar is not None:
            self.bar.close()
