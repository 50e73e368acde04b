"""The archive service: a crawl's one owner of the archive folder.

A Scrapy extension (``EXTENSIONS``), reached with ``crawler.get_extension(ArchiveService)``
by the pipelines (in ``from_crawler``) and by spiders (from ``start()`` on). It holds the one
connection to ``.state.sqlite3`` of the crawl and is the only code that names, writes and
indexes post files, so that what a spider asks before a request and what the pipelines record
after a write are computed by the same functions (crawler/post/keys.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler

from crawler.archive.files import post_relpath, resolve_inside, write_atomically
from crawler.archive.index import append_index, index_entry
from crawler.archive.state import KEY_VERSION, ArchiveState
from crawler.post.keys import key_digest, listing_keys, url_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredPost:
    """Where a post went; ``written`` is False when the file was already on disk."""

    relpath: str
    written: bool


class ArchiveService:
    """Story keys, feed validators, failure memory, post files and ``.index.jsonl``."""

    def __init__(self, output_dir: Path, failure_backoff: timedelta) -> None:
        self.output_dir = output_dir
        self.failure_backoff = failure_backoff
        self._state: ArchiveState | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        service = cls(
            Path(crawler.settings["OUTPUT_DIR"]),
            timedelta(seconds=crawler.settings.getfloat("FAILED_ARTICLE_RETRY_AFTER")),
        )
        # spider_closed comes after the pipelines closed: nothing uses the state after it.
        crawler.signals.connect(service.close, signal=signals.spider_closed)
        return service

    @classmethod
    def of(cls, crawler: Crawler) -> ArchiveService:
        """The crawl's service; a clear error when EXTENSIONS lacks it."""
        service = crawler.get_extension(cls)
        if service is None:
            raise RuntimeError(
                "the ArchiveService extension is off; keep "
                "'crawler.archive.service.ArchiveService' in EXTENSIONS"
            )
        return service

    @property
    def state(self) -> ArchiveState:
        if self._state is None:
            self._state = ArchiveState(self.output_dir)
            if self._state.key_version() < KEY_VERSION and self._state.has_story_keys():
                self._rekey(self._state)
        return self._state

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    @staticmethod
    def _rekey(state: ArchiveState) -> None:
        from crawler.archive.reindex import reindex

        logger.info("archive %s: keys follow older rules; re-keying it", state.output_dir)
        result = reindex(state.output_dir, state)
        logger.info("archive re-keyed: %d posts", result.posts)

    # --- asked by spiders before a request ------------------------------------------------

    def is_archived(
        self, raw_title: str | None, published: datetime | None, url: str | None
    ) -> bool:
        """Whether a listed article (title still HTML, as spiders hold it) is archived."""
        title_key, own_url_key = listing_keys(raw_title, published, url)
        return self.state.knows(title_key=title_key, url_key=own_url_key) is not None

    def in_failure_backoff(self, url: str) -> bool:
        """True while a page that failed recently should not be asked for again."""
        return self.state.in_failure_backoff(_failure_key(url), self.failure_backoff)

    def page_failed(self, url: str, reason: str) -> None:
        self.state.record_failure(_failure_key(url), reason)

    def page_succeeded(self, url: str) -> None:
        self.state.forget_failure(_failure_key(url))

    def feed_validators(self, feed_url: str) -> tuple[str | None, str | None]:
        return self.state.feed_validators(feed_url)

    def save_feed_validators(
        self, feed_url: str, etag: str | None, last_modified: str | None
    ) -> None:
        self.state.save_feed_validators(feed_url, etag, last_modified)

    # --- used by the pipelines ----------------------------------------------------------------

    def knows(self, title_key: str, url_key: str | None) -> str | None:
        """'title' or 'url' when the archive holds one of a story's keys, else None."""
        return self.state.knows(title_key=title_key, url_key=url_key)

    def store_post(
        self,
        data: bytes,
        *,
        published: datetime,
        title_key: str,
        url_key: str | None,
        index: dict[str, Any],
    ) -> StoredPost:
        """Write a rendered post atomically, then record its keys and its index line.

        ``index`` holds the index line's ``title``, ``date``, ``url``, ``source`` and
        ``categories``. Keys are recorded only once the file is on disk, so a failed write is
        retried by the next run. A post already on disk is never replaced; its keys are
        recorded. Raises OSError (or ValueError for a path that would leave the archive).
        """
        relpath = post_relpath(index["title"], published, key_digest(title_key))
        written = write_atomically(resolve_inside(self.output_dir, relpath), data)
        self.state.remember(relpath, title_key, url_key)
        if written:
            entry = index_entry(path=relpath, canonical_url=url_key, data=data, **index)
            append_index(self.output_dir, entry)
        return StoredPost(relpath, written)


def _failure_key(url: str) -> str:
    return url_key(url) or url
