"""Normalize: clean title and strings, UTC time, sanitized absolute body, lead image."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object

from crawler.post.article import (
    MAX_BODY_LENGTH,
    UNUSABLE,
    CheckedArticle,
    FinishedAhead,
    Finishing,
    NotAnArticle,
    check_article,
    finish_article,
)
from crawler.post.clean_worker import CleanWorkerLost, CleanWorkers, shared_workers

logger = logging.getLogger(__name__)

__all__ = ["MAX_BODY_LENGTH", "NormalizePipeline", "finishing_for", "validated_as_normalized"]


def validated_as_normalized(settings: BaseSettings) -> bool:
    """Whether the validate pipeline sees a post as normalize leaves it: it is enabled, and
    every pipeline between the two leaves posts as they are (dedup; the images pipeline,
    which rewrites a body's images, only with ARCHIVE_IMAGES)."""
    from crawler.pipelines.dedup import DedupPipeline
    from crawler.pipelines.images import ArchiveImagesPipeline
    from crawler.pipelines.validate import ValidatePipeline

    classes = _pipeline_classes(settings)
    if classes is None or NormalizePipeline not in classes or ValidatePipeline not in classes:
        return False
    start, end = classes.index(NormalizePipeline), classes.index(ValidatePipeline)
    between = classes[start + 1 : end]
    return (
        start < end
        and not settings.getbool("ARCHIVE_IMAGES")
        and all(pipeline in (DedupPipeline, ArchiveImagesPipeline) for pipeline in between)
    )


def finishing_for(settings: BaseSettings) -> Finishing | None:
    """How the normalize pipeline finishes a crawl's articles, or None when the crawl has
    no normalize pipeline: for a spider that has articles finished before they reach it
    (the feeds spider, in the worker that read the feed)."""
    classes = _pipeline_classes(settings)
    if classes is None or NormalizePipeline not in classes:
        return None
    return _finishing(settings)


def _pipeline_classes(settings: BaseSettings) -> list[Any] | None:
    """The crawl's item pipelines, in order; None when one does not load (Scrapy reports it
    when it builds the pipelines)."""
    try:
        return [load_object(path) for path in build_component_list(
            settings.getwithbase("ITEM_PIPELINES"))]  # fmt: skip
    except (ImportError, AttributeError, NameError, ValueError):
        return None


def _finishing(settings: BaseSettings) -> Finishing:
    return Finishing(
        settings.getint("MAX_TITLE_LENGTH", 300),
        settings.get("FALLBACK_IMAGE") or "",
        validated_as_normalized(settings),
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
        # check_format: the post checked against the schema where it is finished (off the
        # crawl's thread), for the validate pipeline (crawler/pipelines/validate.py).
        self.finishing = Finishing(max_title_length, fallback_image or "", check_format)
        self.clean_processes = clean_processes
        self._workers: CleanWorkers | None = None
        self._warming: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizePipeline:
        assert crawler.stats is not None
        finishing = _finishing(crawler.settings)
        return cls(
            crawler.stats,
            finishing.fallback_image,
            finishing.max_title_length,
            crawler.settings.getint("CLEAN_PROCESSES", 0),
            check_format=finishing.check_format,
        )

    async def process_item(self, item: Any) -> Any:
        """The crawl's path: the body is cleaned and the values finished (lxml, nh3, URL
        canonicalization: the CPU work) in a worker process while the reactor goes on; the
        checks and stats on the reactor."""
        try:
            adapter = ItemAdapter(item)
            if (values := self._finished_ahead(adapter)) is not None:
                return self._done(item, adapter, values)
            job = self._check(adapter)
            try:
                values = await self._finish_elsewhere(job)
            except CleanWorkerLost as error:
                values = self._finish_after_lost_worker(error, job)
            return self._done(item, adapter, values)
        except UNUSABLE as error:
            self._unusable(item, error)

    def normalize(self, item: Any) -> Any:
        """The same, all on the calling thread (tests, commands without a reactor)."""
        try:
            adapter = ItemAdapter(item)
            values = self._finished_ahead(adapter) or finish_article(*self._check(adapter))
            return self._done(item, adapter, values)
        except UNUSABLE as error:
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

    def _finished_ahead(self, adapter: ItemAdapter) -> dict[str, Any] | None:
        """The values of an article finished before it came here (``finished_ahead``: by the
        worker that read its feed, which saves it a round trip to one), its checks applied,
        if its fields are still the ones it was finished from; None otherwise."""
        ahead = adapter.pop("finished_ahead", None)  # never passed on: it holds the raw body
        if not isinstance(ahead, FinishedAhead):
            return None
        # The body is the very string the values were made from: compared by identity.
        if any(adapter.get(name) != value for name, value in ahead.inputs.items()):
            # Changed since (its full text fetched, another pipeline): finished again.
            self.stats.inc_value("normalize/finished_ahead_stale")
            return None
        self.stats.inc_value("normalize/finished_ahead")
        self._checked(adapter, ahead.checked)
        return ahead.values

    def _unusable(self, item: Any, error: BaseException) -> NoReturn:
        # Hostile or malformed data in one article (a value lxml refuses, a date out of
        # range): this article is dropped with the reason, the others go on.
        url = ItemAdapter(item).get("url")
        self._drop("unusable", f"unusable article ({type(error).__name__}: {error}): {url}")

    def _check(self, adapter: ItemAdapter) -> tuple[Any, ...]:
        """The article's title, URL and time checked (or dropped); finish_article's
        arguments."""
        try:
            checked = check_article(adapter.get, self.finishing)
        except NotAnArticle as error:
            self._drop(error.reason, str(error))
        self._checked(adapter, checked)
        return checked.job

    def _checked(self, adapter: ItemAdapter, checked: CheckedArticle) -> None:
        if checked.title_truncated:
            self.stats.inc_value("normalize/title_truncated")
        if checked.body_truncated:
            self.stats.inc_value("normalize/body_truncated")
        adapter["title"] = checked.title
        adapter["url"] = checked.url
        adapter["published"] = checked.published

    def _done(self, item: Any, adapter: ItemAdapter, values: dict[str, Any]) -> Any:
        for name, value in values.items():
            adapter[name] = value
        self.stats.inc_value("normalize/ok")
        return item

    def _drop(self, reason: str, message: str) -> NoReturn:
        self.stats.inc_value(f"normalize/dropped/{reason}")
        raise DropItem(message)
