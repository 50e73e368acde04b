"""A feed's articles finished in the worker that reads the feed (crawler/post/clean_worker.py).

Finished there, an entry's body crosses to the crawl once, cleaned, instead of going back to
a worker from the normalize pipeline and returning: two pipe trips and their pickling less
per entry, on the crawl's busiest thread too. Normalize takes these values only for an item
whose fields are still the ones they were finished from (FinishedAhead.inputs), so an entry
whose body was replaced, or that a pipeline changed, is finished again as usual.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawler.extract.feed import FeedEntry, ReadFeed, entry_fields, read_feed
from crawler.post.article import FinishedAhead, Finishing, finish_ahead


@dataclass(frozen=True)
class FinishAhead:
    """What finishing a feed's articles ahead needs: normalize's settings, the source's
    fields, and the oldest time the spider keeps (older entries are not finished)."""

    finishing: Finishing
    source_fields: dict[str, Any]
    not_before: datetime | None = None


def read_and_finish(ahead: FinishAhead | None, *feed: Any) -> ReadFeed:
    """:func:`~crawler.extract.feed.read_feed` of ``feed`` (its arguments), and with
    ``ahead`` each entry's article finished (``ReadFeed.finished``)."""
    read = read_feed(*feed)
    if ahead is None or not read.is_feed:
        return read
    return dataclasses.replace(read, finished=[_finished(entry, ahead) for entry in read.entries])


def _finished(entry: Any, ahead: FinishAhead) -> FinishedAhead | None:
    if not isinstance(entry, FeedEntry):  # a bad entry, or one without a title: dropped
        return None
    if ahead.not_before is not None and entry.published < ahead.not_before:
        return None  # too old: the spider skips it
    return finish_ahead(entry_fields(entry, ahead.source_fields), ahead.finishing)
