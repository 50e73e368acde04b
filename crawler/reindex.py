"""Rebuild an archive's state and index from its post files.

An archive whose ``.state.sqlite3`` was deleted, or that was copied elsewhere, gets its dedup
keys back: title and day from every post's front matter, canonical URLs from ``.index.jsonl``
where it lists the post. The index is rewritten to match the files (sha256 recomputed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import frontmatter

from crawler.archive import ArchiveState
from crawler.index import index_entry, read_index, rewrite_index
from crawler.keys import title_key

logger = logging.getLogger(__name__)


@dataclass
class ReindexResult:
    posts: int = 0
    url_keys: int = 0
    unreadable: int = 0


def reindex(output_dir: Path) -> ReindexResult:
    """Rebuild ``story_keys`` and ``.index.jsonl`` from the posts of ``output_dir``."""
    result = ReindexResult()
    old_index = read_index(output_dir)
    keys: list[tuple[str, str, str]] = []
    entries: list[dict[str, Any]] = []
    for path in sorted(output_dir.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/*.md")):
        if path.name.startswith("."):
            continue
        relpath = path.relative_to(output_dir).as_posix()
        data = path.read_bytes()
        try:
            post = frontmatter.loads(data.decode("utf-8"))
            title = str(post["title"])
            date = str(post["date"])
            published = parsedate_to_datetime(date)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            result.unreadable += 1
            logger.warning("reindex: %s is not a readable post (%s); skipped", relpath, error)
            continue
        old = old_index.get(relpath, {})
        canonical_url = (
            old.get("canonical_url") if isinstance(old.get("canonical_url"), str) else None
        )
        keys.append(("title", title_key(title, published), relpath))
        if canonical_url:
            keys.append(("url", canonical_url, relpath))
            result.url_keys += 1
        categories = post.get("categories")
        entries.append(
            index_entry(
                path=relpath,
                title=title,
                date=date,
                url=old.get("url"),
                canonical_url=canonical_url,
                source=old.get("source"),
                categories=[str(c) for c in categories] if isinstance(categories, list) else [],
                data=data,
            )
        )
        result.posts += 1
    state = ArchiveState(output_dir)
    try:
        state.replace_story_keys(keys)
    finally:
        state.close()
    rewrite_index(output_dir, entries)
    return result
