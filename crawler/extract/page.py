"""An article page read without site code: per-source selectors, else the page's metadata.

Selectors (``title``, ``date``, ``body``) come from a source's table, like Miniflux's scraper
rules; what they do not give comes from the page's JSON-LD (``NewsArticle``/``Article``:
``headline``, ``datePublished``, ``image``; ``@graph`` arrays included) or OpenGraph
(``og:title``, ``article:published_time``, ``og:image``); the body from trafilatura.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import urljoin

from parsel import Selector

from crawler.extract.dates import parse_date
from crawler.extract.fulltext import extract_article

ARTICLE_TYPES = frozenset(
    {
        "Article",
        "NewsArticle",
        "ReportageNewsArticle",
        "AnalysisNewsArticle",
        "BlogPosting",
        "TechArticle",
        "OpinionNewsArticle",
        "LiveBlogPosting",
    }
)
# JSON-LD nests (@graph, lists, ImageObjects); deeper than this is not metadata but an attack.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class PageArticle:
    """What an article page gives. ``title`` is text; ``body`` HTML (None: none found)."""

    title: str | None
    published: datetime | None
    image: str | None
    body: str | None
    date_text: str | None  # the raw date that was read, for log lines


@dataclass(frozen=True)
class Metadata:
    title: str | None = None
    published: str | None = None
    image: str | None = None


def read_article(
    html: str,
    url: str,
    zone: tzinfo,
    title: str | None = None,
    date: str | None = None,
    body: str | None = None,
) -> PageArticle:
    """The article of a page. ``title``/``date``/``body`` are CSS selectors (optional)."""
    page = Selector(text=html)
    meta = page_metadata(page)
    page_title = _selected_text(page, title) if title else None
    date_text = (_selected_date(page, date) if date else None) or meta.published
    if body:
        body_html: str | None = "".join(page.css(body).xpath("node()").getall()) or None
    else:
        body_html = extract_article(html, url)
    image = meta.image
    return PageArticle(
        title=page_title or meta.title,
        published=parse_date(date_text, zone),
        image=urljoin(url, image) if image else None,
        body=body_html,
        date_text=date_text,
    )


def page_metadata(page: Selector) -> Metadata:
    """JSON-LD first (the publisher's structured data), then OpenGraph, field by field."""
    nodes = list(_json_ld_nodes(page))
    by_id = {node["@id"]: node for node in nodes if isinstance(node.get("@id"), str)}
    article = next((node for node in nodes if _is_article(node)), {})
    og = {
        name: page.css(f'meta[property="{name}"]::attr(content)').get()
        for name in ("og:title", "article:published_time", "og:image")
    }
    headline = _text(article.get("headline"))
    return Metadata(
        # JSON-LD strings often carry HTML entities (WordPress writes &#8217;).
        title=html.unescape(headline) if headline else _text(og["og:title"]),
        published=_text(article.get("datePublished")) or _text(og["article:published_time"]),
        image=_image(article.get("image"), by_id) or _text(og["og:image"]),
    )


def _json_ld_nodes(page: Selector) -> Iterator[dict[str, Any]]:
    """Every object of the page's JSON-LD blocks, ``@graph`` members and nested lists too."""
    for script in page.css('script[type="application/ld+json"]::text').getall():
        try:
            data = json.loads(script)
        except (ValueError, RecursionError):
            continue  # a broken or hostile block: the page's other metadata still counts
        yield from _nodes(data, 0)


def _nodes(node: Any, depth: int) -> Iterator[dict[str, Any]]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, list):
        for child in node:
            yield from _nodes(child, depth + 1)
    elif isinstance(node, dict):
        yield node
        if "@graph" in node:
            yield from _nodes(node["@graph"], depth + 1)


def _is_article(node: dict[str, Any]) -> bool:
    kinds = node.get("@type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return any(isinstance(kind, str) and kind in ARTICLE_TYPES for kind in kinds)


def _image(value: Any, by_id: dict[str, dict[str, Any]], depth: int = 0) -> str | None:
    """An image URL from JSON-LD: a string, an ImageObject (or a reference to one by
    ``@id``, as Yoast writes it), or a list of these."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        if set(value) == {"@id"} and value["@id"] in by_id:
            return _image(by_id[value["@id"]], by_id, depth + 1)
        return _text(value.get("url")) or _text(value.get("contentUrl"))
    if isinstance(value, list):
        for item in value:
            found = _image(item, by_id, depth + 1)
            if found:
                return found
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _selected_text(page: Selector, selector: str) -> str | None:
    """The text a selector picks: its strings (``::text``, ``::attr``) or the first element's."""
    selected = page.css(selector)
    if not selected:
        return None
    if isinstance(selected[0].root, str):
        text = "".join(selected.getall())
    else:
        text = selected[0].xpath("string()").get() or ""
    return _text(" ".join(text.split()))


def _selected_date(page: Selector, selector: str) -> str | None:
    """A date a selector picks; a ``<time>`` element gives its ``datetime`` attribute."""
    selected = page.css(selector)
    if selected and not isinstance(selected[0].root, str):
        machine = selected[0].attrib.get("datetime") or selected[0].attrib.get("content")
        if machine and machine.strip():
            return machine.strip()
    return _selected_text(page, selector)
