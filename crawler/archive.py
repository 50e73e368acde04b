"""The archive on disk: where posts go, how they are written, and the state it carries.

An archive is one folder (``OUTPUT_DIR``). Posts live in ``YYYY/MM/``; every other file the
project keeps there is hidden. ``.state.sqlite3`` holds the dedup keys of every archived story,
so an archive carries its own memory and a fresh folder starts clean.
"""

from __future__ import annotations

import os
import sqlite3
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

STATE_FILE = ".state.sqlite3"
MAX_NAME_BYTES = 120

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
"""
# A failed article page waits this long before it is asked for again, doubled with every
# further failure, up to MAX_FAILURE_BACKOFF.
MAX_FAILURE_BACKOFF = timedelta(days=7)


class ArchiveState:
    """The dedup keys of an archive, in ``OUTPUT_DIR/.state.sqlite3``.

    Each user (a spider asking before a request, the dedup pipeline, the write pipeline) opens
    its own connection; SQLite's WAL mode lets them read while one writes.
    """

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / STATE_FILE
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def knows(self, title_key: str | None = None, url_key: str | None = None) -> str | None:
        """Which of the given keys the archive already holds: 'title', 'url' or None."""
        for kind, key in (("url", url_key), ("title", title_key)):
            if key is None:
                continue
            row = self._db.execute(
                "SELECT 1 FROM story_keys WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            if row:
                return kind
        return None

    def in_failure_backoff(
        self, url_key: str, backoff: timedelta, now: datetime | None = None
    ) -> bool:
        """True while an article page that failed should not be asked for again.

        It waits ``backoff`` after its first failure, twice that after the second, and so
        on, up to MAX_FAILURE_BACKOFF.
        """
        row = self._db.execute(
            "SELECT attempts, failed_at FROM fetch_failures WHERE url_key = ?", (url_key,)
        ).fetchone()
        if not row:
            return False
        attempts, failed_at = row
        wait = min(backoff * 2 ** min(attempts - 1, 20), MAX_FAILURE_BACKOFF)
        return datetime.fromisoformat(failed_at) + wait > (now or datetime.now(UTC))

    def record_failure(self, url_key: str, reason: str, now: datetime | None = None) -> None:
        """Remember that an article page failed (once more)."""
        self._db.execute(
            "INSERT INTO fetch_failures (url_key, reason, attempts, failed_at)"
            " VALUES (?, ?, 1, ?) ON CONFLICT (url_key) DO UPDATE SET"
            " reason = excluded.reason, attempts = attempts + 1, failed_at = excluded.failed_at",
            (url_key, reason, (now or datetime.now(UTC)).isoformat()),
        )

    def forget_failure(self, url_key: str) -> None:
        self._db.execute("DELETE FROM fetch_failures WHERE url_key = ?", (url_key,))

    def feed_validators(self, feed_url: str) -> tuple[str | None, str | None]:
        """The ETag and Last-Modified of a feed's last fully processed response."""
        row = self._db.execute(
            "SELECT etag, last_modified FROM feed_validators WHERE feed_url = ?", (feed_url,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def save_feed_validators(
        self, feed_url: str, etag: str | None, last_modified: str | None
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO feed_validators (feed_url, etag, last_modified, saved_at)"
            " VALUES (?, ?, ?, ?)",
            (feed_url, etag, last_modified, datetime.now(UTC).isoformat(timespec="seconds")),
        )

    def remember(self, path: str, title_key: str, url_key: str | None) -> None:
        """Record a written post's keys in one transaction."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        rows = [("title", title_key, path, now)]
        if url_key is not None:
            rows.append(("url", url_key, path, now))
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO story_keys (kind, key, path, archived_at)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def replace_story_keys(self, rows: list[tuple[str, str, str]]) -> None:
        """Replace every dedup key with ``(kind, key, path)`` rows, in one transaction."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._transaction():
            self._db.execute("DELETE FROM story_keys")
            self._db.executemany(
                "INSERT OR IGNORE INTO story_keys (kind, key, path, archived_at)"
                " VALUES (?, ?, ?, ?)",
                [(kind, key, path, now) for kind, key, path in rows],
            )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def slugify(title: str, max_bytes: int) -> str:
    """Letters, digits and marks of any script kept, every other run of characters one ``-``.

    Cut on a character boundary so that the UTF-8 form is at most ``max_bytes`` long.
    """
    pieces: list[str] = []
    for char in unicodedata.normalize("NFC", title):
        if unicodedata.category(char)[0] in "LNM":
            pieces.append(char)
        elif pieces and pieces[-1] != "-":
            pieces.append("-")
    slug = "".join(pieces).strip("-")
    encoded = slug.encode("utf-8")
    if len(encoded) > max_bytes:
        slug = encoded[:max_bytes].decode("utf-8", errors="ignore").strip("-")
    return slug


def post_relpath(title: str, published: datetime, digest: str) -> str:
    """``YYYY/MM/YYYY-MM-DD-<slug>-<digest>.md`` (UTC date), the name at most 120 bytes."""
    day = published.astimezone(UTC).date()
    prefix = f"{day.isoformat()}-"
    suffix = f"-{digest}.md"
    slug = slugify(title, MAX_NAME_BYTES - len(prefix) - len(suffix))
    name = f"{prefix}{slug}{suffix}" if slug else f"{day.isoformat()}{suffix}"
    return f"{day:%Y}/{day:%m}/{name}"


def resolve_inside(output_dir: Path, relpath: str) -> Path:
    """The absolute path of ``relpath`` in the archive; refuses anything that would leave it."""
    root = output_dir.resolve()
    target = (root / relpath).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ValueError(f"refusing to write outside the archive: {relpath!r}")
    return target


def write_atomically(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` through a hidden temporary file, fsync and rename.

    Never replaces an existing post: returns False (and writes nothing) when ``target`` is
    already there. A crash leaves at most a ``.<name>.tmp`` file, never a half-written post.
    """
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return True


def append_line(path: Path, line: bytes) -> None:
    """Append one line in a single O_APPEND write, so lines of concurrent writers never mix."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
