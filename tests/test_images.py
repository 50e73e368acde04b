"""Images that outlive their hosts: ARCHIVE_IMAGES crawls against a server of real image
bytes, the post rewriting, the image store and the settings."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from support import (
    FAST,
    PROJECT_ROOT,
    background_job,
    crawl_in_process,
    fixture_server,
    post_validator,
    run_harvest,
    source_table,
    write_sources,
)
from werkzeug import Response

from crawler.archive.files import SymlinkRefused, post_entries
from crawler.archive.images import ImageStore, replace_post
from crawler.archive.index import read_index
from crawler.checks import SettingError, check_settings
from crawler.post.images import (
    NotAPost,
    body_image_urls,
    image_extension,
    is_placeholder,
    join_post,
    lead_images,
    rewrite_body,
    rewrite_lead_images,
    split_post,
)


def png(red: int) -> bytes:
    """A real 1x1 PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, 0, 0]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"  # noqa: E501
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
RED, BLUE = png(255), png(7)


def name_of(data: bytes, extension: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest}.{extension}"


def feed(port: int, entries: list[tuple[str, str, str | None]]) -> str:
    """An RSS feed; each entry (title, body HTML, media:thumbnail URL or None)."""
    items = []
    for n, (title, body, thumbnail) in enumerate(entries, start=1):
        media = f'<media:thumbnail url="{thumbnail}"/>' if thumbnail else ""
        items.append(
            f"<item><title>{title}</title><link>http://127.0.0.1:{port}/a/{n}</link>"
            f"<pubDate>Fri, 27 Nov 2026 10:0{n}:00 GMT</pubDate>{media}"
            f"<description><![CDATA[{body}]]></description></item>"
        )
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>Pictures</title><link>http://127.0.0.1:{port}/</link>"
        + "".join(items)
        + "</channel></rss>"
    )


def serve_images(server: HTTPServer) -> str:
    """Image paths of every kind; returns the base URL."""
    base = f"http://127.0.0.1:{server.port}"
    server.expect_request("/robots.txt").respond_with_data("", content_type="text/plain")
    server.expect_request("/img/red.png").respond_with_data(RED, content_type="image/png")
    # The same picture under a second URL, labelled wrongly: stored once, as .png.
    server.expect_request("/cdn/red-copy").respond_with_data(RED, content_type="text/plain")
    server.expect_request("/img/blue.png").respond_with_data(BLUE, content_type="image/png")
    server.expect_request("/img/photo.jpeg").respond_with_data(JPEG, content_type="image/jpeg")
    server.expect_request("/img/anim").respond_with_data(GIF, content_type="image/gif")
    server.expect_request("/img/moved.png").respond_with_data(
        "", status=301, headers={"Location": f"{base}/img/anim"}
    )
    server.expect_request("/img/gone.png").respond_with_data("gone", status=404)
    server.expect_request("/img/error.png").respond_with_data(
        "<html><body>Not found</body></html>", content_type="image/png"
    )
    server.expect_request("/img/huge.png").respond_with_data(
        RED + b"\0" * 4096, content_type="image/png"
    )
    server.expect_request("/img/stream.png").respond_with_handler(
        lambda request: Response(iter([RED] + [b"\0" * 1024] * 4), content_type="image/png")
    )  # chunked, no Content-Length: cut off while it streams
    server.expect_request("/img/drawing.svg").respond_with_data(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        content_type="image/svg+xml",
    )
    return base


SETTINGS = {"ARCHIVE_IMAGES": True, "IMAGES_MAX_SIZE": 2048}


def entries(base: str, port: int) -> list[tuple[str, str, str | None]]:
    other_name = f"http://localhost:{port}"  # the same machine under another name: refused
    return [
        (
            "Red twice",
            f'<p>One <img src="{base}/img/red.png" alt="a &lt;img src=x&gt;"> and '
            f'<img src="{base}/cdn/red-copy"></p><p>{{braces}} stay encoded</p>',
            f"{base}/img/blue.png",
        ),
        (
            "Broken pictures",
            f'<p><img src="{base}/img/gone.png"><img src="{base}/img/error.png">'
            f'<img src="{base}/img/huge.png"><img src="{base}/img/stream.png">'
            f'<img src="{base}/img/drawing.svg">'
            f'<img src="{other_name}/img/red.png"></p>',
            None,
        ),
        (
            "Photo and animation",
            f'<p><img src="{base}/img/photo.jpeg"></p>\n<p><img src="{base}/img/moved.png"></p>'
            f'<p><img src="data:image/png;base64,iVBORw0KGgo="></p>',
            None,
        ),
        ("No picture", "<p>Only words here.</p>", None),
    ]


@pytest_twisted.ensureDeferred
async def test_a_crawl_archives_every_image_once_and_points_the_posts_at_them(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    base = serve_images(httpserver)
    httpserver.expect_request("/feed.xml").respond_with_data(
        feed(httpserver.port, entries(base, httpserver.port)), content_type="application/rss+xml"
    )
    result = await crawl_in_process(
        "feeds", tmp_path, SETTINGS, server=httpserver, url=f"{base}/feed.xml",
        categories=["Tech", "Pictures", "All"],
    )  # fmt: skip
    posts = {post["title"]: post for post in result.posts().values()}
    assert sorted(posts) == ["Broken pictures", "No picture", "Photo and animation", "Red twice"]

    red, blue = name_of(RED, "png"), name_of(BLUE, "png")
    jpeg, gif = name_of(JPEG, "jpg"), name_of(GIF, "gif")
    stored = sorted(p.relative_to(tmp_path / "images").as_posix()
                    for p in (tmp_path / "images").rglob("*") if p.is_file())  # fmt: skip
    assert stored == sorted([red, blue, jpeg, gif])
    assert (tmp_path / "images" / red).read_bytes() == RED

    twice = posts["Red twice"]
    assert twice["headimg"] == twice["thumbnail"] == f"/images/{blue}"
    assert body_image_urls(twice.content) == [f"/images/{red}", f"/images/{red}"]
    assert 'alt="a &lt;img src=x&gt;"' in twice.content
    assert "&#123;braces&#125;" in twice.content

    broken = posts["Broken pictures"]
    assert body_image_urls(broken.content) == [
        f"{base}/img/gone.png", f"{base}/img/error.png", f"{base}/img/huge.png",
        f"{base}/img/stream.png", f"{base}/img/drawing.svg",
        f"http://localhost:{httpserver.port}/img/red.png",
    ]  # fmt: skip
    assert broken["headimg"] == f"{base}/img/gone.png"  # the first image, kept as it was
    photo = posts["Photo and animation"]
    assert photo["headimg"] == f"/images/{jpeg}"
    assert body_image_urls(photo.content) == [f"/images/{jpeg}", f"/images/{gif}"]
    assert posts["No picture"]["headimg"].startswith("https://picsum.photos/")

    stats = result.stats
    assert stats["images/downloaded"] == 4
    assert stats["images/reused"] == 1  # red under its second URL
    assert stats["images/failed"] == 6
    assert stats["images/failed/http_404"] == 1
    assert stats["images/failed/not_an_image"] == 2  # the HTML page and the SVG
    assert stats["images/failed/refused"] == 1
    assert stats["images/failed/too_large"] == 2
    # Counted for the source too: the harvest report names it (no failure of the source).
    assert [v for k, v in stats.items() if k.endswith("/images_failed")] == [6]
    assert "/img/red.png" not in [p for p in result.requested if "localhost" in p]
    assert result.requested.count("/img/red.png") == 1
    assert stats["write/written"] == 4
    assert "image not archived, the post keeps its URL: " + f"{base}/img/gone.png: HTTP 404" in (
        result.log
    )
    assert "Traceback" not in result.log
    # The posts still follow the format; the walks of posts never enter images/.
    assert [path for path, _ in post_entries(tmp_path)] == sorted(read_index(tmp_path))
    for path in read_index(tmp_path):
        text = (tmp_path / path).read_text("utf-8")
        split_post(text)
        assert "\n\n<div>" in text and "\n\n" not in split_post(text)[1]

    # A second crawl of the same feed: nothing new, nothing downloaded.
    again = await crawl_in_process(
        "feeds", tmp_path, SETTINGS, server=httpserver, url=f"{base}/feed.xml",
        categories=["Tech", "Pictures", "All"],
    )  # fmt: skip
    assert again.stats.get("images/downloaded") is None
    assert not [path for path in again.requested if path.startswith(("/img/", "/cdn/"))]


@pytest_twisted.ensureDeferred
async def test_a_dry_run_fetches_and_checks_images_but_stores_nothing(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    base = serve_images(httpserver)
    httpserver.expect_request("/feed.xml").respond_with_data(
        feed(httpserver.port, entries(base, httpserver.port)[:1]),
        content_type="application/rss+xml",
    )
    archive = tmp_path / "archive"
    result = await crawl_in_process(
        "feeds", archive, {**SETTINGS, "DRY_RUN": True}, server=httpserver,
        url=f"{base}/feed.xml", categories=["Tech", "Pictures", "All"],
    )  # fmt: skip
    assert not archive.exists()
    assert result.stats["images/downloaded"] == 2
    assert f"dry run: would store images/{name_of(RED, 'png')}" in result.log


@pytest_twisted.ensureDeferred
async def test_images_are_off_by_default(httpserver: HTTPServer, tmp_path: Path) -> None:
    base = serve_images(httpserver)
    httpserver.expect_request("/feed.xml").respond_with_data(
        feed(httpserver.port, entries(base, httpserver.port)[:1]),
        content_type="application/rss+xml",
    )
    result = await crawl_in_process(
        "feeds", tmp_path, {}, server=httpserver, url=f"{base}/feed.xml",
        categories=["Tech", "Pictures", "All"],
    )  # fmt: skip
    assert not (tmp_path / "images").exists()
    assert not [path for path in result.requested if path.startswith("/img/")]
    (post,) = result.posts().values()
    assert post["headimg"] == f"{base}/img/blue.png"
    assert "ArchiveImagesPipeline" not in result.log  # off by default: not worth a warning


@pytest_twisted.ensureDeferred
async def test_a_planted_symlink_and_the_per_post_cap_leave_urls_remote_not_half_written(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    base = serve_images(httpserver)
    httpserver.expect_request("/feed.xml").respond_with_data(
        feed(httpserver.port, entries(base, httpserver.port)[:1]),
        content_type="application/rss+xml",
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "images").symlink_to(outside)
    result = await crawl_in_process(
        "feeds", archive, {**SETTINGS, "IMAGES_MAX_PER_POST": 2}, server=httpserver,
        url=f"{base}/feed.xml", categories=["Tech", "Pictures", "All"],
    )  # fmt: skip
    assert list(outside.iterdir()) == []
    assert result.stats["images/over_cap"] == 1  # blue, red, red-copy: the copy not asked for
    assert "/cdn/red-copy" not in result.requested
    assert result.stats["images/failed/write_error"] == 2
    (post,) = result.posts().values()  # written all the same, with the original URLs
    assert post["headimg"] == f"{base}/img/blue.png"
    assert body_image_urls(post.content) == [f"{base}/img/red.png", f"{base}/cdn/red-copy"]
    assert "refusing to use a symlink inside the archive" in result.log


# --- plain functions ------------------------------------------------------------------------


def test_images_are_told_by_their_bytes() -> None:
    assert image_extension(RED) == "png"
    assert image_extension(JPEG) == "jpg"
    assert image_extension(GIF) == "gif"
    assert image_extension(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "webp"
    assert image_extension(b"\x00\x00\x00\x1cftypavif\x00") == "avif"
    for other in (b"", b"<html>", b'<svg xmlns="http://www.w3.org/2000/svg"/>', b"\x89PN"):
        assert image_extension(other) is None


def test_only_generated_placeholders_count_as_placeholders() -> None:
    template = "https://picsum.photos/400/300?random={n}"
    assert is_placeholder("https://picsum.photos/400/300?random=42", template)
    assert not is_placeholder("https://picsum.photos/400/300?random=x", template)
    assert not is_placeholder("https://example.org/logo.png", "https://example.org/logo.png")


def test_rewriting_a_body_changes_only_image_sources() -> None:
    body = (
        '<p title="<img src=&quot;http://a/x.png&quot;>">'
        '<img alt=">" src="http://a/x.png?a=1&amp;b=&#123;2&#125;" referrerpolicy="no-referrer">'
        '</p>\n<a href="http://a/x.png">link</a><IMG SRC=http://a/y.png>'
    )
    assert body_image_urls(body) == ["http://a/x.png?a=1&b={2}", "http://a/y.png"]
    rewritten = rewrite_body(body, {"http://a/x.png?a=1&b={2}": "/images/ab/c.png"})
    assert rewritten == body.replace("http://a/x.png?a=1&amp;b=&#123;2&#125;", "/images/ab/c.png")
    assert rewrite_body(body, {}) == body


def test_a_post_file_is_split_and_joined_byte_for_byte() -> None:
    golden = Path(__file__).parent / "fixtures" / "golden" / "cnbeta-2021-07-17.md"
    text = golden.read_text("utf-8")
    front, body = split_post(text)
    assert join_post(front, body) == text
    (lead, _) = lead_images(front)
    assert lead.startswith("https://n.sinaimg.cn/")
    swapped = rewrite_lead_images(front, {lead: "/images/ab/c.png"})
    assert lead_images(swapped) == ["/images/ab/c.png", "/images/ab/c.png"]
    assert swapped.replace("/images/ab/c.png", lead) == front
    for broken in ("no front matter", text[:-1], text.replace("<div>   \n", "<div>\n")):
        with pytest.raises(NotAPost):
            split_post(broken)


def test_the_schema_takes_archived_image_paths_only() -> None:
    validator = post_validator()
    post = {
        "title": "T", "categories": ["A"], "author": "A", "comments": False,
        "date": "Fri, 27 Nov 2026 10:00:00 GMT", "body": "<p>x</p>",
    }  # fmt: skip
    for image, valid in (
        (f"/images/{name_of(RED, 'png')}", True),
        (f"/blog/images/{name_of(GIF, 'gif')}", True),
        (f"https://cdn.example.org/images/{name_of(RED, 'png')}", True),
        ("/images/logo.png", False),
        (f"images/{name_of(RED, 'png')}", False),
        (f"/images/{name_of(RED, 'png')[:-3]}svg", False),
    ):
        errors = list(validator.iter_errors({**post, "headimg": image, "thumbnail": image}))
        assert (not errors) is valid, image


# --- the store ------------------------------------------------------------------------------


def test_the_store_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "images").symlink_to(outside)
    store = ImageStore(archive)
    from io import BytesIO

    with pytest.raises(SymlinkRefused):
        store.persist_file(name_of(RED, "png"), BytesIO(RED))
    with pytest.raises(SymlinkRefused):
        store.exists(name_of(RED, "png"))
    assert list(outside.iterdir()) == []


def test_a_post_is_replaced_atomically_and_never_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "2026" / "11").mkdir(parents=True)
    post = tmp_path / "2026" / "11" / "p.md"
    post.write_bytes(b"old")
    replace_post(tmp_path, "2026/11/p.md", b"new")
    assert post.read_bytes() == b"new"
    assert os.listdir(post.parent) == ["p.md"]  # no temporary file left
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (tmp_path / "2026" / "11" / "q.md").symlink_to(target)
    with pytest.raises(SymlinkRefused):
        replace_post(tmp_path, "2026/11/q.md", b"new")
    assert target.read_bytes() == b"keep"
    with pytest.raises(FileNotFoundError):
        replace_post(tmp_path, "2026/11/missing.md", b"new")


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGES_URL_PREFIX", "images/"),
        ("IMAGES_URL_PREFIX", "/images"),
        ("IMAGES_URL_PREFIX", "//cdn.example.org/images/"),
        ("IMAGES_URL_PREFIX", "/my images/"),
        ("IMAGES_URL_PREFIX", "/im'ages/"),
        ("IMAGES_URL_PREFIX", "/&#123;/"),
        ("IMAGES_URL_PREFIX", "ftp://example.org/images/"),
        ("IMAGES_MAX_SIZE", "12"),
        ("IMAGES_MAX_PER_POST", "-1"),
        ("ARCHIVE_IMAGES", "maybe"),
    ],
)
def test_image_settings_a_run_cannot_work_with_are_refused(name: str, value: str) -> None:
    from scrapy.settings import Settings

    with pytest.raises(SettingError, match=name):
        check_settings(Settings({name: value}))


def test_good_image_settings_pass() -> None:
    from scrapy.settings import Settings

    for prefix in ("/images/", "/blog/images/", "https://cdn.example.org/images/"):
        check_settings(Settings({"IMAGES_URL_PREFIX": prefix, "ARCHIVE_IMAGES": "True"}))


# --- images --backfill ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_backfill_archives_the_images_of_existing_posts_once(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    from crawler.cli.backfill import BackfillSpider, backfill_settings
    from crawler.cli.images import report

    base = serve_images(httpserver)
    httpserver.expect_request("/feed.xml").respond_with_data(
        feed(httpserver.port, entries(base, httpserver.port)), content_type="application/rss+xml"
    )
    await crawl_in_process(  # an archive of hot-linked images, as before ARCHIVE_IMAGES
        "feeds", tmp_path, {}, url=f"{base}/feed.xml", categories=["Tech", "Pictures", "All"]
    )
    (tmp_path / "2026" / "11" / "hand-edited.md").write_text("no front matter here")
    before = {path: (tmp_path / path).read_bytes() for path in read_index(tmp_path)}
    # Posts name no source to trust: every image host is checked, so a local one needs this.
    settings = {**backfill_settings(tmp_path), **SETTINGS, "ALLOW_PRIVATE_ADDRESSES": True}

    dry = await crawl_in_process(
        BackfillSpider, tmp_path, {**settings, "DRY_RUN": True}, server=httpserver
    )
    assert dry.stats["backfill/rewritten"] == 3
    assert not (tmp_path / "images").exists()
    assert {path: (tmp_path / path).read_bytes() for path in before} == before

    result = await crawl_in_process(BackfillSpider, tmp_path, settings, server=httpserver)
    stats = result.stats
    assert stats["backfill/posts"] == 4
    assert stats["backfill/unreadable"] == 1
    assert stats["backfill/rewritten"] == 3  # every post with an image
    assert stats["images/downloaded"] == 4
    assert stats["images/reused"] == 2  # red under two more URLs
    assert stats["images/failed"] == 5
    posts = {post["title"]: post for post in result.posts().values() if "title" in post}
    twice = posts["Red twice"]
    assert twice["headimg"] == twice["thumbnail"] == f"/images/{name_of(BLUE, 'png')}"
    assert body_image_urls(twice.content) == [f"/images/{name_of(RED, 'png')}"] * 2
    index = read_index(tmp_path)
    lines = (tmp_path / ".index.jsonl").read_bytes().splitlines()
    assert len(lines) == len(index) == 4  # compacted: one line per post
    for path, entry in index.items():
        data = (tmp_path / path).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        front, body = split_post(data.decode("utf-8"))
        assert not list(post_validator().iter_errors({
            "title": "t", "categories": ["c"], "author": "a", "comments": False,
            "date": "Fri, 27 Nov 2026 10:00:00 GMT", "body": body,
            "headimg": lead_images(front)[0], "thumbnail": lead_images(front)[1],
        }))  # fmt: skip
    assert (tmp_path / "2026" / "11" / "hand-edited.md").read_text() == "no front matter here"
    assert report(stats, tmp_path) == 1  # five images could not be archived

    again = await crawl_in_process(BackfillSpider, tmp_path, settings, server=httpserver)
    assert again.stats.get("images/downloaded") is None
    assert again.stats.get("backfill/rewritten") is None
    assert not [p for p in again.requested if p.startswith("/img/red") or "blue" in p]


# --- the command line -------------------------------------------------------------------------


def run_images(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "images", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class CommandLine:
    harvest: subprocess.CompletedProcess[str]
    backfill: subprocess.CompletedProcess[str]
    no_action: subprocess.CompletedProcess[str]
    bad_prefix: subprocess.CompletedProcess[str]
    archive: Path
    base: str
    site: Path  # a Hexo site the archive was exported into and generated
    export: subprocess.CompletedProcess[str]
    generate: subprocess.CompletedProcess[str]


@background_job
def images_from_the_command_line(home: Path) -> CommandLine:
    """A harvest with ARCHIVE_IMAGES of a feed on 127.0.0.1 (its images on the feed's own
    host: no ALLOW_PRIVATE_ADDRESSES needed), then a backfill that finds nothing to do."""

    def serve(server: HTTPServer) -> None:
        base = serve_images(server)
        good = entries(base, server.port)
        server.expect_request("/feed.xml").respond_with_data(
            feed(server.port, [good[0], good[2], good[3]]), content_type="application/rss+xml"
        )

    archive = home / "archive"
    with fixture_server(serve) as site:
        table = source_table("pictures", url="{base}/feed.xml", categories=["Tech", "P", "All"],
                             author="P")  # fmt: skip
        sources = write_sources(home / "sources.toml", site, table)
        harvest = run_harvest(
            "--sources", str(sources), "--output", str(archive), "-s", "ARCHIVE_IMAGES=True"
        )
        backfill = run_images("--backfill", str(archive), *FAST)
        base = site.url_for("").rstrip("/")
    no_action = run_images(str(archive))
    bad_prefix = run_images("--backfill", str(archive), "-s", "IMAGES_URL_PREFIX=images/")
    # The real Hexo (tests/test_hexo_site.py installs and pins it) publishes the posts.
    from test_hexo_site import VARIANTS, export, generate, install_hexo, make_site

    site = make_site(home / "site", install_hexo(), next(iter(VARIANTS.values())))
    exported = export(archive, site)
    generated = generate(site, "UTC")
    return CommandLine(
        harvest, backfill, no_action, bad_prefix, archive, base, site, exported, generated
    )


def test_a_harvest_with_archive_images_leaves_no_image_remote(
    images_from_the_command_line: CommandLine,
) -> None:
    run = images_from_the_command_line
    assert run.harvest.returncode == 0, run.harvest.stderr
    texts = [(run.archive / path).read_text("utf-8") for path in read_index(run.archive)]
    assert len(texts) == 3
    for text in texts:
        front, body = split_post(text)
        for url in [*lead_images(front), *body_image_urls(body)]:
            assert url.startswith("/images/") or url.startswith("https://picsum.photos/")
            if url.startswith("/images/"):
                assert (run.archive / url.lstrip("/")).is_file()
    assert run.base not in "".join(texts).replace(f"{run.base}/a/", "")


def test_backfill_from_the_command_line(images_from_the_command_line: CommandLine) -> None:
    run = images_from_the_command_line
    assert run.backfill.returncode == 0, run.backfill.stderr
    assert run.backfill.stdout.strip() == (
        f"images {run.archive}: 3 posts read, 0 rewritten; images: 0 downloaded, 0 reused, 0 failed"
    )
    assert run.no_action.returncode == 2
    assert run.no_action.stderr == "error: images: give --backfill (the only action for now)\n"
    assert run.bad_prefix.returncode == 2
    assert run.bad_prefix.stderr.startswith("error: -s IMAGES_URL_PREFIX='images/': must be")
    assert len(run.bad_prefix.stderr.splitlines()) == 1


def test_hexo_renders_the_archived_images(images_from_the_command_line: CommandLine) -> None:
    run = images_from_the_command_line
    assert run.export.returncode == 0, run.export.stderr
    assert run.generate.returncode == 0, run.generate.stderr
    public = run.site / "public"
    shown = []
    for page in sorted(public.rglob("index.html")):
        document = lxml.html.fromstring(page.read_bytes())
        shown += [image.get("src") for image in document.iter("img")]
    assert len(shown) == 4  # red twice, the photo and the animation
    for src in shown:
        assert src.startswith("/images/")
        assert (public / src.lstrip("/")).read_bytes() == (
            run.archive / src.lstrip("/")
        ).read_bytes()


def test_the_report_names_images_not_archived_without_failing_the_source() -> None:
    from crawler.cli.report import Report, SourceResult

    report = Report("s", "f", 1.0, "/a", [SourceResult("pics", "feed", new=2, images_failed=3)])
    assert report.exit_status == 0
    assert report.as_dict()["sources"][0]["images_failed"] == 3
    assert report.as_text().splitlines()[-1] == (
        "pics: 3 images not archived (the posts keep their URLs; the log says why)"
    )
