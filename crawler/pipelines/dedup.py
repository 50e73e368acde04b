"""Dedup: drop what the archive (or this run) already holds, by title+day or canonical URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.keys import story_keys
from crawler.pipelines.base import ArchivePipeline


class DuplicateItem(DropItem):
    """An article the archive (or this run) already holds: a drop that is not a problem."""


class DedupPipeline(ArchivePipeline):
    """Keeps the first article of every story; counts the others in ``dedup/duplicate/*``.

    Keys are recorded in the archive by the write pipeline once the post is on disk, so a
    failed write never marks a story as archived. Within a run this pipeline remembers what
    it let through.
    """

    def __init__(self, stats: StatsCollector, output_dir: Path) -> None:
        super().__init__(stats, output_dir)
        self.passed: set[tuple[str, str]] = set()

    def process_item(self, item: Any) -> Any:
        assert self.state is not None
        adapter = ItemAdapter(item)
        title_key, url_key = story_keys(
            adapter["title"], adapter["published"], adapter["url"], adapter["has_own_url"]
        )
        keys = {("title", title_key)} | ({("url", url_key)} if url_key else set())
        if keys & self.passed:
            self._drop("in_run", adapter)
        known = self.state.knows(title_key=title_key, url_key=url_key)
        if known:
            self._drop(f"archived_{known}", adapter)
        self.passed |= keys
        return item

    def _drop(self, reason: str, adapter: ItemAdapter) -> None:
        self.stats.inc_value(f"dedup/duplicate/{reason}")
        self.stats.inc_value("dedup/duplicate")
        raise DuplicateItem(f"duplicate ({reason}): {adapter['title']!r} {adapter['url'] or ''}")
