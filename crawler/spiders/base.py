"""What every spider of the harvester shares, so that a site spider is only its site knowledge.

:class:`HarvestSpider` owns spider arguments (unknown ones rejected, one usage line), the archive
service and per-source stats (``source/<name>/<stat>``). :class:`SiteSpider` adds what a site
with a list and article pages needs: its :class:`~crawler.sources.Source` (from the harvest, or
built from ``-a`` arguments), a mirror (``base_url``), the skip-if-archived and failed-page
backoff asked through the archive service, article requests whose failures are remembered,
and items built with the source's categories and author.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.archive.service import ArchiveService
from crawler.drift import count_page
from crawler.extensions import mark_failed
from crawler.frontier import uses_shared_frontier
from crawler.items import Article
from crawler.middlewares import TRUSTED_HOST
from crawler.post.cleaning import clean_title, one_line
from crawler.sources import Source, SourcesError, is_http_url, parse_source

# Spider arguments: name -> converter from the ``-a`` string (or a sources-file value).
ArgumentSpec = dict[str, Callable[[Any], Any]]


class ArgumentError(ValueError):
    """A spider argument that cannot work: one usage line, exit status 2."""


def whole_number(minimum: int = 0) -> Callable[[Any], int]:
    """A converter for a whole-number argument of at least ``minimum``."""

    def convert(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = minimum - 1
        if number < minimum or isinstance(value, bool):
            raise ValueError(f"must be a whole number >= {minimum}, not {value!r}")
        return number

    return convert


def string_list(value: Any) -> list[str]:
    """A list argument: a list (from a sources file or the harvest), a JSON array, or a
    comma-separated string (``-a categories=a,b``; use a JSON array for names with commas)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"not a JSON array: {value!r}") from None
        else:
            value = [part for part in text.split(",")]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, not {value!r}")
    cleaned = [v.strip() for v in value if v.strip()]
    if not cleaned:
        raise ValueError("must name at least one")
    return cleaned


class HarvestSpider(scrapy.Spider):
    """Arguments checked against :attr:`arguments`; the archive service; per-source stats."""

    # Spider arguments (``-a NAME=VALUE``) and how each is converted; subclasses add theirs.
    arguments: ClassVar[ArgumentSpec] = {}

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        """Converted arguments; raises :class:`ArgumentError` naming a bad or unknown one.

        ``_job`` (the job id Scrapyd passes every crawl it starts) is accepted and dropped.
        """
        arguments = {name: value for name, value in arguments.items() if name != "_job"}
        unknown = sorted(set(arguments) - set(cls.arguments))
        if unknown:
            known = ", ".join(sorted(cls.arguments)) or "none"
            raise ArgumentError(f"{cls.name}: unknown argument -a {unknown[0]} (known: {known})")
        converted = {}
        for name, value in arguments.items():
            try:
                converted[name] = cls.arguments[name](value)
            except (ValueError, SourcesError) as error:
                raise ArgumentError(f"{cls.name}: -a {name}: {error}") from None
        return converted

    @property
    def sources_read(self) -> list[Source]:
        """The sources this crawl reads (for the drift monitor and reports)."""
        return []

    @property
    def archive(self) -> ArchiveService:
        """The crawl's archive service (from ``start()`` on)."""
        return ArchiveService.of(self.crawler)

    @property
    def shared_frontier(self) -> bool:
        """Whether requests go to a frontier shared with other workers (crawler/frontier.py)."""
        return uses_shared_frontier(self.crawler.settings)

    def count(self, source: str, stat: str, value: int = 1) -> None:
        self.crawler.stats.inc_value(f"source/{source}/{stat}", value)

    def source_cut_short(self, source: str) -> None:
        """The crawl is stopping (a signal) before the source was read to its end: the
        harvest reports it interrupted, even when its crawl ends "finished"."""
        self.crawler.stats.set_value(f"source/{source}/interrupted", 1)

    def source_failed(self, source: str, message: str, *args: object) -> None:
        """The source could not be read (its list, its feed): FAILED in the report, with
        ``message % args`` as its reason."""
        mark_failed(self.crawler.stats, source, message % args if args else message)
        self.logger.warning("source %s failed: " + message, source, *args)


@dataclass
class Listing:
    """What a list told about an article before its page is fetched.

    ``url`` is the article's canonical URL (never the mirror's); ``title`` is HTML (use
    :func:`text_title` for plain text).
    """

    url: str
    title: str | None = None
    published: datetime | None = None
    thumb: str | None = None


def text_title(text: str | None) -> str | None:
    """A title taken from text (a text node, JSON) as the HTML an item's title holds.

    Escaped, so that normalize (which strips tags and decodes entities) keeps a literal ``<``.
    """
    return html.escape(text, quote=False) if text and text.strip() else None


class SiteSpider(HarvestSpider):
    """One source read from a site: list pages, then article pages.

    A subclass gives site knowledge only: :attr:`name`, :attr:`site_url`,
    :attr:`default_categories`, :attr:`default_author`, :attr:`widget_selectors`, its own
    :attr:`arguments`, ``start()`` and the parsing callbacks. Common arguments:

    - ``base_url``: fetch the site from this mirror or saved copy; items keep the real URLs.
    - ``categories`` (list; ``a,b`` or a JSON array on the command line), ``author``,
      ``timezone``, ``source_name`` (the name in stats and reports).
    """

    site_url: ClassVar[str] = ""  # scheme://host of the real site; base_url mirrors it
    default_categories: ClassVar[tuple[str, ...]] = ()
    default_author: ClassVar[str] = ""
    default_timezone: ClassVar[str] = "UTC"
    widget_selectors: ClassVar[tuple[str, ...]] = ()  # removed from bodies
    # True: the spider's own arguments are sources-file keys (see pages.py), read from
    # ``self.source``; False: each becomes an attribute (``self.pages``, default_<name>).
    arguments_shape_the_source: ClassVar[bool] = False
    common_arguments: ClassVar[ArgumentSpec] = {
        "base_url": lambda value: _http_url(value).rstrip("/"),
        "categories": string_list,
        "author": str,
        "timezone": str,
        "source_name": str,
        "source": lambda value: value,  # a Source object, from the harvest
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass's ``arguments`` add to its bases' and to the common ones.
        merged = dict(SiteSpider.common_arguments)
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("arguments", {}))
        cls.arguments = merged

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        arguments = self.check_arguments(**kwargs)
        self.source: Source = self.source_from(arguments)
        self.requested: set[str] = set()  # article URLs asked for in this crawl
        self.options = {k: v for k, v in arguments.items() if k not in self.common_arguments}
        if not self.arguments_shape_the_source:
            # Each own argument becomes an attribute; its default is ``default_<name>``.
            for name in self.arguments:
                if name not in self.common_arguments:
                    default = getattr(self, f"default_{name}", None)
                    setattr(self, name, self.options.get(name, default))

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        converted = super().check_arguments(**arguments)
        source = converted.get("source")
        if source is not None:
            if not isinstance(source, Source):
                raise ArgumentError(f"{cls.name}: -a source: only the harvest passes a source")
            # A sources file's args = { ... } and base_url are this spider's arguments.
            extra = super().check_arguments(**source.args)
            converted = {**extra, **converted}
            if source.base_url:
                converted.setdefault("base_url", source.base_url)
        cls.source_from(converted)  # a bad time zone is a usage error too
        return converted

    @classmethod
    def source_from(cls, arguments: dict[str, Any]) -> Source:
        """The harvest's Source, or one built from the spider's defaults and arguments."""
        given = arguments.get("source")
        base_url = arguments.get("base_url")
        if given is not None:
            return replace(given, base_url=base_url) if base_url else given
        table = cls.source_table(arguments)
        if base_url:
            table["base_url"] = base_url
        try:
            return parse_source(table, where=f"{cls.name}: arguments")
        except SourcesError as error:
            raise ArgumentError(str(error)) from None

    @classmethod
    def source_table(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """The sources-file table a ``scrapy crawl`` with these arguments stands for."""
        return {
            "name": arguments.get("source_name") or cls.name,
            "spider": cls.name,
            "categories": arguments.get("categories") or list(cls.default_categories),
            "author": arguments.get("author") or cls.default_author or cls.name,
            "timezone": arguments.get("timezone") or cls.default_timezone,
        }

    @property
    def sources_read(self) -> list[Source]:
        return [self.source]

    # --- the mirror -----------------------------------------------------------------------

    @property
    def site_origin(self) -> str:
        """``scheme://host`` of the real site, whose URLs ``base_url`` stands in for."""
        return self.site_url

    def fetch_url(self, url: str) -> str:
        """Where to fetch a URL of the site from: the site itself or the source's mirror."""
        mirror = self.source.base_url
        if not mirror or not self.site_origin or not _same_origin(url, self.site_origin):
            return url
        parts = urlsplit(url)
        return mirror + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def content_meta(self) -> dict[str, Any]:
        """Meta of a request whose URL came from the site's content: the source's name, and
        the host it is trusted on (crawler.middlewares.ContentAddressGuard checks others)."""
        origin = self.site_origin
        trusted = urlsplit(self.fetch_url(origin + "/")).hostname if origin else None
        return {"source_name": self.source.name, TRUSTED_HOST: trusted or ""}

    # --- stats and log lines for this source -------------------------------------------------

    def stat(self, stat: str, value: int = 1) -> None:
        """Count ``source/<this source>/<stat>``."""
        self.count(self.source.name, stat, value)

    def problem(self, stat: str, message: str, *args: object) -> None:
        """Something of this source went wrong: one stat, one warning line, no traceback."""
        self.stat(stat)
        self.logger.warning("source %s: " + message, self.source.name, *args)

    def request_failed(self, what: str, failure: Failure) -> str:
        """Count and log a request that finally failed; returns a short reason."""
        request = failure.request  # type: ignore[attr-defined]
        if failure.check(HttpError):
            status = failure.value.response.status
            self.problem(f"{what}_http_error", "%s %s answered HTTP %d", what, request.url, status)
            return f"http_{status}"
        self.problem(
            f"{what}_fetch_failed", "%s %s could not be fetched: %s",
            what, request.url, failure_reason(failure),
        )  # fmt: skip
        return "unreachable"

    # --- article pages --------------------------------------------------------------------

    def article_requests(
        self, listings: Iterable[Listing], callback: Callable[..., Any]
    ) -> Iterator[scrapy.Request]:
        """One request per listed article the archive neither holds nor waits on.

        May be called once per list page: a URL listed twice in the crawl (two lists, two
        sitemaps) is counted in ``seen`` and asked for once.
        """
        new = [listing for listing in listings if listing.url not in self.requested]
        self.requested.update(listing.url for listing in new)
        self.stat("seen", len(new))
        skipped = 0
        shared_frontier = self.shared_frontier
        for listing in new:
            if not self.crawler.crawling:  # stopping (a signal): request no more
                self.source_cut_short(self.source.name)
                break
            if self.archive.is_archived(listing.title, listing.published, listing.url):
                self.stat("article_skipped_archived")
                skipped += 1
                continue
            if self.archive.in_failure_backoff(listing.url):
                self.stat("article_skipped_failed_recently")
                continue
            self.stat("article_requested")
            yield scrapy.Request(
                self.fetch_url(listing.url),
                callback=callback,
                errback=self.article_failed,
                cb_kwargs={"listing": listing},
                meta=self.content_meta(),
                # Deduplicated above; Scrapy's filter would silently drop the way back of a
                # redirect loop (no callback, no errback): let it end in an error we count.
                # A frontier shared by several workers (REDIS_URL) needs its filter: what
                # another worker asked for is not asked for again.
                dont_filter=not shared_frontier,
            )
        self.logger.debug(
            "source %s: %d new articles listed, %d already archived",
            self.source.name, len(new), skipped,
        )  # fmt: skip

    def article_failed(self, failure: Failure) -> None:
        listing: Listing = failure.request.cb_kwargs["listing"]  # type: ignore[attr-defined]
        self.archive.page_failed(listing.url, self.request_failed("article", failure))

    def listing_for(self, response: Response, listing: Listing | None) -> Listing:
        """The listing of an article callback; a plain response (``scrapy parse``) has none."""
        return listing if listing is not None else Listing(url=response.url)

    def article(
        self,
        listing: Listing,
        *,
        title: str | None,
        published: datetime | None,
        body: str,
        image: str | None = None,
        body_base: str | None = None,
        remove: tuple[str, ...] = (),
    ) -> Article:
        """The item of an article page, with the source's categories and author.

        An article without a title or a date is still yielded (normalize drops and counts
        it), and its page is remembered as failed so that the next runs wait before asking
        for it again; a good page clears that memory. What the page did not give is left out
        of the item rather than set to None, so that a callback's ``@scrapes title published``
        contract (``scrapy check``) fails on a page it cannot read.
        """
        titled = bool(clean_title(title or ""))
        missing = [
            field
            for field, present in (
                ("title", titled),
                ("date", published is not None),
                ("body", has_content(body)),
            )
            if not present
        ]
        count_page(self.crawler.stats, self.source.name, listing.url, missing)
        if not titled:
            self.archive.page_failed(listing.url, "missing_title")
        elif published is None:
            self.archive.page_failed(listing.url, "missing_date")
        else:
            self.archive.page_succeeded(listing.url)
        fields: dict[str, Any] = {
            "title": title if titled else None,
            "url": listing.url,
            "published": published,
            "categories": list(self.source.categories),
            "author": self.source.author,
            "body": body,
            "body_base": body_base,
            "source": self.source.name,
            "image": image,
            "thumb": listing.thumb,
            "fallback_image": self.source.fallback_image,
            "has_own_url": True,
            "strip_selectors": [*self.widget_selectors, *remove],
        }
        return Article(**{name: value for name, value in fields.items() if value is not None})


_TAG = re.compile(r"<[^<>]*>")  # [^<>]: linear on hostile text such as "<<<<<<"


def has_content(body: str | None) -> bool:
    """Whether an article body has any text or image at all."""
    return bool(body) and ("<img" in body or bool(_TAG.sub("", body).strip()))


def asked_url(failure: Failure) -> str:
    """The URL a failed request first asked for (before any redirect)."""
    request = failure.request  # type: ignore[attr-defined]
    return str((request.meta.get("redirect_urls") or [request.url])[0])


def failure_reason(failure: Failure) -> str:
    """Why a request finally failed, in a few words: ``HTTP 503`` or the network error (its
    type when it has no message: a connection reset mid-body says nothing more)."""
    if failure.check(HttpError):
        return f"HTTP {failure.value.response.status}"
    message = one_line(failure.getErrorMessage())
    return message if message.strip() else failure.type.__name__


def _http_url(value: Any) -> str:
    if not is_http_url(value):
        raise ValueError(f"must be an http(s) URL, not {value!r}")
    return str(value)


def _same_origin(url: str, site: str) -> bool:
    try:
        a, b = urlsplit(url), urlsplit(site)
        return (a.hostname or "").lower() == (b.hostname or "").lower() and a.port == b.port
    except ValueError:
        return False
