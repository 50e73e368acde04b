"""Hostile content: links that point at internal addresses are never fetched (SSRF)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from support import crawl_in_process

from crawler.middlewares import is_public_address
from crawler.sources import SourcesError, load_sources, parse_source

LIST = (
    '<html><body><ul class="news">'
    '<li><a href="/a/1.html">own host</a></li>'
    '<li><a href="http://localhost:{port}/a/2.html">same machine, other name</a></li>'
    '<li><a href="http://169.254.169.254/latest/meta-data/">cloud metadata</a></li>'
    '<li><a href="/a/3.html">own host, redirected inside</a></li>'
    "</ul></body></html>"
)
ARTICLE = (
    '<html><head><meta property="og:title" content="Article {n}">'
    '<meta property="article:published_time" content="2026-11-27T10:00:00Z"></head>'
    "<body><article><p>{text}</p></article></body></html>"
)


def serve_site(server: HTTPServer) -> None:
    port = server.port
    server.expect_request("/robots.txt").respond_with_data("", content_type="text/plain")
    server.expect_request("/news").respond_with_data(
        LIST.format(port=port), content_type="text/html"
    )
    for n in (1, 2):
        server.expect_request(f"/a/{n}.html").respond_with_data(
            ARTICLE.format(n=n, text="Internal secrets " * 20), content_type="text/html"
        )
    server.expect_request("/a/3.html").respond_with_data(
        "", status=302, headers={"Location": f"http://localhost:{port}/a/secret.html"}
    )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),
        ("not an address", False),
    ],
)
def test_which_addresses_content_may_reach(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest_twisted.ensureDeferred
async def test_links_to_internal_addresses_are_refused_before_and_after_redirects(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_site(httpserver)
    result = await crawl_in_process(
        "list", tmp_path, server=httpserver,
        list=f"http://127.0.0.1:{httpserver.port}/news", links="ul.news a", body="article",
    )  # fmt: skip
    titles = sorted(post["title"] for post in result.posts().values())
    assert titles == ["Article 1"]  # only the page on the source's own host
    # localhost (another name for this machine) and 169.254.169.254 never asked; the
    # redirect from the own host to localhost refused when it was followed.
    assert "/a/2.html" not in result.requested and "/a/secret.html" not in result.requested
    assert result.stat("ssrf/refused") == 3
    assert "content points at an internal address" in result.log


@pytest_twisted.ensureDeferred
async def test_a_setting_allows_internal_addresses_for_local_mirrors(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_site(httpserver)
    result = await crawl_in_process(
        "list", tmp_path, {"ALLOW_PRIVATE_ADDRESSES": True}, server=httpserver,
        list=f"http://127.0.0.1:{httpserver.port}/news", links="ul.news a", body="article",
    )  # fmt: skip
    assert result.stat("ssrf/refused") is None
    assert "/a/2.html" in result.requested


# --- a sources file is checked whole, whatever it holds ---------------------------------------


def test_hostile_sources_files_are_one_clear_error(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it must not wait for a writer
    cases = {
        tmp_path: "cannot read the sources file (Is a directory)",
        fifo: "not a regular file",
        write(tmp_path / "deep.toml", "a = " + "[" * 100_000 + "]" * 100_000): "nested too deeply",
        write(tmp_path / "one.toml", "source = [1]"): "source #1: not a table",
        write(tmp_path / "big.toml", "#" * 2_000_000): "larger than 1024 KB",
        write(tmp_path / "bin.toml", "\udcff"): "not valid TOML",
    }
    for path, message in cases.items():
        with pytest.raises(SourcesError, match=re.escape(message)):
            load_sources(path)
    table = {"name": "x", "url": "https://e.com/f", "categories": ["a"], "author": "a"}
    with pytest.raises(SourcesError, match="key 'timezone': unknown time zone"):
        parse_source({**table, "timezone": "Europe/" + "A" * 300})


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path
