"""One frontier for several workers: scrapy-redis's scheduler and request filter.

An add-on (``ADDONS``): with ``REDIS_URL`` set (``pip install -e '.[redis]'``), every site
spider's requests go to one queue in Redis and one request filter decides what was asked for
already, so that workers on several machines share the articles instead of each fetching them
all. Without it nothing changes: Scrapy's own scheduler and filter, in memory. The feeds
spider keeps its own (``SHARED_FRONTIER = False``): a feed is one request, and its entries
wait in the worker that read it for their full text.

scrapy-redis empties the queue and the filter when *a* worker's crawl ends, which would drop
what the other workers still have to do; our scheduler (crawler/shared_scheduler.py) empties
them when the *last* worker leaves. Each worker registers in
``<prefix><spider>[:<source>]:workers`` (a sorted set of heartbeat deadlines) and, with nothing
left to do, waits while another live worker is busy (it may still list articles). A killed
worker is forgotten once its heartbeat is a minute old; what it had taken from the queue is
not archived, so the next run fetches it.
A Redis lost mid-run stops the crawl like a lost ``DEDUP_BACKEND``: one line, exit 1.
"""

from __future__ import annotations

from typing import Any


def uses_shared_frontier(settings: Any) -> bool:
    return bool(settings.get("REDIS_URL")) and settings.getbool("SHARED_FRONTIER", True)


class SharedFrontier:
    """The add-on: the shared scheduler and scrapy-redis's filter when REDIS_URL is set."""

    def update_settings(self, settings: Any) -> None:
        if not uses_shared_frontier(settings):
            return
        # The queue and filter keys are the scheduler's: <prefix><spider>[:<source>]:requests.
        for name, value in {
            "SCHEDULER": "crawler.shared_scheduler.SharedScheduler",
            "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
            "SCHEDULER_PERSIST": True,  # SharedScheduler empties it, when the last one leaves
        }.items():
            settings.set(name, value, priority="addon")
