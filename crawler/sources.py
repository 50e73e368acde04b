"""The sources file (``crawler/sources.toml``): one ``[[source]]`` table per feed, site or spider.

Loaded with :mod:`tomllib` and checked whole before any request is made: a mistake is one
:class:`SourcesError` naming the file, the source and the key. A :class:`Source` is what the
harvest hands a spider; spiders never re-read the file.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cssselect import SelectorError
from parsel.csstranslator import HTMLTranslator

DEFAULT_SOURCES = Path(__file__).resolve().parent / "sources.toml"
# What a source reads; exactly one per table.
KINDS = ("url", "rsshub", "spider", "sitemap", "list")
REQUIRED = ("name", "categories", "author")
COMMON = ("enabled", "full_text", "fallback_image", "timezone", "base_url", "max_age_days")
# Page sources (sitemap, list): how to find links and read an article page.
LIST_KEYS = ("links", "next", "pages")
PAGE_RULES = ("title", "date", "body", "remove")
SPIDER_KEYS = ("args",)
# The generic spiders that read page sources, by kind.
PAGE_SPIDERS = {"sitemap": "sitemap", "list": "list"}
_SPIDER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_CSS = HTMLTranslator()


class SourcesError(ValueError):
    """A sources file that cannot be used; the message names file, source and key."""


@dataclass(frozen=True)
class PageRules:
    """Per-source CSS selectors for article pages (each optional, like Miniflux's rules).

    Without ``title``/``date``/``image``, the page's own metadata is read (JSON-LD, OpenGraph);
    without ``body``, trafilatura extracts the article. ``remove`` drops widgets from the body.
    """

    title: str | None = None
    date: str | None = None
    body: str | None = None
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    name: str
    categories: tuple[str, ...]
    author: str
    url: str | None = None
    rsshub: str | None = None
    spider: str | None = None
    sitemap: str | None = None
    list: str | None = None
    links: str | None = None  # list sources: CSS selector of article links
    next: str | None = None  # list sources: CSS selector of the next list page's link
    pages: int = 1  # list sources: list pages to read at most
    rules: PageRules = field(default_factory=PageRules)
    args: dict[str, Any] = field(default_factory=dict)  # spider sources: spider arguments
    base_url: str | None = None  # fetch from this mirror; items keep the real URLs
    enabled: bool = True
    full_text: bool = False
    fallback_image: str | None = None
    timezone: str = "UTC"
    max_age_days: float | None = None  # None: the setting (MAX_AGE_DAYS / SITEMAP_MAX_AGE_DAYS)

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if getattr(self, kind))

    @property
    def is_feed(self) -> bool:
        return self.kind in ("url", "rsshub")

    @property
    def spider_name(self) -> str:
        """The spider that reads this source."""
        if self.spider:
            return self.spider
        return PAGE_SPIDERS.get(self.kind, "feeds")

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
        if path == DEFAULT_SOURCES and not path.exists():
            # The project zipped into an egg (Scrapyd): the built-in list, read from the zip.
            text = resources.files("crawler").joinpath("sources.toml").read_text("utf-8")
        else:
            text = _read_sources_file(path)
        data = tomllib.loads(text)
    except OSError as error:
        raise SourcesError(f"{path}: cannot read the sources file ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SourcesError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise SourcesError(f"{path}: not valid TOML (nested too deeply)") from None
    unknown_top = set(data) - {"source"}
    if unknown_top:
        raise SourcesError(f"{path}: unknown top-level key {sorted(unknown_top)[0]!r}")
    tables = data.get("source", [])
    if not isinstance(tables, list) or not tables:
        raise SourcesError(f"{path}: no [[source]] tables")
    sources: list[Source] = []
    names: set[str] = set()
    for index, table in enumerate(tables, start=1):
        if not isinstance(table, dict):
            raise SourcesError(f"{path}: source #{index}: not a table")
        source = parse_source(table, where=f"{path}: source #{index}")
        if source.name in names:
            raise SourcesError(f"{path}: source {source.name!r}: key 'name': used twice")
        names.add(source.name)
        sources.append(source)
    return sources


# A sources file is a hand-written list of sites: anything larger is a mistake or an attack.
MAX_SOURCES_FILE_BYTES = 1024 * 1024


def _read_sources_file(path: Path) -> str:
    """The file's text; refuses what is not a regular file (a FIFO would hang the run, a
    device never ends) and files over MAX_SOURCES_FILE_BYTES."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; the open file is then checked.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourcesError(f"{path}: not a regular file")
        data = handle.read(MAX_SOURCES_FILE_BYTES + 1)
    if len(data) > MAX_SOURCES_FILE_BYTES:
        raise SourcesError(f"{path}: larger than {MAX_SOURCES_FILE_BYTES // 1024} KB")
    return data.decode("utf-8")


def select_sources(sources: list[Source], only: list[str] | None, where: str) -> list[Source]:
    """The sources named in ``only`` (disabled ones included), else every enabled one."""
    if not only:
        return [source for source in sources if source.enabled]
    names = {source.name for source in sources}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise SourcesError(f"{where}: no source named {unknown[0]!r}")
    return [source for source in sources if source.name in only]


def parse_source(table: dict[str, Any], where: str = "source") -> Source:
    """One ``[[source]]`` table (or the ad-hoc source of spider arguments), checked."""
    name = table.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where.rsplit(': source #', 1)[0]}: source {name!r}"

    def fail(key: str, problem: str) -> SourcesError:
        return SourcesError(f"{where}: key {key!r}: {problem}")

    for key in table:
        if key not in REQUIRED + COMMON + KINDS + LIST_KEYS + PAGE_RULES + SPIDER_KEYS:
            raise fail(key, "unknown key")
    for key in REQUIRED:
        if key not in table:
            raise fail(key, "missing")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "must be a non-empty string")
    kinds = [kind for kind in KINDS if kind in table]
    if len(kinds) != 1:
        raise fail(kinds[1] if kinds else "url", f"exactly one of {', '.join(KINDS)} is needed")
    kind = kinds[0]
    _check(
        table, "categories", _is_string_list,
        "must be a non-empty array of non-empty strings", fail,
    )  # fmt: skip
    _check(table, "author", _is_text, "must be a non-empty string", fail)
    for key in ("enabled", "full_text"):
        _check(table, key, lambda v: isinstance(v, bool), "must be true or false", fail)
    for key in ("url", "sitemap", "list", "fallback_image", "base_url"):
        _check(table, key, is_http_url, f"not an http(s) URL: {table.get(key)!r}", fail)
    _check(
        table, "rsshub", lambda v: isinstance(v, str) and v.startswith("/"),
        "must be a route starting with '/', e.g. '/oschina/news'", fail,
    )  # fmt: skip
    _check(
        table, "spider", lambda v: isinstance(v, str) and bool(_SPIDER_NAME.match(v)),
        "must be the name of a spider of this project, e.g. 'cnbeta'", fail,
    )  # fmt: skip
    if kind == "spider" and table["spider"] in ("feeds", *PAGE_SPIDERS.values()):
        raise fail("spider", f"{table['spider']!r} reads url/rsshub/sitemap/list tables")
    _check(table, "max_age_days", _is_non_negative, "must be a number >= 0", fail)
    _check(table, "pages", lambda v: type(v) is int and v >= 1, "must be a whole number >= 1", fail)
    _check(table, "args", lambda v: isinstance(v, dict), "must be a table of arguments", fail)
    for key in ("links", "next", "title", "date", "body"):
        _check(table, key, _is_selector, "must be a valid CSS selector", fail)
    remove = table.get("remove", [])
    if isinstance(remove, str):
        remove = [remove]
    if not (isinstance(remove, list) and all(_is_selector(item) for item in remove)):
        raise fail("remove", "must be a CSS selector or an array of them")
    allowed_extra = {
        "list": LIST_KEYS + PAGE_RULES,
        "sitemap": PAGE_RULES,
        "spider": SPIDER_KEYS,
    }.get(kind, ())
    for key in LIST_KEYS + PAGE_RULES + SPIDER_KEYS:
        if key in table and key not in allowed_extra:
            raise fail(key, f"not used by a {kind!r} source")
    if kind == "list" and "links" not in table:
        raise fail("links", "missing: a list source needs the CSS selector of its article links")
    if "full_text" in table and kind not in ("url", "rsshub"):
        raise fail("full_text", "only feed sources follow links for the full text")
    timezone = table.get("timezone", "UTC")
    if not isinstance(timezone, str) or not _is_time_zone(timezone):
        raise fail("timezone", f"unknown time zone {str(timezone)[:60]!r} (use an IANA name)")
    return Source(
        name=name.strip(),
        categories=tuple(c.strip() for c in table["categories"]),
        author=table["author"].strip(),
        url=table.get("url"),
        rsshub=table.get("rsshub"),
        spider=table.get("spider"),
        sitemap=table.get("sitemap"),
        list=table.get("list"),
        links=table.get("links"),
        next=table.get("next"),
        pages=table.get("pages", 1),
        rules=PageRules(
            title=table.get("title"),
            date=table.get("date"),
            body=table.get("body"),
            remove=tuple(remove),
        ),
        args=dict(table.get("args", {})),
        base_url=table["base_url"].rstrip("/") if "base_url" in table else None,
        enabled=table.get("enabled", True),
        full_text=table.get("full_text", False),
        fallback_image=table.get("fallback_image"),
        timezone=timezone,
        max_age_days=float(table["max_age_days"]) if "max_age_days" in table else None,
    )


def _check(
    table: dict[str, Any],
    key: str,
    test: Callable[[Any], bool],
    problem: str,
    fail: Callable[[str, str], SourcesError],
) -> None:
    if key in table and not test(table[key]):
        raise fail(key, problem)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_string_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_text(item) for item in value)


def _is_non_negative(value: object) -> bool:
    return type(value) in (int, float) and value >= 0 and value == value  # NaN is not


def _is_selector(value: object) -> bool:
    if not _is_text(value):
        return False
    try:
        _CSS.css_to_xpath(value)  # type: ignore[arg-type]
    except SelectorError:
        return False
    return True


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
    if len(name) > 64 or "\x00" in name:  # IANA names are short; longer ones hit the disk
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
