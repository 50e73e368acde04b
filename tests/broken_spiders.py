"""Spiders that break in the ways a crawl can break before it reads anything; the failure
tests add this module to SPIDER_MODULES (it is not a test module)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crawler.spiders.base import SiteSpider


class ExplodingSpider(SiteSpider):
    """Raises while it is being created."""

    name = "exploding"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        raise RuntimeError("boom while starting")


class StartFailsSpider(SiteSpider):
    """Raises in start(): Scrapy's engine logs it and closes the spider as 'finished'."""

    name = "startfails"

    async def start(self) -> AsyncIterator[Any]:
        raise RuntimeError("no start requests today")
        yield  # a generator, as start() must be
