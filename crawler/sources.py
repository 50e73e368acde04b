"""The sources file (``crawler/sources.toml``): one ``[[source]]`` table per feed or spider.

Loaded with :mod:`tomllib` and checked whole before any request is made: a mistake is one
:class:`SourcesError` naming the file, the source and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_SOURCES = Path(__file__).resolve().parent / "sources.toml"
KINDS = ("url", "rsshub", "spider")
REQUIRED = ("name", "categories", "author")
OPTIONAL = ("enabled", "full_text", "fallback_image", "timezone")
_SPIDER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourcesError(ValueError):
    """A sources file that cannot be used; the message names file, source and key."""


@dataclass(frozen=True)
class Source:
    name: str
    categories: tuple[str, ...]
    author: str
    url: str | None = None
    rsshub: str | None = None
    spider: str | None = None
    enabled: bool = True
    full_text: bool = False
    fallback_image: str | None = None
    timezone: str = "UTC"

    @property
    def is_feed(self) -> bool:
        return self.spider is None

    def feed_url(self, rsshub_base: str) -> str:
        """The address the feed is fetched from (an RSSHub route joined to ``rsshub_base``)."""
        if self.url:
            return self.url
        assert self.rsshub is not None, "a feed source has url or rsshub"
        return rsshub_base.rstrip("/") + self.rsshub

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_sources(path: str | Path = DEFAULT_SOURCES) -> list[Source]:
    """Every source of a sources file, checked; raises :class:`SourcesError`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SourcesError(f"{path}: cannot read the sources file ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SourcesError(f"{path}: not valid TOML ({error})") from None
    unknown_top = set(data) - {"source"}
    if unknown_top:
        raise SourcesError(f"{path}: unknown top-level key {sorted(unknown_top)[0]!r}")
    tables = data.get("source", [])
    if not isinstance(tables, list) or not tables:
        raise SourcesError(f"{path}: no [[source]] tables")
    sources: list[Source] = []
    names: set[str] = set()
    for index, table in enumerate(tables, start=1):
        source = parse_source(table, where=f"{path}: source #{index}")
        if source.name in names:
            raise SourcesError(f"{path}: source {source.name!r}: key 'name': used twice")
        names.add(source.name)
        sources.append(source)
    return sources


def parse_source(table: dict[str, Any], where: str = "source") -> Source:
    """One ``[[source]]`` table (or the ad-hoc source of ``-a url=``), checked."""
    name = table.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where.rsplit(': source #', 1)[0]}: source {name!r}"

    def fail(key: str, problem: str) -> SourcesError:
        return SourcesError(f"{where}: key {key!r}: {problem}")

    for key in table:
        if key not in REQUIRED + OPTIONAL + KINDS:
            raise fail(key, "unknown key")
    for key in REQUIRED:
        if key not in table:
            raise fail(key, "missing")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "must be a non-empty string")
    kinds = [kind for kind in KINDS if kind in table]
    if len(kinds) != 1:
        raise fail("url", "exactly one of 'url', 'rsshub' or 'spider' is needed")
    categories = table["categories"]
    if (
        not isinstance(categories, list)
        or not categories
        or not all(isinstance(c, str) and c.strip() for c in categories)
    ):
        raise fail("categories", "must be a non-empty array of non-empty strings")
    if not isinstance(table["author"], str) or not table["author"].strip():
        raise fail("author", "must be a non-empty string")
    for key in ("enabled", "full_text"):
        if key in table and not isinstance(table[key], bool):
            raise fail(key, "must be true or false")
    if "url" in table and not is_http_url(table["url"]):
        raise fail("url", f"not an http(s) URL: {table['url']!r}")
    if "fallback_image" in table and not is_http_url(table["fallback_image"]):
        raise fail("fallback_image", f"not an http(s) URL: {table['fallback_image']!r}")
    if "rsshub" in table and not (
        isinstance(table["rsshub"], str) and table["rsshub"].startswith("/")
    ):
        raise fail("rsshub", "must be a route starting with '/', e.g. '/oschina/news'")
    if "spider" in table and not (
        isinstance(table["spider"], str) and _SPIDER_NAME.match(table["spider"])
    ):
        raise fail("spider", "must be the name of a spider of this project, e.g. 'cnbeta'")
    timezone = table.get("timezone", "UTC")
    if not isinstance(timezone, str) or not _is_time_zone(timezone):
        raise fail("timezone", f"unknown time zone {timezone!r} (use an IANA name)")
    return Source(
        name=name.strip(),
        categories=tuple(c.strip() for c in categories),
        author=table["author"].strip(),
        url=table.get("url"),
        rsshub=table.get("rsshub"),
        spider=table.get("spider"),
        enabled=table.get("enabled", True),
        full_text=table.get("full_text", False),
        fallback_image=table.get("fallback_image"),
        timezone=timezone,
    )


def is_http_url(value: object) -> bool:
    """An absolute ``http://`` or ``https://`` URL with a host (loopback included)."""
    if not isinstance(value, str) or value != value.strip() or " " in value:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
