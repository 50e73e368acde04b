"""Scrapy extensions of the project."""

from __future__ import annotations

import logging

from scrapy.crawler import Crawler

ROBOTSTXT_LOGGER = "scrapy.downloadermiddlewares.robotstxt"


class _RobotsTxtFailureAsOneLine(logging.Filter):
    """A robots.txt that cannot be fetched: one INFO line instead of an ERROR with traceback.

    The site is then unreachable for the request that follows too, and the spider reports
    that failure itself (one line and a stat); robots.txt-less sites are crawled as allowed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "robots.txt not fetched for " + str(record.msg)
        return True


class QuietRobotsTxtFailures:
    """Installs :class:`_RobotsTxtFailureAsOneLine` for the crawl's lifetime."""

    def __init__(self) -> None:
        self.filter = _RobotsTxtFailureAsOneLine()
        logging.getLogger(ROBOTSTXT_LOGGER).addFilter(self.filter)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> QuietRobotsTxtFailures:
        return cls()
