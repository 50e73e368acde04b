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

A post, its keys and its index line are one unit (SECURITY.md): the file is written first,
then its index line, then its keys. A run that stops between them (disk full, killed) leaves
a post whose index line or keys are missing; a later run that meets the story again finds the
file on disk and records what is missing (``write/repaired``). A crawl whose archive holds
posts that are not in the index says so when it ends (``reindex`` indexes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.utils.conf import build_component_list
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.misc import load_object

from crawler.archive.file_writer import FileWriterProcess, shared_file_writer
from crawler.archive.files import month_posts, post_relpath, read_post, write_posts
from crawler.archive.index import INDEX_FILE, append_index_lines, index_entry, indexed_paths
from crawler.archive.shared import SharedKeys, SharedUnavailable, connect_shared, is_redis_url
from crawler.archive.state import (
    KEY_VERSION,
    MAX_FAILURE_BACKOFF,
    ArchiveState,
    as_os_error,
    check_state,
    in_backoff,
)
from crawler.post.keys import key_digest, listing_keys, url_key

logger = logging.getLogger(__name__)
T = TypeVar("T")
# The finish reason of a crawl stopped because the shared backend was lost.
SHARED_LOST = "archive_unavailable"


@dataclass(frozen=True)
class StoredPost:
    """Where a post went; ``written`` is False when the file was already on disk, and
    ``repaired`` True when that file's index line or keys were then recorded."""

    relpath: str
    written: bool
    repaired: bool = False


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
        # The paths .index.jsonl lists, read once (when a post is found already on disk).
        self._indexed: set[str] | None = None
        self.stats: Any = None  # the crawl's stats collector (write/repaired)
        # The YYYY/MM folders this crawl wrote (or tried to write) posts into: checked for
        # unindexed posts at its end.
        self._months: set[str] = set()
        # The one thread that writes posts (fsync of file and folder, index line, keys), so
        # that the crawl's thread never waits for the disk. One: posts are stored in the
        # order they are handed over, and no two state transactions meet.
        self._writer: ThreadPoolExecutor | None = None
        # Posts handed to the writer and not taken yet, and whether a batch is due.
        self._pending: list[tuple[bytes, dict[str, Any], asyncio.Future[StoredPost]]] = []
        self._pending_lock = threading.Lock()
        self._drain_scheduled = False
        # Seconds a batch waits for more posts before the writer takes it (WRITE_BATCH_DELAY):
        # fewer, larger batches mean fewer folder fsyncs, index appends and transactions,
        # and fewer wake-ups of the writer thread taking the GIL from the reactor.
        self.batch_delay = 0.0
        # DEDUP_BACKEND = a Redis URL: story keys, validators and failure memory shared with
        # other workers (crawler/archive/shared.py); lost once, the crawl stops.
        self.shared: SharedKeys | None = None
        self.shared_lost = False
        self._crawler: Crawler | None = None
        # A crawl's post files are written by a helper process (WRITE_PROCESS), so that the
        # writer thread holds the GIL once per batch, not for every file operation.
        self.file_writer: FileWriterProcess | None = None
        # WRITE_GROUP_COMMIT: a batch's files made durable by one syncfs(2), not one fsync each.
        self.group_commit = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        service = cls(
            Path(settings["OUTPUT_DIR"]),
            timedelta(seconds=settings.getfloat("FAILED_ARTICLE_RETRY_AFTER")),
            read_only=settings.getbool("DRY_RUN") or not writes_posts(settings),
        )
        service.stats = crawler.stats
        service._crawler = crawler
        if settings.getbool("WRITE_PROCESS") and not service.read_only:
            service.file_writer = shared_file_writer()
            # Started while the crawl fetches its first pages, not when a batch waits for it.
            crawler.signals.connect(service.file_writer.start, signal=signals.spider_opened)
        service.batch_delay = settings.getfloat("WRITE_BATCH_DELAY")
        service.group_commit = settings.getbool("WRITE_GROUP_COMMIT")
        # A corrupt state stops the crawl here, before any request: one CorruptState line.
        check_state(service.output_dir)
        backend = str(settings.get("DEDUP_BACKEND") or "sqlite")
        if is_redis_url(backend):
            service.shared = connect_shared(settings)
            crawler.signals.connect(service.adopt_keys, signal=signals.spider_opened)
        crawler.signals.connect(service.wait_for_stop_when_lost, signal=signals.spider_idle)
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
        if self._writer is not None:
            # By engine_stopped every item is done; a store still running is waited for.
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._state is not None:
            if not self.read_only:
                self._report_unindexed()
            self._state.close()
            self._state = None
        self._indexed = None
        if self.shared is not None:
            self.shared.close()

    def _report_unindexed(self) -> None:
        """Warn about post files the index does not list (nothing is lost silently), in the
        folders this crawl wrote into: where a run stopped between a post's file and its
        index line, or a write failed, left them. A post with keys has its index line (file,
        line, keys: in that order), so the index is read only when one of those folders
        holds a post without keys: the check costs what the crawl wrote, not the archive.
        (``reindex`` rebuilds the index of the whole archive.)"""
        try:
            unkeyed = set()
            for month in sorted(self._months):
                keyed = self.state.keyed_paths_in(month)
                unkeyed.update(p for p in month_posts(self.output_dir, month) if p not in keyed)
            missing = sorted(unkeyed - self._indexed_paths()) if unkeyed else []
        except (OSError, sqlite3.Error) as error:
            logger.warning("archive %s: could not check %s: %s", self.output_dir, INDEX_FILE, error)
            return
        if missing:
            logger.warning(
                "archive %s: %d post files are not in %s (e.g. %s); "
                "`python -m crawler reindex %s` indexes them",
                self.output_dir, len(missing), INDEX_FILE, missing[0], self.output_dir,
            )  # fmt: skip

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
        if self.shared_lost:
            return True  # stopping: ask for nothing more
        title_key, own_url_key = listing_keys(raw_title, published, url)
        try:
            return self.knows(title_key, own_url_key) is not None
        except SharedUnavailable:
            return True

    def in_failure_backoff(self, url: str) -> bool:
        """True while a page that failed recently should not be asked for again."""
        if self.shared is None:
            return self.state.in_failure_backoff(_failure_key(url), self.failure_backoff)
        try:
            failure = self._shared_call(self.shared.failure, _failure_key(url))
        except SharedUnavailable:
            return True
        return failure is not None and in_backoff(*failure, self.failure_backoff)

    def page_failed(self, url: str, reason: str) -> None:
        if not self._may_save():
            return
        if self.shared is None:
            self.state.record_failure(_failure_key(url), reason)
            return
        with contextlib.suppress(SharedUnavailable):  # reported and stopping already
            self._shared_call(
                self.shared.record_failure, _failure_key(url), reason, MAX_FAILURE_BACKOFF
            )

    def page_succeeded(self, url: str) -> None:
        if not self._may_save():
            return
        if self.shared is None:
            # Most archives hold no failure: then no URL key to compute for every page.
            if self.state.has_failures():
                self.state.forget_failure(_failure_key(url))
            return
        with contextlib.suppress(SharedUnavailable):  # reported and stopping already
            self._shared_call(self.shared.forget_failure, _failure_key(url))

    def feed_validators(self, feed_url: str) -> tuple[str | None, str | None]:
        if self.shared is None:
            return self.state.feed_validators(feed_url)
        try:
            return self._shared_call(self.shared.feed_validators, feed_url)
        except SharedUnavailable:
            return None, None

    def save_feed_validators(
        self, feed_url: str, etag: str | None, last_modified: str | None
    ) -> None:
        if not self._may_save():
            return
        if self.shared is None:
            self.state.save_feed_validators(feed_url, etag, last_modified)
            return
        with contextlib.suppress(SharedUnavailable):  # reported and stopping already
            self._shared_call(self.shared.save_feed_validators, feed_url, etag, last_modified)

    # --- the shared backend -------------------------------------------------------------------

    def adopt_keys(self) -> None:
        """At the start: this archive's keys into the shared backend, where missing."""
        if self.shared is None or self.read_only:
            return
        with contextlib.suppress(SharedUnavailable):  # reported; the crawl is stopping
            sent = self._shared_call(self.shared.adopt, self.state.story_keys())
            logger.info("archive %s: %d keys shared in %s", self.output_dir, sent, self.shared.url)

    def claim(self, title_key: str, url_key: str | None) -> str | None:
        """Take a story before its post is written: None when this worker has it now (or
        there is no shared backend), else the kind of key another worker holds. Raises
        SharedUnavailable once the backend is lost."""
        if self.shared is None or self.read_only:
            return None
        if self.shared_lost:
            raise SharedUnavailable("shared archive keys unavailable")
        return self._shared_call(self.shared.claim, title_key, url_key)

    def release(self, title_key: str, url_key: str | None) -> None:
        """A claimed story was not written (dropped or failed after dedup)."""
        if self.shared is None or self.read_only or self.shared_lost:
            return  # a lost backend's claims expire (DEDUP_CLAIM_TTL)
        with contextlib.suppress(SharedUnavailable):  # reported and stopping already
            self._shared_call(self.shared.release, title_key, url_key)

    def _shared_call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        except SharedUnavailable as error:
            self.lose_shared(error)
            raise

    def wait_for_stop_when_lost(self) -> None:
        """A crawl with nothing left to do once Redis was lost must still end as
        ``archive_unavailable`` (its close is on its way), not as ``finished``."""
        if self.shared_lost:
            raise DontCloseSpider

    def lose_shared(self, error: SharedUnavailable) -> None:
        """The first failure of the shared backend: one line, a stat, the crawl stopped."""
        if self.shared_lost:
            return
        self.shared_lost = True
        logger.error(
            "shared archive keys lost (%s); stopping the crawl: no post is written without its "
            "claim, posts written so far are kept",
            error,
        )
        if self.stats is not None:
            self.stats.set_value("archive/shared_unavailable", str(error))
        crawler = self._crawler
        if crawler is not None and crawler.engine is not None:
            from twisted.internet import reactor

            engine = crawler.engine

            def stop() -> None:
                deferred_from_coro(engine.close_spider_async(reason=SHARED_LOST))

            if threading.current_thread() is threading.main_thread():
                reactor.callLater(0, stop)  # type: ignore[attr-defined]
            else:  # the writer thread
                reactor.callFromThread(stop)  # type: ignore[attr-defined]

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

    def knows(self, title_key: str | None, url_key: str | None) -> str | None:
        """'title' or 'url' when the archive (or, shared, any worker's) holds one of a
        story's keys, else None. Raises SharedUnavailable when the shared backend is lost."""
        known = self.state.knows(title_key=title_key, url_key=url_key)
        if known is not None or self.shared is None:
            return known
        if self.shared_lost:
            raise SharedUnavailable("shared archive keys unavailable")
        return self._shared_call(self.shared.knows, title_key, url_key)

    def store_post(
        self,
        data: bytes,
        *,
        published: datetime,
        title_key: str,
        url_key: str | None,
        index: dict[str, Any],
    ) -> StoredPost:
        """Write a rendered post atomically, then append its index line, then record its keys.

        ``index`` holds the index line's ``title``, ``date``, ``url``, ``source`` and
        ``categories``. Keys are recorded last, so a run that stops before them is repaired by
        the next run that meets the story: a post already on disk is never replaced, but its
        missing index line and keys are recorded (``repaired``, counted ``write/repaired``).
        Raises OSError (a failed state write too: ENOSPC for a full disk; a symlink in the
        archive is ELOOP), ValueError for a path that would leave the archive, and
        RuntimeError in read-only mode (a crawl with the write pipeline is never read-only,
        except with DRY_RUN, whose harvest leaves the write pipeline out).
        """
        (result,) = self.store_posts(
            [(data, {"published": published, "title_key": title_key, "url_key": url_key,
                     "index": index})]
        )  # fmt: skip
        if isinstance(result, BaseException):
            raise result
        return result

    def store_posts(
        self, posts: list[tuple[bytes, dict[str, Any]]]
    ) -> list[StoredPost | BaseException]:
        """:meth:`store_post` for a batch of ``(data, fields)``, one result (or the error
        that post met) each, in order. A group commit: every new file is written and fsynced,
        then each folder they went to is fsynced once, then their index lines are appended in
        one write, then their keys are recorded in one transaction. The file-index-keys order
        of every post holds, so a stop anywhere in between is repaired as for one post."""
        if self.read_only:
            raise RuntimeError(
                f"read-only archive {self.output_dir} (DRY_RUN or no write pipeline): "
                "no post is written; leave crawler.pipelines.write.WritePipeline out of "
                "ITEM_PIPELINES in a dry run"
            )
        root = self.output_dir.resolve()
        results: list[StoredPost | BaseException | None] = [None] * len(posts)
        staged = self._write_files(root, posts, results)
        live = [post for post in staged if results[post.position] is None]
        lines = self._index_lines(root, live)
        try:
            append_index_lines(self.output_dir, (line for line in lines if line is not None))
        except OSError as error:
            return _failed(results, live, error)
        if self._indexed is not None:
            self._indexed.update(post.relpath for post in live)
        state = self.state
        try:
            added = state.remember_many([(p.relpath, p.title_key, p.url_key) for p in live])
        except sqlite3.Error as error:
            return _failed(results, live, as_os_error(error, state.path))
        self._confirm_shared(live)
        for post, line, keys_added in zip(live, lines, added, strict=True):
            repaired = []
            if line is not None and not post.written:
                repaired.append("index line")
            if keys_added and not post.written:
                repaired.append("keys")
            if repaired:
                logger.warning(
                    "repaired %s: its %s recorded (an earlier run stopped before)",
                    post.relpath, " and ".join(repaired),
                )  # fmt: skip
                if self.stats is not None:
                    self.stats.inc_value("write/repaired")
            results[post.position] = StoredPost(post.relpath, post.written, bool(repaired))
        for post in staged:  # the same story again in the batch: as its first copy
            done = results[post.position]
            for position in post.copies:
                results[position] = (
                    done if isinstance(done, BaseException) else StoredPost(post.relpath, False)
                )
        return [result for result in results if result is not None]

    def _confirm_shared(self, posts: list[_StagedPost]) -> None:
        """The posts are archived here: their claims become their keys for every worker."""
        if self.shared is None or self.shared_lost:
            return  # lost: this archive's keys are adopted when the worker starts again
        for post in posts:
            try:
                self._shared_call(self.shared.confirm, post.title_key, post.url_key, post.relpath)
            except SharedUnavailable:
                return

    def _write_files(
        self,
        root: Path,
        posts: list[tuple[bytes, dict[str, Any]]],
        results: list[StoredPost | BaseException | None],
    ) -> list[_StagedPost]:
        """Each post's file written (:func:`write_posts`: in the file-writer process when the
        crawl has one); a post whose file or folder failed gets its error in ``results``."""
        staged: dict[str, _StagedPost] = {}  # by relpath
        for position, (data, fields) in enumerate(posts):
            try:
                relpath = post_relpath(
                    fields["index"]["title"], fields["published"], key_digest(fields["title_key"])
                )
            except Exception as error:  # handed to this post's caller, not swallowed
                results[position] = error
                continue
            if relpath in staged:
                staged[relpath].copies.append(position)  # resolved with its first copy
                continue
            staged[relpath] = _StagedPost(position, relpath, False, data, fields)
        self._months.update(relpath.rpartition("/")[0] for relpath in staged)
        jobs = [(post.relpath, post.data) for post in staged.values()]
        writer = self.file_writer.write_posts if self.file_writer else write_posts
        outcomes = writer(root, jobs, group_commit=self.group_commit)
        for post, outcome in zip(staged.values(), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results[post.position] = outcome
            else:
                post.written = outcome
        return list(staged.values())

    def _index_lines(self, root: Path, posts: list[_StagedPost]) -> list[dict[str, Any] | None]:
        """Each post's index line: a new file's, or the missing line of one already on disk
        (None when the index has it)."""
        lines: list[dict[str, Any] | None] = []
        for post in posts:
            index = post.fields["index"]
            if post.written:
                data = post.data
            elif post.relpath not in self._indexed_paths():
                data = read_post(root, post.relpath)
            else:
                lines.append(None)
                continue
            lines.append(
                index_entry(path=post.relpath, canonical_url=post.url_key, data=data, **index)
            )
        return lines

    async def store_post_in_writer(self, data: bytes, **fields: Any) -> StoredPost:
        """:meth:`store_post` on the archive's writer thread, awaited (same arguments, same
        result and errors), so that the reactor goes on downloading while the disk syncs.
        The posts handed over while the writer is busy are stored together, as one batch
        (:meth:`store_posts`)."""
        self.state  # noqa: B018 -- opened (and re-keyed) here, on the crawl's own thread
        loop = asyncio.get_running_loop()
        done: asyncio.Future[StoredPost] = loop.create_future()
        with self._pending_lock:
            self._pending.append((data, fields, done))
            if not self._drain_scheduled:
                self._drain_scheduled = True
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="archive-writer"
                    )
                if self.batch_delay > 0:  # the posts of the next moments join this batch
                    loop.call_later(self.batch_delay, self._writer.submit, self._store_pending)
                else:
                    self._writer.submit(self._store_pending)
        return await done

    def _store_pending(self) -> None:
        """On the writer thread: store every post handed over so far, as one batch, and hand
        the results back to the loop(s) that wait for them in one call each. One wake-up
        of a loop per batch, not per post: each one made this thread wait for the GIL
        and the reactor give it up (futex round trips of both threads, for every post)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._drain_scheduled = False
        try:
            results = self.store_posts([(data, fields) for data, fields, _ in batch])
        except Exception as error:  # each waiting store gets it
            results = [error] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[StoredPost], Any]]]
        by_loop = {}
        for (_, _, done), result in zip(batch, results, strict=True):
            by_loop.setdefault(done.get_loop(), []).append((done, result))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop closed with posts still waiting: said, not lost
                logger.error(
                    "%d post(s) stored but their crawl's event loop is closed: "
                    "their results were not delivered", len(settled),
                )  # fmt: skip

    def _indexed_paths(self) -> set[str]:
        if self._indexed is None:
            self._indexed = indexed_paths(self.output_dir)
        return self._indexed


@dataclass
class _StagedPost:
    """A post of a batch whose file is in place (``written``: by this batch)."""

    position: int
    relpath: str
    written: bool
    data: bytes
    fields: dict[str, Any]
    copies: list[int] = field(default_factory=list)  # later positions of the same story

    @property
    def title_key(self) -> str:
        return self.fields["title_key"]

    @property
    def url_key(self) -> str | None:
        return self.fields["url_key"]


def _settle(settled: list[tuple[asyncio.Future[StoredPost], Any]]) -> None:
    """On the loop: each waiting store gets its result or its error (unless cancelled)."""
    for done, result in settled:
        if done.cancelled():
            continue
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)


def _failed(
    results: list[StoredPost | BaseException | None],
    posts: list[_StagedPost],
    error: BaseException,
) -> list[StoredPost | BaseException]:
    """``error`` for each of ``posts`` not failed yet; ``results`` (for an early return)."""
    for post in posts:
        if results[post.position] is None:
            results[post.position] = error
    return [r if r is not None else error for r in results]


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
