"""``python -m crawler merge A B … -o OUT``: worker archives merged into one, without duplicates.

The logic is crawler/archive/merge.py (first source wins, file names kept, ``OUT``'s index and
state rebuilt, idempotent). ``OUT`` is locked exclusively and each source shared (a source a
harvest is writing: exit 75, try again later). Feed validators and failure memory of the
sources are not merged.

Exit status: 0 merged; 1 something could not be read or written (one ``error: …`` line each
on stderr, the rest still merged); 2 usage error; 75 an archive is locked by another run.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    merge = commands.add_parser(
        "merge", help="merge archive folders (one per worker) into one, without duplicates"
    )
    merge.add_argument("sources", nargs="+", metavar="SOURCE", help="an archive folder to read")
    merge.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the archive to merge into"
    )


def run(args: argparse.Namespace) -> int:
    from crawler.archive.lock import ArchiveLock
    from crawler.archive.merge import merge
    from crawler.cli.main import EXIT_FAILED, EXIT_OK, UsageFailure

    out = Path(args.output).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UsageFailure(f"-o {out}: not a folder")
    sources: list[Path] = []
    for name in args.sources:
        source = Path(name).expanduser().resolve()
        if not source.is_dir():
            raise UsageFailure(f"{source} is not a directory")
        if source != out and source not in sources:
            sources.append(source)
    with ExitStack() as locks:
        locks.enter_context(ArchiveLock(out))
        for source in sources:
            locks.enter_context(ArchiveLock(source, read_only=True))
        result = merge(sources, out)
    for problem in result.problems:
        print(f"error: {problem}", file=sys.stderr)
    images = f", {result.images} images" if result.images else ""
    print(
        f"merged {len(sources)} archives into {out}: {result.copied} posts copied{images}, "
        f"{result.duplicates} duplicates skipped, {result.unreadable} unreadable "
        f"({result.posts} posts in {out.name or out})"
    )
    return EXIT_FAILED if result.unreadable else EXIT_OK
