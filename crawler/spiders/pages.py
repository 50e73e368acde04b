"""What the generic page-source spiders (``sitemap``, ``list``) share: a source table built
from spider arguments, and article pages read by selectors or the page's own metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

from scrapy.http import Response, TextResponse
from w3lib.encoding import html_body_declared_encoding

from crawler.extract.page import read_article
from crawler.items import Article
from crawler.sources import PAGE_RULES
from crawler.spiders.base import (
    ArgumentError,
    ArgumentSpec,
    Listing,
    SiteSpider,
    string_list,
    text_title,
)


def _selector(value: Any) -> str:
    return str(value)


class PageSpider(SiteSpider):
    """A source that is a site's pages. Besides SiteSpider's arguments, the sources-file keys
    of its kind work as ``-a`` arguments (``-a title='h1.title'``, ``-a remove='.ad,.share'``)."""

    kind: ClassVar[str] = ""  # the sources-file key naming the source's start URL
    arguments_shape_the_source = True
    arguments: ClassVar[ArgumentSpec] = {
        "title": _selector,
        "date": _selector,
        "body": _selector,
        "remove": string_list,
        "max_age_days": float,
    }

    @classmethod
    def source_table(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        table = super().source_table(arguments)
        del table["spider"]
        if not arguments.get(cls.kind):
            raise ValueError(f"-a {cls.kind}=URL is needed")
        for key in (cls.kind, *PAGE_RULES, "max_age_days", *cls.table_keys()):
            if arguments.get(key) is not None:
                table[key] = arguments[key]
        if "source_name" not in arguments:
            table["name"] = urlsplit(arguments[cls.kind]).hostname or cls.name
            table["author"] = arguments.get("author") or table["name"]
        if not arguments.get("categories"):
            table["categories"] = ["News", table["name"], "All"]
        return table

    @classmethod
    def table_keys(cls) -> tuple[str, ...]:
        """Further sources-file keys that are also arguments of this spider."""
        return ()

    @classmethod
    def source_from(cls, arguments: dict[str, Any]) -> Any:
        try:
            return super().source_from(arguments)
        except ArgumentError:
            raise
        except ValueError as error:  # from source_table: the start URL is missing
            raise ArgumentError(f"{cls.name}: {error}") from None

    @property
    def start_url(self) -> str:
        url = getattr(self.source, self.kind)
        assert url, f"a {self.kind} source has its URL"
        return url

    @property
    def site_origin(self) -> str:
        parts = urlsplit(self.start_url)
        return f"{parts.scheme}://{parts.netloc}"

    def parse_article(
        self, response: Response, listing: Listing | None = None
    ) -> Iterator[Article]:
        """An article page: selectors where the source has them, else the page's metadata."""
        listing = self.listing_for(response, listing)
        if not isinstance(response, TextResponse):
            self.problem("article_not_html", "article is not HTML: %s", response.url)
            self.archive.page_failed(listing.url, "not_html")
            return
        rules = self.source.rules
        page = read_article(
            page_text(response),
            listing.url,
            self.source.zone,
            title=rules.title,
            date=rules.date,
            body=rules.body,
        )
        if page.published is None:
            # Never the fetch time: a wrong date would split or merge stories in dedup.
            self.problem("article_without_date", "no publication date on %s", listing.url)
        if page.body is None:
            self.problem("article_without_body", "no article body found on %s", listing.url)
        yield self.article(
            listing,
            title=text_title(page.title) or listing.title,
            published=page.published or listing.published,
            body=page.body or "",
            image=page.image,
            remove=rules.remove,
        )


def page_text(response: TextResponse) -> str:
    """The page as text. A site that labels GBK bytes UTF-8 gets U+FFFD all over: when the
    body is not valid in the charset the headers give, the page's own ``<meta charset>``
    is tried before the damaged text is kept."""
    text = response.text
    if "\ufffd" not in text:
        return text
    declared = html_body_declared_encoding(response.body)
    if declared and declared.lower() != (response.encoding or "").lower():
        try:
            return response.body.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass  # the page lies twice: keep Scrapy's reading
    return text
