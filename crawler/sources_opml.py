"""Between OPML and the sources file: feeds become ``[[source]]`` tables, feed sources outlines.

How an OPML feed becomes a source (the three categories of docs/FORMAT.md):

- topic: the outermost folder (``Feeds`` for a feed outside any folder);
- source: the feed's title (else its host); the author is the same;
- channel: the innermost folder below the topic, else ``All``.

An OPML 2.0 ``category`` attribute of the form ``/topic/source/channel`` (what
:func:`export_outlines` writes) wins over the folders, so a round trip keeps all three. The
name is a slug of the title (else of the host), made unique with ``-2``, ``-3``, ….

A feed is skipped, with its reason, when its canonical URL (crawler/post/keys.py) is already
in the sources file or earlier in the OPML, when its table fails the sources file's own checks
(crawler/sources.py), or when it points at a loopback, private or link-local address (an OPML
file usually comes from elsewhere; ``allow_private`` lets it in).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from crawler.opml import OpmlFeed, Outline, category_path
from crawler.post.keys import url_key
from crawler.sources import Source, SourcesError, load_sources, parse_source

MAX_NAME = 40
DEFAULT_TOPIC = "Feeds"
DEFAULT_CHANNEL = "All"


@dataclass(frozen=True)
class Skipped:
    feed: OpmlFeed
    reason: str

    def describe(self) -> str:
        return f"{self.feed.title or '(untitled)'} <{self.feed.url}>: {self.reason}"


@dataclass
class ImportPlan:
    """The tables to add (each checked by crawler/sources.py), and the feeds skipped."""

    tables: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[Skipped] = field(default_factory=list)
    refused: list[Skipped] = field(default_factory=list)


def plan_import(
    feeds: Iterable[OpmlFeed],
    existing: list[Source],
    rsshub_base: str,
    *,
    allow_private: bool = False,
) -> ImportPlan:
    """What importing ``feeds`` into a sources file holding ``existing`` adds and skips."""
    plan = ImportPlan()
    known: dict[str, str] = {}  # canonical feed URL -> the source that has it
    for source in existing:
        if source.is_feed:
            key = url_key(source.feed_url(rsshub_base))
            if key is not None:
                known.setdefault(key, f"already in the sources file as {source.name!r}")
    names = {source.name for source in existing}
    for feed in feeds:
        key = url_key(feed.url)
        if key is not None and key in known:
            plan.duplicates.append(Skipped(feed, known[key]))
            continue
        table = source_table(feed, names)
        try:
            parse_source(table, where="OPML")
        except SourcesError as error:
            plan.refused.append(Skipped(feed, str(error).split(": ", 2)[-1]))
            continue
        if key is None:  # parse_source accepts only http(s) URLs: a canonical form exists
            plan.refused.append(Skipped(feed, "not an http(s) URL"))
            continue
        if not allow_private and is_internal_host(urlsplit(feed.url).hostname or ""):
            plan.refused.append(Skipped(feed, "an internal address (--allow-private imports it)"))
            continue
        known[key] = f"twice in the OPML (as {table['name']!r})"
        names.add(table["name"])
        plan.tables.append(table)
    return plan


def source_table(feed: OpmlFeed, taken: set[str]) -> dict[str, Any]:
    """The ``[[source]]`` table of one feed, named apart from ``taken``."""
    try:
        host = urlsplit(feed.url).hostname or ""
    except ValueError:  # a bad IPv6 literal, say: parse_source says what is wrong
        host = ""
    title = feed.title or host.removeprefix("www.") or DEFAULT_TOPIC
    categories = category_path(feed.category)
    if categories is None:
        topic = feed.folders[0] if feed.folders else DEFAULT_TOPIC
        channel = feed.folders[-1] if len(feed.folders) > 1 else DEFAULT_CHANNEL
        categories = (topic, title, channel)
    return {
        "name": unique_name(source_name(feed.title, host), taken),
        "url": feed.url,
        "categories": list(categories),
        "author": title,
    }


# Host labels that say nothing about the site.
_HOST_PREFIXES = ("www", "feeds", "feed", "rss", "blog")


def source_name(title: str, host: str) -> str:
    """A slug of the title when it is written in ASCII letters (accents aside), else of the
    host without ``www.``-like prefixes and its top-level domain (``IT之家`` at
    ``www.ithome.com`` is ``ithome``)."""
    if slug(title) and all(slug(char) or not char.isalnum() for char in title):
        return slug(title)
    labels = host.split(".")
    if not _is_ip(host):
        labels = labels[:-1] if len(labels) > 1 else labels
        while len(labels) > 1 and labels[0] in _HOST_PREFIXES:
            labels = labels[1:]
    return slug("-".join(labels)) or slug(title) or "feed"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def slug(text: str) -> str:
    """Lower-case ASCII letters and digits, other runs as ``-`` (accents dropped)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:MAX_NAME].strip("-")


def unique_name(base: str, taken: set[str]) -> str:
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def is_internal_host(host: str) -> bool:
    """``localhost`` or an IP literal that is not a public address (loopback, private,
    link-local: cloud metadata, …). Names are not resolved: the harvest checks what content
    links to, but a source is fetched as configured."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def render_tables(tables: list[dict[str, Any]]) -> str:
    """The tables as TOML (tomli-w escapes every value), under a comment saying where they
    came from."""
    day = datetime.now(UTC).date().isoformat()
    return f"# imported from OPML on {day}\n" + tomli_w.dumps({"source": tables})


def export_outlines(sources: Iterable[Source], rsshub_base: str) -> list[Outline]:
    """Every feed source (disabled ones too: OPML has no such flag) as an outline."""
    return [
        Outline(
            url=source.feed_url(rsshub_base),
            title=source.categories[1] if len(source.categories) > 1 else source.name,
            categories=source.categories,
        )
        for source in sources
        if source.is_feed
    ]


def append_to_sources_file(path: Path, tables: list[dict[str, Any]]) -> None:
    """Append the tables to the sources file ``path`` (created if missing), atomically: the
    new file is written beside it, checked whole by :func:`load_sources`, then renamed over
    it. A symlink at ``path`` is refused (OSError ELOOP), a bad result is a SourcesError and
    leaves the file as it was."""
    old = b""
    mode: int | None = None  # a new file: 0o644 less the umask
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        pass
    else:
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SourcesError(f"{path}: not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            old = handle.read()
    separator = (
        b"" if not old or old.endswith(b"\n\n") else b"\n" if old.endswith(b"\n") else b"\n\n"
    )
    data = old + separator + render_tables(tables).encode("utf-8")

    def check(temporary: Path) -> None:
        try:
            load_sources(temporary)
        except SourcesError as error:  # named after the file, not its temporary
            raise SourcesError(str(error).replace(str(temporary), str(path))) from None

    write_atomically(path, data, mode, check=check)


def write_atomically(
    path: Path,
    data: bytes,
    mode: int | None = None,
    *,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Replace ``path`` with ``data``: a temporary file with a random name beside it
    (``O_EXCL|O_NOFOLLOW``), fsync, ``check(temporary)`` if given, rename, fsync the folder.
    ``mode``: the existing file's, kept; None for a new file (0o644 less the umask). A symlink
    at ``path`` is refused (it would be replaced, not followed)."""
    if path.is_symlink():
        raise OSError(errno.ELOOP, "refusing to replace a symlink", str(path))
    folder = path.parent
    temporary = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(temporary, flags, 0o644 if mode is None else mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode is not None:  # the umask must not narrow an existing file's mode
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if check is not None:
            check(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
