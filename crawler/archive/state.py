"""``OUTPUT_DIR/.state.sqlite3``: what an archive remembers between runs.

Dedup keys of every archived story, conditional-GET validators of feeds and the failure memory
of article pages. An archive carries its own memory, so a fresh folder starts clean. Only
:class:`crawler.archive.service.ArchiveService` (and ``reindex``) open it.

The state is created owner-only (0o600; SQLite gives its ``-wal`` and ``-shm`` files the same
mode) and never opened through a symlink, nor are its ``-wal``, ``-shm`` and ``-journal``
files. A file that is not an SQLite database is a :class:`CorruptState`.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

from crawler.archive.files import SymlinkRefused, open_file

STATE_FILE = ".state.sqlite3"
STATE_MODE = 0o600
# SQLite's companions of the state file, opened by SQLite itself: checked before it does.
COMPANIONS = ("-wal", "-shm", "-journal")
# Bumped whenever the key functions of crawler.post.keys change what they return: an archive
# whose keys were computed by older rules is re-keyed (reindex) before it is used.
KEY_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS story_keys (
    kind TEXT NOT NULL,         -- 'title' (title + UTC day) or 'url' (canonical URL)
    key TEXT NOT NULL,
    path TEXT NOT NULL,         -- the post, relative to the archive folder
    archived_at TEXT NOT NULL,  -- ISO 8601, UTC
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fetch_failures (
    url_key TEXT PRIMARY KEY,   -- canonical URL of an article page that could not be used
    reason TEXT NOT NULL,       -- e.g. 'http_404', 'unreachable', 'missing_date'
    attempts INTEGER NOT NULL,
    failed_at TEXT NOT NULL     -- ISO 8601, UTC, of the last failure
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_validators (
    feed_url TEXT PRIMARY KEY,  -- as requested
    etag TEXT,
    last_modified TEXT,
    saved_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,      -- 'key_version'
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_runs (
    name TEXT PRIMARY KEY,      -- a source's name
    empty_runs INTEGER NOT NULL,  -- consecutive runs that gave nothing new or known
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
"""
# The posts of one folder, asked at the end of a crawl (ArchiveService: unindexed posts),
# found without a scan of every key. Made on a writable state only (an older state gets it
# when a crawl first opens it); the schema's tables stay as they were.
_PATH_INDEX = "CREATE INDEX IF NOT EXISTS story_keys_by_path ON story_keys (path)"
# A failed article page waits this long before it is asked for again, doubled with every
# further failure, up to MAX_FAILURE_BACKOFF.
MAX_FAILURE_BACKOFF = timedelta(days=7)


P = ParamSpec("P")
R = TypeVar("R")


def _serialized(
    method: Callable[Concatenate[ArchiveState, P], R],
) -> Callable[Concatenate[ArchiveState, P], R]:
    """One thread at a time on the connection: the archive service writes posts (and their
    keys) from its writer thread while the crawl's thread asks and records; a transaction
    must never take in another thread's statement."""

    def locked(self: ArchiveState, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    locked.__name__ = method.__name__
    locked.__doc__ = method.__doc__
    return locked


def in_backoff(
    attempts: int, failed_at: datetime, backoff: timedelta, now: datetime | None = None
) -> bool:
    """Whether a page that failed ``attempts`` times, last at ``failed_at``, still waits:
    ``backoff`` after its first failure, twice that after the second, ..., at most
    MAX_FAILURE_BACKOFF."""
    wait = min(backoff * 2 ** min(attempts - 1, 20), MAX_FAILURE_BACKOFF)
    return failed_at + wait > (now or datetime.now(UTC))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CorruptState(RuntimeError):
    """``.state.sqlite3`` is not an SQLite database (or a damaged one): one line that names
    the file and the command that moves it aside and rebuilds it."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        folder = shlex.quote(str(path.parent))
        super().__init__(
            f"{path}: not a database; run `python -m crawler reindex {folder}` to move it "
            f"aside and rebuild it from the posts ({detail})"
        )


def is_corruption(error: BaseException) -> bool:
    """Whether an sqlite3 error says the file is no database or a damaged one (not a lock,
    a permission or a full disk)."""
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return type(error) is sqlite3.DatabaseError
    return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


# SQLite result codes (primary) as the errno of the OSError a failed state write becomes.
_ERRNO_OF = {
    sqlite3.SQLITE_FULL: errno.ENOSPC,
    sqlite3.SQLITE_READONLY: errno.EROFS,
    sqlite3.SQLITE_PERM: errno.EACCES,
    sqlite3.SQLITE_CANTOPEN: errno.EACCES,
    sqlite3.SQLITE_BUSY: errno.EAGAIN,
    sqlite3.SQLITE_LOCKED: errno.EAGAIN,
}


def as_os_error(error: sqlite3.Error, path: Path) -> OSError:
    """A failed state write as an OSError (disk full: ENOSPC; else EIO mostly), so that the
    write pipeline reports it as the failed write it is."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    detail = str(CorruptState(path, str(error))) if is_corruption(error) else str(error)
    return OSError(_ERRNO_OF.get(code, errno.EIO), detail, str(path))


def check_state(output_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`CorruptState` when the archive's state is not a database (and
    :class:`~crawler.archive.files.SymlinkRefused` when it is a symlink); writes nothing."""
    ArchiveState(output_dir, read_only=True).close()


class ArchiveState:
    """One connection to an archive's ``.state.sqlite3`` (WAL mode: readers never block).

    ``read_only`` (a dry run) changes nothing in the folder, not even SQLite's ``-wal`` and
    ``-shm`` files, and creates no folder (see :func:`_open_read_only`). A read-only state
    refuses writes (:class:`sqlite3.OperationalError`) or, when it lives in memory, keeps
    them there; the archive service does not write through it.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / STATE_FILE
        self.read_only = read_only
        self._lock = threading.RLock()
        # The crawl thread's lookups (knows) on a connection of their own: in WAL mode they
        # never wait for the writer thread's transactions, so the reactor never does.
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        # The url keys of the pages that failed, read once: nearly every page never failed,
        # and asking SQLite about each of them (before its request and after its response)
        # cost the crawl's thread two statements a page. One run at a time writes (.lock).
        self._failed: set[str] | None = None
        if read_only:
            try:
                self._db = _open_read_only(self.path)
            except sqlite3.DatabaseError as error:
                if is_corruption(error):
                    raise CorruptState(self.path, str(error)) from None
                raise
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        fresh = _prepare(self.path)
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(_PATH_INDEX)
            if fresh:
                self.set_key_version(KEY_VERSION)
            self._failed_keys()
        except sqlite3.DatabaseError as error:
            self._db.close()
            if is_corruption(error):
                raise CorruptState(self.path, str(error)) from None
            raise

    @_serialized
    def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._db.close()

    def _lookup(self, sql: str, parameters: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of a query, read on the lookup connection (what is committed)."""
        if self.read_only:
            with self._lock:
                return self._db.execute(sql, parameters).fetchone()
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                self._reader.execute("PRAGMA query_only=ON")
            return self._reader.execute(sql, parameters).fetchone()

    # --- the rules the keys were computed with ---------------------------------------------

    @_serialized
    def key_version(self) -> int:
        """The KEY_VERSION the stored keys follow (1: archives from before it was recorded)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'key_version'").fetchone()
        return int(row[0]) if row else 1

    @_serialized
    def set_key_version(self, version: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('key_version', ?)", (str(version),)
        )

    @_serialized
    def has_story_keys(self) -> bool:
        return self._db.execute("SELECT 1 FROM story_keys LIMIT 1").fetchone() is not None

    # --- dedup keys -------------------------------------------------------------------------

    def knows(self, title_key: str | None = None, url_key: str | None = None) -> str | None:
        """Which of the given keys the archive already holds (committed): 'title', 'url' or
        None."""
        if title_key is None or url_key is None:
            kind, key = ("url", url_key) if title_key is None else ("title", title_key)
            if key is None:
                return None
            found = self._lookup("SELECT 1 FROM story_keys WHERE kind = ? AND key = ?", (kind, key))
            return kind if found else None
        # Both keys in one statement (two primary-key probes): the URL's match is the answer
        # when both are there, as FORMAT.md's dedup rules read the URL first.
        row = self._lookup(
            "SELECT max(kind = 'url') FROM story_keys WHERE (kind = 'url' AND key = ?)"
            " OR (kind = 'title' AND key = ?)",
            (url_key, title_key),
        )
        return None if row is None or row[0] is None else ("url" if row[0] else "title")

    @_serialized
    def story_keys(self) -> list[tuple[str, str, str]]:
        """Every ``(kind, key, path)`` recorded."""
        return self._db.execute("SELECT kind, key, path FROM story_keys").fetchall()

    @_serialized
    def post_count(self) -> int:
        """How many posts have keys recorded."""
        return int(self._db.execute("SELECT COUNT(DISTINCT path) FROM story_keys").fetchone()[0])

    @_serialized
    def keyed_paths_in(self, month: str) -> set[str]:
        """The posts of the folder ``month`` (``YYYY/MM``) that have keys recorded."""
        # Every path of the folder sorts between "YYYY/MM/" and "YYYY/MM0" ("0" follows "/").
        rows = self._db.execute(
            "SELECT DISTINCT path FROM story_keys WHERE path >= ? AND path < ?",
            (f"{month}/", f"{month}0"),
        )
        return {row[0] for row in rows}

    def remember(self, path: str, title_key: str, url_key: str | None) -> int:
        """Record a written post's keys in one transaction; how many were not recorded yet."""
        return self.remember_many([(path, title_key, url_key)])[0]

    @_serialized
    def remember_many(self, posts: list[tuple[str, str, str | None]]) -> list[int]:
        """:meth:`remember` for several ``(path, title_key, url_key)`` in one transaction;
        for each, how many of its keys were not recorded yet."""
        now = _now()
        added: list[int] = []
        with self._transaction():
            for path, title_key, url_key in posts:
                rows = [("title", title_key, path, now)]
                if url_key is not None:
                    rows.append(("url", url_key, path, now))
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO story_keys (kind, key, path, archived_at)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
                added.append(self._db.total_changes - before)
        return added

    @_serialized
    def replace_story_keys(self, rows: list[tuple[str, str, str]], key_version: int) -> None:
        """Replace every dedup key with ``(kind, key, path)`` rows, in one transaction."""
        now = _now()
        with self._transaction():
            self._db.execute("DELETE FROM story_keys")
            self._db.executemany(
                "INSERT OR IGNORE INTO story_keys (kind, key, path, archived_at)"
                " VALUES (?, ?, ?, ?)",
                [(kind, key, path, now) for kind, key, path in rows],
            )
            self.set_key_version(key_version)

    # --- article pages that failed ------------------------------------------------------------

    def in_failure_backoff(
        self, url_key: str, backoff: timedelta, now: datetime | None = None
    ) -> bool:
        """True while an article page that failed should not be asked for again.

        It waits ``backoff`` after its first failure, twice that after the second, and so
        on, up to MAX_FAILURE_BACKOFF.
        """
        if url_key not in self._failed_keys():
            return False
        row = self._lookup(
            "SELECT attempts, failed_at FROM fetch_failures WHERE url_key = ?", (url_key,)
        )
        if not row:
            return False
        attempts, failed_at = row
        return in_backoff(attempts, datetime.fromisoformat(failed_at), backoff, now)

    @_serialized
    def record_failure(self, url_key: str, reason: str, now: datetime | None = None) -> None:
        """Remember that an article page failed (once more)."""
        self._db.execute(
            "INSERT INTO fetch_failures (url_key, reason, attempts, failed_at)"
            " VALUES (?, ?, 1, ?) ON CONFLICT (url_key) DO UPDATE SET"
            " reason = excluded.reason, attempts = attempts + 1, failed_at = excluded.failed_at",
            (url_key, reason, (now or datetime.now(UTC)).isoformat()),
        )
        self._failed_keys().add(url_key)

    def forget_failure(self, url_key: str) -> None:
        """A page that had failed came back whole. Asked for every article page: the lock
        (which the writer thread holds through each batch's transaction) only when there is
        a failure to forget, so that the crawl's thread never waits for a batch of posts."""
        failed = self._failed_keys()
        if url_key in failed:
            with self._lock:
                self._db.execute("DELETE FROM fetch_failures WHERE url_key = ?", (url_key,))
            failed.discard(url_key)

    def has_failures(self) -> bool:
        """Whether any page's failure is remembered (without the lock, as forget_failure)."""
        return bool(self._failed_keys())

    def _failed_keys(self) -> set[str]:
        # Read when the state opens (a writable one: before any writer-thread transaction,
        # which holds the lock); after that, the crawl thread never takes the lock for it.
        failed = self._failed
        if failed is None:
            with self._lock:
                if self._failed is None:
                    rows = self._db.execute("SELECT url_key FROM fetch_failures").fetchall()
                    self._failed = {url_key for (url_key,) in rows}
                failed = self._failed
        return failed

    # --- feeds' conditional GET ---------------------------------------------------------------

    @_serialized
    def feed_validators(self, feed_url: str) -> tuple[str | None, str | None]:
        """The ETag and Last-Modified of a feed's last fully processed response."""
        row = self._db.execute(
            "SELECT etag, last_modified FROM feed_validators WHERE feed_url = ?", (feed_url,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    @_serialized
    def save_feed_validators(
        self, feed_url: str, etag: str | None, last_modified: str | None
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO feed_validators (feed_url, etag, last_modified, saved_at)"
            " VALUES (?, ?, ?, ?)",
            (feed_url, etag, last_modified, _now()),
        )

    # --- sources' recent history (drift) ------------------------------------------------------

    @_serialized
    def empty_runs(self, name: str) -> int:
        row = self._db.execute(
            "SELECT empty_runs FROM source_runs WHERE name = ?", (name,)
        ).fetchone()
        return int(row[0]) if row else 0

    @_serialized
    def set_empty_runs(self, name: str, count: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO source_runs (name, empty_runs, updated_at) VALUES (?, ?, ?)",
            (name, count, _now()),
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _prepare(path: Path) -> bool:
    """Make ready for SQLite to open ``path``: refuse a symlink at it or at its companions
    (``-wal``, ``-shm``, ``-journal``), create it owner-only when it is missing. True when the
    state is new (missing, or empty without a ``-wal``)."""
    _refuse_symlinked_companions(path)
    fd = open_file(path, os.O_RDWR | os.O_CREAT, STATE_MODE)
    try:
        empty = os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    wal = path.with_name(path.name + "-wal")
    return empty and not (wal.exists() and wal.stat().st_size > 0)


def _refuse_symlinked_companions(path: Path) -> None:
    for suffix in COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            info = companion.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise SymlinkRefused(companion)


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that reads ``path`` and never writes next to it.

    ``mode=ro`` alone would still create (and leave) ``-wal``/``-shm`` files of a WAL
    database; ``immutable=1`` creates nothing and takes no SQLite locks, which is safe while
    the archive's lock keeps writers out. An immutable connection ignores a ``-wal`` left
    behind by a run that was killed, so such a state is read from a copy outside the archive
    (where SQLite replays the WAL) into memory. A missing state is an empty one, in memory.
    Tables an older state lacks are empty temporary tables.
    """
    try:
        state_fd = open_file(path, os.O_RDONLY)
    except FileNotFoundError:
        db = sqlite3.connect(":memory:", isolation_level=None)
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO meta (name, value) VALUES ('key_version', ?)", (str(KEY_VERSION),))
        return db
    with os.fdopen(state_fd, "rb") as state_file:
        _refuse_symlinked_companions(path)
        wal = path.with_name(path.name + "-wal")
        try:
            wal_file = os.fdopen(open_file(wal, os.O_RDONLY), "rb")
        except FileNotFoundError:
            wal_file = None
        if wal_file is not None and os.fstat(wal_file.fileno()).st_size > 0:
            db = sqlite3.connect(":memory:", isolation_level=None)
            with wal_file, tempfile.TemporaryDirectory(prefix="technews-state-") as folder:
                copy = Path(folder) / path.name
                _copy(state_file, copy)
                _copy(wal_file, copy.with_name(wal.name))
                source = sqlite3.connect(copy)
                try:
                    source.backup(db)
                finally:
                    source.close()
        else:
            if wal_file is not None:
                wal_file.close()
            # The folder resolved, not the file: a symlink there was refused above.
            uri = f"{(path.parent.resolve() / path.name).as_uri()}?mode=ro&immutable=1"
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
    db.execute("PRAGMA temp_store=MEMORY")
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for name, statement in _TABLES.items():
        if name not in present:
            db.execute(statement.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE", 1))
    return db


def _copy(source: BinaryIO, target: Path) -> None:
    with open(target, "wb") as copy:
        shutil.copyfileobj(source, copy)


# Each CREATE TABLE statement of the schema, by table name.
_TABLES = {
    statement.split()[5]: statement
    for statement in (part.strip() for part in _SCHEMA.split(";"))
    if statement
}
