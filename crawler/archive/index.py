"""``OUTPUT_DIR/.index.jsonl``: one JSON line per post, for downstream archives.

Each line: ``path`` (relative to the archive), ``title``, ``date`` (GMT, as in the post),
``url``, ``canonical_url`` (the URL dedup key, or null), ``source``, ``categories`` and
``sha256`` of the post file. Appended as each post is written; ``reindex`` rewrites it to
match the files. Never opened through a symlink (crawler/archive/files.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from crawler.archive.files import (
    SymlinkRefused,
    append_line,
    open_file,
    open_folder,
    replace_in,
)

logger = logging.getLogger(__name__)

INDEX_FILE = ".index.jsonl"
# Broken lines named one by one in the log; the rest are counted.
MAX_WARNINGS = 20


def index_entry(
    *,
    path: str,
    title: str,
    date: str,
    url: str | None,
    canonical_url: str | None,
    source: str | None,
    categories: list[str],
    data: bytes,
) -> dict[str, Any]:
    return {
        "path": path,
        "title": title,
        "date": date,
        "url": url,
        "canonical_url": canonical_url,
        "source": source,
        "categories": categories,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def append_index(output_dir: Path, entry: dict[str, Any]) -> None:
    append_index_lines(output_dir, [entry])


def append_index_lines(output_dir: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Several index lines in one append (one write of whole lines)."""
    lines = b"".join(_line(entry) for entry in entries)
    if lines:
        append_line(output_dir / INDEX_FILE, lines)


def read_index(output_dir: Path) -> dict[str, dict[str, Any]]:
    """The index's entries by path (the last line for a path wins).

    A broken line (cut short by a crash, not UTF-8, not JSON, not an object with a ``path``)
    is skipped with a warning. A missing index is empty; one that is a symlink or not a
    regular file is an OSError.
    """
    return {entry["path"]: entry for entry in index_entries(output_dir)}


def indexed_paths(output_dir: Path) -> set[str]:
    """The paths the index lists: :func:`read_index` without holding every entry (a 100k-post
    index is some 150 MB of dicts, its paths 15 MB)."""
    return {entry["path"] for entry in index_entries(output_dir)}


def index_entries(output_dir: Path) -> Iterator[dict[str, Any]]:
    """The index's entries in file order, read line by line; broken lines skipped as in
    :func:`read_index`."""
    path = output_dir / INDEX_FILE
    try:
        fd = open_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    broken = 0
    with os.fdopen(fd, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            entry, problem = _parse(raw)
            if entry is not None:
                yield entry
                continue
            broken += 1
            if broken <= MAX_WARNINGS:
                logger.warning("%s line %d: %s, skipped", path, number, problem)
    if broken > MAX_WARNINGS:
        logger.warning("%s: %d more broken lines skipped", path, broken - MAX_WARNINGS)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """An index line's entry, or None and what is wrong with the line."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError:
        return None, "not JSON (cut short?)"
    if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
        return None, "not an index entry"
    return entry, ""


def rewrite_index(output_dir: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Replace the index atomically (temporary file of an unpredictable name, fsync, rename).

    An index that is a symlink is refused, not replaced.
    """
    folder = open_folder(output_dir)
    try:
        try:
            info = os.stat(INDEX_FILE, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISLNK(info.st_mode):
                raise SymlinkRefused(output_dir / INDEX_FILE)
        lines = (_line(entry) for entry in entries)
        replace_in(folder, INDEX_FILE, lines, output_dir / INDEX_FILE)
    finally:
        os.close(folder)
