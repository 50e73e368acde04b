"""Rebuild an archive's state and index from its post files.

An archive whose ``.state.sqlite3`` was deleted, or that was copied elsewhere, gets its dedup
keys back: title and day from every post's front matter, canonical URLs from the ``url`` that
``.index.jsonl`` lists for the post. Keys are computed by today's rules (crawler/post/keys.py),
so this also migrates an archive after a key change. The index is rewritten to match the files
(sha256 recomputed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import frontmatter

from crawler.archive.index import index_entry, read_index, rewrite_index
from crawler.archive.state import KEY_VERSION, ArchiveState
from crawler.post.keys import title_key, url_key

logger = logging.getLogger(__name__)


@dataclass
class ReindexResult:
    posts: int = 0
    url_keys: int = 0
    unreadable: int = 0


def reindex(output_dir: Path, state: ArchiveState | None = None) -> ReindexResult:
    """Rebuild ``story_keys`` and ``.index.jsonl`` from the posts of ``output_dir``.

    ``state`` is an open connection to use (the archive service's); else one is opened.
    """
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
        canonical_url = _canonical_url(old)
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
    if state is None:
        own_state = ArchiveState(output_dir)
        try:
            own_state.replace_story_keys(keys, KEY_VERSION)
        finally:
            own_state.close()
    else:
        state.replace_story_keys(keys, KEY_VERSION)
    rewrite_index(output_dir, entries)
    return result


def _canonical_url(entry: dict[str, Any]) -> str | None:
    """The URL key of an indexed post, by today's rules; None for a post without one."""
    if not isinstance(entry.get("canonical_url"), str):
        return None  # the post had no URL of its own (home page, shared link)
    url = entry.get("url")
    return (url_key(url) if isinstance(url, str) else None) or entry["canonical_url"]
