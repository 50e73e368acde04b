"""Post files written by a helper process (crawler/child.py), one batch per call.

A crawl's writer thread hands each batch here instead of writing it itself: the Python
around every durable write (the safe path walk, the temporary file, the link, the fsyncs)
holds the GIL, and in a thread of the crawl's process that time is taken from the reactor.
The thread now waits on one pipe read per batch, without the GIL.

Request ``(root, [(relpath, data), ...], group_commit)``; reply
:func:`~crawler.archive.files.write_posts`'s list, errors made portable.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from pathlib import Path

from crawler import child
from crawler.archive.files import write_posts


def _reply(request: tuple[str, list[tuple[str, bytes]], bool]) -> list[bool | BaseException]:
    root, posts, group_commit = request
    try:
        results = write_posts(Path(root), posts, group_commit=group_commit)
    except Exception as error:  # a bug, not a disk: the batch fails with it, the helper stays
        return [child.portable_error(error)] * len(posts)
    return [
        child.portable_error(result) if isinstance(result, BaseException) else result
        for result in results
    ]


class FileWriterProcess:
    """:func:`write_posts` in a helper process, started on first use and again when lost."""

    def __init__(self) -> None:
        self._child = child.BlockingChild(__name__)

    def write_posts(
        self, root: Path, posts: Sequence[tuple[str, bytes]], *, group_commit: bool = False
    ) -> list[bool | Exception]:
        try:
            request = (str(root), list(posts), group_commit)
            results: list[bool | Exception] = self._child.call(request)
        except child.ChildLost as error:
            # Whether its files are on disk is unknown: they count as failed (retried next
            # run, where a post found on disk gets its index line and keys, "repaired").
            return [error] * len(posts)
        return results

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def start(self) -> None:
        """The helper started ahead of the first batch (see BlockingChild.start)."""
        self._child.start()

    def close(self) -> None:
        self._child.close()


_shared: FileWriterProcess | None = None


def shared_file_writer() -> FileWriterProcess:
    """This process's file writer: the crawls of one process (a harvest's sources, a test
    session) share it. It ends with the process (its input closes)."""
    global _shared
    if _shared is None:
        _shared = FileWriterProcess()
        atexit.register(_shared.close)
    return _shared


if __name__ == "__main__":
    child.serve(_reply)
