"""A crawl process's loggers skip the records none of its handlers would take."""

from __future__ import annotations

import io
import logging

import pytest

from crawler.log_level import skip_records_below_handlers


def loggers_with(*levels: int) -> tuple[logging.Manager, logging.Logger, logging.Logger]:
    """A logging tree of its own: root handlers at ``levels``, "scrapy" at DEBUG as Scrapy
    sets it, and "scrapy.core.scraper" left NOTSET."""
    root = logging.RootLogger(logging.NOTSET)
    manager = logging.Manager(root)
    for level in levels:
        handler = logging.StreamHandler(io.StringIO())
        handler.setLevel(level)
        root.addHandler(handler)
    scrapy = manager.getLogger("scrapy")
    scrapy.setLevel(logging.DEBUG)
    return manager, scrapy, manager.getLogger("scrapy.core.scraper")


@pytest.mark.parametrize(("handlers", "level"), [
    ((logging.WARNING,), logging.WARNING),  # LOG_LEVEL = "WARNING": no info/debug record
    ((logging.INFO, logging.WARNING), logging.INFO),  # the lowest handler's
    ((logging.CRITICAL,), logging.ERROR),  # never above the engine-error handler's ERROR
])  # fmt: skip
def test_the_levels_rise_to_the_lowest_handler_level(handlers: tuple[int, ...], level: int) -> None:
    manager, scrapy, scraper = loggers_with(*handlers)
    assert scraper.isEnabledFor(logging.DEBUG)
    skip_records_below_handlers(manager)
    assert manager.root.level == scrapy.level == scraper.getEffectiveLevel() == level
    assert scraper.level == logging.NOTSET  # still inherits
    assert not scraper.isEnabledFor(level - 10) and scraper.isEnabledFor(level)


@pytest.mark.parametrize("handlers", [
    (logging.WARNING, logging.NOTSET),  # a handler that takes everything
    (),  # no handler: logging's last resort decides, as before
])  # fmt: skip
def test_nothing_changes_when_a_handler_could_take_anything(handlers: tuple[int, ...]) -> None:
    manager, scrapy, _scraper = loggers_with(*handlers)
    skip_records_below_handlers(manager)
    assert (manager.root.level, scrapy.level) == (logging.NOTSET, logging.DEBUG)


def test_a_librarys_null_handler_does_not_count() -> None:
    manager, _scrapy, scraper = loggers_with(logging.WARNING)
    manager.getLogger("urllib3").addHandler(logging.NullHandler())  # as urllib3 does
    skip_records_below_handlers(manager)
    assert scraper.getEffectiveLevel() == logging.WARNING


def test_a_handler_on_another_logger_counts_too() -> None:
    manager, _scrapy, scraper = loggers_with(logging.WARNING)
    handler = logging.StreamHandler(io.StringIO())
    handler.setLevel(logging.INFO)
    scraper.addHandler(handler)
    skip_records_below_handlers(manager)
    assert scraper.getEffectiveLevel() == logging.INFO
