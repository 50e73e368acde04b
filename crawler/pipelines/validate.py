"""Validate: every post is checked against the post schema (crawler/post/post.schema.json,
also docs/post.schema.json) before it is written: by jsonschema-rs (compiled, about 60 us a
post against 430 us for the jsonschema package, which tests and tools keep using).

A post that fails is dropped with the failing field and counted per source
(``source/<name>/invalid``, ``source/<name>/missing/<field>``): a site whose pages start to
give posts that break the format is flagged DRIFT, not archived wrongly.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Self

import jsonschema_rs
from itemadapter import ItemAdapter
from jsonschema import Draft202012Validator
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.drift import count_invalid
from crawler.post.format import http_date


@cache
def post_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        resources.files("crawler.post").joinpath("post.schema.json").read_text("utf-8")
    )
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def post_validator() -> Draft202012Validator:
    return Draft202012Validator(post_schema())


@cache
def fast_post_validator() -> Any:
    # Rust regexes follow ECMA-262 as JSON Schema asks: '$' does not match before a final
    # newline, as Python's does (a title ending in a newline is refused here).
    return jsonschema_rs.validator_for(post_schema())


def post_values(adapter: ItemAdapter) -> dict[str, Any]:
    """What the writer puts in the post file, by front-matter key (and ``body``)."""
    return {
        "title": adapter["title"],
        "categories": list(adapter["categories"]),
        "headimg": adapter["lead_image"],
        "author": adapter["author"],
        "comments": False,
        "date": http_date(adapter["published"]),
        "thumbnail": adapter["lead_image"],
        "body": adapter["body"],
    }


class InvalidPost(DropItem):
    """A post that does not follow the post format."""


class ValidatePipeline:
    def __init__(self, stats: StatsCollector) -> None:
        self.stats = stats
        self.validator = fast_post_validator()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.stats)

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        error = next(iter(self.validator.iter_errors(post_values(adapter))), None)
        if error is None:
            return item
        field = str(error.instance_path[0]) if error.instance_path else "post"
        rule = error.schema_path[-1] if error.schema_path else "schema"
        source = adapter.get("source") or "unknown"
        count_invalid(self.stats, source, field, adapter.get("url"))
        raise InvalidPost(
            f"post does not follow the format ({field}: {rule} failed): "
            f"{adapter.get('url') or adapter['title']!r}",
            log_level="WARNING",
        )
