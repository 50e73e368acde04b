"""``list = "URL"`` sources: list pages (``links`` selector, optional ``next`` and ``pages``),
then the article pages they link to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar
from urllib.parse import urljoin

import scrapy
from parsel import SelectorList
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

from crawler.drift import layout_changed
from crawler.spiders.base import ArgumentSpec, Listing, asked_url, failure_reason, whole_number
from crawler.spiders.pages import PageSpider


class ListSourceSpider(PageSpider):
    """``scrapy crawl list -a list=URL -a links='h2 a' [-a next='a.next'] [-a pages=N]``."""

    name = "list"
    kind = "list"
    arguments: ClassVar[ArgumentSpec] = {
        "list": str,
        "links": str,
        "next": str,
        "pages": whole_number(1),
    }

    @classmethod
    def table_keys(cls) -> tuple[str, ...]:
        return ("links", "next", "pages")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.listed: set[str] = set()

    async def start(self) -> AsyncIterator[Any]:
        yield self._list_request(self.start_url, 1)

    def _list_request(self, url: str, page: int) -> scrapy.Request:
        return scrapy.Request(
            self.fetch_url(url),
            callback=self.parse_list,
            errback=self.list_failed,
            cb_kwargs={"page": page, "page_url": url},
            dont_filter=True,  # a redirect loop must end in an error, not vanish
            # Page 1 is the source itself; the next pages' URLs come from the content.
            meta=self.content_meta() if page > 1 else {"source_name": self.source.name},
        )

    def parse_list(self, response: Response, page: int, page_url: str) -> Iterator[Any]:
        if not isinstance(response, TextResponse):
            self.source_failed(self.source.name, "list page is not HTML: %s", response.url)
            return
        assert self.source.links is not None, "a list source has its links selector"
        listings = []
        for href in _hrefs(response.css(self.source.links)):
            url = urljoin(page_url, href)  # the real page's URL, also when read from a mirror
            if url.startswith(("http://", "https://")) and url not in self.listed:
                self.listed.add(url)
                listings.append(Listing(url=url))
        self.stat("list_pages")
        if page == 1 and not response.body.strip():
            self.source_failed(self.source.name, "list page %s: empty (no body)", response.url)
            return
        if not listings:
            self.problem("list_page_without_links", "no article links on %s", response.url)
            if page == 1 and not self.listed:  # the links selector finds nothing: drift
                layout_changed(self.crawler.stats, self.source.name, "list", response.url)
        yield from self.article_requests(listings, self.parse_article)
        if self.source.next and page < self.source.pages:
            following = _hrefs(response.css(self.source.next))
            if following:
                yield self._list_request(urljoin(page_url, following[0]), page + 1)

    def list_failed(self, failure: Failure) -> None:
        self.request_failed("list_page", failure)
        request = failure.request  # type: ignore[attr-defined]
        if request.cb_kwargs["page"] == 1:
            reason = failure_reason(failure)
            self.source_failed(self.source.name, "list page %s: %s", asked_url(failure), reason)


def _hrefs(selected: SelectorList) -> list[str]:
    """Link targets of a selection: ``href`` of elements, or the strings ``::attr`` picked."""
    hrefs = []
    for item in selected:
        value = item.root if isinstance(item.root, str) else item.attrib.get("href")
        if value and value.strip():
            hrefs.append(value.strip())
    return hrefs
