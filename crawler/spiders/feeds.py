"""Any RSS or Atom feed: the feed sources the harvest hands over, a sources file, or one feed.

Scrapy glue only: feeds are downloaded by Scrapy (throttling, retries, robots.txt apply), the
entries are mapped by crawler/extract/feed.py, full text by crawler/extract/fulltext.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

from crawler.drift import count_page
from crawler.extract.feed import BadEntry, ReadFeed, entry_fields, read_feed
from crawler.extract.fulltext import extract_article
from crawler.items import Article
from crawler.middlewares import TRUSTED_HOST
from crawler.pipelines.normalize import finishing_for
from crawler.pipelines.write import WriteFailed
from crawler.post.article import Finishing
from crawler.post.clean_worker import CleanWorkerLost, shared_workers
from crawler.post.feed_ahead import FinishAhead
from crawler.sources import (
    DEFAULT_SOURCES,
    Source,
    SourcesError,
    load_sources,
    parse_source,
    select_sources,
)
from crawler.spiders.base import (
    ArgumentError,
    ArgumentSpec,
    HarvestSpider,
    failure_reason,
    string_list,
)


class FeedsSpider(HarvestSpider):
    """Arguments (``-a NAME=VALUE``):

    - ``sources``: the sources file (default ``crawler/sources.toml``); its enabled feed
      sources are read. (The harvest passes the Source objects themselves.)
    - ``only``: source names (``a,b`` or a JSON array): read just these (disabled included).
    - ``url`` with ``categories`` (``a,b`` or a JSON array), ``author`` and optional
      ``timezone``: ingest one feed without a sources file.
    """

    name = "feeds"
    # Each worker reads every feed (one request, a 304 when unchanged): an entry waits in the
    # worker that read it for its full text, so no request of ours goes to a shared frontier
    # (crawler/frontier.py); the story keys (DEDUP_BACKEND) keep the writes to one.
    custom_settings: ClassVar[dict[str, Any]] = {"SHARED_FRONTIER": False}
    arguments: ClassVar[ArgumentSpec] = {
        "sources": lambda value: value,
        "only": string_list,
        "url": str,
        "categories": string_list,
        "author": str,
        "timezone": str,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.feed_sources = self.select_sources(**self.check_arguments(**kwargs))
        # Conditional GET: a feed's validators are saved once all of its entries went
        # through the pipelines, so a crash never makes the next run skip entries.
        self._pending: Counter[str] = Counter()  # feed URL -> items not through yet
        self._item_feed: dict[int, str] = {}  # id(item) -> feed URL
        self._parsing: set[str] = set()  # feeds whose response is still being read
        self._validators: dict[str, tuple[str | None, str | None]] = {}
        self._incomplete: set[str] = set()  # feeds with an item that failed: keep no validators
        self._started: dict[str, tuple[Source, float]] = {}  # feed URL -> source, start time
        self._finishing: Finishing | None = None  # the normalize pipeline's (from_crawler)

    @property
    def sources_read(self) -> list[Source]:
        return self.feed_sources

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        converted = super().check_arguments(**arguments)
        try:
            cls.select_sources(**converted)
        except SourcesError as error:
            raise ArgumentError(str(error)) from None
        return converted

    @staticmethod
    def select_sources(
        sources: str | list[Source] | None = None,
        only: list[str] | None = None,
        url: str | None = None,
        categories: list[str] | None = None,
        author: str | None = None,
        timezone: str | None = None,
    ) -> list[Source]:
        if isinstance(sources, list):  # the harvest's own Source objects
            if not all(isinstance(source, Source) and source.is_feed for source in sources):
                raise SourcesError("feeds: -a sources= takes a sources file")
            return sources
        if url:
            if sources or only:
                raise SourcesError("feeds: -a url= reads one feed; drop -a sources= and -a only=")
            table: dict[str, Any] = {"name": urlsplit(url).hostname or "feed", "url": url}
            table["categories"] = categories or ["Feeds", table["name"], "All"]
            table["author"] = author or table["name"]
            if timezone is not None:
                table["timezone"] = timezone
            return [parse_source(table, where=f"feeds -a url={url}: source")]
        path = sources or DEFAULT_SOURCES
        selected = select_sources(load_sources(path), only, str(path))
        return [source for source in selected if source.is_feed]

    @classmethod
    def from_crawler(cls, crawler: scrapy.crawler.Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(spider._item_done, signal=signal)
        spider._finishing = finishing_for(crawler.settings)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        rsshub_base = self.settings.get("RSSHUB_BASE")
        for source in self.feed_sources:
            feed_url = source.feed_url(rsshub_base)
            self._started[feed_url] = (source, time.monotonic())
            yield scrapy.Request(
                _mirrored(feed_url, source),
                callback=self.parse_feed,
                errback=self.feed_failed,
                headers=self._conditional_headers(feed_url),
                cb_kwargs={"source": source},
                meta={
                    "handle_httpstatus_list": [304],
                    "feed_url": feed_url,
                    "source_name": source.name,
                },
                dont_filter=True,
            )

    # --- the feed ------------------------------------------------------------------------

    async def parse_feed(self, response: Response, source: Source) -> AsyncIterator[Any]:
        stats = self.crawler.stats
        feed_url = response.meta["feed_url"]
        if response.status == 304 and not _sent_validators(response):
            # "Not modified" since what? A server that says so unasked hides the feed.
            self._feed_failed(source, f"HTTP 304 to a request without validators: {response.url}")
            self._finished(feed_url)
            return
        if response.status == 304:
            stats.inc_value("feeds/not_modified")
            self.count(source.name, "not_modified")
            self.logger.info("source %s: not modified since the last run", source.name)
            self._finished(feed_url)
            return
        fetched_at = datetime.now(UTC)
        read = await self._read(response, source, fetched_at)
        if read is None:  # failed, and said so
            self._finished(feed_url)
            return
        if not read.is_feed:
            self._feed_failed(source, f"not a feed ({read.problem}): {response.url}")
            self._finished(feed_url)
            return
        if read.bozo:
            stats.inc_value("feeds/bozo")
            self.count(source.name, "bozo")
            if read.broken_xml:
                # Broken XML (a body cut short, a truncated gzip): entries may be missing,
                # so no validators: the next run reads the feed whole again.
                self._incomplete.add(feed_url)
            self.logger.warning(
                "source %s: malformed feed, keeping the %d entries recovered (%s)",
                source.name, read.entry_count, read.problem,
            )  # fmt: skip
        self._validators[feed_url] = (
            _header(response, "ETag"),
            _header(response, "Last-Modified"),
        )
        self._parsing.add(feed_url)
        try:
            for output in self._entries(read, source, feed_url, fetched_at):
                yield output
        except BaseException:  # the rest of the feed was not read: fetch it whole next time
            self._incomplete.add(feed_url)
            raise
        finally:
            self._parsing.discard(feed_url)
            self._save_validators_when_done(feed_url)

    async def _read(
        self, response: Response, source: Source, fetched_at: datetime
    ) -> ReadFeed | None:
        """The feed parsed and its entries mapped (feedparser and the mapping: most of a
        feed's CPU) in a body-cleaning worker process while the reactor goes on, or here
        with ``CLEAN_PROCESSES=0``.

        A worker lost while it holds the feed (killed, out of memory) is counted and the
        feed read again in another; lost twice, the feed is taken for what kills them: it
        fails (FAILED in the report, None here) and the crawl goes on, never reading in its
        own process what killed two workers."""
        arguments = (
            response.body, _header_dict(response), response.url, source.zone, fetched_at,
            self.settings.getint("MAX_ENTRIES_PER_FEED"),
        )  # fmt: skip
        processes = self.settings.getint("CLEAN_PROCESSES")
        if processes <= 0:
            return read_feed(*arguments)
        workers = shared_workers(processes)
        ahead = self._finish_ahead(source, fetched_at)
        for attempt in (1, 2):
            try:
                return await workers.read_feed(ahead, *arguments)
            except CleanWorkerLost as error:
                self.crawler.stats.inc_value("feeds/worker_lost")
                if attempt == 1:
                    self.logger.warning("%s; reading %s again", error, response.url)
                else:
                    message = f"two workers lost reading it ({error}): {response.url}"
                    self._feed_failed(source, message)
        return None

    def _finish_ahead(self, source: Source, fetched_at: datetime) -> FinishAhead | None:
        """What the worker reading a feed needs to finish its articles too, saving each a
        round trip from the normalize pipeline to a worker (crawler/post/feed_ahead.py);
        None when there is nothing to finish ahead: no normalize pipeline, or full text
        to fetch (the body is replaced)."""
        if self._finishing is None or source.full_text:
            return None
        max_age = _max_age(source, self.settings.getfloat("MAX_AGE_DAYS"))
        not_before = fetched_at - timedelta(days=max_age) if max_age else None
        return FinishAhead(self._finishing, _source_fields(source), not_before)

    def _entries(
        self, read: ReadFeed, source: Source, feed_url: str, fetched_at: datetime
    ) -> Iterator[Any]:
        stats = self.crawler.stats
        max_age = _max_age(source, self.settings.getfloat("MAX_AGE_DAYS"))
        source_fields = _source_fields(source)
        rsshub_base = self.settings.get("RSSHUB_BASE")
        for position, entry in enumerate(read.entries):
            if not self.crawler.crawling:  # stopping (a signal): Scrapy would read them all
                self._cut_short(source, feed_url, read.entry_count - position)
                return
            self.count(source.name, "seen")
            if isinstance(entry, BadEntry):
                self.count(source.name, "dropped")
                self.count(source.name, "bad_entry")
                self.logger.warning(
                    "source %s: entry %d dropped (%s)%s", source.name, position + 1,
                    entry.reason, f": {entry.link}" if entry.link else "",
                )  # fmt: skip
                continue
            if entry is None:
                count_page(stats, source.name, None, ["title"])
                stats.inc_value("feeds/entry_without_title")
                self.count(source.name, "dropped")
                self.logger.info("source %s: entry without a title dropped", source.name)
                continue
            # Drift of a feed: entries without a title or any date. A feed without bodies
            # (link-only: Hacker News, Lobsters) is how it is meant, not a change.
            count_page(
                stats, source.name, entry.link, ["date"] if entry.date_from == "missing" else []
            )
            if entry.date_from in ("missing", "future"):
                stats.inc_value(
                    "feeds/entry_without_date"
                    if entry.date_from == "missing"
                    else "feeds/entry_future_date"
                )
            if max_age and entry.published < fetched_at - timedelta(days=max_age):
                stats.inc_value("feeds/entry_too_old")
                self.count(source.name, "too_old")
                continue
            item = Article(**entry_fields(entry, source_fields))
            if read.finished and read.finished[position] is not None:
                item["finished_ahead"] = read.finished[position]
            self._track(item, feed_url)
            if (
                source.full_text
                and entry.has_own_url
                and not self.archive.is_archived(entry.title, entry.published, entry.link)
            ):
                yield scrapy.Request(
                    _mirrored(entry.link, source),
                    callback=self.parse_full_text,
                    errback=self.full_text_failed,
                    cb_kwargs={"item": item},
                    # An entry's link is content: checked if it leaves the feed's own host.
                    meta={"source_name": source.name, TRUSTED_HOST: _host(source, rsshub_base)},
                    dont_filter=True,  # each tracked item must come back
                )
            else:
                yield item
        if (over := read.entry_count - len(read.entries)) > 0:
            self.count(source.name, "entries_over_cap", over)
            self.logger.warning(
                "source %s: %d entries past MAX_ENTRIES_PER_FEED (%d) not read",
                source.name, over, self.settings.getint("MAX_ENTRIES_PER_FEED"),
            )  # fmt: skip

    def _cut_short(self, source: Source, feed_url: str, left: int) -> None:
        """The crawl is stopping before the feed's end: the next run must read all of it
        again (no validators kept), and the harvest reports the source as interrupted."""
        self._incomplete.add(feed_url)
        self.source_cut_short(source.name)
        self.logger.info(
            "source %s: the crawl is stopping; %d entries of the feed not read",
            source.name, left,
        )  # fmt: skip

    # --- full text -----------------------------------------------------------------------

    def parse_full_text(self, response: Response, item: Article) -> Iterator[Article]:
        extracted = (
            extract_article(response.text, response.url)
            if isinstance(response, TextResponse)
            else None
        )
        if extracted:
            item["body"] = extracted
            item["body_base"] = response.url
            self.crawler.stats.inc_value("feeds/full_text_extracted")
        else:
            self.crawler.stats.inc_value("feeds/full_text_fallback")
            self.logger.info(
                "source %s: no article found at %s; keeping the feed's text",
                item["source"],
                response.url,
            )
        yield item

    def full_text_failed(self, failure: Failure) -> Iterator[Article]:
        item = failure.request.cb_kwargs["item"]  # type: ignore[attr-defined]
        self.crawler.stats.inc_value("feeds/full_text_fallback")
        self.logger.info(
            "source %s: article %s not fetched (%s); keeping the feed's text",
            item["source"],
            item["url"],
            failure_reason(failure),
        )
        yield item

    # --- failures ------------------------------------------------------------------------

    def feed_failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        source = request.cb_kwargs["source"]
        self._feed_failed(source, f"{failure_reason(failure)}: {request.url}")
        self._finished(request.meta["feed_url"])

    def _feed_failed(self, source: Source, message: str) -> None:
        self.crawler.stats.inc_value("feeds/failed")
        self.source_failed(source.name, "%s", message)

    def _finished(self, feed_url: str) -> None:
        """Record how long a feed took, from its request to its last item."""
        started = self._started.pop(feed_url, None)
        if started is not None:
            source, began = started
            seconds = round(time.monotonic() - began, 3)
            self.crawler.stats.set_value(f"source/{source.name}/seconds", seconds)

    # --- conditional GET -----------------------------------------------------------------

    def _conditional_headers(self, feed_url: str) -> dict[str, str]:
        etag, last_modified = self.archive.feed_validators(feed_url)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return headers

    def _track(self, item: Article, feed_url: str) -> None:
        self._pending[feed_url] += 1
        self._item_feed[id(item)] = feed_url

    def _item_done(self, item: Any, **signal_arguments: Any) -> None:
        feed_url = self._item_feed.pop(id(item), None)
        if feed_url is None:
            return
        failed = "failure" in signal_arguments or isinstance(
            signal_arguments.get("exception"), WriteFailed
        )
        if failed:  # item_error, or a post that could not be written: fetch it all again
            self._incomplete.add(feed_url)
        self._pending[feed_url] -= 1
        self._save_validators_when_done(feed_url)

    def _save_validators_when_done(self, feed_url: str) -> None:
        if feed_url in self._parsing or self._pending[feed_url] > 0:
            return
        self._finished(feed_url)
        validators = self._validators.pop(feed_url, None)
        if feed_url in self._incomplete:
            self.logger.info("feed %s: not every entry was archived; no validators kept", feed_url)
        elif validators is not None and any(validators):
            self.archive.save_feed_validators(feed_url, *validators)


def _source_fields(source: Source) -> dict[str, Any]:
    """What a source gives each of its articles (entry_fields)."""
    return {
        "categories": list(source.categories),
        "author": source.author,
        "source": source.name,
        "fallback_image": source.fallback_image,
    }


def _host(source: Source, rsshub_base: str) -> str:
    """The host the feed is fetched from (its mirror's, when it has one)."""
    return urlsplit(_mirrored(source.feed_url(rsshub_base), source)).hostname or ""


def _max_age(source: Source, setting: float) -> float:
    return source.max_age_days if source.max_age_days is not None else setting


def _mirrored(url: str, source: Source) -> str:
    """``url`` fetched from the source's mirror when it is on the feed's own host."""
    if not source.base_url:
        return url
    feed, target = urlsplit(source.url or ""), urlsplit(url)
    if (feed.hostname, feed.port) != (target.hostname, target.port):
        return url
    return source.base_url + (target.path or "/") + (f"?{target.query}" if target.query else "")


def _header_dict(response: Response) -> dict[str, str]:
    """Response headers as feedparser wants them: lower-case ``str`` keys and values."""
    return {
        key.decode("latin-1").lower(): b", ".join(values).decode("latin-1")
        for key, values in response.headers.items()
    }


def _sent_validators(response: Response) -> bool:
    headers = response.request.headers if response.request is not None else {}
    return bool(headers.get("If-None-Match") or headers.get("If-Modified-Since"))


def _header(response: Response, name: str) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None
