"""``OUTPUT_DIR/.index.jsonl``: one JSON line per post, for downstream archives.

Each line: ``path`` (relative to the archive), ``title``, ``date`` (GMT, as in the post),
``url``, ``canonical_url`` (the URL dedup key, or null), ``source``, ``categories`` and
``sha256`` of the post file. Appended as each post is written; ``reindex`` rewrites it to
match the files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crawler.archive.files import append_line

INDEX_FILE = ".index.jsonl"


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
    append_line(output_dir / INDEX_FILE, _line(entry))


def read_index(output_dir: Path) -> dict[str, dict[str, Any]]:
    """The index's entries by path (the last line for a path wins; broken lines skipped)."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        lines = (output_dir / INDEX_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return entries
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            entries[entry["path"]] = entry
    return entries


def rewrite_index(output_dir: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Replace the index atomically (temporary file, fsync, rename)."""
    temporary = output_dir / f".{INDEX_FILE}.tmp"
    with open(temporary, "wb") as handle:
        for entry in entries:
            handle.write(_line(entry))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, output_dir / INDEX_FILE)
