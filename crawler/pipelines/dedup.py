"""Dedup: drop what the archive (or this run) already holds, by title+day or canonical URL."""

from __future__ import annotations

from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.archive.service import ArchiveService


class DuplicateItem(DropItem):
    """An article the archive (or this run) already holds: a drop that is not a problem."""


class DedupPipeline:
    """Keeps the first article of every story; counts the others in ``dedup/duplicate/*``.

    The keys were computed once, by the normalize pipeline. They are recorded in the archive
    when the post is on disk (the archive service does it), so a failed write never marks a
    story as archived. Within a run this pipeline remembers what it let through.
    """

    def __init__(self, stats: StatsCollector, archive: ArchiveService) -> None:
        self.stats = stats
        self.archive = archive
        self.passed: set[tuple[str, str]] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.stats, ArchiveService.of(crawler))

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        title_key, url_key = adapter["title_key"], adapter["url_key"]
        keys = {("title", title_key)} | ({("url", url_key)} if url_key else set())
        if keys & self.passed:
            self._drop("in_run", adapter)
        known = self.archive.knows(title_key, url_key)
        if known:
            self._drop(f"archived_{known}", adapter)
        self.passed |= keys
        return item

    def _drop(self, reason: str, adapter: ItemAdapter) -> None:
        self.stats.inc_value(f"dedup/duplicate/{reason}")
        self.stats.inc_value("dedup/duplicate")
        raise DuplicateItem(f"duplicate ({reason}): {adapter['title']!r} {adapter['url'] or ''}")
