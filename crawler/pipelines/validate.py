"""Validate: every post is checked against the post schema (crawler/post/schema.py) before it
is written.

A post that fails is dropped with the failing field and counted per source
(``source/<name>/invalid``, ``source/<name>/missing/<field>``): a site whose pages start to
give posts that break the format is flagged DRIFT, not archived wrongly.

The normalize pipeline already checked the post in its cleaning worker when nothing changes
it in between (ARCHIVE_IMAGES off): the item then carries that verdict (``format_problem``)
and the crawl's own thread does not check it again.
"""

from __future__ import annotations

from typing import Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.drift import count_invalid
from crawler.post.format import post_fields
from crawler.post.schema import format_problem, post_values

__all__ = ["InvalidPost", "ValidatePipeline"]


class InvalidPost(DropItem):
    """A post that does not follow the post format."""


class ValidatePipeline:
    def __init__(self, stats: StatsCollector) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.stats)

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        if "format_problem" in adapter:  # checked by normalize, on the values written
            problem = adapter["format_problem"]
        else:
            problem = format_problem(post_values(**post_fields(adapter)))
        if problem is None:
            return item
        field, rule = problem
        source = adapter.get("source") or "unknown"
        count_invalid(self.stats, source, field, adapter.get("url"))
        raise InvalidPost(
            f"post does not follow the format ({field}: {rule} failed): "
            f"{adapter.get('url') or adapter['title']!r}",
            log_level="WARNING",
        )
