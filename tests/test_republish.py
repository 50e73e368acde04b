"""The archive re-published: ``export --atom`` / ``--json-feed`` (crawler/publish/feeds.py) read
back by feedparser and checked against RFC 4287 and JSON Feed 1.1, clean items of Scrapy's feed
exports (``-O items.jsonl``), and the JSON Schema of ``.index.jsonl``; all over one real
in-process crawl of feed fixtures with hostile titles and bodies."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import frontmatter
import jsonschema
import pytest
import pytest_twisted
from lxml import etree
from pytest_httpserver import HTTPServer
from support import (
    FIXTURES,
    PROJECT_ROOT,
    CrawlResult,
    background_job,
    crawl_in_process,
    fixture_server,
    serve_feeds,
    source_table,
    usage_error,
    write_sources,
)

from crawler.cli.main import main
from crawler.publish.body import decode_post_body, xml_text
from crawler.publish.feeds import ATOM, FeedInfo, FeedPost, _reason, atom_feed

RSS = "application/rss+xml; charset=utf-8"
SOURCES = (
    source_table("hostile", url="{base}/republish/hostile.xml",
                 categories=["<XML> & co", "Hostile", "]]>"], author="<Author> & 'Co'"),
    source_table("hexo-hostile", url="{base}/hexo/hostile.xml",
                 categories=["AI: 前沿", "#Hostile", "- 频道"], author="'Hostile' Author"),
    source_table("verge", url="{base}/feeds/verge.xml",
                 categories=["科技", "The Verge", "最新"], author="The Verge"),
    source_table("atom", url="{base}/feeds/atom.xml", categories=["开发", "Atom", "博客"],
                 author="Atom"),
)  # fmt: skip
PUBLIC_FIELDS = ["title", "url", "published", "categories", "author", "image", "source", "body"]
INDEX_SCHEMA = json.loads((PROJECT_ROOT / "docs" / "index.schema.json").read_text("utf-8"))


def serve_hostile(server: HTTPServer) -> None:
    for path, fixture in (
        ("/republish/hostile.xml", FIXTURES / "republish" / "hostile.xml"),
        ("/hexo/hostile.xml", FIXTURES / "hexo" / "hostile-titles.xml"),
    ):
        server.expect_request(path).respond_with_data(fixture.read_bytes(), content_type=RSS)


@dataclass
class Harvest:
    crawl: CrawlResult
    archive: Path
    exports: dict[str, Path]  # Scrapy feed exports by format


@pytest.fixture(scope="module")
def site() -> Iterator[HTTPServer]:
    with fixture_server(serve_feeds, serve_hostile) as server:
        yield server


@pytest_twisted.async_fixture(scope="module")
async def harvest(site: HTTPServer, tmp_path_factory: pytest.TempPathFactory) -> Harvest:
    """One crawl of four feeds, with Scrapy's feed exports in three formats."""
    folder = tmp_path_factory.mktemp("republish")
    sources = write_sources(folder / "sources.toml", site, *SOURCES)
    exports = {kind: folder / f"items.{kind}" for kind in ("jsonl", "json", "csv")}
    feeds = {
        str(exports["jsonl"]): {"format": "jsonlines"},
        str(exports["json"]): {"format": "json"},
        str(exports["csv"]): {"format": "csv"},
    }
    archive = folder / "archive"
    result = await crawl_in_process(
        "feeds", archive, {"FEEDS": feeds}, server=site, sources=str(sources)
    )
    assert result.returncode == 0 and "Traceback" not in result.log, result.log
    return Harvest(result, archive, exports)


@dataclass
class Post:
    """A post of the archive as the tests expect it in every export."""

    title: str
    url: str
    published: datetime
    categories: list[str]
    author: str
    image: str
    source: str
    body: str  # post encoding undone


def archive_posts(archive: Path) -> dict[str, Post]:
    """Every post of the archive by URL, from its file and its index line."""
    index = [json.loads(line) for line in (archive / ".index.jsonl").read_text("utf-8").split("\n")
             if line]  # fmt: skip
    posts = {}
    for entry in index:
        post = frontmatter.load(archive / entry["path"])
        body = post.content.removeprefix("<div>   \n").removesuffix("   \n</div>")
        posts[entry["url"]] = Post(
            post["title"], entry["url"], parsedate_to_datetime(post["date"]),
            post["categories"], post["author"], post["headimg"], entry["source"],
            decode_post_body(body),
        )  # fmt: skip
    return posts


def export(*args: str) -> int:
    return main(["export", *args])


def newest(posts: dict[str, Post], limit: int = 100) -> list[Post]:
    return sorted(posts.values(), key=lambda post: post.published, reverse=True)[:limit]


# --- the crawl itself -------------------------------------------------------------------------


def test_the_crawl_archived_hostile_posts(harvest: Harvest) -> None:
    posts = archive_posts(harvest.archive)
    assert len(posts) == 10
    titles = {post.title for post in posts.values()}
    assert "</title><entry> ]]> &amp; \"quotes\" & 'apostrophes' 😀" in titles
    hostile = posts["https://hostile.example/posts/markup?a=1&b=2"]
    assert "{{ braces }}" in hostile.body and "&#123;" not in hostile.body
    assert "&amp;#123; written out" in hostile.body  # the article's literal text stays text
    assert "<script" not in hostile.body and "onclick" not in hostile.body


# --- Atom ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atom(harvest: Harvest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("atom") / "feed.atom"
    status = export(str(harvest.archive), "--atom", str(path), "--feed-url",
                    "https://news.example/feed.atom", "--site-url", "https://news.example/",
                    "--feed-title", "News <& co>")  # fmt: skip
    assert status == 0
    return path.read_bytes()


def test_atom_entries_equal_their_posts_as_feedparser_reads_them(
    atom: bytes, harvest: Harvest
) -> None:
    parsed = feedparser.parse(atom, sanitize_html=False, resolve_relative_uris=False)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "News <& co>"
    assert parsed.feed.id == "https://news.example/feed.atom"
    expected = newest(archive_posts(harvest.archive))
    assert [entry.link for entry in parsed.entries] == [post.url for post in expected]
    for entry, post in zip(parsed.entries, expected, strict=True):
        assert entry.title == post.title and entry.title_detail.type == "text/plain"
        assert datetime(*entry.published_parsed[:6], tzinfo=UTC) == post.published
        assert datetime(*entry.updated_parsed[:6], tzinfo=UTC) == post.published
        assert [tag.term for tag in entry.tags] == post.categories
        assert entry.author == post.author
        assert entry.media_thumbnail[0]["url"] == post.image
        (content,) = entry.content
        assert content.type == "text/html" and content.value == post.body
    assert len({entry.id for entry in parsed.entries}) == len(parsed.entries)


def test_atom_has_what_rfc_4287_requires(atom: bytes) -> None:
    feed = etree.fromstring(atom, etree.XMLParser(resolve_entities=False, no_network=True))
    assert feed.tag == f"{{{ATOM}}}feed"

    def one(parent: etree._Element, name: str) -> etree._Element:
        (element,) = parent.findall(f"{{{ATOM}}}{name}")
        return element

    for name in ("id", "title", "updated"):
        assert one(feed, name).text
    assert one(one(feed, "author"), "name").text == "News <& co>"
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{{{ATOM}}}link")}
    assert links == {"self": "https://news.example/feed.atom", "alternate": "https://news.example/"}
    entries = feed.findall(f"{{{ATOM}}}entry")
    assert len(entries) == 10
    for entry in entries:
        for name in ("id", "title", "updated", "published"):
            assert one(entry, name).text
        assert one(entry, "content").get("type") == "html"
        assert one(entry, "link").get("rel") == "alternate"
    # the dates are RFC 3339 and the feed's is its newest entry's
    updated = [one(entry, "updated").text for entry in entries]
    assert one(feed, "updated").text == max(updated) and updated == sorted(updated, reverse=True)


def test_limit_source_and_category_pick_the_newest(harvest: Harvest, tmp_path: Path) -> None:
    posts = archive_posts(harvest.archive)
    path = tmp_path / "feed.xml"
    assert export(str(harvest.archive), "--atom", str(path), "--limit", "3") == 0
    links = [entry.link for entry in feedparser.parse(path.read_bytes()).entries]
    assert links == [post.url for post in newest(posts, 3)]
    assert export(str(harvest.archive), "--atom", str(path), "--source", "verge") == 0
    parsed = feedparser.parse(path.read_bytes())
    assert {entry.link for entry in parsed.entries} == {
        url for url, post in posts.items() if post.source == "verge"
    } and len(parsed.entries) == 2
    assert export(str(harvest.archive), "--atom", str(path), "--category", "]]>") == 0
    parsed = feedparser.parse(path.read_bytes())
    assert len(parsed.entries) == 2 and all(e.tags[2].term == "]]>" for e in parsed.entries)
    assert export(str(harvest.archive), "--atom", str(path), "--category", "nothing") == 0
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo and parsed.entries == []


def test_characters_xml_forbids_are_dropped_not_fatal() -> None:
    post = FeedPost(
        id="tag:x,2021:1", title="a\x01b\ufffec", url="https://x.example/1",
        published=datetime(2021, 7, 17, tzinfo=UTC), categories=["c\x0bd"], author="e\x1ff",
        image=None, source="x", body="<p>g\x00h\ud800i</p>",
    )  # fmt: skip
    data = atom_feed(FeedInfo("t", "tag:x,2021:feed", None, None), [post])
    feed = etree.fromstring(data)
    entry = feed.find(f"{{{ATOM}}}entry")
    assert entry.findtext(f"{{{ATOM}}}title") == "abc"
    assert entry.findtext(f"{{{ATOM}}}content") == "<p>ghi</p>"
    assert entry.find(f"{{{ATOM}}}category").get("term") == "cd"
    assert feed.find(f"{{{ATOM}}}link") is None  # no self or site link given
    assert xml_text("\t\n\r ok 😀") == "\t\n\r ok 😀"


# --- JSON Feed ----------------------------------------------------------------------------


def test_json_feed_items_equal_their_posts(
    harvest: Harvest, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status = export(str(harvest.archive), "--json-feed", "-", "--site-url", "https://n.example/",
                    "--feed-url", "https://n.example/feed.json")  # fmt: skip
    out, err = capsysbinary.readouterr()
    assert status == 0
    assert err.decode() == "json-feed: 10 posts, 0 skipped -> stdout\n"
    document = json.loads(out.decode("utf-8"))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"] and document["home_page_url"] == "https://n.example/"
    assert document["feed_url"] == "https://n.example/feed.json"
    expected = newest(archive_posts(harvest.archive))
    assert len(document["items"]) == len(expected)
    for item, post in zip(document["items"], expected, strict=True):
        assert isinstance(item["id"], str) and item["id"]
        assert item["url"] == post.url and item["title"] == post.title
        assert item["content_html"] == post.body
        assert datetime.fromisoformat(item["date_published"]) == post.published
        assert item["date_published"].endswith("Z")
        assert item["tags"] == post.categories
        assert item["authors"] == [{"name": post.author}]
        assert item["image"] == post.image
    assert len({item["id"] for item in document["items"]}) == len(expected)


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "٣"])
def test_a_bad_limit_is_one_usage_error(
    limit: str, harvest: Harvest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = export(str(harvest.archive), "--atom", str(tmp_path / "f"), "--limit", limit)
    assert status == 2
    assert capsys.readouterr().err == f"error: --limit {limit}: give a whole number >= 1\n"
    assert not (tmp_path / "f").exists()


def test_symlink_folder_and_double_stdout_outputs_are_refused(
    harvest: Harvest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link.xml").symlink_to(victim)
    archive = str(harvest.archive)
    assert export(archive, "--atom", str(tmp_path / "link.xml")) == 2
    assert export(archive, "--json-feed", str(tmp_path)) == 2
    assert export(archive, "--atom", "-", "--json-feed", "-") == 2
    assert export(archive, "--atom", str(tmp_path / "missing" / "feed.xml")) == 2
    os.mkfifo(tmp_path / "fifo")
    assert export(archive, "--atom", str(tmp_path / "fifo")) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"error: --atom {tmp_path / 'link.xml'}: is a symlink, refused",
        f"error: --json-feed {tmp_path}: is a directory",
        "error: export: only one feed can go to stdout (-)",
        f"error: --atom {tmp_path / 'missing' / 'feed.xml'}: its folder does not exist",
        f"error: --atom {tmp_path / 'fifo'}: is not a regular file",
    ]
    assert victim.read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["fifo", "link.xml", "victim"]


def test_a_failed_write_leaves_nothing_and_fails_the_run(
    harvest: Harvest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A name the file system takes, whose temporary name beside it is too long: the write
    # itself fails (as a full disk would), after every check passed.
    name = "f" * 250
    atom = tmp_path / "ok.xml"
    status = export(str(harvest.archive), "--json-feed", str(tmp_path / name), "--atom", str(atom))
    out, err = capsys.readouterr()
    assert status == 1
    assert err == f"error: {tmp_path / name}: File name too long\n"
    assert out == f"atom: 10 posts, 0 skipped -> {atom}\n"  # the other feed is still written
    assert os.listdir(tmp_path) == ["ok.xml"]
    assert export(str(harvest.archive), "--atom", str(tmp_path / ("g" * 300))) == 2
    assert capsys.readouterr().err.endswith(": File name too long\n")


def test_unreadable_posts_are_skipped_named_and_fail_the_run(
    harvest: Harvest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(harvest.archive, archive, symlinks=True)
    entries = [json.loads(line) for line in (archive / ".index.jsonl").read_text().splitlines()]
    by_date = sorted(entries, key=lambda e: parsedate_to_datetime(e["date"]), reverse=True)
    gone, linked, broken, bad_utf8 = (entry["path"] for entry in by_date[:4])
    (archive / gone).unlink()
    (archive / linked).unlink()
    (archive / linked).symlink_to(archive / by_date[5]["path"])
    (archive / broken).write_text("\n---\ntitle: [unclosed\n---\nbody")
    (archive / bad_utf8).write_bytes(b"\n---\ntitle: '\xff'\n---\n")
    feed = tmp_path / "feed.json"
    status = export(str(archive), "--json-feed", str(feed), "--limit", "3")
    out, err = capsys.readouterr()
    assert status == 1
    lines = err.splitlines()
    assert lines[0] == f"error: {archive / gone}: missing, skipped"
    assert lines[1] == f"error: {archive / linked}: a symlink, refused, skipped"
    assert lines[2].startswith(f"error: {archive / broken}: broken front matter (")
    assert lines[3] == f"error: {archive / bad_utf8}: not UTF-8, skipped"
    assert len(lines) == 4
    assert out == f"json-feed: 3 posts, 4 skipped -> {feed}\n"
    items = json.loads(feed.read_text())["items"]
    assert [item["url"] for item in items] == [entry["url"] for entry in by_date[4:7]]


def test_a_post_without_title_or_date_is_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = []
    for number, text in enumerate(("\n---\ndate: Sat, 17 Jul 2021 14:35:32 GMT\n---\nx",
                                   "\n---\ntitle: t\ndate: someday\n---\nx",
                                   "\n---\ntitle: t\ndate: Sat, 17 Jul 2021 14:35:32 GMT\n"
                                   "categories: {a: 1}\n---\nx")):  # fmt: skip
        relpath = f"2021/07/2021-07-17-p-0000000{number}.md"
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(text)
        lines.append(json.dumps({"path": relpath, "date": "Sat, 17 Jul 2021 14:35:32 GMT"}))
    huge = "2021/07/2021-07-16-huge-0000000a.md"
    (tmp_path / huge).write_bytes(b"\n---\ntitle: t\n---\n" + b"x" * (16 * 1024 * 1024))
    own = "2021/07/2021-07-15-hand-made-0000000b.md"  # no URL, no <div>: a hand-made post
    (tmp_path / own).write_text(
        "---\ntitle: Mine\ndate: Thu, 15 Jul 2021 10:00:00 GMT\n---\n<p>m</p>"
    )
    lines += [json.dumps({"path": path, "date": "Fri, 16 Jul 2021 00:00:00 GMT"})
              for path in [huge, own] + [f"2021/07/gone-{n}.md" for n in range(20)]]  # fmt: skip
    (tmp_path / ".index.jsonl").write_text("\n".join(lines) + '\n{"path": "x", "date": 1}\n')
    assert export(str(tmp_path), "--atom", str(tmp_path / "a.xml")) == 1
    err = capsys.readouterr().err.splitlines()
    for reason in ("no title", "no date", "categories are not a list of names"):
        assert any(line.endswith(f": {reason}, skipped") for line in err[:3]), err
    assert err[3] == f"error: {tmp_path / huge}: larger than 16 MiB, skipped"
    gone = sorted(f"{tmp_path}/2021/07/gone-{n}.md" for n in range(20))  # by date, then path
    assert err[4:] == [f"error: {path}: missing, skipped" for path in gone[:16]] + [
        "error: 4 more posts skipped"
    ]
    raw = (tmp_path / "a.xml").read_bytes()
    parsed = feedparser.parse(raw, sanitize_html=False)
    (entry,) = parsed.entries
    assert entry.id == f"tag:technews-harvester.invalid,2021:post/{own}"
    assert (entry.title, entry.content[0].value) == ("Mine", "<p>m</p>")
    assert b"<link" not in raw and b"<author>" not in raw.split(b"<entry>")[1]


def test_reasons_are_short() -> None:
    assert (
        _reason(OSError(errno.ENOSPC, "No space left on device")) == "no space left on the device"
    )
    assert _reason(OSError("odd")) == "odd"


# --- clean items of Scrapy's feed exports ---------------------------------------------------


def exported_items(harvest: Harvest, kind: str) -> list[dict[str, Any]]:
    text = harvest.exports[kind].read_text("utf-8")
    if kind == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if kind == "json":
        return json.loads(text)
    rows = list(csv.DictReader(text.splitlines(keepends=True)))
    for row in rows:
        row["categories"] = row["categories"].split(",")
    return rows


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_exported_items_are_the_public_fields_of_their_posts(harvest: Harvest, kind: str) -> None:
    posts = archive_posts(harvest.archive)
    items = exported_items(harvest, kind)
    assert len(items) == len(posts)
    for item in items:
        assert list(item) == PUBLIC_FIELDS
        post = posts[item["url"]]
        assert datetime.fromisoformat(item["published"]) == post.published
        assert item["published"].endswith("Z")
        if kind == "csv":  # csv joins a list with commas; one category holds a comma-free name
            assert ",".join(item["categories"]) == ",".join(post.categories)
        else:
            assert item["categories"] == post.categories
        assert (item["title"], item["author"], item["image"], item["source"], item["body"]) == (
            post.title, post.author, post.image, post.source, post.body,
        )  # fmt: skip


# --- the index schema -----------------------------------------------------------------------


def test_every_index_line_of_a_real_crawl_fits_the_schema(harvest: Harvest) -> None:
    jsonschema.Draft202012Validator.check_schema(INDEX_SCHEMA)
    validator = jsonschema.Draft202012Validator(INDEX_SCHEMA)
    lines = (harvest.archive / ".index.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 10
    for line in lines:
        validator.validate(json.loads(line))
    entry = json.loads(lines[0])
    without_path = {key: value for key, value in entry.items() if key != "path"}
    for broken in ({**entry, "sha256": "xyz"}, {**entry, "date": "2021-07-17"},
                   {**entry, "extra": 1}, without_path):  # fmt: skip
        assert not validator.is_valid(broken)


# --- the command line ---------------------------------------------------------------------

GOLDEN = FIXTURES / "golden" / "cnbeta-2021-07-17.md"
GOLDEN_PATH = "2021/07/2021-07-17-golden-72e73e43.md"


@background_job
def export_cli_runs(folder: Path) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """``python -m crawler export`` as a user runs it: the Atom feed of an archive of the
    reference post to stdout, and a bad ``--limit``."""
    archive = folder / "archive"
    (archive / GOLDEN_PATH).parent.mkdir(parents=True)
    shutil.copyfile(GOLDEN, archive / GOLDEN_PATH)
    entry = {"path": GOLDEN_PATH, "date": "Sat, 17 Jul 2021 14:35:32 GMT",
             "url": "https://www.cnbeta.com.tw/articles/tech/1153343.htm"}  # fmt: skip
    (archive / ".index.jsonl").write_text(json.dumps(entry) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "crawler", "export", str(archive), *args]
        return subprocess.run(command, capture_output=True, timeout=120, check=False)

    return {"atom": run("--atom", "-"), "bad limit": run("--atom", "-", "--limit", "1e3")}


def test_the_command_line_writes_atom_to_stdout(
    export_cli_runs: dict[str, subprocess.CompletedProcess[bytes]],
) -> None:
    done = export_cli_runs["atom"]
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"atom: 1 posts, 0 skipped -> stdout\n"
    parsed = feedparser.parse(done.stdout, sanitize_html=False, resolve_relative_uris=False)
    assert not parsed.bozo
    (entry,) = parsed.entries
    post = frontmatter.load(GOLDEN)
    assert (entry.title, entry.link) == (
        post["title"], "https://www.cnbeta.com.tw/articles/tech/1153343.htm",
    )  # fmt: skip
    assert [tag.term for tag in entry.tags] == post["categories"]
    assert entry.content[0].value == decode_post_body(
        post.content.removeprefix("<div>   \n").removesuffix("   \n</div>")
    )
    bad = export_cli_runs["bad limit"]
    text = subprocess.CompletedProcess(bad.args, bad.returncode, bad.stdout.decode(),
                                       bad.stderr.decode())  # fmt: skip
    assert usage_error(text) == "--limit 1e3: give a whole number >= 1"
    assert bad.stdout == b""
