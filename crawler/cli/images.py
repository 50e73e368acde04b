"""``python -m crawler images --backfill [DIR]``: archive the images of the posts already in
an archive and point those posts at them (crawler/cli/backfill.py).

Prints one line of counts; exit status 0 when every image was archived, 1 when some could
not be (their reasons are logged, one line each, and the posts keep those URLs) or a post
could not be read or rewritten, 2 for a usage error, 75 when the archive is locked.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    images = commands.add_parser(
        "images", help="archive the images of posts already in the archive (--backfill)"
    )
    images.add_argument("directory", nargs="?", default="output", help="the archive folder")
    images.add_argument(
        "--backfill", action="store_true",
        help="download the posts' images into DIR/images/ and rewrite those posts",
    )  # fmt: skip
    images.add_argument(
        "-s", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="a Scrapy setting (repeatable)",
    )  # fmt: skip
    images.add_argument(
        "--dry-run", action="store_true", help="fetch and check the images, change nothing"
    )


def run(args: argparse.Namespace) -> int:
    from crawler.cli.main import UsageFailure

    if not args.backfill:
        raise UsageFailure("images: give --backfill (the only action for now)")
    directory = Path(args.directory).expanduser().resolve()
    if not directory.is_dir():
        raise UsageFailure(f"{directory} is not a directory")
    settings = _settings(args.settings, directory, args.dry_run)

    from crawler.archive.index import read_index
    from crawler.archive.lock import ArchiveLock

    with ArchiveLock(directory, read_only=args.dry_run):
        read_index(directory)  # an index that cannot be read: one line, before any request
        stats = _crawl(settings)
    return report(stats, directory, args.dry_run)


def _settings(assignments: list[str], directory: Path, dry_run: bool) -> Any:
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    from scrapy.utils.project import get_project_settings

    from crawler.checks import SettingError, check_settings
    from crawler.cli.backfill import backfill_settings
    from crawler.cli.main import UsageFailure

    settings = get_project_settings()
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name.strip():
            raise UsageFailure(f"-s {assignment!r}: expected NAME=VALUE")
        settings.set(name.strip(), value, priority="cmdline")
    try:
        check_settings(settings)
    except SettingError as error:
        raise UsageFailure(str(error)) from None
    settings.update(backfill_settings(directory, dry_run=dry_run), priority="cmdline")
    return settings


def _crawl(settings: Any) -> dict[str, Any]:
    from scrapy.crawler import CrawlerProcess

    from crawler.cli.backfill import BackfillSpider

    process = CrawlerProcess(settings)
    crawler = process.create_crawler(BackfillSpider)
    process.crawl(crawler)
    process.start()
    return dict(crawler.stats.get_stats())


def report(stats: dict[str, Any], directory: Path, dry_run: bool = False) -> int:
    """Print the counts of a backfill crawl; its exit status."""

    def count(name: str) -> int:
        return int(stats.get(name) or 0)

    rewritten = "would rewrite" if dry_run else "rewritten"
    print(
        f"images {directory}: {count('backfill/posts')} posts read, "
        f"{count('backfill/rewritten')} {rewritten}; images: {count('images/downloaded')} "
        f"downloaded, {count('images/reused')} reused, {count('images/failed')} failed"
    )
    problems = []
    if count("images/failed"):
        reasons = sorted(
            f"{name.rsplit('/', 1)[1]} {value}"
            for name, value in stats.items()
            if name.startswith("images/failed/")
        )
        problems.append(f"{count('images/failed')} images not archived ({', '.join(reasons)})")
    if count("images/over_cap"):
        problems.append(f"{count('images/over_cap')} images past IMAGES_MAX_PER_POST")
    if count("backfill/unreadable"):
        problems.append(f"{count('backfill/unreadable')} files not in the post format")
    if count("backfill/write_failed"):
        problems.append(f"{count('backfill/write_failed')} posts could not be rewritten")
    if stats.get("finish_reason") not in (None, "finished"):
        problems.append(f"the crawl ended: {stats['finish_reason']}")
    if problems:
        print("failed: " + "; ".join(problems) + " (the log names each)")
        return 1
    return 0
