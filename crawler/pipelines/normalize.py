"""Normalize: clean title and strings, UTC time, sanitized absolute body, lead image."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NoReturn

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object

from crawler.post.article import finish_article
from crawler.post.clean_worker import CleanWorkerLost, CleanWorkers, shared_workers
from crawler.post.cleaning import clean_text, clean_title

logger = logging.getLogger(__name__)

# What one article's data can raise on its way through: the article is dropped, not the run.
_UNUSABLE = (ValueError, TypeError, UnicodeError, OverflowError, RecursionError)
# What finish_article reads of an item (title, url and published as _check left them).
_FINISH_FIELDS = (
    "title", "url", "published", "categories", "author", "source", "image", "thumb",
    "fallback_image", "has_own_url", "identity",
)  # fmt: skip
# Characters of raw body HTML kept at most (2 M: ten times a long article with markup).
MAX_BODY_LENGTH = 2_000_000


def validated_as_normalized(settings: BaseSettings) -> bool:
    """Whether the validate pipeline sees a post as normalize leaves it: it is enabled, and
    every pipeline between the two leaves posts as they are (dedup; the images pipeline,
    which rewrites a body's images, only with ARCHIVE_IMAGES)."""
    from crawler.pipelines.dedup import DedupPipeline
    from crawler.pipelines.images import ArchiveImagesPipeline
    from crawler.pipelines.validate import ValidatePipeline

    try:
        classes = [load_object(path) for path in build_component_list(
            settings.getwithbase("ITEM_PIPELINES"))]  # fmt: skip
    except (ImportError, AttributeError, NameError, ValueError):
        return False  # Scrapy reports it when it builds the pipelines
    if NormalizePipeline not in classes or ValidatePipeline not in classes:
        return False
    start, end = classes.index(NormalizePipeline), classes.index(ValidatePipeline)
    between = classes[start + 1 : end]
    return (
        start < end
        and not settings.getbool("ARCHIVE_IMAGES")
        and all(pipeline in (DedupPipeline, ArchiveImagesPipeline) for pipeline in between)
    )


class NormalizePipeline:
    """Turns whatever a spider yielded into an article every later step can trust.

    Drops (with a stat ``normalize/dropped/<reason>``) articles without a title or a
    usable publication time.
    """

    def __init__(
        self,
        stats: StatsCollector,
        fallback_image: str,
        max_title_length: int = 300,
        clean_processes: int = 0,
        check_format: bool = False,
    ) -> None:
        self.stats = stats
        self.fallback_image = fallback_image
        self.max_title_length = max_title_length
        self.clean_processes = clean_processes
        # The post checked against the schema where it is finished (off the crawl's thread),
        # for the validate pipeline (crawler/pipelines/validate.py).
        self.check_format = check_format
        self._workers: CleanWorkers | None = None
        self._warming: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizePipeline:
        assert crawler.stats is not None
        settings = crawler.settings
        return cls(
            crawler.stats,
            settings.get("FALLBACK_IMAGE"),
            settings.getint("MAX_TITLE_LENGTH", 300),
            settings.getint("CLEAN_PROCESSES", 0),
            check_format=validated_as_normalized(settings),
        )

    async def process_item(self, item: Any) -> Any:
        """The crawl's path: the body is cleaned and the values finished (lxml, nh3, URL
        canonicalization: the CPU work) in a worker process while the reactor goes on; the
        checks and stats on the reactor."""
        try:
            adapter, job = self._check(item)
            try:
                values = await self._finish_elsewhere(job)
            except CleanWorkerLost as error:
                values = self._finish_after_lost_worker(error, job)
            return self._done(item, adapter, values)
        except _UNUSABLE as error:
            self._unusable(item, error)

    def normalize(self, item: Any) -> Any:
        """The same, all on the calling thread (tests, commands without a reactor)."""
        try:
            adapter, job = self._check(item)
            return self._done(item, adapter, finish_article(*job))
        except _UNUSABLE as error:
            self._unusable(item, error)

    def open_spider(self) -> None:
        # The workers start while the crawl fetches its first pages, not when the first
        # article waits for them.
        if self.clean_processes > 0:
            self._workers = shared_workers(self.clean_processes)
            self._warming = asyncio.ensure_future(self._warm_up(self._workers))

    async def _warm_up(self, workers: CleanWorkers) -> None:
        try:
            await workers.warm_up()
        except OSError as error:  # the first article tries again, and fails with the reason
            logger.warning("body-cleaning worker not started ahead: %s", error)

    async def close_spider(self) -> None:
        if self._warming is not None:
            await self._warming  # a crawl shorter than a worker's start: not left pending
            self._warming = None
        # The worker processes stay for the next crawl of this process (shared_workers).
        self._workers = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def _finish_elsewhere(self, job: tuple[Any, ...]) -> dict[str, Any]:
        # CLEAN_PROCESSES worker processes: the lxml passes and their Python around them hold
        # the GIL, so only another process puts the cleaning on another core. 0: one thread
        # of the crawl's process (the reactor still goes on while nh3 sanitizes).
        if self.clean_processes > 0:
            if self._workers is None:
                self._workers = shared_workers(self.clean_processes)
            return await self._workers.finish(*job)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clean")
        return await asyncio.wrap_future(self._thread.submit(finish_article, *job))

    def _finish_after_lost_worker(
        self, error: CleanWorkerLost, job: tuple[Any, ...]
    ) -> dict[str, Any]:
        # A worker killed under us (out of memory, a signal): this article is finished here,
        # the next ones by a new worker; said and counted, not lost.
        logger.warning("%s; starting another", error)
        self.stats.inc_value("normalize/clean_worker_lost")
        return finish_article(*job)

    def _unusable(self, item: Any, error: BaseException) -> NoReturn:
        # Hostile or malformed data in one article (a value lxml refuses, a date out of
        # range): this article is dropped with the reason, the others go on.
        url = ItemAdapter(item).get("url")
        self._drop("unusable", f"unusable article ({type(error).__name__}: {error}): {url}")

    def _check(self, item: Any) -> tuple[ItemAdapter, tuple[Any, ...]]:
        """The article's title, URL and time checked (or dropped); finish_article's
        arguments."""
        adapter = ItemAdapter(item)
        url = clean_text(adapter.get("url") or "") or None
        title = clean_title(adapter.get("title") or "")
        if not title:
            self._drop("missing_title", f"article without a title: {url}")
        if len(title) > self.max_title_length:
            title = title[: self.max_title_length - 1].rstrip() + "…"
            self.stats.inc_value("normalize/title_truncated")
        published = adapter.get("published")
        if not isinstance(published, datetime):
            self._drop("missing_date", f"article without a publication time: {url}")
        if published.utcoffset() is None:
            self._drop("naive_date", f"publication time without a time zone: {url}")
        published = published.astimezone(UTC)

        base = clean_text(adapter.get("body_base") or "") or url
        raw_body = adapter.get("body") or ""
        if len(raw_body) > MAX_BODY_LENGTH:
            # No article is this long; hostile text this size would cost the sanitizer
            # (super-linear on some inputs) seconds. Cut, sanitize what is left, count it.
            raw_body = raw_body[:MAX_BODY_LENGTH]
            self.stats.inc_value("normalize/body_truncated")
        adapter["title"] = title
        adapter["url"] = url
        adapter["published"] = published
        fields = {name: adapter.get(name) for name in _FINISH_FIELDS}
        strip = tuple(adapter.get("strip_selectors") or ())
        return adapter, (raw_body, base, strip, fields, self.fallback_image, self.check_format)

    def _done(self, item: Any, adapter: ItemAdapter, values: dict[str, Any]) -> Any:
        for name, value in values.items():
            adapter[name] = value
        self.stats.inc_value("normalize/ok")
        return item

    def _drop(self, reason: str, message: str) -> NoReturn:
        self.stats.inc_value(f"normalize/dropped/{reason}")
        raise DropItem(message)
