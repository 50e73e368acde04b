"""``scrapy crawl`` that checks spider arguments first and holds the archive's lock.

A bad spider argument is one usage line and exit status 2; an archive locked by another run
is one line and exit status 75. Nothing is fetched in either case.
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands import crawl
from scrapy.exceptions import UsageError

from crawler.archive.lock import EXIT_LOCKED, ArchiveLock, ArchiveLocked


class Command(crawl.Command):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) == 1 and self.crawler_process is not None:
            try:
                spidercls = self.crawler_process.spider_loader.load(args[0])
            except KeyError:
                spidercls = None  # Scrapy's own command reports an unknown spider
            check = getattr(spidercls, "check_arguments", None)
            if check is not None:
                try:
                    check(**opts.spargs)
                except ValueError as error:
                    raise UsageError(str(error), print_help=False) from None
        assert self.settings is not None
        try:
            lock = ArchiveLock(self.settings["OUTPUT_DIR"]).acquire()
        except ArchiveLocked as locked:
            print(f"error: {locked}", file=sys.stderr)
            raise SystemExit(EXIT_LOCKED) from None
        try:
            super().run(args, opts)
        finally:
            lock.release()
