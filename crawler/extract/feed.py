"""Feed entries to article fields: plain functions on feedparser's results.

feedparser reads the raw bytes with the response headers (so a charset given only in
Content-Type is honoured), with its own sanitizer and relative-URI resolution off: the
normalize pipeline sanitizes and resolves links, and feedparser's pass strips lazy images.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.sax import SAXException

import feedparser

from crawler.extract.dates import from_struct, parse_date
from crawler.extract.feedparser_speedup import install_speedups
from crawler.post.cleaning import one_line

# A date further ahead than this is a feed's mistake: the fetch time is used instead.
FUTURE_TOLERANCE = timedelta(days=1)


@dataclass(frozen=True)
class FeedEntry:
    """What one entry gives an article. ``title`` is HTML (text titles escaped)."""

    title: str
    link: str | None
    published: datetime
    # Where the date came from: 'entry', 'feed', or the fetch time for 'missing'/'future'.
    date_from: str
    body: str
    body_base: str | None
    image: str | None
    # False when ``link`` is not the story's own (no link, the site's home, a shared link).
    has_own_url: bool
    # A stable name for an entry without a link of its own: its guid/id, else a hash of the
    # feed URL, title and content (so an undated, linkless entry is archived once).
    identity: str | None = None


@dataclass(frozen=True)
class BadEntry:
    """An entry that could not be used (an impossible date, a malformed URL): why, in a line."""

    reason: str
    link: str | None = None


@dataclass(frozen=True)
class ReadFeed:
    """A feed's bytes read and its entries mapped, in plain values: what the feeds spider
    needs of feedparser's result (it is read in a worker process and sent back)."""

    is_feed: bool
    # One result per entry, in feed order (as feed_entries gives them), up to the cap.
    entries: list[FeedEntry | BadEntry | None]
    # How many entries the feed has (more than ``entries`` holds when capped).
    entry_count: int
    bozo: bool = False
    # What was wrong with it, in a line (feedparser's bozo_exception).
    problem: str | None = None
    # Broken XML (a body cut short, a truncated gzip): entries may be missing.
    broken_xml: bool = False
    # When the feed's articles were finished as it was read (crawler/post/feed_ahead.py):
    # one FinishedAhead or None per entry, as ``entries``. Empty: none was.
    finished: list[Any] = field(default_factory=list)


def entry_fields(entry: FeedEntry, source_fields: dict[str, Any]) -> dict[str, Any]:
    """The article fields of a feed entry, with its source's (``categories``, ``author``,
    ``source``: its name, ``fallback_image``)."""
    return {
        "title": entry.title,
        "url": entry.link,
        "published": entry.published,
        "categories": list(source_fields["categories"]),
        "author": source_fields["author"],
        "body": entry.body,
        "body_base": entry.body_base,
        "source": source_fields["source"],
        "image": entry.image,
        "fallback_image": source_fields["fallback_image"],
        "has_own_url": entry.has_own_url,
        "identity": entry.identity,
    }


def read_feed(
    body: bytes,
    headers: dict[str, str],
    url: str,
    zone: tzinfo,
    fetched_at: datetime,
    cap: int = 0,
) -> ReadFeed:
    """A feed's bytes to its entries (the first ``cap``, 0: all): parse_feed, then
    feed_entries, each entry mapped on its own."""
    parsed = parse_feed(body, headers, url)
    exception = parsed.get("bozo_exception")
    problem = one_line(exception) if exception else None
    if not is_feed(parsed):
        return ReadFeed(False, [], 0, bool(parsed.get("bozo")), problem or "no feed found")
    entries = feed_entries(parsed, url, zone, fetched_at)
    return ReadFeed(
        is_feed=True,
        entries=list(itertools.islice(entries, cap) if cap > 0 else entries),
        entry_count=len(parsed.entries),
        bozo=bool(parsed.bozo),
        problem=problem,
        broken_xml=isinstance(exception, SAXException),
    )


def parse_feed(body: bytes, headers: dict[str, str], url: str) -> Any:
    """feedparser's result for a feed's bytes; ``headers`` lower-case, as fetched."""
    install_speedups()
    return feedparser.parse(
        body,
        response_headers={**headers, "content-location": url},
        sanitize_html=False,
        resolve_relative_uris=False,
    )


def is_feed(parsed: Any) -> bool:
    """False for something that is not a feed at all (an HTML page, garbage)."""
    return bool(parsed.get("entries")) or (bool(parsed.get("version")) and not parsed.get("bozo"))


def feed_entries(
    parsed: Any, feed_url: str, zone: tzinfo, fetched_at: datetime
) -> Iterator[FeedEntry | BadEntry | None]:
    """One result per entry, in feed order: a FeedEntry, None for an entry without a title,
    or a BadEntry. Each entry is mapped on its own, so one hostile entry never costs the
    others."""
    links = [_contained(entry_link, entry, feed_url) for entry in parsed.entries]
    shared = {link for link, count in Counter(links).items() if isinstance(link, str) and count > 1}
    home = site_home(parsed, feed_url)
    channel_link = feed_link(parsed, feed_url)  # the same for every entry: computed once
    for entry, link in zip(parsed.entries, links, strict=True):
        if isinstance(link, BadEntry):
            yield link
            continue
        try:
            yield _feed_entry(
                entry, link, parsed, feed_url, channel_link, zone, fetched_at, shared | home
            )
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError,
                UnicodeError) as error:  # fmt: skip
            yield BadEntry(f"{type(error).__name__}: {error}", link)


def _feed_entry(
    entry: Any,
    link: str | None,
    parsed: Any,
    feed_url: str,
    channel_link: str | None,
    zone: tzinfo,
    fetched_at: datetime,
    not_own: set[str],
) -> FeedEntry | None:
    title = entry_title(entry)
    if not title.strip():
        return None
    published, date_from = entry_date(entry, parsed, zone, fetched_at)
    body, body_base = entry_body(entry, feed_url, link, channel_link)
    has_own_url = bool(link) and link not in not_own
    return FeedEntry(
        title=title,
        link=link,
        published=published,
        date_from=date_from,
        body=body,
        body_base=body_base,
        image=entry_image(entry, body_base or feed_url),
        has_own_url=has_own_url,
        identity=None if has_own_url else entry_identity(entry, feed_url, title, body),
    )


def _contained(step: Any, entry: Any, feed_url: str) -> str | BadEntry | None:
    try:
        return step(entry, feed_url)  # type: ignore[no-any-return]
    except (ValueError, TypeError, AttributeError, UnicodeError) as error:
        return BadEntry(f"link: {type(error).__name__}: {error}")


def entry_identity(entry: Any, feed_url: str, title: str, body: str) -> str:
    """The entry's guid/id when it has one, else a hash of feed URL, title and content."""
    guid = entry.get("id")
    if isinstance(guid, str) and guid.strip():
        return guid.strip()[:500]
    digest = hashlib.sha256("\x00".join((feed_url, title, body)).encode("utf-8", "replace"))
    return f"sha256:{digest.hexdigest()[:32]}"


def entry_link(entry: Any, feed_url: str) -> str | None:
    link = entry.get("feedburner_origlink") or entry.get("link")
    if not isinstance(link, str) or not link.strip():
        return None
    absolute = urljoin(feed_url, link.strip())
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


def entry_date(entry: Any, parsed: Any, zone: tzinfo, fetched_at: datetime) -> tuple[datetime, str]:
    """The entry's date (else the feed's), and where it came from.

    Read here first, then by feedparser; a missing date or one more than a day ahead
    becomes the fetch time.
    """
    published = parse_date(entry.get("published") or entry.get("updated"), zone) or from_struct(
        entry.get("published_parsed") or entry.get("updated_parsed")
    )
    date_from = "entry"
    if published is None:
        feed = parsed.feed
        published = parse_date(feed.get("published") or feed.get("updated"), zone) or from_struct(
            feed.get("published_parsed") or feed.get("updated_parsed")
        )
        date_from = "feed"
    if published is None:
        return fetched_at, "missing"
    if published > fetched_at + FUTURE_TOLERANCE:
        return fetched_at, "future"
    return published, date_from


def entry_title(entry: Any) -> str:
    """The entry's title as HTML, which is what an item's title holds.

    A text title is escaped, so that normalize (which strips tags and decodes entities)
    gives back exactly its text, ``<`` and ``&amp;`` included.
    """
    raw = entry.get("title")
    if not isinstance(raw, str):
        return ""
    kind = (entry.get("title_detail") or {}).get("type", "")
    return raw if "html" in kind else html.escape(raw, quote=False)


def entry_body(
    entry: Any, feed_url: str, link: str | None, site: str | None = None
) -> tuple[str, str | None]:
    """The fullest of content:encoded / content / summary, and the base of its links.

    The base is the content's own xml:base where it has one (feedparser gives the feed's
    URL when there is none), else the entry's link, else the feed's own link (``site``, the
    site the feed is about), else the feed's URL.
    """
    details = [*entry.get("content", []), entry.get("summary_detail") or {}]
    best = max(details, key=lambda detail: len(detail.get("value") or ""))
    body = best.get("value") or ""
    own_base = best.get("base")
    base = own_base if own_base and own_base != feed_url else (link or site or feed_url)
    return body, base


def feed_link(parsed: Any, feed_url: str) -> str | None:
    """The feed's own link (RSS ``<channel><link>``, Atom ``rel=alternate``), absolute."""
    site = parsed.feed.get("link")
    if not isinstance(site, str) or not site.strip():
        return None
    try:
        absolute = urljoin(feed_url, site.strip())
        scheme = urlsplit(absolute).scheme
    except ValueError:
        return None
    return absolute if scheme in ("http", "https") else None


def entry_image(entry: Any, base: str) -> str | None:
    """The entry's own lead image: the largest (by ``width``) of its media:thumbnail,
    media:content images and image enclosures; in feed order when no width is given.

    A media:content with neither ``type`` nor ``medium`` (The Guardian's feeds) is an image
    unless its URL's extension says video or audio.
    """
    candidates: list[tuple[int, int, str]] = []  # (-width, position, url)
    media = [
        *((item, "image") for item in entry.get("media_thumbnail", [])),
        *((item, _media_kind(item)) for item in entry.get("media_content", [])),
        *((item, _enclosure_kind(item)) for item in entry.get("enclosures", [])),
    ]
    for position, (item, kind) in enumerate(media):
        url = item.get("url") or item.get("href")
        if kind != "image" or not isinstance(url, str) or not url.strip():
            continue
        try:
            absolute = urljoin(base, url.strip())
        except ValueError:  # a malformed URL (http://[::1): not an image, try the next
            continue
        candidates.append((-_width(item.get("width")), position, absolute))
    return min(candidates)[2] if candidates else None


_VIDEO_AUDIO = re.compile(
    r"\.(?:mp4|m4v|mov|webm|mkv|avi|m3u8|mpd|mp3|m4a|aac|ogg|oga|opus|wav|flac)$", re.IGNORECASE
)
_IMAGE_FILE = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|bmp|svg)$", re.IGNORECASE)


def _media_kind(item: Any) -> str:
    medium = str(item.get("medium") or "").lower()
    kind = str(item.get("type") or "").lower()
    if medium:
        return "image" if medium == "image" else "other"
    if kind:
        return "image" if kind.startswith("image/") else "other"
    return "other" if _VIDEO_AUDIO.search(_path(item.get("url"))) else "image"


def _enclosure_kind(item: Any) -> str:
    kind = str(item.get("type") or "").lower()
    if kind:
        return "image" if kind.startswith("image/") else "other"
    return "image" if _IMAGE_FILE.search(_path(item.get("href"))) else "other"


def _path(url: Any) -> str:
    try:
        return urlsplit(str(url or "")).path
    except ValueError:  # a malformed URL: no path to judge by
        return ""


_LEADING_NUMBER = re.compile(r"\s*(\d{1,9})")


def _width(value: Any) -> int:
    """A media width in pixels (``460``, ``"460px"``); 0 when there is none."""
    match = _LEADING_NUMBER.match(str(value or ""))
    return int(match.group(1)) if match else 0


def site_home(parsed: Any, feed_url: str) -> set[str]:
    """Links that point at the site, not a story: the feed's own link and home pages."""
    homes = {urljoin(feed_url, "/")}
    site = parsed.feed.get("link")
    if isinstance(site, str) and site.strip():
        homes.add(urljoin(feed_url, site.strip()))
        homes.add(urljoin(urljoin(feed_url, site.strip()), "/"))
    return homes
