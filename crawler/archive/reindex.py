"""Rebuild an archive's state and index from its post files.

An archive whose ``.state.sqlite3`` was deleted, or that was copied elsewhere, gets its dedup
keys back: title and day from every post's front matter, canonical URLs from the ``url`` that
``.index.jsonl`` lists for the post. Keys are computed by today's rules (crawler/post/keys.py),
so this also migrates an archive after a key change. The index is rewritten to match the files
(sha256 recomputed).

A state that is not a database (:class:`~crawler.archive.state.CorruptState`) is moved aside as
``.state.sqlite3.corrupt-<UTC time>`` and rebuilt; its feed validators, failure memory and
empty-run counts are lost (the next run fetches everything once more). What cannot be read as
a post (bad front matter, a folder or a symlink named ``*.md``, a symlinked year or month
folder) is counted ``unreadable``, logged and left where it is; symlinks are never followed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from crawler.archive.files import open_folder, post_entries, read_post
from crawler.archive.index import index_entries, index_entry, rewrite_index
from crawler.archive.state import KEY_VERSION, STATE_FILE, ArchiveState, CorruptState
from crawler.post.keys import title_key, url_key

logger = logging.getLogger(__name__)


@dataclass
class ReindexResult:
    posts: int = 0
    url_keys: int = 0
    unreadable: int = 0
    # Where a corrupt state was moved (None: the state was fine).
    moved_aside: Path | None = None


def reindex(output_dir: Path, state: ArchiveState | None = None) -> ReindexResult:
    """Rebuild ``story_keys`` and ``.index.jsonl`` from the posts of ``output_dir``.

    ``state`` is an open connection to use (the archive service's); else one is opened, and
    a corrupt state is moved aside and rebuilt. Posts are read one at a time and their index
    lines streamed into the new index, so memory holds the keys, not the archive.
    """
    result = ReindexResult()
    own_state = None
    if state is None:
        try:
            state = own_state = ArchiveState(output_dir)
        except CorruptState as corrupt:
            result.moved_aside = move_aside(output_dir)
            logger.warning(
                "reindex: %s was not a database (%s); moved aside to %s, rebuilt",
                corrupt.path, corrupt.detail, result.moved_aside.name,
            )  # fmt: skip
            state = own_state = ArchiveState(output_dir)
    try:
        keys: list[tuple[str, str, str]] = []
        rewrite_index(output_dir, _index_entries(output_dir, keys, result))
        state.replace_story_keys(keys, KEY_VERSION)
    finally:
        if own_state is not None:
            own_state.close()
    return result


def _index_entries(
    output_dir: Path, keys: list[tuple[str, str, str]], result: ReindexResult
) -> Iterator[dict[str, Any]]:
    """The new index line of each readable post, its keys appended to ``keys``."""
    # Of the old index, only what the files do not say (where each post came from).
    old_index = {
        entry["path"]: {name: entry.get(name) for name in ("url", "canonical_url", "source")}
        for entry in index_entries(output_dir)
    }
    for relpath, problem in post_entries(output_dir):
        if problem is not None:
            _unreadable(result, relpath, problem)
            continue
        try:
            data = read_post(output_dir, relpath)
        except OSError as error:
            _unreadable(result, relpath, f"unreadable ({error.strerror})")
            continue
        try:
            post = frontmatter.loads(data.decode("utf-8"))
            title = str(post["title"])
            date = str(post["date"])
            published = parsedate_to_datetime(date)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
            _unreadable(result, relpath, f"not a readable post ({_first_line(error)})")
            continue
        old = old_index.get(relpath, {})
        canonical_url = _canonical_url(old)
        keys.append(("title", title_key(title, published), relpath))
        if canonical_url:
            keys.append(("url", canonical_url, relpath))
            result.url_keys += 1
        categories = post.get("categories")
        yield index_entry(
            path=relpath,
            title=title,
            date=date,
            url=old.get("url"),
            canonical_url=canonical_url,
            source=old.get("source"),
            categories=[str(c) for c in categories] if isinstance(categories, list) else [],
            data=data,
        )
        result.posts += 1


def move_aside(output_dir: Path) -> Path:
    """Rename ``.state.sqlite3`` (and its ``-wal``) to ``….corrupt-<UTC time>``, drop its
    ``-shm``; the new name of the state file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = open_folder(output_dir)
    try:
        tag = f"corrupt-{stamp}"
        number = 1
        while any(_exists(f"{STATE_FILE}{s}.{tag}", folder) for s in ("", "-wal")):
            number += 1
            tag = f"corrupt-{stamp}-{number}"
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(
                    f"{STATE_FILE}{suffix}", f"{STATE_FILE}{suffix}.{tag}",
                    src_dir_fd=folder, dst_dir_fd=folder,
                )  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{STATE_FILE}-shm", dir_fd=folder)
        os.fsync(folder)
    finally:
        os.close(folder)
    return output_dir / f"{STATE_FILE}.{tag}"


def _exists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _unreadable(result: ReindexResult, relpath: str, problem: object) -> None:
    result.unreadable += 1
    logger.warning("reindex: %s is %s; skipped", relpath, problem)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _canonical_url(entry: dict[str, Any]) -> str | None:
    """The URL key of an indexed post, by today's rules; None for a post without one."""
    if not isinstance(entry.get("canonical_url"), str):
        return None  # the post had no URL of its own (home page, shared link)
    if entry["canonical_url"].startswith("entry:"):
        return entry["canonical_url"]  # an entry's identity (guid), not a URL
    url = entry.get("url")
    return (url_key(url) if isinstance(url, str) else None) or entry["canonical_url"]
