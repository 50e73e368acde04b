"""Turning scraped text and HTML into what a post may hold. Shared by every source.

Titles and other front-matter strings become plain, single-line text. Bodies go through an
lxml pass (site widgets out, lazy images in, links absolute, embeds as links), then through
nh3 (the real sanitizer), then through the text encoding FORMAT.md asks for.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

import nh3
from lxml import etree
from lxml.cssselect import CSSSelector

# C0 and C1 controls, DEL, the Unicode line/paragraph separators, BOM, lone surrogates and
# the noncharacters U+FFFE/U+FFFF: YAML folds or rejects all of them. Tab, LF and CR are white
# space and are collapsed instead. Bidi embedding, override and isolate controls
# (U+202A-U+202E, U+2066-U+2069) could make a title read differently from what it is.
_FORBIDDEN_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ufeff\ufffe\uffff\ud800-\udfff]"
)
_WHITESPACE = re.compile(r"\s+")
# Something that looks like a tag: '<' followed by a letter, '/', '!' or '?'. A bare '<' in
# text ("a < b") is left alone. [^<>]: a match gives up at the next '<', so hostile text
# such as "<a<a<a<a..." (no '>') is linear, not quadratic.
_TAG = re.compile(r"<[a-zA-Z/!?][^<>]*>")
# What a reader sees: letters, marks, digits, punctuation, symbols.
_VISIBLE = frozenset("LMNPS")


def clean_text(value: str) -> str:
    """Plain single-line text: forbidden characters removed, white space collapsed, trimmed."""
    return _WHITESPACE.sub(" ", _FORBIDDEN_CHARS.sub("", value)).strip()


def one_line(value: object, limit: int = 300) -> str:
    """Any message as one line of at most ``limit`` characters (log lines, report reasons)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_title(raw: str) -> str:
    """A title as text: tags removed, entities decoded, then :func:`clean_text`.

    A title with nothing visible in it (only format characters, zero-width spaces) is "".
    """
    title = clean_text(html.unescape(_TAG.sub("", raw)))
    return title if any(unicodedata.category(c)[0] in _VISIBLE for c in title) else ""


# Attributes that lazy-loading scripts read the real image address from.
LAZY_SRC_ATTRIBUTES = ("data-original", "data-src", "data-lazy-src")
# Elements that are dropped by the sanitizer but whose source is worth a link.
EMBED_TAGS = ("iframe", "video", "embed", "object", "audio")
# Dropped with their content before sanitizing: their text is never article text.
DROPPED_TAGS = ("noscript", "template", "script", "style", "form", "button", "select", "textarea")

_ALLOWED_TAGS = (set(nh3.ALLOWED_TAGS) | {"figure", "figcaption", "picture", "tfoot"}) - {
    "map",
    "area",
}
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "title", "width", "height"},
    "a": {"href", "hreflang", "title"},
    "*": {"lang", "dir"},
}
_SANITIZER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    clean_content_tags={"script", "style"},
    attributes=_ALLOWED_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    # Links were made absolute by the lxml pass; one still relative could not be resolved.
    url_relative="deny",
    set_tag_attribute_values={"img": {"referrerpolicy": "no-referrer"}},
)


@dataclass(frozen=True)
class CleanBody:
    """A sanitized body, already encoded for a post, and its first real image."""

    html: str
    first_image: str | None


def clean_body(raw: str, base_url: str | None, strip_selectors: Iterable[str] = ()) -> CleanBody:
    """Clean one article body: lxml pass, then nh3, then the post text encoding."""
    root = _parse_fragment(raw)
    _unnest_void_elements(root)
    for selector in strip_selectors:
        for element in _css(selector)(root):
            _remove_keeping_tail(element)
    for element in list(root.iter(*DROPPED_TAGS)):
        _remove_keeping_tail(element)
    _promote_lazy_sources(root)
    _make_urls_absolute(root, base_url)
    _replace_embeds_with_links(root)
    for image in list(root.iter("img")):
        if _is_tracker(image) or not image.get("src"):  # a tracker, or nothing to show
            _remove_keeping_tail(image)
    first_image = _first_image(root)
    sanitized = _SANITIZER.clean(_inner_html(root))
    return CleanBody(html=encode_for_post(sanitized), first_image=first_image)


# Plain lxml elements, not lxml.html's: its element classes cost a Python lookup for every
# element touched (a tenth of the cleaning). One parser per thread (lxml parsers are not
# safe to share between threads).
_PARSERS = threading.local()
_FULL_DOCUMENT = re.compile(r"^\s*<(?:html|!doctype)", re.IGNORECASE)


def _parse_fragment(raw: str) -> etree._Element:
    """The body in a ``<div>``, as ``lxml.html.fragment_fromstring(raw, create_parent="div")``
    builds it: the elements of the document's body, and its leading text unless blank."""
    parser = getattr(_PARSERS, "html", None)
    if parser is None:
        parser = _PARSERS.html = etree.HTMLParser()
    root = etree.Element("div")
    if not raw:
        return root
    document = etree.fromstring(
        raw if _FULL_DOCUMENT.match(raw) else f"<html><body>{raw}</body></html>", parser
    )
    # No body: nothing parseable at all (e.g. only a comment). Two: a "</body><head>...
    # <body>" inside the text (lxml.html refuses those, "too many bodies"); both are kept.
    for body in [] if document is None else document.findall("body"):
        if body.text and body.text.strip():
            if len(root):
                root[-1].tail = (root[-1].tail or "") + body.text
            else:
                root.text = (root.text or "") + body.text
        root.extend(body)
    return root


@lru_cache(maxsize=256)
def _css(selector: str) -> CSSSelector:
    """A source's strip selector, compiled once (cssselect's translation is slow)."""
    return CSSSelector(selector, translator="html")


# Void in HTML5 but containers to libxml2, which nests what follows them inside.
_VOID_TO_HTML5 = ("embed", "source", "track", "param")


def _unnest_void_elements(root: etree._Element) -> None:
    """Move what libxml2 put inside a void element back after it, so nothing is lost with it."""
    for element in reversed(list(root.iter(*_VOID_TO_HTML5))):
        parent = element.getparent()
        if parent is None:
            continue
        children = list(element)
        old_tail = element.tail or ""
        element.tail = element.text
        element.text = None
        index = parent.index(element)
        for offset, child in enumerate(children, start=1):
            parent.insert(index + offset, child)
        if children:
            children[-1].tail = (children[-1].tail or "") + old_tail
        else:
            element.tail = (element.tail or "") + old_tail


def _remove_keeping_tail(element: etree._Element) -> None:
    """The element and its content removed; the text after it stays (lxml.html's drop_tree)."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + element.tail
        else:
            previous.tail = (previous.tail or "") + element.tail
    parent.remove(element)


def _promote_lazy_sources(root: etree._Element) -> None:
    for element in root.iter("img", "iframe", "source", "video", "embed", "audio"):
        for attribute in LAZY_SRC_ATTRIBUTES:
            # lxml refuses attribute values with control characters: none belong in a URL.
            value = _FORBIDDEN_CHARS.sub("", element.get(attribute) or "").strip()
            if value:
                element.set("src", value)
                break
    for image in root.iter("img"):
        if not (image.get("src") or "").strip():
            # Responsive markup without a plain src: the largest srcset candidate (its own,
            # lazy-loaded, or its <picture>'s first <source>) becomes the src.
            candidate = _largest_candidate(_srcset_of(image))
            if candidate:
                image.set("src", _FORBIDDEN_CHARS.sub("", candidate))


def _srcset_of(image: etree._Element) -> str:
    for attribute in ("data-srcset", "srcset"):
        if (image.get(attribute) or "").strip():
            return image.get(attribute) or ""
    parent = image.getparent()
    if parent is not None and parent.tag == "picture":
        for source in parent.iter("source"):
            if (source.get("srcset") or "").strip():
                return source.get("srcset") or ""
    return ""


def _largest_candidate(srcset: str) -> str | None:
    """The srcset candidate with the largest ``w`` (or ``x``) descriptor; the first on a tie."""
    best: tuple[float, str] | None = None
    for url, descriptor in _srcset_candidates(srcset):
        try:
            size = float(descriptor[:-1]) if descriptor[-1:] in ("w", "x") else 1.0
        except ValueError:
            size = 0.0
        if best is None or size > best[0]:
            best = (size, url)
    return best[1] if best else None


def _srcset_candidates(srcset: str) -> list[tuple[str, str]]:
    """``(url, descriptor)`` pairs of a srcset (comma-separated ``url [descriptor]``)."""
    pairs = []
    for part in srcset.split(","):
        url, _, descriptor = part.strip().partition(" ")
        if url:
            pairs.append((url, descriptor.strip().lower()))
    return pairs


# Attributes that hold one URL (lxml's link attributes that can reach a post) and srcset,
# which holds several. Every value is resolved against the body's base; what cannot be made
# an absolute http(s) (or mailto) URL is removed, so no post ever holds a relative link.
URL_ATTRIBUTES = ("href", "src", "cite", "longdesc", "poster", "data", "action", "background")
_ONE_URL_ATTRIBUTES = frozenset(URL_ATTRIBUTES)
# Every element with an attribute, filtered in Python: one XPath test per element, where
# "[@href or @src or ...]" made libxml2 test nine (a seventh of a body's cleaning).
_WITH_ATTRIBUTES = etree.XPath("descendant-or-self::*[@*]")
# HTML ignores tabs and line breaks inside a URL and white space around it.
_URL_NOISE = re.compile(r"[\t\n\r]")


def _make_urls_absolute(root: etree._Element, base_url: str | None) -> None:
    for element in _WITH_ATTRIBUTES(root):
        # The element's own attribute names, not a lookup of each of URL_ATTRIBUTES: a
        # feed's body has a link in every paragraph.
        names = element.keys()  # its attribute names (iterating an element gives children)
        for attribute in [name for name in names if name in _ONE_URL_ATTRIBUTES]:
            resolved = absolute_url(element.get(attribute), base_url)
            if resolved is None:
                del element.attrib[attribute]
            else:
                element.set(attribute, resolved)
        srcset = element.get("srcset")
        if srcset is not None:
            candidates = [
                f"{url} {descriptor}".strip()
                for url, descriptor in (
                    (absolute_url(url, base_url), descriptor)
                    for url, descriptor in _srcset_candidates(srcset)
                )
                if url and "," not in url
            ]
            if candidates:
                element.set("srcset", ", ".join(candidates))
            else:
                del element.attrib["srcset"]


def absolute_url(value: str, base_url: str | None) -> str | None:
    """``value`` resolved against ``base_url``: an absolute http(s) URL with a host, a mailto:
    link, or None (empty, relative without a base, another scheme, malformed)."""
    value = _URL_NOISE.sub("", _FORBIDDEN_CHARS.sub("", value)).strip()
    if not value:
        return None
    if value[:7].lower() == "mailto:":
        return value
    try:
        resolved = join_url(base_url, value) if base_url else value
    except ValueError:
        return None
    scheme, separator, rest = resolved.partition("://")
    if separator and scheme in ("http", "https"):
        netloc = _NETLOC.match(rest)[0]
        # What urlsplit checks (host, port, brackets) is all in the netloc: checked once a
        # host, except an overlong one (a hostile page's megabyte of host is not kept).
        if len(netloc) <= CACHED_NETLOC_LENGTH:
            return resolved if _has_http_host_in(scheme, netloc) else None
    return resolved if _has_http_host(resolved) else None


# The netloc of what follows "scheme://", as urlsplit cuts it.
_NETLOC = re.compile(r"[^/?#]*")
CACHED_NETLOC_LENGTH = 300  # a DNS name is at most 253 characters; then a port, a user


@lru_cache(maxsize=1024)
def _has_http_host_in(scheme: str, netloc: str) -> bool:
    return _has_http_host(f"{scheme}://{netloc}")


def _has_http_host(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host and a valid port."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


# What urljoin rewrites besides joining: empty parameters, query or fragment are dropped
# (";", "?", "#" with nothing after them), dot segments and empty segments of a path are
# folded. A URL without any of these is joined by the fast paths of join_url unchanged.
_REWRITTEN_BY_URLJOIN = re.compile(r";|\?#|[?#]$|/\.|//")


def join_url(base_url: str, value: str) -> str:
    """``urljoin(base_url, value)``, the same string, without urljoin's work for the two
    kinds of links most bodies are made of: absolute http(s) URLs (returned as they are)
    and paths from the root of a base that is an http(s) URL (put after its origin)."""
    if value.startswith(("https://", "http://")):
        rest = value[value.index("//") + 2 :]  # a host first: urljoin resolves "https:///"
        if rest[:1] not in ("", "/", "?", "#") and not _REWRITTEN_BY_URLJOIN.search(rest):
            return value
    elif value[:1] == "/" and value[1:2] != "/" and not _REWRITTEN_BY_URLJOIN.search(value):
        origin = _origin(base_url)
        if origin:
            return origin + value
    return urljoin(base_url, value)


@lru_cache(maxsize=64)
def _origin(base_url: str) -> str | None:
    """``scheme://netloc`` of an http(s) base URL as urljoin writes it, or None."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _replace_embeds_with_links(root: etree._Element) -> None:
    for element in list(root.iter(*EMBED_TAGS)):
        if element.getparent() is None:
            continue
        source = _embed_source(element)
        if not source:
            _remove_keeping_tail(element)
            continue
        link = etree.Element("a", href=source)
        link.text = source
        link.tail = element.tail
        element.getparent().replace(element, link)


def _embed_source(element: etree._Element) -> str:
    source = (element.get("src") or element.get("data") or "").strip()
    if not source:
        for child in element.iter("source"):
            source = (child.get("src") or "").strip()
            if source:
                break
    return source


def _first_image(root: etree._Element) -> str | None:
    for image in root.iter("img"):
        source = (image.get("src") or "").strip()
        if not source.startswith(("http://", "https://")):
            continue  # data: URLs, unresolved relative paths, javascript:
        return source
    return None


def _is_tracker(image: etree._Element) -> bool:
    """A 1x1 (or 0x0) pixel: counting visits, not showing anything."""
    sizes = [
        image.get("width", "").strip().removesuffix("px"),
        image.get("height", "").strip().removesuffix("px"),
    ]
    return any(size in {"0", "1"} for size in sizes)


def _inner_html(root: etree._Element) -> str:
    # The wrapper <div> lxml made is serialized with the body in one call (one call per child
    # cost a fifth of the cleaning), then cut off; a wrapper that grew attributes is not.
    whole = etree.tostring(root, encoding="unicode", method="html")
    if whole.startswith("<div>") and whole.endswith("</div>"):
        return whole[5:-6]
    parts = [html.escape(root.text or "", quote=False)]
    parts.extend(etree.tostring(child, encoding="unicode", method="html") for child in root)
    return "".join(parts)


_PRE_TAG = re.compile(r"<(/?)pre\b[^>]*>", re.IGNORECASE)


def encode_for_post(sanitized: str) -> str:
    """The body text FORMAT.md asks for, from the sanitizer's output, without re-parsing it.

    Curly braces become ``&#123;``/``&#125;`` (Hexo's template engine never sees them).
    Empty or white-space-only lines, which would end Hexo's raw HTML block, are removed;
    inside ``<pre>`` they matter, so the line break before them is written ``&#10;``.
    No leading or trailing newline.
    """
    text = _BODY_CONTROLS.sub("", sanitized).replace("{", "&#123;").replace("}", "&#125;")
    if not _PRE_TAG.search(text):
        return _lines_without_pre(text)
    return _lines_around_pre(text)


def _lines_without_pre(text: str) -> str:
    """:func:`_lines_around_pre` of a text without ``<pre>``, where every blank line goes:
    two regular-expression passes instead of a Python loop over the lines."""
    text = _BLANK_LINES.sub("", text).strip()  # the blank lines at either end: by strip()
    if "```" in text or "~~~" in text:  # rare: no regular expression at every line start
        text = _FENCES.sub(_encode_fence, text)
    return text


def _lines_around_pre(text: str) -> str:
    """Blank lines removed (kept as ``&#10;`` inside ``<pre>``), fences encoded, stripped."""
    pre_spans = _pre_spans(text)
    out: list[str] = []
    offset = 0  # offset in ``text`` of the line being looked at
    for line in text.split("\n"):
        if out and not line.strip():
            newline_at = offset - 1
            if pre_spans and any(start <= newline_at < end for start, end in pre_spans):
                out[-1] += "&#10;" + line
        elif line.strip():
            out.append(_FENCE.sub(_encode_fence, line))
        offset += len(line) + 1
    return "\n".join(out).strip()


# C0 controls other than tab, LF and CR, and DEL: never article text.
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A line Hexo's backtick filter would take for a fenced code block: ``` or ~~~ at its start.
_FENCE = re.compile(r"^(\s*)([`~])(?=\2\2)")
# The same at the start of every line of a text; a line break followed by a blank line
# (white space only, as str.strip() sees it): searched from the line break, a literal.
_FENCES = re.compile(r"^([^\S\n]*)([`~])(?=\2\2)", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[^\S\n]*(?=\n)")


def _encode_fence(match: re.Match[str]) -> str:
    return match.group(1) + ("&#96;" if match.group(2) == "`" else "&#126;")


def _pre_spans(text: str) -> list[tuple[int, int]]:
    """Offsets of the text between an opening ``<pre>`` and its closing tag (nesting aware)."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = 0
    for match in _PRE_TAG.finditer(text):
        if match.group(1):  # closing tag
            if depth == 1:
                spans.append((start, match.start()))
            depth = max(depth - 1, 0)
        else:
            if depth == 0:
                start = match.end()
            depth += 1
    if depth:
        spans.append((start, len(text)))
    return spans
