"""Log lines for dropped and scraped items: one short line each, without the item's body."""

from __future__ import annotations

from typing import Any

from scrapy import Spider
from scrapy.http import Response
from scrapy.logformatter import LogFormatter, LogFormatterResult
from twisted.python.failure import Failure


class OneLineLogFormatter(LogFormatter):
    """Scrapy's formatter logs whole items (article bodies, kilobytes each): log the reason."""

    def dropped(
        self,
        item: Any,
        exception: BaseException,
        response: Response | Failure | None,
        spider: Spider,
    ) -> LogFormatterResult:
        result = super().dropped(item, exception, response, spider)
        return {**result, "msg": "Dropped: %(exception)s", "args": {"exception": exception}}

    def scraped(
        self, item: Any, response: Response | Failure | None, spider: Spider
    ) -> LogFormatterResult:
        result = super().scraped(item, response, spider)
        url = item.get("url") if hasattr(item, "get") else None
        return {**result, "msg": "Scraped %(url)s", "args": {"url": url}}
