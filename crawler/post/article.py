"""The part of normalizing an article that needs no crawl: its body cleaned, its front-matter
values and dedup keys computed. Plain values in, plain values out, so that it runs in a
body-cleaning worker process (crawler/post/clean_worker.py) as well as in place.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crawler.post.cleaning import clean_body, clean_text, clean_title
from crawler.post.format import post_fields
from crawler.post.keys import key_digest, story_keys
from crawler.post.schema import format_problem, post_values

# What one article's data can raise on its way through: the article is dropped, not the run.
UNUSABLE = (ValueError, TypeError, UnicodeError, OverflowError, RecursionError)
# What finish_article reads of an item (title, url and published as check_article left them).
FINISH_FIELDS = (
    "title", "url", "published", "categories", "author", "source", "image", "thumb",
    "fallback_image", "has_own_url", "identity",
)  # fmt: skip
# What check_article reads of an item.
CHECKED_FIELDS = (*FINISH_FIELDS, "body", "body_base", "strip_selectors")
# Characters of raw body HTML kept at most (2 M: ten times a long article with markup).
MAX_BODY_LENGTH = 2_000_000


@dataclass(frozen=True)
class Finishing:
    """The normalize pipeline's settings that an article's finished values depend on."""

    max_title_length: int = 300
    fallback_image: str = ""
    check_format: bool = False


class NotAnArticle(Exception):
    """No title, or no usable publication time: the article is dropped for ``reason``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CheckedArticle:
    """An article's title, URL and time checked, and finish_article's arguments (``job``)."""

    title: str
    url: str | None
    published: datetime
    job: tuple[Any, ...]
    title_truncated: bool = False
    body_truncated: bool = False


def check_article(get: Callable[[str], Any], finishing: Finishing) -> CheckedArticle:
    """The checks of an article's fields (``get``: a field's value, None when unset) before it
    is finished; NotAnArticle when it is none."""
    url = clean_text(get("url") or "") or None
    title = clean_title(get("title") or "")
    if not title:
        raise NotAnArticle("missing_title", f"article without a title: {url}")
    title_truncated = len(title) > finishing.max_title_length
    if title_truncated:
        title = title[: finishing.max_title_length - 1].rstrip() + "…"
    published = get("published")
    if not isinstance(published, datetime):
        raise NotAnArticle("missing_date", f"article without a publication time: {url}")
    if published.utcoffset() is None:
        raise NotAnArticle("naive_date", f"publication time without a time zone: {url}")
    published = published.astimezone(UTC)

    base = clean_text(get("body_base") or "") or url
    raw_body = get("body") or ""
    body_truncated = len(raw_body) > MAX_BODY_LENGTH
    if body_truncated:
        # No article is this long; hostile text this size would cost the sanitizer
        # (super-linear on some inputs) seconds. Cut, and sanitize what is left.
        raw_body = raw_body[:MAX_BODY_LENGTH]
    fields = {name: get(name) for name in FINISH_FIELDS}
    fields.update(title=title, url=url, published=published)
    strip = tuple(get("strip_selectors") or ())
    job = (raw_body, base, strip, fields, finishing.fallback_image, finishing.check_format)
    return CheckedArticle(title, url, published, job, title_truncated, body_truncated)


@dataclass(frozen=True)
class FinishedAhead:
    """An article finished before it reached the normalize pipeline (by the worker that read
    its feed), with the fields it was checked and finished from (``inputs``): normalize
    takes ``checked`` and ``values`` only for an item whose fields are still those."""

    inputs: dict[str, Any]
    checked: CheckedArticle  # without its job: normalize has no use for it
    values: dict[str, Any]


def finish_ahead(fields: dict[str, Any], finishing: Finishing) -> FinishedAhead | None:
    """An article's fields checked and finished as normalize would, or None when normalize
    is to drop it (it does so in the crawl, with the reason and the stat)."""
    inputs = {name: fields.get(name) for name in CHECKED_FIELDS}
    try:
        checked = check_article(inputs.get, finishing)
        values = finish_article(*checked.job)
    except (NotAnArticle, *UNUSABLE):
        return None
    return FinishedAhead(inputs, dataclasses.replace(checked, job=()), values)


def finish_article(
    raw_body: str,
    base_url: str | None,
    strip_selectors: tuple[str, ...],
    fields: dict[str, Any],
    fallback_image: str,
    check_format: bool = False,
) -> dict[str, Any]:
    """The article's finished values, from its checked ``title``, ``url`` and ``published``
    and its raw ``categories``, ``author``, ``source``, ``image``, ``thumb``,
    ``fallback_image``, ``has_own_url`` and ``identity`` (``fields``). With
    ``check_format``, also ``format_problem``: what of the post breaks the post schema."""
    title, url, published = fields["title"], fields["url"], fields["published"]
    body = clean_body(raw_body, base_url, strip_selectors)
    has_own_url = bool(url) and fields.get("has_own_url", True) is not False
    title_key, url_key = story_keys(
        title, published, url, has_own_url, clean_text(fields.get("identity") or "")
    )
    values = {
        "categories": _clean_list(fields.get("categories") or []),
        "author": clean_text(fields.get("author") or "") or clean_text(fields.get("source") or ""),
        "body": body.html or _link_only_body(url),
        "lead_image": (
            _absolute_image(fields.get("image"))
            or body.first_image
            or _absolute_image(fields.get("thumb"))
            or _absolute_image(fields.get("fallback_image"))
            or _fallback_for(fallback_image, title, published, url)
        ),
        "has_own_url": has_own_url,
        # The story's dedup keys, computed once here for dedup and write.
        "title_key": title_key,
        "url_key": url_key,
    }
    if check_format:
        post = post_fields({**values, "title": title, "published": published})
        values["format_problem"] = format_problem(post_values(**post))
    return values


def _fallback_for(template: str, title: str, published: datetime, url: str | None) -> str:
    # N stable per article: derived from the article's title key.
    title_key, _ = story_keys(title, published, url, has_own_url=False)
    n = int(key_digest(title_key), 16) % 1000
    return template.replace("{n}", str(n))


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
