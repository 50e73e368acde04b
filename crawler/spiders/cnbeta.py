"""cnBeta (www.cnbeta.com.tw): the home page list, its JSON continuation, the article pages.

The site, as RSSHub's cnbeta route also reads it:

- ``/`` carries ``<meta name="csrf-token">`` and the main list
  (``div.items-area > div.item > dl > dt > a``): links only.
- ``/home/more?type=all&page=N&_csrf=TOKEN`` continues the list as JSON:
  ``{"result": {"list": [{"title", "url_show", "inputtime", "thumb", ...}]}}``,
  ``inputtime`` in Asia/Shanghai with seconds.
- An article page has its title in ``header.title h1``, its time in the first ``.meta span``
  (``2021年07月17日 22:35``, Asia/Shanghai) and its body in ``.article-summary`` and
  ``.article-content``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import scrapy
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.archive import ArchiveState
from crawler.cleaning import clean_title
from crawler.dates import parse_date
from crawler.items import Article
from crawler.keys import title_key, url_key

SITE = "https://www.cnbeta.com.tw"
SITE_TIMEZONE = ZoneInfo("Asia/Shanghai")
# Every host cnBeta has served articles from; their paths are the same as www.cnbeta.com.tw's.
CNBETA_HOST = re.compile(r"^(?:[a-z0-9-]+\.)*cnbeta\.com(?:\.tw)?$")
DEFAULT_CATEGORIES = ("新媒体", "cnBeta", "最新")
DEFAULT_AUTHOR = "cnBeta"
# Widgets inside the body: topic logos, related-topic boxes, site-wide promotions.
WIDGET_SELECTORS = (".topic", ".article-topic", ".article-global")
PAGE_DATE = re.compile(
    r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日\s*(\d{1,2}):(\d{2})(?::(\d{2}))?"
)


@dataclass
class Listing:
    """What a list told about an article before its page is fetched."""

    title: str | None = None
    published: datetime | None = None
    thumb: str | None = None


class CnbetaSpider(scrapy.Spider):
    """Arguments (``-a NAME=VALUE``):

    - ``pages``: how many ``/home/more`` JSON pages to read besides the home page (default 3).
    - ``base_url``: fetch every cnBeta URL from this mirror or saved copy instead; items keep
      their ``https://www.cnbeta.com.tw`` URLs. The ``CNBETA_BASE_URL`` setting does the same
      (for harvests, whose sources file has no spider arguments).
    - ``categories``: comma-separated categories (default ``新媒体,cnBeta,最新``).
    - ``author``: the author written in posts (default ``cnBeta``).
    - ``source_name``: the source's name in stats and reports (default ``cnbeta``; the harvest
      passes the name from the sources file).
    """

    name = "cnbeta"

    def __init__(
        self,
        pages: str | int = 3,
        base_url: str | None = None,
        categories: str | None = None,
        author: str | None = None,
        source_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_name = source_name or self.name
        self.check_arguments(pages=pages, base_url=base_url)
        self.pages = int(pages)
        self.base_url = base_url.strip().rstrip("/") if base_url else None
        self.categories = (
            [name.strip() for name in categories.split(",") if name.strip()]
            if categories
            else list(DEFAULT_CATEGORIES)
        )
        self.author = author or DEFAULT_AUTHOR
        self.listed: dict[str, Listing] = {}  # canonical article URL -> listing, in list order
        self.archive: ArchiveState | None = None
        self.failure_backoff = timedelta(0)  # FAILED_ARTICLE_RETRY_AFTER, read in start()

    @classmethod
    def check_arguments(cls, **arguments: Any) -> None:
        """Raise ValueError, naming the argument, for a spider argument that cannot work."""
        _non_negative_int("pages", arguments.get("pages", 3))
        if arguments.get("base_url"):
            _base_url(arguments["base_url"])

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> CnbetaSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        mirror = crawler.settings.get("CNBETA_BASE_URL")
        if mirror and not spider.base_url:  # the harvest's way to point at a mirror
            _base_url(mirror)
            spider.base_url = mirror.strip().rstrip("/")
        return spider

    async def start(self) -> AsyncIterator[Any]:
        self.archive = ArchiveState(self.settings["OUTPUT_DIR"])
        self.failure_backoff = timedelta(
            seconds=self.settings.getfloat("FAILED_ARTICLE_RETRY_AFTER")
        )
        yield scrapy.Request(
            self.fetch_url(f"{SITE}/"), callback=self.parse_home, errback=self.home_failed
        )

    def closed(self, reason: str) -> None:
        if self.archive is not None:
            self.archive.close()

    def fetch_url(self, url: str) -> str:
        """Where to fetch a canonical cnBeta URL from: the site itself or ``base_url``."""
        if not self.base_url:
            return url
        parts = urlsplit(url)
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    # --- the list ------------------------------------------------------------------------

    def parse_home(self, response: Response) -> Iterator[scrapy.Request]:
        if not isinstance(response, TextResponse):
            self._count_failure("home_not_html", "home page is not HTML: %s", response.url)
            self.crawler.stats.set_value(f"source/{self.source_name}/failed", 1)
            return
        for href in response.css("div.items-area > div.item > dl > dt > a::attr(href)").getall():
            self._add_listing(href, Listing())
        self.crawler.stats.set_value("cnbeta/listed_home", len(self.listed))
        token = response.css('meta[name="csrf-token"]::attr(content)').get()
        if not self.pages:
            yield from self._article_requests()
            return
        if not token:  # a saved copy may still answer; the live site would refuse the list
            self._count_failure("no_csrf_token", "home page has no csrf-token; asking without")
        yield self._more_request(1, token or "")

    def home_failed(self, failure: Failure) -> Iterator[scrapy.Request]:
        self._count_request_failure("home", failure)
        self.crawler.stats.set_value(f"source/{self.source_name}/failed", 1)
        return iter(())

    def _more_request(self, page: int, token: str) -> scrapy.Request:
        url = f"{SITE}/home/more?type=all&page={page}&_csrf={quote(token, safe='')}"
        return scrapy.Request(
            self.fetch_url(url),
            callback=self.parse_more,
            errback=self.more_failed,
            headers={"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"},
            cb_kwargs={"page": page, "token": token},
            # The page number alone makes the request distinct; the errback needs both.
            meta={"page": page, "token": token},
        )

    def parse_more(self, response: Response, page: int, token: str) -> Iterator[scrapy.Request]:
        entries = self._json_list(response, page)
        if entries is not None and not entries:
            self.logger.info("JSON list page %d is empty: the list ends here", page)
            yield from self._article_requests()
            return
        for entry in entries or []:
            if isinstance(entry, dict):
                self._add_listing(entry.get("url_show"), _listing_from_json(entry))
        yield from self._next_page_or_articles(page, token)

    def more_failed(self, failure: Failure) -> Iterator[scrapy.Request]:
        self._count_request_failure("list_page", failure)
        request = failure.request  # type: ignore[attr-defined]
        return self._next_page_or_articles(request.meta["page"], request.meta["token"])

    def _next_page_or_articles(self, page: int, token: str) -> Iterator[scrapy.Request]:
        if page < self.pages:
            yield self._more_request(page + 1, token)
        else:
            yield from self._article_requests()

    def _json_list(self, response: Response, page: int) -> list[Any] | None:
        """The entries of a JSON list page; None (logged and counted) when it has none to give."""
        try:
            data = json.loads(response.body)
        except ValueError as error:
            self._count_failure(
                "list_page_invalid_json", "JSON list page %d is not JSON (%s)", page, error
            )
            return None
        result = data.get("result") if isinstance(data, dict) else None
        entries = result.get("list") if isinstance(result, dict) else result
        if not isinstance(entries, list):
            self._count_failure(
                "list_page_unexpected_json",
                "JSON list page %d has no result list (state=%r, message=%r)",
                page,
                data.get("state") if isinstance(data, dict) else None,
                data.get("message") if isinstance(data, dict) else None,
            )
            return None
        return entries

    def _add_listing(self, href: object, listing: Listing) -> None:
        canonical = canonical_article_url(href)
        if canonical is None:
            self.crawler.stats.inc_value("cnbeta/link_skipped_off_site")
            return
        known = self.listed.get(canonical)
        if known is None or listing.published is not None:  # JSON entries beat home links
            self.listed[canonical] = listing

    def _article_requests(self) -> Iterator[scrapy.Request]:
        """One request per listed article the archive does not already hold."""
        assert self.archive is not None
        stats = self.crawler.stats
        stats.set_value(f"source/{self.source_name}/seen", len(self.listed))
        for url, listing in self.listed.items():
            listed_title = clean_title(listing.title or "")
            known = self.archive.knows(
                title_key=title_key(listed_title, listing.published)
                if listed_title and listing.published
                else None,
                url_key=url_key(url),
            )
            if known:
                stats.inc_value("cnbeta/article_skipped_archived")
                continue
            if self.archive.in_failure_backoff(_failure_key(url), self.failure_backoff):
                stats.inc_value("cnbeta/article_skipped_failed_recently")
                continue
            stats.inc_value("cnbeta/article_requested")
            yield scrapy.Request(
                self.fetch_url(url),
                callback=self.parse_article,
                errback=self.article_failed,
                cb_kwargs={"url": url, "listing": listing},
            )
        self.logger.info(
            "%d articles listed, %d already archived",
            len(self.listed),
            stats.get_value("cnbeta/article_skipped_archived", 0),
        )

    # --- the articles --------------------------------------------------------------------

    def parse_article(self, response: Response, url: str, listing: Listing) -> Iterator[Article]:
        if not isinstance(response, TextResponse):
            self._count_failure("article_not_html", "article is not HTML: %s", response.url)
            self._remember_failure(url, "not_html")
            return
        # Text nodes are text: escaped, so that normalize's tag stripping keeps a literal "<".
        page_title = "".join(response.css("header.title h1 ::text").getall())
        title = html.escape(page_title, quote=False) if page_title.strip() else listing.title
        published = listing.published or parse_page_date(
            response.css(".meta span ::text").get() or ""
        )
        # The normalize pipeline drops (and counts) an article without title or date; the
        # page is remembered so that the next runs do not fetch it again straight away.
        if not clean_title(title or ""):
            self._remember_failure(url, "missing_title")
        elif published is None:
            self._remember_failure(url, "missing_date")
        elif self.archive is not None:
            self.archive.forget_failure(_failure_key(url))
        body = "".join(
            response.css(".article-summary").xpath("node()").getall()
            + response.css(".article-content").xpath("node()").getall()
        )
        yield Article(
            title=title,
            url=url,
            published=published,
            categories=list(self.categories),
            author=self.author,
            body=body,
            source=self.source_name,
            thumb=listing.thumb,
            has_own_url=True,
            strip_selectors=list(WIDGET_SELECTORS),
        )

    def article_failed(self, failure: Failure) -> None:
        self._count_request_failure("article", failure)
        reason = (
            f"http_{failure.value.response.status}" if failure.check(HttpError) else "unreachable"
        )
        self._remember_failure(failure.request.cb_kwargs["url"], reason)  # type: ignore[attr-defined]

    def _remember_failure(self, url: str, reason: str) -> None:
        assert self.archive is not None
        self.archive.record_failure(_failure_key(url), reason)

    # --- failures: one log line, one stat, no traceback ----------------------------------

    def _count_request_failure(self, what: str, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        if failure.check(HttpError):
            status = failure.value.response.status
            self._count_failure(
                f"{what}_http_error", "%s %s answered HTTP %d", what, request.url, status
            )
        else:
            self._count_failure(
                f"{what}_fetch_failed",
                "%s %s could not be fetched: %s",
                what,
                request.url,
                failure.getErrorMessage(),
            )

    def _count_failure(self, stat: str, message: str, *args: object) -> None:
        self.crawler.stats.inc_value(f"cnbeta/{stat}")
        self.logger.warning(message, *args)


def canonical_article_url(href: object) -> str | None:
    """``https://www.cnbeta.com.tw`` + path (+ query) of a cnBeta link, or None for others.

    Accepts ``http://``, ``https://`` and protocol-relative ``//`` links on any cnBeta host,
    and site-relative ``/path`` links.
    """
    if not isinstance(href, str) or not href.strip():
        return None
    href = href.strip()
    if href.startswith("//"):
        href = "https:" + href
    elif href.startswith("/"):  # site-relative
        href = SITE + href
    try:
        parts = urlsplit(href)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not CNBETA_HOST.match(parts.hostname or ""):
        return None
    return SITE + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _failure_key(url: str) -> str:
    return url_key(url) or url


def parse_page_date(text: str) -> datetime | None:
    """``2021年07月17日 22:35`` (Asia/Shanghai) as an aware datetime; seconds ``:00``."""
    match = PAGE_DATE.search(text)
    return parse_date(match.group(0), SITE_TIMEZONE) if match else None


def parse_inputtime(value: object) -> datetime | None:
    """The JSON list's ``inputtime`` (``2021-07-17 22:35:32``, Asia/Shanghai), or None."""
    if not isinstance(value, str):
        return None
    try:
        naive = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=SITE_TIMEZONE)


def _listing_from_json(entry: dict[str, Any]) -> Listing:
    title = entry.get("title")
    thumb = entry.get("thumb")
    return Listing(
        title=title if isinstance(title, str) else None,
        published=parse_inputtime(entry.get("inputtime")),
        thumb=thumb if isinstance(thumb, str) and thumb.strip() else None,
    )


def _non_negative_int(name: str, value: str | int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise ValueError(f"cnbeta: -a {name} must be a whole number >= 0, not {value!r}")
    return number


def _base_url(value: str) -> None:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"cnbeta: -a base_url must be an http(s) URL, not {value!r}")
