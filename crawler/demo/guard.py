"""A downloader middleware for the demo: no request leaves the demo server.

``DEMO_SERVER`` (the server's origin, ``http://127.0.0.1:PORT``) turns it on. Any request to
another origin (a link the demo site's content points elsewhere, a robots.txt of another host)
is refused before it reaches the network: one error line, ``demo/refused_offsite`` counted,
and its source FAILED with the URL as its reason, so the demo cannot pass by quietly
reaching the internet.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured

from crawler.extensions import mark_failed

logger = logging.getLogger(__name__)


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class DemoServerOnly:
    def __init__(self, crawler: Crawler, server: str) -> None:
        self.crawler = crawler
        self.server = origin_of(server)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DemoServerOnly:
        server = crawler.settings.get("DEMO_SERVER")
        if not server:
            raise NotConfigured("DEMO_SERVER is not set")
        return cls(crawler, server)

    def process_request(self, request: Request) -> None:
        if origin_of(request.url) == self.server:
            return
        stats = self.crawler.stats
        assert stats is not None, "a crawl has its stats"
        stats.inc_value("demo/refused_offsite")
        logger.error("demo: refused a request off the demo server: %s", request.url)
        crawl = self.crawler.spider
        names = [request.meta["source_name"]] if request.meta.get("source_name") else []
        if not names and crawl is not None:
            names = [source.name for source in getattr(crawl, "sources_read", [])]
        for name in names:
            mark_failed(stats, name, f"demo: refused a request off the demo server: {request.url}")
        raise IgnoreRequest(f"off the demo server: {request.url}")
