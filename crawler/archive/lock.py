"""One run at a time per archive: ``fcntl.flock`` on ``OUTPUT_DIR/.lock``.

The kernel drops the lock when its holder exits, however it exits (a killed run included), so
a stale lock never blocks the next run.

A run that writes holds an exclusive lock on ``.lock`` (written with its pid) and on the
archive folder itself. A read-only run (``harvest --dry-run``) changes nothing in the folder:
it takes a shared lock on the existing ``.lock`` without writing it, or, when there is none,
on the folder (so that read-only runs may go side by side, never beside a writing run); for
a folder that does not exist there is nothing to lock.

``.lock`` is never opened through a symlink (:class:`~crawler.archive.files.SymlinkRefused`,
an OSError) and is created owner-only (0o600).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from crawler.archive.files import open_file

LOCK_FILE = ".lock"
LOCK_MODE = 0o600
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later


class ArchiveLocked(RuntimeError):
    """Another run holds the archive's lock."""


class ArchiveLock:
    """A non-blocking lock on an archive, held until :meth:`release` or exit: exclusive, or
    shared and without touching the folder when ``read_only``."""

    def __init__(self, output_dir: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self.read_only = read_only
        self._fds: list[int] = []

    def acquire(self) -> ArchiveLock:
        folder = self.path.parent
        if self.read_only:
            if not folder.is_dir():
                return self  # nothing to read, nothing to lock, nothing to create
            try:
                fd = open_file(self.path, os.O_RDONLY)
            except FileNotFoundError:
                fd = _open_folder(folder)
            self._lock(fd, fcntl.LOCK_SH)
            return self
        folder.mkdir(parents=True, exist_ok=True)
        # The folder too: a read-only run of an archive without a .lock file locks that.
        folder_fd = _open_folder(folder)
        self._lock(folder_fd, fcntl.LOCK_EX)
        try:
            fd = open_file(LOCK_FILE, os.O_RDWR | os.O_CREAT, LOCK_MODE, dir_fd=folder_fd,
                           shown_as=self.path)  # fmt: skip
        except BaseException:
            self.release()
            raise
        self._lock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return self

    def _lock(self, fd: int, operation: int) -> None:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = " (a dry run)" if _shared_only(fd) else _holder(self.path)
            os.close(fd)
            self.release()
            raise ArchiveLocked(
                f"{self.path.parent} is in use by another run{holder}; nothing was done"
            ) from None
        self._fds.append(fd)

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing a descriptor releases its lock

    def __enter__(self) -> ArchiveLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _open_folder(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def _shared_only(fd: int) -> bool:
    """Whether only read-only runs hold the lock ``fd`` could not take (a shared lock can be
    had); ``.lock`` then names the last writing run, not a holder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True  # closing fd drops this probe


def _holder(path: Path) -> str:
    """`` (pid N)`` of the writing run that last held the lock, when ``.lock`` says so."""
    try:
        with os.fdopen(open_file(path, os.O_RDONLY), "rb") as handle:
            pid = handle.read(32).decode("ascii", errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
