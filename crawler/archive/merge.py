"""Merge several archive folders (one per worker machine) into one, without duplicates.

Sources are read in the order given, each one's posts in path order; the archive ``out``
comes first of all (what it holds already is never replaced). A post is copied under the
path it has in its source (``YYYY/MM/….md``) unless its story is already there: the same
title key (title + UTC day, from its front matter) or the same URL key (from the
``url``/``canonical_url`` its source's ``.index.jsonl`` lists), both computed by today's rules
(crawler/post/keys.py, as ``reindex`` does). The first source that has a story wins.

Each post is written atomically and never over an existing file (``write_atomically``), its
source's index line carried over (appended to ``out``'s index), then ``out``'s
``.index.jsonl`` and ``.state.sqlite3`` story keys are rebuilt by ``reindex`` — only when
something was copied or they do not match the posts, so a merge that has nothing to do
changes nothing (idempotent: run it twice, or from cron, and ``out`` stays byte for byte the
same). Archived images (``images/<2 hex>/<sha256>.<ext>``, named by their bytes) are copied
when missing.

Not merged: the sources' feed validators, failure memory, empty-run counts and ``.runs.jsonl``
(``out`` keeps its own; a harvest into ``out`` fetches feeds once more in full).

Symlinks are never followed, in a source or in ``out``: a symlinked post, year or month
folder, image or index is reported (``problems``) and skipped. ``out`` is locked exclusively
(:class:`~crawler.archive.lock.ArchiveLock`) and every source shared, by the caller.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from crawler.archive.files import (
    open_folder,
    post_entries,
    read_post,
    resolve_inside,
    write_atomically,
)
from crawler.archive.index import INDEX_FILE, append_index, read_index
from crawler.archive.reindex import _canonical_url, _first_line, reindex
from crawler.archive.state import KEY_VERSION, ArchiveState, CorruptState
from crawler.post.images import ARCHIVED_NAME, IMAGES_FOLDER
from crawler.post.keys import title_key

logger = logging.getLogger(__name__)


@dataclass
class MergeResult:
    copied: int = 0  # posts written into out
    duplicates: int = 0  # posts skipped: their story (title or URL key) was already there
    images: int = 0  # image files copied
    unreadable: int = 0  # files (or sources) that could not be read or written
    posts: int = 0  # posts in out after the merge
    reindexed: bool = False  # whether out's index and state were rebuilt
    # One line per unreadable file or failed write: "<path>: <reason>".
    problems: list[str] = field(default_factory=list)

    def problem(self, path: Path | str, reason: str) -> None:
        self.unreadable += 1
        self.problems.append(f"{path}: {reason}")
        logger.warning("merge: %s: %s; skipped", path, reason)


@dataclass(frozen=True)
class _Post:
    relpath: str
    data: bytes
    title_key: str
    url_key: str | None
    entry: dict[str, Any]  # the post's line in its archive's index ({} when it has none)


def merge(sources: Sequence[Path], out: Path) -> MergeResult:
    """Copy the posts of ``sources`` (archive folders, in order) missing from ``out``."""
    result = MergeResult()
    out = out.resolve()
    titles: set[str] = set()
    urls: set[str] = set()
    present: dict[str, _Post] = {}
    out_index = read_index(out)  # unreadable (a symlink): an OSError, nothing is done
    for post in _posts(out, out_index, result):
        present[post.relpath] = post
        titles.add(post.title_key)
        if post.url_key:
            urls.add(post.url_key)
    for source in sources:
        source = source.resolve()
        if source == out:
            continue  # its posts are out's own
        index = _index(source, result)
        if index is None:
            continue  # without its index, its URL keys are unknown: the source is skipped
        for post in _posts(source, index, result):
            if post.title_key in titles or (post.url_key and post.url_key in urls):
                result.duplicates += 1
                continue
            try:
                written = write_atomically(resolve_inside(out, post.relpath), post.data, root=out)
            except (OSError, ValueError) as error:
                result.problem(out / post.relpath, f"not written ({_reason(error)})")
                continue
            if not written:  # a post of that name is there: the same story's
                result.duplicates += 1
                continue
            if post.entry:
                append_index(out, {**post.entry, "path": post.relpath})
            result.copied += 1
            present[post.relpath] = post
            titles.add(post.title_key)
            if post.url_key:
                urls.add(post.url_key)
        result.images += _copy_images(source, out, result)
    result.posts = len(present)
    if result.copied or not _consistent(out, out_index, present):
        rebuilt = reindex(out)
        result.reindexed = True
        result.posts = rebuilt.posts
        if rebuilt.moved_aside is not None:
            logger.warning("merge: %s was not a database; moved aside", rebuilt.moved_aside)
    return result


def _index(folder: Path, result: MergeResult) -> dict[str, dict[str, Any]] | None:
    try:
        return read_index(folder)
    except OSError as error:
        result.problem(folder / INDEX_FILE, f"unreadable ({_reason(error)}); archive skipped")
        return None


def _posts(folder: Path, index: dict[str, dict[str, Any]], result: MergeResult) -> Iterator[_Post]:
    """The readable posts of an archive, with their keys (as ``reindex`` computes them)."""
    for relpath, problem in post_entries(folder):
        if problem is not None:
            result.problem(folder / relpath, problem)
            continue
        try:
            data = read_post(folder, relpath)
        except OSError as error:
            result.problem(folder / relpath, f"unreadable ({_reason(error)})")
            continue
        try:
            post = frontmatter.loads(data.decode("utf-8"))
            published = parsedate_to_datetime(str(post["date"]))
            key = title_key(str(post["title"]), published)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
            result.problem(folder / relpath, f"not a readable post ({_first_line(error)})")
            continue
        entry = index.get(relpath, {})
        yield _Post(relpath, data, key, _canonical_url(entry), entry)


def _consistent(out: Path, index: dict[str, dict[str, Any]], posts: dict[str, _Post]) -> bool:
    """Whether ``out``'s index lists exactly its posts (by their bytes) and its state holds
    every key of them, by today's rules: then a rebuild would change nothing that matters."""
    if set(index) != set(posts):
        return False
    for relpath, post in posts.items():
        entry = index[relpath]
        if entry.get("sha256") != hashlib.sha256(post.data).hexdigest():
            return False
        if entry.get("canonical_url") != post.url_key:
            return False
    try:
        state = ArchiveState(out, read_only=True)
    except (CorruptState, OSError):
        return False
    try:
        if state.key_version() != KEY_VERSION or state.post_count() != len(posts):
            return False
        for post in posts.values():
            if state.knows(title_key=post.title_key) is None:
                return False
            if post.url_key and state.knows(url_key=post.url_key) is None:
                return False
    finally:
        state.close()
    return True


def _copy_images(source: Path, out: Path, result: MergeResult) -> int:
    """Copy ``images/<2 hex>/<name>`` files of ``source`` that ``out`` lacks; how many."""
    copied = 0
    for relpath in _image_entries(source, result):
        try:
            data = read_post(source, relpath)
        except OSError as error:
            result.problem(source / relpath, f"unreadable ({_reason(error)})")
            continue
        try:
            copied += write_atomically(resolve_inside(out, relpath), data, root=out)
        except (OSError, ValueError) as error:
            result.problem(out / relpath, f"not written ({_reason(error)})")
    return copied


def _image_entries(source: Path, result: MergeResult) -> list[str]:
    """``images/…`` files of an archive, sorted; symlinks and non-files reported."""
    try:
        folder = open_folder(source, [IMAGES_FOLDER])
    except FileNotFoundError:
        return []
    except OSError as error:
        result.problem(source / IMAGES_FOLDER, _reason(error))
        return []
    found: list[str] = []
    try:
        with os.scandir(folder) as buckets:
            names = sorted(entry.name for entry in buckets if _is_bucket(entry.name))
        for bucket in names:
            path = f"{IMAGES_FOLDER}/{bucket}"
            try:
                sub = open_folder(source, [IMAGES_FOLDER, bucket])
            except OSError as error:
                result.problem(source / path, _reason(error))
                continue
            try:
                with os.scandir(sub) as files:
                    for entry in sorted(files, key=lambda e: e.name):
                        if entry.name.startswith("."):
                            continue  # a temporary file of a write in progress
                        relpath = f"{path}/{entry.name}"
                        if not ARCHIVED_NAME.fullmatch(f"{bucket}/{entry.name}"):
                            continue  # not an archived image's name
                        if not entry.is_file(follow_symlinks=False):
                            result.problem(source / relpath, "not a regular file (a symlink?)")
                            continue
                        found.append(relpath)
            finally:
                os.close(sub)
    finally:
        os.close(folder)
    return found


def _is_bucket(name: str) -> bool:
    return len(name) == 2 and all(char in "0123456789abcdef" for char in name)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return _first_line(error)
