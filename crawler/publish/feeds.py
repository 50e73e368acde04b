"""``export --atom FILE`` / ``--json-feed FILE``: the newest posts as Atom 1.0 or JSON Feed 1.1.

The newest ``--limit`` posts are picked from ``.index.jsonl`` (dates and filters only: a
100k-post archive never has its bodies read), then each post file is read (never through a
symlink) and its own front matter and body are what the feed says. A post that cannot be
read is skipped and named on stderr; the next newest takes its place, the feed is still
written, and the exit status is 1 so that the failure is seen. No matching post is not a
failure: the feed is written empty.
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import frontmatter
import yaml
from lxml import etree

from crawler.archive.files import (
    SymlinkRefused,
    open_folder,
    read_post,
    replace_in,
)
from crawler.archive.index import read_index
from crawler.post.cleaning import one_line
from crawler.publish.body import decode_post_body, rfc3339, xml_text

ATOM = "http://www.w3.org/2005/Atom"
MEDIA = "http://search.yahoo.com/mrss/"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# Ids of posts and feeds without a URL of their own (RFC 4151 tag URIs).
TAG = "tag:technews-harvester.invalid,2021:"
DEFAULT_TITLE = "technews-harvester archive"
MAX_POST_BYTES = 16 * 1024 * 1024  # far above any real post; a planted giant is refused
MAX_WARNINGS = 20  # unreadable posts named one by one; the rest are counted


@dataclass(frozen=True)
class FeedPost:
    """One post as a feed entry: its own front matter and body, its link from the index."""

    id: str
    title: str
    url: str | None
    published: datetime
    categories: list[str]
    author: str
    image: str | None
    source: str | None
    body: str  # sanitized HTML, post encoding undone


@dataclass(frozen=True)
class FeedInfo:
    title: str
    id: str
    feed_url: str | None
    site_url: str | None


class UnreadablePost(ValueError):
    """A post file that is not a post of this archive (no title, no date, broken YAML)."""


def export_command(archive: Path, args: argparse.Namespace) -> int:
    """Write the feeds ``args`` asks for; 0 done, 1 a post was skipped or a write failed."""
    from crawler.cli.main import UsageFailure

    limit = _limit(args.limit)
    outputs = [(kind, path) for kind, path in (("atom", args.atom), ("json-feed", args.json_feed))
               if path]  # fmt: skip
    if sum(path == "-" for _kind, path in outputs) > 1:
        raise UsageFailure("export: only one feed can go to stdout (-)")
    for kind, path in outputs:
        problem = output_problem(path)
        if problem:
            raise UsageFailure(f"--{kind} {path}: {problem}")
    info = feed_info(args)
    posts, skipped = newest_posts(archive, limit, args.source, args.category)
    for number, (relpath, reason) in enumerate(skipped, start=1):
        if number <= MAX_WARNINGS:
            print(f"error: {archive / relpath}: {reason}, skipped", file=sys.stderr)
    if len(skipped) > MAX_WARNINGS:
        print(f"error: {len(skipped) - MAX_WARNINGS} more posts skipped", file=sys.stderr)
    status = 1 if skipped else 0
    summary = sys.stderr if any(path == "-" for _kind, path in outputs) else sys.stdout
    for kind, path in outputs:
        data = atom_feed(info, posts) if kind == "atom" else json_feed(info, posts)
        try:
            write_output(path, data)
        except OSError as error:
            print(f"error: {path}: {_reason(error)}", file=sys.stderr)
            status = 1
            continue
        shown = "stdout" if path == "-" else str(Path(path).expanduser().resolve())
        print(f"{kind}: {len(posts)} posts, {len(skipped)} skipped -> {shown}", file=summary)
    return status


def _limit(value: str) -> int:
    from crawler.cli.main import UsageFailure

    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise UsageFailure(f"--limit {value}: give a whole number >= 1")
    return int(text)


def feed_info(args: argparse.Namespace) -> FeedInfo:
    title = getattr(args, "feed_title", None) or DEFAULT_TITLE
    feed_url = getattr(args, "feed_url", None)
    site_url = getattr(args, "site_url", None)
    filters = "".join(
        f"/{name}/{quote(value, safe='')}"
        for name, value in (("source", args.source), ("category", args.category))
        if value
    )
    return FeedInfo(title, feed_url or f"{TAG}feed{filters}", feed_url, site_url)


# --- picking and reading the posts ----------------------------------------------------------


def newest_posts(
    archive: Path, limit: int, source: str | None = None, category: str | None = None
) -> tuple[list[FeedPost], list[tuple[str, str]]]:
    """The ``limit`` newest readable posts (newest first) of ``source`` with ``category``,
    and the ``(relpath, reason)`` of each post that could not be read."""
    posts: list[FeedPost] = []
    skipped: list[tuple[str, str]] = []
    for entry in _newest_first(read_index(archive), source, category):
        try:
            posts.append(read_feed_post(archive, entry))
        except (OSError, UnreadablePost) as error:
            skipped.append((entry["path"], _reason(error)))
        if len(posts) == limit:
            break
    return posts, skipped


def _newest_first(
    entries: dict[str, dict[str, Any]], source: str | None, category: str | None
) -> Iterator[dict[str, Any]]:
    """Index entries by date, newest first (then by path), filtered; a heap, so that only the
    entries taken are ever sorted."""
    heap: list[tuple[float, str]] = []
    for path, entry in entries.items():
        if source is not None and entry.get("source") != source:
            continue
        categories = entry.get("categories")
        if category is not None and not (isinstance(categories, list) and category in categories):
            continue
        moment = _http_date(entry.get("date"))
        if moment is not None:  # an entry without a date is no post of ours (reindex fixes)
            heap.append((-moment.timestamp(), path))
    heapq.heapify(heap)
    while heap:
        yield entries[heapq.heappop(heap)[1]]


def _http_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_feed_post(archive: Path, entry: dict[str, Any]) -> FeedPost:
    """The post the index entry names, from its file (OSError, :class:`UnreadablePost`)."""
    data = read_post(archive, entry["path"])
    if len(data) > MAX_POST_BYTES:
        raise UnreadablePost("larger than 16 MiB")
    try:
        post = frontmatter.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadablePost("not UTF-8") from None
    except (yaml.YAMLError, ValueError, TypeError, AttributeError) as error:  # hand-made YAML
        raise UnreadablePost(f"broken front matter ({one_line(error, 120)})") from None
    title, author = post.get("title"), post.get("author")
    published = _http_date(post.get("date"))
    categories = post.get("categories") or []
    if not isinstance(title, str) or not title.strip():
        raise UnreadablePost("no title")
    if published is None:
        raise UnreadablePost("no date")
    if not (isinstance(categories, list) and all(isinstance(c, str) for c in categories)):
        raise UnreadablePost("categories are not a list of names")
    url = entry.get("url") if isinstance(entry.get("url"), str) else None
    canonical = entry.get("canonical_url")
    image = post.get("headimg")
    source = entry.get("source")
    return FeedPost(
        id=canonical if isinstance(canonical, str) and canonical else _tag(entry["path"]),
        title=title,
        url=url,
        published=published,
        categories=categories,
        author=author if isinstance(author, str) else "",
        image=image if isinstance(image, str) and image else None,
        source=source if isinstance(source, str) else None,
        body=decode_post_body(_body_of(post.content)),
    )


def _tag(relpath: str) -> str:
    return f"{TAG}post/{quote(relpath, safe='/')}"


def _body_of(content: str) -> str:
    """The body HTML inside FORMAT.md's ``<div>   \\n … \\n</div>`` (a hand-made post's
    content as it is)."""
    head, tail = "<div>   \n", "   \n</div>"
    if content.startswith(head) and content.endswith(tail):
        return content[len(head) : -len(tail)]
    return content


# --- the feeds ------------------------------------------------------------------------------


def atom_feed(info: FeedInfo, posts: list[FeedPost]) -> bytes:
    """An Atom 1.0 document (RFC 4287), built by lxml: every value is escaped by it."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM, "media": MEDIA})
    _text(feed, "id", info.id)
    _text(feed, "title", info.title).set("type", "text")
    updated = max((post.published for post in posts), default=datetime(1970, 1, 1, tzinfo=UTC))
    _text(feed, "updated", rfc3339(updated))
    if info.feed_url:
        _link(feed, info.feed_url, "self", "application/atom+xml")
    if info.site_url:
        _link(feed, info.site_url, "alternate", "text/html")
    _text(etree.SubElement(feed, f"{{{ATOM}}}author"), "name", info.title)
    _text(feed, "generator", "technews-harvester")
    for post in posts:
        _atom_entry(feed, post)
    return etree.tostring(feed, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _atom_entry(feed: etree._Element, post: FeedPost) -> None:
    entry = etree.SubElement(feed, f"{{{ATOM}}}entry")
    _text(entry, "id", post.id)
    _text(entry, "title", post.title).set("type", "text")
    if post.url:
        _link(entry, post.url, "alternate", "text/html")
    _text(entry, "published", rfc3339(post.published))
    _text(entry, "updated", rfc3339(post.published))
    if post.author:
        _text(etree.SubElement(entry, f"{{{ATOM}}}author"), "name", post.author)
    for category in post.categories:
        etree.SubElement(entry, f"{{{ATOM}}}category").set("term", xml_text(category))
    if post.image:
        etree.SubElement(entry, f"{{{MEDIA}}}thumbnail").set("url", xml_text(post.image))
    _text(entry, "content", post.body).set("type", "html")


def _text(parent: etree._Element, name: str, value: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ATOM}}}{name}")
    element.text = xml_text(value)
    return element


def _link(parent: etree._Element, href: str, rel: str, kind: str) -> None:
    link = etree.SubElement(parent, f"{{{ATOM}}}link")
    link.set("rel", rel)
    link.set("type", kind)
    link.set("href", xml_text(href))


def json_feed(info: FeedInfo, posts: list[FeedPost]) -> bytes:
    """A JSON Feed 1.1 document (UTF-8)."""
    document: dict[str, Any] = {"version": JSON_FEED_VERSION, "title": info.title}
    if info.site_url:
        document["home_page_url"] = info.site_url
    if info.feed_url:
        document["feed_url"] = info.feed_url
    document["items"] = [_json_item(post) for post in posts]
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def _json_item(post: FeedPost) -> dict[str, Any]:
    item: dict[str, Any] = {"id": post.id}
    if post.url:
        item["url"] = post.url
    item["title"] = post.title
    item["content_html"] = post.body
    if post.image:
        item["image"] = post.image
    item["date_published"] = rfc3339(post.published)
    item["tags"] = post.categories
    if post.author:
        item["authors"] = [{"name": post.author}]
    return item


# --- the output file ------------------------------------------------------------------------


def output_problem(path: str) -> str | None:
    """Why the feed cannot be written to ``path`` (``-``: stdout), or None."""
    if path == "-":
        return None
    try:
        return _file_problem(Path(path).expanduser())
    except OSError as error:  # a name too long, a folder we may not look into
        return _reason(error)


def _file_problem(target: Path) -> str | None:
    if target.is_symlink():
        return "is a symlink, refused"
    if target.is_dir():
        return "is a directory"
    if target.exists() and not target.is_file():
        return "is not a regular file"
    if not target.parent.resolve().is_dir():
        return "its folder does not exist"
    return None


def write_output(path: str, data: bytes) -> None:
    """``data`` to stdout (``-``) or atomically to ``path``: a hidden temporary file beside
    it (unpredictable name, ``O_EXCL``), fsynced, renamed over it; a symlink planted at the
    name meanwhile is replaced, never followed."""
    if path == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path).expanduser()
    folder_path = target.parent.resolve()
    folder = open_folder(folder_path)
    try:
        replace_in(folder, target.name, data, folder_path / target.name)
    finally:
        os.close(folder)


def _reason(error: Exception) -> str:
    if isinstance(error, SymlinkRefused):
        return "a symlink, refused"
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return "no space left on the device"
        if error.errno == errno.ENOENT:
            return "missing"
        return error.strerror or str(error)
    return str(error)
