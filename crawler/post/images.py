"""Archived images in a post: what an image file is, where it goes, and how a post's image
URLs are read and replaced (plain functions; the pipeline and ``images --backfill`` use them).

An archived image lives at ``OUTPUT_DIR/images/<2 hex>/<sha256>.<ext>`` (named by the hash
of its bytes, so the same picture under two URLs is stored once) and a post points at it as
``IMAGES_URL_PREFIX + "<2 hex>/<sha256>.<ext>"``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator

IMAGES_FOLDER = "images"

# Raster formats only, told by their first bytes (never by the URL or a Content-Type header,
# which lie). SVG is refused: it can carry scripts that would run on the site's own origin.
_MAGIC: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"), "png"),
    (lambda data: data.startswith(b"\xff\xd8\xff"), "jpg"),
    (lambda data: data[:6] in (b"GIF87a", b"GIF89a"), "gif"),
    (lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP", "webp"),
    (lambda data: data[4:12] in (b"ftypavif", b"ftypavis"), "avif"),
)
EXTENSIONS = tuple(extension for _, extension in _MAGIC)


def image_extension(data: bytes) -> str | None:
    """The file extension of an image's bytes (``png``, ``jpg``, ``gif``, ``webp``,
    ``avif``), or None when they are not one of these formats."""
    for test, extension in _MAGIC:
        if test(data):
            return extension
    return None


def image_name(digest: str, extension: str) -> str:
    """``<2 hex>/<sha256>.<ext>``: the image's path under ``images/`` and after the prefix."""
    return f"{digest[:2]}/{digest}.{extension}"


# The name part of an archived image's URL, as the post schema recognizes it.
ARCHIVED_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}\.(?:" + "|".join(EXTENSIONS) + r")")


def is_placeholder(url: str, fallback_template: str) -> bool:
    """Whether ``url`` is the generated ``FALLBACK_IMAGE`` of a post without any picture
    (a template with ``{n}``: a random placeholder per post, not the article's image)."""
    if "{n}" not in fallback_template:
        return False
    pattern = r"\d+".join(re.escape(part) for part in fallback_template.split("{n}"))
    return re.fullmatch(pattern, url) is not None


def wanted_url(url: object, prefix: str) -> bool:
    """Whether an image URL is one to archive: absolute http(s), not already local."""
    return (
        isinstance(url, str)
        and url[:8].lower().startswith(("http://", "https://"))
        and not url.startswith(prefix)
    )


# The body is sanitized HTML as nh3 writes it: text has no raw "<", attribute values are
# double-quoted (no raw '"' inside) but may hold a raw "<" or ">". So tags are found by
# scanning from the start, each tag consumed with its quoted values: an "<img" inside an
# attribute value is never taken for a tag.
_TOKEN = re.compile(
    r"""<!--.*?-->|<([a-zA-Z][^\s/>]*)((?:[^>"']|"[^"]*"|'[^']*')*)>|[^<]+|<""", re.DOTALL
)
_ATTRIBUTE = re.compile(r"""(\s+)([^\s=/>"']+)(?:(\s*=\s*)("[^"]*"|'[^']*'|[^\s>"']+))?""")


def _image_sources(body: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, url)`` of every ``<img src>`` value in ``body`` (the offsets of the
    value without its quotes; the URL with its entities decoded)."""
    for token in _TOKEN.finditer(body):
        if (token.group(1) or "").lower() != "img":
            continue
        attributes_at = token.start(2)
        for attribute in _ATTRIBUTE.finditer(token.group(2)):
            if attribute.group(2).lower() != "src" or attribute.group(4) is None:
                continue
            value = attribute.group(4)
            start = attributes_at + attribute.start(4)
            if value[:1] in ("'", '"'):
                yield start + 1, start + len(value) - 1, html.unescape(value[1:-1])
            else:
                yield start, start + len(value), html.unescape(value)
            break  # the first src counts, as in a browser


def body_image_urls(body: str) -> list[str]:
    """The ``src`` of every ``<img>`` of a post body, in order, entities decoded."""
    return [url for _, _, url in _image_sources(body)]


def rewrite_body(body: str, local: dict[str, str]) -> str:
    """``body`` with each ``<img src>`` found in ``local`` (URL -> local URL) replaced.

    Only the attribute values change. A local URL is made of the checked prefix and
    :func:`image_name` (no quote, brace, ampersand, angle bracket or white space), so the
    body keeps every rule of the post format (no line added, no ``{``/``}``).
    """
    pieces: list[str] = []
    last = 0
    for start, end, url in _image_sources(body):
        if url in local:
            pieces += [body[last:start], local[url]]
            last = end
    pieces.append(body[last:])
    return "".join(pieces)


# --- the post file (docs/FORMAT.md's layout) -------------------------------------------------

_FRONT_START = "\n---\n"
_BODY_START = "\n---\n\n<div>   \n"
_BODY_END = "   \n</div>\n" + " " * 12
_LEAD_LINE = re.compile(r"^(headimg|thumbnail): '((?:[^']|'')*)'$", re.MULTILINE)


class NotAPost(ValueError):
    """A file that does not follow the post layout (edited by hand, or not ours)."""


def split_post(text: str) -> tuple[str, str]:
    """A post's front matter (from its first byte to the closing ``---``) and its body."""
    if not text.startswith(_FRONT_START):
        raise NotAPost("it does not begin with an empty line and ---")
    end = text.find(_BODY_START, len(_FRONT_START) - 1)
    if end < 0 or not text.endswith(_BODY_END):
        raise NotAPost("its body is not between <div> and </div> as the format writes it")
    body_at = end + len(_BODY_START)
    body_end = len(text) - len(_BODY_END)
    if body_end < body_at:
        raise NotAPost("its body is not between <div> and </div> as the format writes it")
    return text[:end], text[body_at:body_end]


def join_post(front: str, body: str) -> str:
    return front + _BODY_START + body + _BODY_END


def lead_images(front: str) -> list[str]:
    """The ``headimg`` and ``thumbnail`` values of a post's front matter."""
    return [match.group(2).replace("''", "'") for match in _LEAD_LINE.finditer(front)]


def rewrite_lead_images(front: str, local: dict[str, str]) -> str:
    """The front matter with ``headimg``/``thumbnail`` values found in ``local`` replaced
    (a local URL has no ``'``: it needs no doubling)."""

    def replace(match: re.Match[str]) -> str:
        url = match.group(2).replace("''", "'")
        return f"{match.group(1)}: '{local[url]}'" if url in local else match.group(0)

    return _LEAD_LINE.sub(replace, front)
