"""A live progress line on a terminal (tqdm), for a person watching a harvest, and the log
kept from breaking it up (:func:`terminal_log`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from tqdm import tqdm

from crawler.pipelines.dedup import DuplicateItem


class ProgressDisplay:
    """Pages fetched, posts written and duplicates of the running crawl.

    Enabled by the ``PROGRESS_DISPLAY`` setting, which the harvest command sets only when
    stderr is a terminal: cron and pipes get no progress output.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.bar: tqdm | None = None
        self.counts = {"new": 0, "duplicate": 0, "dropped": 0}
        for handler, signal in (
            (self.spider_opened, signals.spider_opened),
            (self.response_received, signals.response_received),
            (self.item_scraped, signals.item_scraped),
            (self.item_dropped, signals.item_dropped),
            (self.spider_closed, signals.spider_closed),
        ):
            crawler.signals.connect(handler, signal=signal)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressDisplay:
        if not crawler.settings.getbool("PROGRESS_DISPLAY"):
            raise NotConfigured
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        self.bar = tqdm(desc=spider.name, unit=" pages", leave=True, dynamic_ncols=True)

    def response_received(self, **_: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def item_scraped(self, **_: Any) -> None:
        self._count("new")

    def item_dropped(self, exception: BaseException, **_: Any) -> None:
        self._count("duplicate" if isinstance(exception, DuplicateItem) else "dropped")

    def _count(self, what: str) -> None:
        self.counts[what] += 1
        if self.bar is not None:
            self.bar.set_postfix(self.counts, refresh=False)

    def spider_closed(self, **_: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class TerminalLog(logging.Handler):
    """The log on the terminal while progress lines are shown: a record below WARNING is
    counted, not shown; a warning or an error goes through ``tqdm.write``, which clears the
    bar, writes the line and redraws the bar below it."""

    def __init__(self, threshold: int, formatter: logging.Formatter) -> None:
        super().__init__()
        self.threshold = threshold  # LOG_LEVEL: what is counted (DEBUG is not, unless asked)
        self.hidden = 0
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.threshold:
            return
        if record.levelno < logging.WARNING:
            self.hidden += 1
            return
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's own convention: report on stderr, never raise
            self.handleError(record)


@contextmanager
def terminal_log(settings: Any) -> Iterator[None]:
    """While the block runs (a harvest with ``PROGRESS_DISPLAY``), the log reaches the
    terminal only through a :class:`TerminalLog` on the root logger; Scrapy's own root
    handler writes the whole log to ``LOG_FILE`` if one is set, and nothing otherwise
    (``LOG_ENABLED`` off: Scrapy installs a null handler). At the end, one line on stderr
    counts the lines not shown. Without ``PROGRESS_DISPLAY``, the log is Scrapy's as usual."""
    if not settings.getbool("PROGRESS_DISPLAY"):
        yield
        return
    log_file = settings.get("LOG_FILE")
    if not log_file:
        settings.set("LOG_ENABLED", False, priority="cmdline")
    handler = TerminalLog(
        _level(settings.get("LOG_LEVEL")),
        logging.Formatter(settings.get("LOG_FORMAT"), settings.get("LOG_DATEFORMAT")),
    )
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        if handler.hidden and not log_file:
            print(
                f"log: {handler.hidden} lines below WARNING not shown "
                "(--log-file FILE keeps the whole log)",
                file=sys.stderr,
            )


def _level(value: Any) -> int:
    if isinstance(value, int):
        return value
    return logging.getLevelNamesMapping().get(str(value).upper(), logging.INFO)
