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

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import scrapy
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

from crawler.drift import layout_changed
from crawler.extract.dates import parse_date
from crawler.items import Article
from crawler.spiders.base import (
    ArgumentSpec,
    Listing,
    SiteSpider,
    asked_url,
    failure_reason,
    text_title,
    whole_number,
)

SITE = "https://www.cnbeta.com.tw"
SITE_TIMEZONE = ZoneInfo("Asia/Shanghai")
# Every host cnBeta has served articles from; their paths are the same as www.cnbeta.com.tw's.
CNBETA_HOST = re.compile(r"^(?:[a-z0-9-]+\.)*cnbeta\.com(?:\.tw)?$")
PAGE_DATE = re.compile(
    r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日\s*(\d{1,2}):(\d{2})(?::(\d{2}))?"
)


class CnbetaSpider(SiteSpider):
    """Arguments (``-a NAME=VALUE``), besides the common ones of SiteSpider (``base_url``,
    ``categories``, ``author``, ``source_name``):

    - ``pages``: how many ``/home/more`` JSON pages to read besides the home page (default 3).
    """

    name = "cnbeta"
    site_url = SITE
    default_categories = ("新媒体", "cnBeta", "最新")
    default_author = "cnBeta"
    default_timezone = "Asia/Shanghai"
    # Widgets inside the body: topic logos, related-topic boxes, site-wide promotions.
    widget_selectors = (".topic", ".article-topic", ".article-global")
    arguments: ClassVar[ArgumentSpec] = {"pages": whole_number(0)}
    default_pages = 3

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The home page's links wait until the JSON list has been read: its entries (with
        # title, time and thumbnail) are asked for as each page arrives, and a home link
        # only where no entry listed it. Streaming keeps the queue at one page's articles.
        self.home_links: dict[str, Listing] = {}  # canonical article URL -> bare listing

    async def start(self) -> AsyncIterator[Any]:
        yield scrapy.Request(
            self.fetch_url(f"{SITE}/"),
            callback=self.parse_home,
            errback=self.home_failed,
            dont_filter=True,  # a redirect loop must end in an error, not vanish
        )

    # --- the list ------------------------------------------------------------------------

    def parse_home(self, response: Response) -> Iterator[scrapy.Request]:
        if not isinstance(response, TextResponse):
            self.source_failed(self.source.name, "home page is not HTML: %s", response.url)
            return
        for href in response.css("div.items-area > div.item > dl > dt > a::attr(href)").getall():
            canonical = self._canonical(href)
            if canonical is not None:
                self.home_links.setdefault(canonical, Listing(url=canonical))
        self.stat("listed_home", len(self.home_links))
        if not self.home_links:  # the home page always lists articles: its markup changed
            layout_changed(self.crawler.stats, self.source.name, "list", response.url)
            self.problem("home_without_list", "no article list on the home page %s", response.url)
        token = response.css('meta[name="csrf-token"]::attr(content)').get()
        if not self.pages:
            yield from self._home_link_requests()
            return
        if not token:  # a saved copy may still answer; the live site would refuse the list
            self.problem("no_csrf_token", "home page has no csrf-token; asking without")
        yield self._more_request(1, token or "")

    def home_failed(self, failure: Failure) -> None:
        self.request_failed("home", failure)
        url = asked_url(failure)
        self.source_failed(self.source.name, "home page %s: %s", url, failure_reason(failure))

    def _more_request(self, page: int, token: str) -> scrapy.Request:
        url = f"{SITE}/home/more?type=all&page={page}&_csrf={quote(token, safe='')}"
        return scrapy.Request(
            self.fetch_url(url),
            callback=self.parse_more,
            errback=self.more_failed,
            headers={"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"},
            cb_kwargs={"page": page, "token": token},
            # After the articles already listed: the queue holds one page of them, not the
            # whole list (100k Requests at once were most of a large crawl's memory).
            priority=-1,
        )

    def parse_more(self, response: Response, page: int, token: str) -> Iterator[scrapy.Request]:
        entries = self._json_list(response, page)
        if entries is not None and not entries:
            self.logger.info("JSON list page %d is empty: the list ends here", page)
            yield from self._home_link_requests()
            return
        listings = {}
        for entry in entries or []:
            canonical = self._canonical(entry.get("url_show") if isinstance(entry, dict) else None)
            if canonical is not None:
                listings.setdefault(canonical, _listing_from_json(canonical, entry))
        yield from self.article_requests(listings.values(), self.parse_article)
        yield from self._next_page_or_articles(page, token)

    def more_failed(self, failure: Failure) -> Iterator[scrapy.Request]:
        self.request_failed("list_page", failure)
        kwargs = failure.request.cb_kwargs  # type: ignore[attr-defined]
        return self._next_page_or_articles(kwargs["page"], kwargs["token"])

    def _next_page_or_articles(self, page: int, token: str) -> Iterator[scrapy.Request]:
        if page < self.pages:
            yield self._more_request(page + 1, token)
        else:
            yield from self._home_link_requests()

    def _json_list(self, response: Response, page: int) -> list[Any] | None:
        """The entries of a JSON list page; None (logged and counted) when it has none to give."""
        try:
            data = json.loads(response.body)
        except (ValueError, RecursionError) as error:  # RecursionError: nested 100,000 deep
            self.problem(
                "list_page_invalid_json", "JSON list page %d is not JSON (%s)", page, error
            )
            return None
        result = data.get("result") if isinstance(data, dict) else None
        entries = result.get("list") if isinstance(result, dict) else result
        if not isinstance(entries, list):
            layout_changed(self.crawler.stats, self.source.name, "list", response.url)
            self.problem(
                "list_page_unexpected_json",
                "JSON list page %d has no result list (state=%r, message=%r)",
                page,
                data.get("state") if isinstance(data, dict) else None,
                data.get("message") if isinstance(data, dict) else None,
            )
            return None
        return entries

    def _canonical(self, href: object) -> str | None:
        canonical = canonical_article_url(href)
        if canonical is None:
            self.stat("link_skipped_off_site")
        return canonical

    def _home_link_requests(self) -> Iterator[scrapy.Request]:
        """The home page's links no JSON entry listed (the list ended or failed)."""
        return self.article_requests(list(self.home_links.values()), self.parse_article)

    # --- the articles --------------------------------------------------------------------

    def parse_article(
        self, response: Response, listing: Listing | None = None
    ) -> Iterator[Article]:
        """An article page: title, time (Asia/Shanghai, to the minute) and body.

        @url https://www.cnbeta.com.tw/articles/tech/1153343.htm
        @returns items 1 1
        @returns requests 0 0
        @scrapes title url published body categories author source
        """
        listing = self.listing_for(response, listing)
        if not isinstance(response, TextResponse):
            self.problem("article_not_html", "article is not HTML: %s", response.url)
            self.archive.page_failed(listing.url, "not_html")
            return
        page_title = text_title("".join(response.css("header.title h1 ::text").getall()))
        body = "".join(
            response.css(".article-summary").xpath("node()").getall()
            + response.css(".article-content").xpath("node()").getall()
        )
        yield self.article(
            listing,
            title=page_title or listing.title,
            # The JSON list's time has seconds; the page's only minutes.
            published=listing.published
            or parse_page_date(response.css(".meta span ::text").get() or ""),
            body=body,
        )


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


def _listing_from_json(url: str, entry: dict[str, Any]) -> Listing:
    title = entry.get("title")
    thumb = entry.get("thumb")
    return Listing(
        url=url,
        title=title if isinstance(title, str) else None,  # the JSON title is HTML, as on the page
        published=parse_inputtime(entry.get("inputtime")),
        thumb=thumb if isinstance(thumb, str) and thumb.strip() else None,
    )
