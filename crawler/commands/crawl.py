"""``scrapy crawl`` that checks the spider and its arguments first and holds the archive's lock.

An unknown spider or a bad spider argument is one line on stderr (no usage banner, no start-up
log) and exit status 2; an archive locked by another run is one line and exit status 75;
a shared backend (``DEDUP_BACKEND``) that does not answer is one line and exit status 1.
Nothing is fetched in these cases. A crawl stopped because the shared backend was lost
exits 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from scrapy import signals
from scrapy.commands import crawl
from scrapy.crawler import Crawler
from scrapy.spiderloader import get_spider_loader

from crawler.archive.lock import EXIT_LOCKED, ArchiveLock, ArchiveLocked
from crawler.archive.shared import SharedUnavailable, check_shared
from crawler.checks import SettingError, check_settings
from crawler.log_level import skip_records_below_handlers

EXIT_USAGE = 2


def usage_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


class Command(crawl.Command):
    _crawler: Crawler | None = None

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        # Checked here, before Scrapy builds its crawler process (and logs its banner).
        assert self.settings is not None
        try:
            check_settings(self.settings)
        except SettingError as error:
            usage_error(str(error))
        try:
            check_shared(self.settings)
        except SharedUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        if len(args) != 1:
            return  # Scrapy's own command explains its usage
        loader = get_spider_loader(self.settings)
        try:
            spidercls = loader.load(args[0])
        except KeyError:
            known = ", ".join(sorted(loader.list()))
            usage_error(f"no spider named {args[0]!r} (known: {known})")
        check = getattr(spidercls, "check_arguments", None)
        if check is not None:
            try:
                check(**opts.spargs)
            except ValueError as error:
                usage_error(str(error))

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        try:
            dry_run = self.settings.getbool("DRY_RUN")
            lock = ArchiveLock(self.settings["OUTPUT_DIR"], read_only=dry_run).acquire()
        except ArchiveLocked as locked:
            print(f"error: {locked}", file=sys.stderr)
            raise SystemExit(EXIT_LOCKED) from None
        except OSError as error:  # a symlinked .lock, an output that is not a folder
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        try:
            super().run(args, opts)
        finally:
            lock.release()
        crawler = self._crawler
        stats = crawler.stats if crawler is not None else None
        # Set by the archive service whenever Redis was lost (the crawl ends as SHARED_LOST).
        if stats is not None and stats.get_value("archive/shared_unavailable"):
            self.exitcode = 1  # Scrapy's own command exits 0 for any finish reason

    def _create_crawler(self, spname: str) -> Crawler:
        self._crawler = super()._create_crawler(spname)
        # This process's one crawl: once it has (re)installed Scrapy's root handler.
        self._crawler.signals.connect(_skip_unlogged_records, signal=signals.engine_started)
        return self._crawler


def _skip_unlogged_records() -> None:
    skip_records_below_handlers()
