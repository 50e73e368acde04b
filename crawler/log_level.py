"""Log records below every handler's level never made, in a ``scrapy crawl`` process.

Scrapy leaves the root logger at NOTSET and its "scrapy" logger at DEBUG, and filters in its
handler (``LOG_LEVEL``): each ``logger.debug``/``logger.info`` call still builds its record
(the caller looked up on the stack, the arguments kept) before the handler drops it, 6-25
us each, two or three an article (Scrapy's "Crawled" and "Scraped" lines, our "wrote" line).
"""

from __future__ import annotations

import logging

# A handler added later (none is, in a crawl process) still gets every ERROR record, and so
# does the archive's engine-error handler (crawler/extensions.py), added at spider_opened.
_HIGHEST = logging.ERROR


def skip_records_below_handlers(manager: logging.Manager | None = None) -> None:
    """Loggers' levels raised to the lowest level of any handler (at most ERROR): the root
    logger's if it is NOTSET, and any logger's set below it. Nothing changes when a handler
    takes every record (level NOTSET) or there is none (NullHandlers do not count)."""
    manager = manager or logging.Logger.manager
    loggers = [manager.root] + [
        logger for logger in manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = [
        handler.level
        for logger in loggers
        for handler in logger.handlers
        if not isinstance(handler, logging.NullHandler)  # libraries' own: takes nothing
    ]
    if not levels or not all(levels):
        return
    floor = min(*levels, _HIGHEST)
    for logger in loggers:
        if logger.level < floor and (logger.level or logger is manager.root):
            logger.setLevel(floor)
