"""Dedup: drop what the archive (or this run) already holds, by title+day or canonical URL."""

from __future__ import annotations

from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.archive.service import ArchiveService
from crawler.archive.shared import SharedUnavailable


class DuplicateItem(DropItem):
    """An article the archive (or this run) already holds: a drop that is not a problem."""


class DedupPipeline:
    """Keeps the first article of every story; counts the others in ``dedup/duplicate/*``.

    The keys were computed once, by the normalize pipeline. They are recorded in the archive
    when the post is on disk (the archive service does it), so a failed write never marks a
    story as archived. Within a run this pipeline remembers the keys of what it let through
    until the archive holds them: while the item is in the later pipelines (a copy of the
    story arriving then is an in-run duplicate). Once the item is written its keys are the
    archive's, so memory holds only the items in flight, not the run; an item dropped or
    failed after this pipeline frees its keys, so a later copy of the story can be written.
    In a dry run (nothing written) the keys are kept for the whole run.
    """

    def __init__(self, stats: StatsCollector, archive: ArchiveService) -> None:
        self.stats = stats
        self.archive = archive
        self.passed: set[tuple[str, str]] = set()
        # id(item) -> (item, its keys) for each item let through and not yet done.
        self.in_flight: dict[int, tuple[Any, set[tuple[str, str]]]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        pipeline = cls(crawler.stats, ArchiveService.of(crawler))
        crawler.signals.connect(pipeline.item_written, signal=signals.item_scraped)
        crawler.signals.connect(pipeline.item_not_written, signal=signals.item_dropped)
        crawler.signals.connect(pipeline.item_not_written, signal=signals.item_error)
        return pipeline

    def item_written(self, item: Any) -> None:
        if not self.archive.read_only:  # the archive now knows the story
            self._forget(item)

    def item_not_written(self, item: Any) -> None:
        if self._forget(item):
            adapter = ItemAdapter(item)
            self.archive.release(adapter["title_key"], adapter["url_key"])

    def _forget(self, item: Any) -> bool:
        """Whether the item was one this pipeline let through (and is no more)."""
        held = self.in_flight.get(id(item))
        if held is None or held[0] is not item:
            return False
        del self.in_flight[id(item)]
        self.passed -= held[1]
        return True

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        title_key, url_key = adapter["title_key"], adapter["url_key"]
        keys = {("title", title_key)} | ({("url", url_key)} if url_key else set())
        if keys & self.passed:
            self._drop("in_run", adapter)
        try:
            known = self.archive.knows(title_key, url_key)
            if known:
                self._drop(f"archived_{known}", adapter)
            # With a shared backend, another worker may be writing the story right now.
            if self.archive.claim(title_key, url_key):
                self._drop("claimed_elsewhere", adapter)
        except SharedUnavailable as error:
            self.stats.inc_value("dedup/unavailable")
            raise DropItem(f"not written, shared keys unavailable: {adapter['title']!r}") from error
        self.passed |= keys
        self.in_flight[id(item)] = (item, keys)
        return item

    def _drop(self, reason: str, adapter: ItemAdapter) -> None:
        self.stats.inc_value(f"dedup/duplicate/{reason}")
        self.stats.inc_value("dedup/duplicate")
        raise DuplicateItem(f"duplicate ({reason}): {adapter['title']!r} {adapter['url'] or ''}")
