"""Write: one post file per article, atomically, in FORMAT.md's layout."""

from __future__ import annotations

import logging
from typing import Any

from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem

from crawler.archive import post_relpath, resolve_inside, write_atomically
from crawler.index import append_index, index_entry
from crawler.keys import key_digest, story_keys
from crawler.pipelines.base import ArchivePipeline
from crawler.pipelines.dedup import DuplicateItem
from crawler.postformat import http_date, render_post

logger = logging.getLogger(__name__)


class WriteFailed(DropItem):
    """A post that could not be written (disk full, permissions): retried next run."""


class WritePipeline(ArchivePipeline):
    """Writes ``OUTPUT_DIR/YYYY/MM/YYYY-MM-DD-<slug>-<8 hex>.md``, records the story's keys
    and appends the post to ``.index.jsonl``.

    A post already on disk is never replaced (its keys are recorded, so the archive learns
    it); a write that fails is logged, counted in ``write/failed`` and not recorded.
    """

    def process_item(self, item: Any) -> Any:
        assert self.state is not None
        adapter = ItemAdapter(item)
        title_key, url_key = story_keys(
            adapter["title"], adapter["published"], adapter["url"], adapter["has_own_url"]
        )
        relpath = post_relpath(adapter["title"], adapter["published"], key_digest(title_key))
        text = render_post(
            title=adapter["title"],
            categories=adapter["categories"],
            lead_image=adapter["lead_image"],
            author=adapter["author"],
            published=adapter["published"],
            body=adapter["body"],
        )
        data = text.encode("utf-8")
        try:
            written = write_atomically(resolve_inside(self.output_dir, relpath), data)
        except (OSError, ValueError) as error:
            self.stats.inc_value("write/failed")
            raise WriteFailed(f"could not write {relpath}: {error}", log_level="ERROR") from None
        self.state.remember(relpath, title_key, url_key)
        if not written:
            self.stats.inc_value("write/already_on_disk")
            raise DuplicateItem(f"already on disk: {relpath}")
        append_index(
            self.output_dir,
            index_entry(
                path=relpath,
                title=adapter["title"],
                date=http_date(adapter["published"]),
                url=adapter["url"],
                canonical_url=url_key,
                source=adapter.get("source"),
                categories=list(adapter["categories"]),
                data=data,
            ),
        )
        self.stats.inc_value("write/written")
        logger.info("wrote %s", relpath)
        return item
