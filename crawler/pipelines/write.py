"""Write: one post file per article in docs/FORMAT.md's layout, stored by the archive service."""

from __future__ import annotations

import errno
import logging
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.statscollectors import StatsCollector

from crawler.archive.service import ArchiveService
from crawler.pipelines.dedup import DuplicateItem
from crawler.post.format import http_date, post_fields, render_post

logger = logging.getLogger(__name__)


class WriteFailed(DropItem):
    """A post that could not be written (disk full, permissions): retried next run.

    Its source is FAILED in the report (``write failed: ENOSPC``), so a full disk is never a
    quiet success.
    """

    def __init__(self, message: str, errno_name: str) -> None:
        super().__init__(message, log_level="ERROR")
        self.errno_name = errno_name


class WritePipeline:
    """Renders the post and hands it to the archive service, which writes
    ``OUTPUT_DIR/YYYY/MM/YYYY-MM-DD-<slug>-<8 hex>.md`` atomically, records the story's keys
    and appends the post to ``.index.jsonl``.

    A post already on disk is never replaced (its keys are recorded, so the archive learns
    it); a write that fails is logged, counted in ``write/failed`` and not recorded.
    """

    def __init__(self, stats: StatsCollector, archive: ArchiveService) -> None:
        self.stats = stats
        self.archive = archive

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if crawler.settings.getbool("DRY_RUN"):
            raise NotConfigured("dry run: nothing is written")
        return cls(crawler.stats, ArchiveService.of(crawler))

    async def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        data = render_post(**post_fields(adapter)).encode("utf-8")
        try:
            stored = await self.archive.store_post_in_writer(
                data,
                published=adapter["published"],
                title_key=adapter["title_key"],
                url_key=adapter["url_key"],
                index={
                    "title": adapter["title"],
                    "date": http_date(adapter["published"]),
                    "url": adapter["url"],
                    "source": adapter.get("source"),
                    "categories": list(adapter["categories"]),
                },
            )
        except (OSError, ValueError) as error:
            self.stats.inc_value("write/failed")
            code = getattr(error, "errno", None)
            name = errno.errorcode.get(code, "error") if code else type(error).__name__
            raise WriteFailed(f"could not write {adapter['title']!r}: {error}", name) from None
        if not stored.written:
            self.stats.inc_value("write/already_on_disk")
            raise DuplicateItem(f"already on disk: {stored.relpath}")
        self.stats.inc_value("write/written")
        logger.info("wrote %s", stored.relpath)
        return item
