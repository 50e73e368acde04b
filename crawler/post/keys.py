"""What makes two articles the same story: title and day, or canonical URL (docs/FORMAT.md).

The one place keys are computed: the pipelines record them, spiders ask the archive service
with them before fetching a page. A change here must bump ``KEY_VERSION`` in
crawler/archive/state.py, so that existing archives are re-keyed.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from datetime import UTC, datetime
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from w3lib.url import safe_url_string

from crawler.post.cleaning import clean_text, clean_title

# Query parameters that only say where a click came from.
TRACKING_PARAMETERS = frozenset({"fbclid", "gclid", "spm"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def title_key(title: str, published: datetime) -> str:
    """``NFKC(title)`` with white space collapsed, plus the publication day in UTC.

    ``published`` must be timezone-aware; it is converted to UTC here.
    """
    normalized = clean_text(unicodedata.normalize("NFKC", title))
    day = published.astimezone(UTC).date()
    return f"{day.isoformat()} {normalized}"


def url_key(url: str) -> str | None:
    """The canonical form of an article URL, or None for something that is not an http(s) URL.

    Scheme and host lower-cased, an IDN host in punycode, percent-encoding normalized (raw
    and encoded non-ASCII give one URL, ``%7E`` is ``~``, hex digits upper-case), default port
    and tracking parameters (``utm_*``, ``fbclid``, ``gclid``, ``spm``) removed; path and the
    other parameters (in order) kept. The fragment is dropped unless it is a hash route
    (``#!...``, ``#/...``), which names a page of its own.
    """
    try:
        parts = urlsplit(safe_url_string(url.strip()))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    # Filter the raw query segments so that the rest keeps its exact spelling.
    query = "&".join(
        _normal_escapes(segment)
        for segment in parts.query.split("&")
        if segment and not _is_tracking(segment)
    )
    fragment = parts.fragment if parts.fragment.startswith(("!", "/")) else ""
    return urlunsplit((scheme, host, _normal_escapes(parts.path) or "/", query, fragment))


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _normal_escapes(text: str) -> str:
    """``%7E`` -> ``~`` (unreserved characters need no escape), other escapes upper-case."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _ESCAPE.sub(fix, text)


def _is_tracking(segment: str) -> bool:
    name = unquote_plus(segment.partition("=")[0]).lower()
    return name.startswith("utm_") or name in TRACKING_PARAMETERS


def key_digest(key: str) -> str:
    """Eight hex digits that stand for a dedup key in file names."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def story_keys(
    title: str,
    published: datetime,
    url: str | None,
    has_own_url: bool,
    identity: str | None = None,
) -> tuple[str, str | None]:
    """The title key and, for an item whose url is its own, the URL key of a normalized item.

    An item without a URL of its own but with an ``identity`` (a feed entry's guid) gets
    ``entry:<identity>`` in the URL key's place: its title key alone would change with the
    fetch date of an undated entry.
    """
    if url and has_own_url:
        return title_key(title, published), url_key(url)
    return title_key(title, published), (f"entry:{identity}" if identity else None)


def listing_keys(
    raw_title: str | None, published: datetime | None, url: str | None
) -> tuple[str | None, str | None]:
    """The keys of an article a spider has only seen listed (its title still HTML).

    The title goes through the same :func:`clean_title` the normalize pipeline applies, so
    what a spider asks about is exactly what the pipelines record. Either key may be None.
    """
    title = clean_title(raw_title or "")
    title_part = title_key(title, published) if title and published is not None else None
    return title_part, (url_key(url) if url else None)
