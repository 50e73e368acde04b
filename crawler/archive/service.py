"""The archive service: a crawl's one owner of the archive folder.

A Scrapy extension (``EXTENSIONS``), reached with ``crawler.get_extension(ArchiveService)``
by the pipelines (in ``from_crawler``) and by spiders (from ``start()`` on). It holds the one
connection to ``.state.sqlite3`` of the crawl and is the only code that names, writes and
indexes post files, so that what a spider asks before a request and what the pipelines record
after a write are computed by the same functions (crawler/post/keys.py).

A crawl that writes no posts (``DRY_RUN``, or no :class:`~crawler.pipelines.write.WritePipeline`
in ``ITEM_PIPELINES``: ``-s 'ITEM_PIPELINES={}'``, an export-only ``-O items.jsonl``) gets a
read-only service: it answers every question from the archive as it is, and saves neither
feed validators nor failure memory, so that the next real run fetches and writes everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object

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

    def __init__(
        self, output_dir: Path, failure_backoff: timedelta, *, read_only: bool = False
    ) -> None:
        self.output_dir = output_dir
        self.failure_backoff = failure_backoff
        # Read-only: the folder is left byte for byte as it is (no state, lock or post
        # written, no folder created); what would be saved is not.
        self.read_only = read_only
        self._told_read_only = False
        self._state: ArchiveState | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        service = cls(
            Path(settings["OUTPUT_DIR"]),
            timedelta(seconds=settings.getfloat("FAILED_ARTICLE_RETRY_AFTER")),
            read_only=settings.getbool("DRY_RUN") or not writes_posts(settings),
        )
        # After the pipelines and the spider_closed handlers (the drift monitor) are done.
        crawler.signals.connect(service.close, signal=signals.engine_stopped)
        if settings.getbool("DRY_RUN"):
            crawler.signals.connect(service.would_write, signal=signals.item_scraped)
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
            self._state = ArchiveState(self.output_dir, read_only=self.read_only)
            if self._state.key_version() < KEY_VERSION and self._state.has_story_keys():
                if self.read_only:
                    logger.info(
                        "archive %s: keys follow older rules; a real run will re-key it "
                        "(read-only now: some duplicates may count as new)",
                        self.output_dir,
                    )
                else:
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
        if self._may_save():
            self.state.record_failure(_failure_key(url), reason)

    def page_succeeded(self, url: str) -> None:
        if self._may_save():
            self.state.forget_failure(_failure_key(url))

    def feed_validators(self, feed_url: str) -> tuple[str | None, str | None]:
        return self.state.feed_validators(feed_url)

    def save_feed_validators(
        self, feed_url: str, etag: str | None, last_modified: str | None
    ) -> None:
        if self._may_save():
            self.state.save_feed_validators(feed_url, etag, last_modified)

    def count_empty_run(self, name: str, empty: bool) -> int:
        """Record whether a source's run gave nothing; the consecutive empty runs so far."""
        count = self.state.empty_runs(name) + 1 if empty else 0
        if self._may_save():
            self.state.set_empty_runs(name, count)
        return count

    def _may_save(self) -> bool:
        """False in read-only mode (said once in the log)."""
        if not self.read_only:
            return True
        if not self._told_read_only:
            self._told_read_only = True
            logger.info(
                "read-only archive (dry run / no write pipeline): "
                "validators and failure memory are not saved"
            )
        return False

    def would_write(self, item: Any) -> None:
        """A dry run's item that went through every pipeline: log the post it would be."""
        adapter = ItemAdapter(item)
        try:
            relpath = post_relpath(
                adapter["title"], adapter["published"], key_digest(adapter["title_key"])
            )
        except (KeyError, TypeError, AttributeError, ValueError):
            return  # not a normalized article (a crawl without the normalize pipeline)
        logger.info("dry run: would write %s", relpath)

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
        recorded. Raises OSError (or ValueError for a path that would leave the archive), and
        RuntimeError in read-only mode (a crawl with the write pipeline is never read-only,
        except with DRY_RUN, whose harvest leaves the write pipeline out).
        """
        if self.read_only:
            raise RuntimeError(
                f"read-only archive {self.output_dir} (DRY_RUN or no write pipeline): "
                "no post is written; leave crawler.pipelines.write.WritePipeline out of "
                "ITEM_PIPELINES in a dry run"
            )
        relpath = post_relpath(index["title"], published, key_digest(title_key))
        written = write_atomically(resolve_inside(self.output_dir, relpath), data)
        self.state.remember(relpath, title_key, url_key)
        if written:
            entry = index_entry(path=relpath, canonical_url=url_key, data=data, **index)
            append_index(self.output_dir, entry)
        return StoredPost(relpath, written)


def writes_posts(settings: Any) -> bool:
    """Whether ``ITEM_PIPELINES`` (with its base) holds WritePipeline or a subclass of it."""
    pipelines = build_component_list(settings.getwithbase("ITEM_PIPELINES"))
    return any(_is_write_pipeline(path) for path in pipelines)


def without_write_pipeline(settings: Any) -> dict[Any, int | None]:
    """``ITEM_PIPELINES`` with WritePipeline (and subclasses) turned off: a dry run's
    pipelines, through which an item that would be written passes (counted ``new``)."""
    pipelines = settings.getwithbase("ITEM_PIPELINES")
    return {path: None if _is_write_pipeline(path) else order for path, order in pipelines.items()}


def _is_write_pipeline(path: Any) -> bool:
    """A pipeline that cannot be loaded is none; Scrapy reports it when it builds them."""
    from crawler.pipelines.write import WritePipeline  # it imports this module

    try:
        pipeline = load_object(path)
    except (ImportError, AttributeError, NameError, ValueError):
        return False
    return isinstance(pipeline, type) and issubclass(pipeline, WritePipeline)


def _failure_key(url: str) -> str:
    return url_key(url) or url
