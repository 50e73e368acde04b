"""The part of normalizing an article that needs no crawl: its body cleaned, its front-matter
values and dedup keys computed. Plain values in, plain values out, so that it runs in a
body-cleaning worker process (crawler/post/clean_worker.py) as well as in place.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from crawler.post.cleaning import clean_body, clean_text
from crawler.post.format import post_fields
from crawler.post.keys import key_digest, story_keys
from crawler.post.schema import format_problem, post_values


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
