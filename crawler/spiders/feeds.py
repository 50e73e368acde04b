"""Any RSS or Atom feed: the feed sources of a sources file, or one ad-hoc feed.

Feeds are downloaded by Scrapy (throttling, retries, robots.txt, HTTP cache apply) and the raw
bytes go to feedparser with the response headers, so a charset given only in Content-Type is
honoured. feedparser's own sanitizer and relative-URI resolution are off: the normalize
pipeline sanitizes and resolves links, and feedparser's pass strips lazy-image attributes.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import scrapy
from scrapy import signals
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.archive import ArchiveState
from crawler.cleaning import clean_title
from crawler.dates import from_struct, parse_date
from crawler.extract import extract_article
from crawler.items import Article
from crawler.keys import title_key, url_key
from crawler.pipelines.write import WriteFailed
from crawler.sources import DEFAULT_SOURCES, Source, SourcesError, load_sources, parse_source

# A date further ahead than this is a feed's mistake: the fetch time is used instead.
FUTURE_TOLERANCE = timedelta(days=1)


class FeedsSpider(scrapy.Spider):
    """Arguments (``-a NAME=VALUE``):

    - ``sources``: the sources file (default ``crawler/sources.toml``); its enabled feed
      sources are read.
    - ``only``: comma-separated source names: read just these (disabled ones included).
    - ``url`` with ``categories`` (comma-separated), ``author`` and optional ``timezone``:
      ingest one feed without a sources file.
    """

    name = "feeds"

    def __init__(self, **kwargs: Any) -> None:
        arguments = {k: kwargs.pop(k) for k in list(kwargs) if k in _ARGUMENTS}
        super().__init__(**kwargs)
        self.feed_sources = self.select_sources(**arguments)
        self.archive: ArchiveState | None = None
        # Conditional GET: a feed's validators are saved once all of its entries went
        # through the pipelines, so a crash never makes the next run skip entries.
        self._pending: Counter[str] = Counter()  # feed URL -> items not through yet
        self._item_feed: dict[int, str] = {}  # id(item) -> feed URL
        self._parsing: set[str] = set()  # feeds whose response is still being read
        self._validators: dict[str, tuple[str | None, str | None]] = {}
        self._incomplete: set[str] = set()  # feeds with an item that failed: keep no validators
        self._started: dict[str, tuple[Source, float]] = {}  # feed URL -> source, start time

    @classmethod
    def check_arguments(cls, **arguments: Any) -> None:
        """Raise ValueError (a SourcesError) for arguments or a sources file that cannot work."""
        cls.select_sources(**{k: v for k, v in arguments.items() if k in _ARGUMENTS})

    @staticmethod
    def select_sources(
        sources: str | None = None,
        only: str | None = None,
        url: str | None = None,
        categories: str | None = None,
        author: str | None = None,
        timezone: str | None = None,
    ) -> list[Source]:
        if url:
            if sources or only:
                raise SourcesError("feeds: -a url= reads one feed; drop -a sources= and -a only=")
            table: dict[str, Any] = {"name": urlsplit(url).hostname or "feed", "url": url}
            if categories is not None:
                table["categories"] = [c for c in categories.split(",") if c.strip()]
            if author is not None:
                table["author"] = author
            if timezone is not None:
                table["timezone"] = timezone
            return [parse_source(table, where=f"feeds -a url={url}: source")]
        every = load_sources(sources or DEFAULT_SOURCES)
        if only:
            wanted = [name.strip() for name in only.split(",") if name.strip()]
            known = {source.name for source in every}
            for name in wanted:
                if name not in known:
                    raise SourcesError(f"{sources or DEFAULT_SOURCES}: no source named {name!r}")
            return [source for source in every if source.is_feed and source.name in wanted]
        return [source for source in every if source.is_feed and source.enabled]

    @classmethod
    def from_crawler(cls, crawler: scrapy.crawler.Crawler, *args: Any, **kwargs: Any) -> Any:
        spider = super().from_crawler(crawler, *args, **kwargs)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(spider._item_done, signal=signal)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        self.archive = ArchiveState(self.settings["OUTPUT_DIR"])
        rsshub_base = self.settings.get("RSSHUB_BASE")
        for source in self.feed_sources:
            feed_url = source.feed_url(rsshub_base)
            self._started[feed_url] = (source, time.monotonic())
            yield scrapy.Request(
                feed_url,
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

    def closed(self, reason: str) -> None:
        if self.archive is not None:
            self.archive.close()

    # --- the feed ------------------------------------------------------------------------

    def parse_feed(self, response: Response, source: Source) -> Iterator[Any]:
        stats = self.crawler.stats
        feed_url = response.meta["feed_url"]
        if response.status == 304:
            stats.inc_value("feeds/not_modified")
            self.logger.info("source %s: not modified since the last run", source.name)
            self._finished(feed_url)
            return
        parsed = feedparser.parse(
            response.body,
            response_headers=_header_dict(response),
            sanitize_html=False,
            resolve_relative_uris=False,
        )
        if not parsed.entries and (not parsed.version or parsed.bozo):
            reason = parsed.get("bozo_exception") or "no feed found"
            self._source_failed(source, f"not a feed ({_one_line(reason)}): {response.url}")
            self._finished(feed_url)
            return
        if parsed.bozo:
            stats.inc_value("feeds/bozo")
            stats.inc_value(f"source/{source.name}/bozo")
            self.logger.warning(
                "source %s: malformed feed, keeping the %d entries recovered (%s)",
                source.name, len(parsed.entries), _one_line(parsed.get("bozo_exception")),
            )  # fmt: skip
        self._validators[feed_url] = (
            _header(response, "ETag"),
            _header(response, "Last-Modified"),
        )
        self._parsing.add(feed_url)
        try:
            yield from self._entries(parsed, response, source, feed_url)
        finally:
            self._parsing.discard(feed_url)
            self._save_validators_when_done(feed_url)

    def _entries(
        self, parsed: Any, response: Response, source: Source, feed_url: str
    ) -> Iterator[Any]:
        stats = self.crawler.stats
        fetched_at = datetime.now(UTC)
        links = [self._entry_link(entry, response) for entry in parsed.entries]
        shared = {link for link, count in Counter(links).items() if link and count > 1}
        home = _site_home(parsed, response)
        max_age = self.settings.getfloat("MAX_AGE_DAYS")
        for entry, link in zip(parsed.entries, links, strict=True):
            stats.inc_value(f"source/{source.name}/seen")
            title = _entry_title(entry)
            if not clean_title(title):
                stats.inc_value("feeds/entry_without_title")
                stats.inc_value(f"source/{source.name}/dropped")
                self.logger.info(
                    "source %s: entry without a title dropped (%s)", source.name, link or "no link"
                )
                continue
            published = self._entry_date(entry, parsed, source, fetched_at)
            if max_age and published < fetched_at - timedelta(days=max_age):
                stats.inc_value("feeds/entry_too_old")
                stats.inc_value(f"source/{source.name}/too_old")
                continue
            body, body_base = _entry_body(entry, response, link)
            item = Article(
                title=title,
                url=link,
                published=published,
                categories=list(source.categories),
                author=source.author,
                body=body,
                body_base=body_base,
                source=source.name,
                image=_entry_image(entry, body_base or response.url),
                fallback_image=source.fallback_image,
                has_own_url=bool(link) and link not in shared and link not in home,
            )
            self._track(item, feed_url)
            if source.full_text and item["has_own_url"] and not self._archived(item):
                yield scrapy.Request(
                    link,
                    callback=self.parse_full_text,
                    errback=self.full_text_failed,
                    cb_kwargs={"item": item},
                    meta={"source_name": source.name},
                    dont_filter=True,  # each tracked item must come back
                )
            else:
                yield item

    def _entry_link(self, entry: Any, response: Response) -> str | None:
        link = entry.get("feedburner_origlink") or entry.get("link")
        if not isinstance(link, str) or not link.strip():
            return None
        absolute = urljoin(response.url, link.strip())
        return absolute if urlsplit(absolute).scheme in ("http", "https") else None

    def _entry_date(
        self, entry: Any, parsed: Any, source: Source, fetched_at: datetime
    ) -> datetime:
        stats = self.crawler.stats
        zone = source.zone
        published = (
            parse_date(entry.get("published") or entry.get("updated"), zone)
            or from_struct(entry.get("published_parsed") or entry.get("updated_parsed"))
            or parse_date(parsed.feed.get("published") or parsed.feed.get("updated"), zone)
            or from_struct(parsed.feed.get("published_parsed") or parsed.feed.get("updated_parsed"))
        )
        if published is None:
            stats.inc_value("feeds/entry_without_date")
            return fetched_at
        if published > fetched_at + FUTURE_TOLERANCE:
            stats.inc_value("feeds/entry_future_date")
            return fetched_at
        return published

    def _archived(self, item: Article) -> bool:
        assert self.archive is not None
        return bool(
            self.archive.knows(
                title_key=title_key(clean_title(item["title"]), item["published"]),
                url_key=url_key(item["url"]),
            )
        )

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
            _failure_reason(failure),
        )
        yield item

    # --- failures ------------------------------------------------------------------------

    def feed_failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        source = request.cb_kwargs["source"]
        self._source_failed(source, f"{_failure_reason(failure)}: {request.url}")
        self._finished(request.meta["feed_url"])

    def _source_failed(self, source: Source, message: str) -> None:
        self.crawler.stats.inc_value("feeds/failed")
        self.crawler.stats.set_value(f"source/{source.name}/failed", 1)
        self.logger.warning("source %s failed: %s", source.name, message)

    def _finished(self, feed_url: str) -> None:
        """Record how long a feed took, from its request to its last item."""
        started = self._started.pop(feed_url, None)
        if started is not None:
            source, began = started
            seconds = round(time.monotonic() - began, 3)
            self.crawler.stats.set_value(f"source/{source.name}/seconds", seconds)

    # --- conditional GET -----------------------------------------------------------------

    def _conditional_headers(self, feed_url: str) -> dict[str, str]:
        assert self.archive is not None
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
            assert self.archive is not None
            self.archive.save_feed_validators(feed_url, *validators)


_ARGUMENTS = ("sources", "only", "url", "categories", "author", "timezone")


def _entry_title(entry: Any) -> str:
    """The entry's title as HTML, which is what an item's title holds.

    A text title is escaped, so that normalize (which strips tags and decodes entities)
    gives back exactly its text, ``<`` and ``&amp;`` included.
    """
    raw = entry.get("title")
    if not isinstance(raw, str):
        return ""
    kind = (entry.get("title_detail") or {}).get("type", "")
    return raw if "html" in kind else html.escape(raw, quote=False)


def _entry_body(entry: Any, response: Response, link: str | None) -> tuple[str, str | None]:
    """The fullest of content:encoded / content / summary, and the base of its links.

    The base is the content's own xml:base where it has one, else the entry's link.
    """
    details = [*entry.get("content", []), entry.get("summary_detail") or {}]
    best = max(details, key=lambda detail: len(detail.get("value") or ""))
    body = best.get("value") or ""
    own_base = best.get("base")
    base = own_base if own_base and own_base != response.url else (link or response.url)
    return body, base


def _entry_image(entry: Any, base: str) -> str | None:
    """media:thumbnail, media:content (images only), or an image enclosure."""
    candidates = [thumb.get("url") for thumb in entry.get("media_thumbnail", [])]
    candidates += [
        media.get("url")
        for media in entry.get("media_content", [])
        if media.get("medium") == "image" or str(media.get("type", "")).startswith("image/")
    ]
    candidates += [
        enclosure.get("href")
        for enclosure in entry.get("enclosures", [])
        if str(enclosure.get("type", "")).startswith("image/")
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return urljoin(base, candidate.strip())
    return None


def _site_home(parsed: Any, response: Response) -> set[str]:
    """Links that point at the site, not a story: the feed's own link and home pages."""
    homes = {urljoin(response.url, "/")}
    site = parsed.feed.get("link")
    if isinstance(site, str) and site.strip():
        homes.add(urljoin(response.url, site.strip()))
        homes.add(urljoin(urljoin(response.url, site.strip()), "/"))
    return homes


def _header_dict(response: Response) -> dict[str, str]:
    """Response headers as feedparser wants them: lower-case ``str`` keys and values."""
    headers = {
        key.decode("latin-1").lower(): b", ".join(values).decode("latin-1")
        for key, values in response.headers.items()
    }
    headers["content-location"] = response.url  # the base of relative links
    return headers


def _header(response: Response, name: str) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None


def _failure_reason(failure: Failure) -> str:
    if failure.check(HttpError):
        return f"HTTP {failure.value.response.status}"
    return _one_line(failure.getErrorMessage())


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]
