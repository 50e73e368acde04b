"""``python -m crawler export``: the archive published for others.

``--hexo SITE_DIR`` puts the posts into a Hexo site's ``source/_posts/`` (crawler/publish/hexo.py);
``--atom FILE`` / ``--json-feed FILE`` write a feed of the newest posts (crawler/publish/feeds.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="publish the archive: into a Hexo site, as Atom or as a JSON Feed"
    )
    export.add_argument("directory", nargs="?", default="output", help="the archive folder")
    export.add_argument("--hexo", metavar="SITE_DIR", help="a Hexo site to put the posts into")
    export.add_argument("--atom", metavar="FILE", help="write an Atom 1.0 feed of the newest posts")
    export.add_argument(
        "--json-feed", metavar="FILE", help="write a JSON Feed 1.1 of the newest posts"
    )
    export.add_argument("--limit", default="100", metavar="N", help="posts in a feed (default 100)")
    export.add_argument("--source", help="only posts of this source (feeds)")
    export.add_argument("--category", help="only posts with this category (feeds)")
    export.add_argument("--feed-title", metavar="TITLE", help="the feed's title (feeds)")
    export.add_argument("--feed-url", metavar="URL", help="where the feed is published: its id")
    export.add_argument("--site-url", metavar="URL", help="the site the feed belongs to (feeds)")


def run(args: argparse.Namespace) -> int:
    from crawler.cli.main import UsageFailure

    archive = Path(args.directory).expanduser().resolve()
    if not archive.is_dir():
        raise UsageFailure(f"{archive} is not a directory")
    if not (args.hexo or args.atom or args.json_feed):
        raise UsageFailure("export: give --hexo SITE_DIR, --atom FILE or --json-feed FILE")
    status = 0
    if args.hexo:
        from crawler.publish.hexo import export_command as hexo_export

        status = max(status, hexo_export(archive, args))
    if args.atom or args.json_feed:
        from crawler.publish.feeds import export_command as feed_export

        status = max(status, feed_export(archive, args))
    return status
