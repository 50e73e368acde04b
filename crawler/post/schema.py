"""The post schema (crawler/post/post.schema.json, also docs/post.schema.json) and the check
of a post's values against it. No Scrapy here: the body-cleaning workers check posts too.

Checked by jsonschema-rs (compiled, about 60 us a post against 430 us for the jsonschema
package, which tests and tools keep using).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

from crawler.post.format import http_date


@cache
def post_schema() -> dict[str, Any]:
    # A file of this package, checked against JSON Schema's meta-schema by the tests
    # (tests/test_postformat.py), not at every start of a crawl and of its workers.
    schema: dict[str, Any] = json.loads(
        resources.files("crawler.post").joinpath("post.schema.json").read_text("utf-8")
    )
    return schema


@cache
def fast_post_validator() -> Any:
    # Rust regexes follow ECMA-262 as JSON Schema asks: '$' does not match before a final
    # newline, as Python's does (a title ending in a newline is refused here).
    return jsonschema_rs.validator_for(post_schema())


def post_values(
    *,
    title: str,
    categories: Sequence[str],
    lead_image: str,
    author: str,
    published: datetime,
    body: str,
) -> dict[str, Any]:
    """What the writer puts in the post file, by front-matter key (and ``body``)."""
    return {
        "title": title,
        "categories": list(categories),
        "headimg": lead_image,
        "author": author,
        "comments": False,
        "date": http_date(published),
        "thumbnail": lead_image,
        "body": body,
    }


def format_problem(values: dict[str, Any]) -> tuple[str, str] | None:
    """The first value of :func:`post_values` that breaks the schema, as ``(field, rule)``
    (``("title", "pattern")``), or None for a post that follows the format."""
    validator = fast_post_validator()
    if validator.is_valid(values):  # the common case, without building an error iterator
        return None
    error = next(iter(validator.iter_errors(values)), None)
    if error is None:
        return None
    field = str(error.instance_path[0]) if error.instance_path else "post"
    rule = str(error.schema_path[-1]) if error.schema_path else "schema"
    return field, rule
