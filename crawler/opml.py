"""OPML subscription lists (what feed readers import and export): read safely, written with lxml.

A feed is an ``<outline>`` with an ``xmlUrl`` (``type="rss"`` is usual but not required:
Miniflux omits it); an outline without one that holds outlines is a folder. The feed's
folders, outermost first, are its ``folders``. OPML 1.0, 1.1 and 2.0 have this shape.

The file is hostile input: it is read only if it is a regular file of at most
:data:`MAX_OPML_BYTES`, parsed without a DTD, entity expansion or network access, and an
entity declaration is refused outright (billion laughs, external entities). Folders nested
deeper than :data:`MAX_FOLDER_DEPTH` and more than :data:`MAX_FEEDS` feeds are refused too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from lxml import etree

MAX_OPML_BYTES = 4 * 1024 * 1024  # a reader's export of thousands of feeds is well under 1 MB
MAX_FOLDER_DEPTH = 32
MAX_FEEDS = 10_000
MAX_TEXT = 300  # characters of a title or folder name kept (the post title limit)


class OpmlError(ValueError):
    """An OPML file that cannot be used; the message says why."""


@dataclass(frozen=True)
class OpmlFeed:
    """One subscription: its feed URL, title, site, folders (outermost first), and the OPML 2.0
    ``category`` attribute if it had one."""

    url: str
    title: str
    html_url: str | None = None
    folders: tuple[str, ...] = ()
    category: str | None = None


@dataclass(frozen=True)
class Outline:
    """What export writes for one feed: its URL, title and ``category`` path parts."""

    url: str
    title: str
    categories: tuple[str, ...]


def read_opml(path: Path) -> list[OpmlFeed]:
    """The feeds of an OPML file; raises :class:`OpmlError` (or OSError if unreadable)."""
    return parse_opml(_read_limited(path), str(path))


def _read_limited(path: Path) -> bytes:
    # O_NONBLOCK: a FIFO must not hang the command waiting for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OpmlError(f"{path}: not a regular file")
        data = handle.read(MAX_OPML_BYTES + 1)
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"{path}: larger than {MAX_OPML_BYTES // (1024 * 1024)} MB")
    return data


def parse_opml(data: bytes, where: str = "OPML") -> list[OpmlFeed]:
    """The feeds of an OPML document, in document order."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
        dtd_validation=False, remove_comments=True, remove_pis=True,
    )  # fmt: skip
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise OpmlError(f"{where}: not well-formed XML ({_short(str(error))})") from None
    docinfo = root.getroottree().docinfo
    dtd = docinfo.internalDTD
    if dtd is not None and (list(dtd.entities()) or list(dtd.iterelements())):
        raise OpmlError(f"{where}: has a DTD declaring entities or elements (refused)")
    if not isinstance(root.tag, str) or etree.QName(root).localname != "opml":
        raise OpmlError(f"{where}: not OPML (the root element is not <opml>)")
    body = next((child for child in root if _name(child) == "body"), None)
    if body is None:
        raise OpmlError(f"{where}: not OPML (no <body>)")
    return list(_feeds(body, where))


def _feeds(body: etree._Element, where: str) -> Iterable[OpmlFeed]:
    """Walk the outlines without recursion (depth is the input's choice)."""
    count = 0
    stack: list[tuple[etree._Element, tuple[str, ...]]] = [
        (child, ()) for child in reversed(list(body))
    ]
    while stack:
        element, folders = stack.pop()
        if _name(element) != "outline":
            continue
        url = _attribute(element, "xmlUrl")
        label = _text(_attribute(element, "title") or _attribute(element, "text"))
        if url is not None:
            count += 1
            if count > MAX_FEEDS:
                raise OpmlError(f"{where}: more than {MAX_FEEDS} feeds")
            yield OpmlFeed(
                url=url.strip(),
                title=label,
                html_url=(_attribute(element, "htmlUrl") or "").strip() or None,
                folders=folders,
                category=_attribute(element, "category"),
            )
            continue
        children = [child for child in element if _name(child) == "outline"]
        if children:
            if len(folders) >= MAX_FOLDER_DEPTH:
                raise OpmlError(f"{where}: folders nested more than {MAX_FOLDER_DEPTH} deep")
            inner = (*folders, label) if label else folders
            stack.extend((child, inner) for child in reversed(children))


def _name(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _attribute(element: etree._Element, name: str) -> str | None:
    """An attribute by name, any case (``xmlurl`` is seen in the wild)."""
    value = element.get(name)
    if value is not None:
        return str(value)
    wanted = name.lower()
    for key, other in element.attrib.items():
        if str(key).lower() == wanted:
            return str(other)
    return None


def _text(value: str | None) -> str:
    """One line of visible text: control characters dropped, white space collapsed."""
    if not value:
        return ""
    kept = "".join(char if char.isprintable() else " " for char in value)
    return " ".join(kept.split())[:MAX_TEXT]


def category_path(value: str | None) -> tuple[str, ...] | None:
    """The three categories of an OPML 2.0 ``category`` attribute ``/topic/source/channel``
    (what :func:`build_opml` writes), or None for anything else (several paths, other depths)."""
    if not value or "," in value or not value.startswith("/"):
        return None
    parts = tuple(_text(part) for part in value[1:].split("/"))
    return parts if len(parts) == 3 and all(parts) else None


def _xml_text(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot hold (lxml refuses them)."""
    return "".join(char for char in value if _is_xml_char(char))


def _is_xml_char(char: str) -> bool:
    code = ord(char)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _short(message: str) -> str:
    return " ".join(message.split())[:200]


def build_opml(outlines: Iterable[Outline], title: str) -> bytes:
    """An OPML 2.0 document: one folder per topic (the first category), in first-seen order;
    each feed an ``outline type="rss"`` with ``text``, ``title``, ``xmlUrl`` and the full
    category path in ``category`` (``/topic/source/channel``), so that an import gives the
    same three categories back."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = formatdate(usegmt=True)
    body = etree.SubElement(root, "body")
    folders: dict[str, etree._Element] = {}
    for outline in outlines:
        categories = tuple(_xml_text(category) for category in outline.categories)
        topic = categories[0] if categories else "Feeds"
        folder = folders.get(topic)
        if folder is None:
            folder = folders[topic] = etree.SubElement(body, "outline", text=topic, title=topic)
        title = _xml_text(outline.title)
        feed = etree.SubElement(
            folder, "outline", type="rss", text=title, title=title, xmlUrl=_xml_text(outline.url)
        )
        # A category with "/" or "," cannot be written as a path: the folder has to do.
        if categories and not any("/" in part or "," in part for part in categories):
            feed.set("category", "/" + "/".join(categories))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
