"""``sitemap = "URL"`` sources: news sitemaps, plain sitemaps with ``lastmod``, sitemap indexes.

Only URLs published (``news:publication_date``) or modified (``lastmod``) within the source's
``max_age_days`` (default: the ``SITEMAP_MAX_AGE_DAYS`` setting, 2 days) and not archived yet
are fetched. A sitemap URL ending in ``/robots.txt`` reads the sitemaps robots.txt names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import scrapy
from scrapy.http import Response
from scrapy.utils.gz import gunzip, gzip_magic_number
from scrapy.utils.sitemap import sitemap_urls_from_robots
from twisted.python.failure import Failure

from crawler.extract.sitemap import is_recent, parse_sitemap
from crawler.spiders.base import ArgumentSpec, Listing, asked_url, failure_reason, text_title
from crawler.spiders.pages import PageSpider

# Sitemap indexes that list indexes: deeper than this is a loop or a trap.
MAX_SITEMAP_DEPTH = 3


class SitemapSourceSpider(PageSpider):
    """``scrapy crawl sitemap -a sitemap=URL [-a max_age_days=N] [-a title=... ]``."""

    name = "sitemap"
    kind = "sitemap"
    arguments: ClassVar[ArgumentSpec] = {"sitemap": str}

    async def start(self) -> AsyncIterator[Any]:
        yield self._sitemap_request(self.start_url, depth=0)

    def _sitemap_request(self, url: str, depth: int) -> scrapy.Request:
        return scrapy.Request(
            self.fetch_url(url),
            callback=self.parse_sitemap,
            errback=self.sitemap_failed,
            cb_kwargs={"depth": depth},
            # The first sitemap is the source itself; sitemaps it names are content.
            meta=self.content_meta() if depth else {"source_name": self.source.name},
        )

    @property
    def max_age_days(self) -> float:
        own = self.source.max_age_days
        return own if own is not None else self.settings.getfloat("SITEMAP_MAX_AGE_DAYS")

    def parse_sitemap(self, response: Response, depth: int) -> Iterator[scrapy.Request]:
        if response.url.endswith("/robots.txt"):
            for url in sitemap_urls_from_robots(response.body, base_url=response.url):
                yield self._sitemap_request(url, depth + 1)
            return
        body = self._sitemap_body(response)
        sitemap = parse_sitemap(body or b"", self.source.zone)
        now = datetime.now(UTC)
        recent = [entry for entry in sitemap.entries if is_recent(entry, now, self.max_age_days)]
        self.stat("sitemap_entries", len(sitemap.entries))
        self.stat("sitemap_too_old", len(sitemap.entries) - len(recent))
        if sitemap.kind == "sitemapindex":
            if depth >= MAX_SITEMAP_DEPTH:
                self.problem("sitemap_too_deep", "sitemap index %s nested too deep", response.url)
                return
            for entry in recent:
                yield self._sitemap_request(entry.loc, depth + 1)
        elif sitemap.kind == "urlset":
            listings = [
                Listing(entry.loc, text_title(entry.news_title), entry.news_date)
                for entry in recent
                if entry.loc.startswith(("http://", "https://"))
            ]
            yield from self.article_requests(listings, self.parse_article)
        else:
            self.source_failed(
                self.source.name, "not a sitemap (%s): %s", sitemap.kind, response.url
            )

    def _sitemap_body(self, response: Response) -> bytes | None:
        if not gzip_magic_number(response):
            return response.body
        try:
            return gunzip(response.body, max_size=self.settings.getint("DOWNLOAD_MAXSIZE"))
        except Exception as error:  # a truncated or oversized archive: the sitemap is unusable
            self.problem("sitemap_bad_gzip", "%s cannot be decompressed: %s", response.url, error)
            return None

    def sitemap_failed(self, failure: Failure) -> None:
        self.request_failed("sitemap", failure)
        url = asked_url(failure)
        self.source_failed(self.source.name, "sitemap %s: %s", url, failure_reason(failure))
