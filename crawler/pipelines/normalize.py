"""Normalize: clean title and strings, UTC time, sanitized absolute body, lead image."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any, NoReturn

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.post.cleaning import clean_body, clean_text, clean_title
from crawler.post.keys import key_digest, story_keys

# Characters of raw body HTML kept at most (2 M: ten times a long article with markup).
MAX_BODY_LENGTH = 2_000_000


class NormalizePipeline:
    """Turns whatever a spider yielded into an article every later step can trust.

    Drops (with a stat ``normalize/dropped/<reason>``) articles without a title or a
    usable publication time.
    """

    def __init__(
        self, stats: StatsCollector, fallback_image: str, max_title_length: int = 300
    ) -> None:
        self.stats = stats
        self.fallback_image = fallback_image
        self.max_title_length = max_title_length

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizePipeline:
        assert crawler.stats is not None
        settings = crawler.settings
        return cls(
            crawler.stats,
            settings.get("FALLBACK_IMAGE"),
            settings.getint("MAX_TITLE_LENGTH", 300),
        )

    def process_item(self, item: Any) -> Any:
        try:
            return self._normalize(item)
        except (ValueError, TypeError, UnicodeError, OverflowError, RecursionError) as error:
            # Hostile or malformed data in one article (a value lxml refuses, a date out of
            # range): this article is dropped with the reason, the others go on.
            url = ItemAdapter(item).get("url")
            self._drop("unusable", f"unusable article ({type(error).__name__}: {error}): {url}")

    def _normalize(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        url = clean_text(adapter.get("url") or "") or None
        title = clean_title(adapter.get("title") or "")
        if not title:
            self._drop("missing_title", f"article without a title: {url}")
        if len(title) > self.max_title_length:
            title = title[: self.max_title_length - 1].rstrip() + "…"
            self.stats.inc_value("normalize/title_truncated")
        published = adapter.get("published")
        if not isinstance(published, datetime):
            self._drop("missing_date", f"article without a publication time: {url}")
        if published.utcoffset() is None:
            self._drop("naive_date", f"publication time without a time zone: {url}")
        published = published.astimezone(UTC)

        base = clean_text(adapter.get("body_base") or "") or url
        raw_body = adapter.get("body") or ""
        if len(raw_body) > MAX_BODY_LENGTH:
            # No article is this long; hostile text this size would cost the sanitizer
            # (super-linear on some inputs) seconds. Cut, sanitize what is left, count it.
            raw_body = raw_body[:MAX_BODY_LENGTH]
            self.stats.inc_value("normalize/body_truncated")
        body = clean_body(raw_body, base, adapter.get("strip_selectors") or ())
        adapter["title"] = title
        adapter["url"] = url
        adapter["published"] = published
        adapter["categories"] = _clean_list(adapter.get("categories") or [])
        adapter["author"] = clean_text(adapter.get("author") or "") or clean_text(
            adapter.get("source") or ""
        )
        adapter["body"] = body.html or _link_only_body(url)
        adapter["lead_image"] = (
            _absolute_image(adapter.get("image"))
            or body.first_image
            or _absolute_image(adapter.get("thumb"))
            or _absolute_image(adapter.get("fallback_image"))
            or self._fallback_for(title, published, url)
        )
        adapter["has_own_url"] = bool(url) and adapter.get("has_own_url", True) is not False
        # The story's dedup keys, computed once here for dedup and write.
        adapter["title_key"], adapter["url_key"] = story_keys(
            title, published, url, adapter["has_own_url"], clean_text(adapter.get("identity") or "")
        )
        self.stats.inc_value("normalize/ok")
        return item

    def _drop(self, reason: str, message: str) -> NoReturn:
        self.stats.inc_value(f"normalize/dropped/{reason}")
        raise DropItem(message)

    def _fallback_for(self, title: str, published: datetime, url: str | None) -> str:
        # N stable per article: derived from the article's title key.
        title_key, _ = story_keys(title, published, url, has_own_url=False)
        n = int(key_digest(title_key), 16) % 1000
        return self.fallback_image.replace("{n}", str(n))


def _clean_list(values: list[str] | str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    cleaned = (clean_text(str(value)) for value in values)
    return [value for value in cleaned if value]


def _absolute_image(value: object) -> str | None:
    """An image URL usable as a lead image (absolute http(s)), or None."""
    if not isinstance(value, str):
        return None
    url = clean_text(value)
    if url.startswith("//"):
        url = "https:" + url
    return url if url.startswith(("http://", "https://")) else None


def _link_only_body(url: str | None) -> str:
    """The body of an article that has none (a link-only feed entry): a link to it."""
    if not url:
        return "<p></p>"
    return clean_body(f'<p><a href="{html.escape(url)}">{html.escape(url)}</a></p>', url).html
