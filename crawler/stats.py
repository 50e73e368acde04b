"""The crawl's stats collector (``STATS_CLASS``): Scrapy's own, without its per-access hook.

Scrapy 2.19's ``StatsCollector.__getattribute__`` runs on every attribute access of the
collector, to wrap its methods in a check for the deprecated ``spider`` argument: a
formatted name and, for an attribute that is not a method (``self._stats`` inside each of
them), a raised and caught AttributeError. Every ``inc_value`` paid that twice or more; a
feeds crawl makes about ten of them an entry (3% of the crawl's thread). This project never
passes ``spider=`` to its stats, so the plain attribute lookup is kept.
"""

from __future__ import annotations

from scrapy.statscollectors import MemoryStatsCollector


class PlainStatsCollector(MemoryStatsCollector):
    """:class:`~scrapy.statscollectors.MemoryStatsCollector`, looked up as any object is."""

    __getattribute__ = object.__getattribute__
