"""Real crawls against a server that misbehaves (tests/faultserver.py), as a hostile or broken
site would: what an operator needs from an unattended run when HTTP goes wrong.

Faults, and where each is served:

- connection refused, reset mid-body (RST), slow drip (times out), 5xx and 404, 429 with odd
  ``Retry-After`` values (``-1``, ``abc``, ``99999999999``, a date in 2015, one in 9999, empty,
  a Latin-1 superscript two), a truncated gzip stream (cut in the middle, cut in the
  header), a gzip bomb (10 KB -> 10 MB), oversized bodies (``Content-Length`` beyond
  ``DOWNLOAD_MAXSIZE``, and chunked without length), a redirect loop (A -> B -> A), a feed
  served as ``image/png``, a UTF-8 feed labelled ``iso-8859-1``: as feed sources of one
  ``feeds`` crawl, next to a good feed.
- a 304 nobody asked for (no validators sent): in the same ``feeds`` crawl.
- an empty 200 feed: a ``feeds`` crawl of its own, next to a good feed.
- as article pages of one ``list`` source: refused, reset, 500, 404, 429, both truncated
  gzips, the bomb, both oversized bodies, an HTML page served as
  ``application/octet-stream``, a GBK page labelled UTF-8, an empty 200 and an unasked 304,
  next to good articles (no drip: the feeds crawl has the timeout, and it costs 2 s); a
  redirect loop as the article of a list of its own.
- as the list page itself (``list``: 503, unasked 304, bomb, reset, redirect loop, empty
  200) and as the home page (``cnbeta`` with ``base_url``: bomb, 429 until 9999, redirect
  loop).

Promises checked, for each fault:

- the crawl finishes (bounded by ``DOWNLOAD_TIMEOUT``, ``RETRY_TIMES``, ``RETRY_AFTER_MAX``
  and ``DOWNLOAD_MAXSIZE``) and its log has no traceback;
- a source whose feed or list page could not be read is FAILED, with a one-line reason
  that says why (``source/<name>/reason``);
- an article that could not be read is counted (``article_fetch_failed``,
  ``article_http_error``, ``dropped``) and remembered as failed, and every listed article is
  accounted for; the other sources and articles are archived, with their real titles;
- nothing is half-written: every post on disk parses (python-frontmatter), no temporary file
  is left;
- a feed that failed keeps no validators (the next run reads it whole);
- bombs and oversized bodies are dropped by size, not read (Scrapy's log says so).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import frontmatter
import pytest
import pytest_twisted
from faultserver import ETAG, OVERSIZED_BYTES, FaultServer, article_title, feed_titles
from support import CrawlResult, crawl_in_process

from crawler.archive.state import ArchiveState
from crawler.post.keys import url_key
from crawler.sources import Source

MAXSIZE = 1024 * 1024
FAULT_SETTINGS = {
    "DOWNLOAD_TIMEOUT": 1,
    "RETRY_TIMES": 1,
    "RETRY_BACKOFF_BASE": 0,
    "RETRY_AFTER_MAX": 0.1,
    "DOWNLOAD_MAXSIZE": MAXSIZE,
    # Every source is on 127.0.0.1: let them run side by side, so the crawl lasts as long
    # as its slowest fault (the drip), not as long as all of them.
    "CONCURRENT_REQUESTS": 64,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 64,
}
REFUSED = "refused"  # stands for FaultServer.refused_url() in the tables below

# --- the feeds crawl: source name -> path on the fault server ------------------------------

GOOD_FEED = "/ok/feed"
FEEDS = {
    "good": GOOD_FEED,
    "refused": REFUSED,
    "reset": "/reset/feed",
    "drip": "/drip/feed",
    "status-500": "/status/500/feed",
    "status-503": "/status/503/feed",
    "status-404": "/status/404/feed",
    "retry-after-minus-one": "/retry-after/-1/feed",
    "retry-after-abc": "/retry-after/abc/feed",
    "retry-after-huge": "/retry-after/99999999999/feed",
    "retry-after-past": "/retry-after/past/feed",
    "retry-after-future": "/retry-after/future/feed",
    "retry-after-empty": "/retry-after/empty/feed",
    "retry-after-superscript": "/retry-after/%B2/feed",  # b"\xb2": "²" in Latin-1
    "gzip-truncated": "/gzip-truncated/feed",
    "gzip-truncated-header": "/gzip-truncated/header/feed",
    "gzip-bomb": "/gzip-bomb/feed",
    "oversized-length": "/oversized/length/feed",
    "oversized-chunked": "/oversized/chunked/feed",
    "redirect-loop": "/redirect-loop/a/feed",
    "content-type-lie": "/content-type-lie/feed",
    "charset-lie": "/charset-lie/feed",
    "304-unasked": "/304-unasked/feed",
}
RETRY_AFTER_SOURCES = [name for name in FEEDS if name.startswith("retry-after-")]


def feed_url(server: FaultServer, refused: str, name: str) -> str:
    path = FEEDS[name]
    return refused if path == REFUSED else server.url(path)


def feed_source(name: str, url: str) -> Source:
    return Source(name=name, categories=("Faults", name, "All"), author="Faults", url=url)


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


@pytest.fixture(scope="module")
def refused() -> str:
    return FaultServer.refused_url("/feed")


@pytest_twisted.async_fixture(scope="module")
async def feeds_run(
    server: FaultServer, refused: str, tmp_path_factory: pytest.TempPathFactory
) -> CrawlResult:
    """Every feed fault at once, as the sources of one ``feeds`` crawl."""
    sources = [feed_source(name, feed_url(server, refused, name)) for name in FEEDS]
    output = tmp_path_factory.mktemp("feeds")
    return await crawl_in_process("feeds", output, FAULT_SETTINGS, sources=sources)


def assert_finished_cleanly(result: CrawlResult) -> None:
    assert result.stats.get("finish_reason") == "finished"
    assert "Traceback" not in result.log
    assert result.stat("log_count/ERROR") is None, result.log


def assert_whole_posts(result: CrawlResult) -> dict[str, frontmatter.Post]:
    """Every ``*.md`` in the archive parses and has a title and a date; nothing temporary."""
    paths = sorted(result.output_dir.rglob("*.md"))
    posts = {path.name: frontmatter.load(path) for path in paths}
    for name, post in posts.items():
        assert post.get("title") and post.get("date"), name
    assert not list(result.output_dir.rglob("*.tmp"))
    assert len(posts) == (result.stat("write/written") or 0)
    return posts


def titles_of(result: CrawlResult) -> set[str]:
    return {str(post["title"]) for post in result.posts().values()}


def assert_reason(result: CrawlResult, name: str, url: str, fragment: str | None) -> None:
    """``name`` FAILED with a one-line reason ``<why>: <url>`` whose why is not empty."""
    assert result.stat(f"source/{name}/failed") == 1
    reason = result.stats[f"source/{name}/reason"]
    assert "\n" not in reason
    assert reason.endswith(f": {url}"), reason
    why = reason.removesuffix(f": {url}").strip()
    assert why, f"an empty reason: {reason!r}"
    if fragment is not None:
        assert fragment in why
    assert f"source {name}: 0 seen, 0 new, 0 duplicate, 0 dropped, FAILED" in result.log


# --- feeds ---------------------------------------------------------------------------------


def test_a_feeds_crawl_full_of_faults_finishes_cleanly(feeds_run: CrawlResult) -> None:
    assert_finished_cleanly(feeds_run)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("refused", "Connection was refused"),
        ("drip", "took longer than 1.0 seconds"),
        ("status-500", "HTTP 500"),
        ("status-503", "HTTP 503"),
        ("status-404", "HTTP 404"),
        ("retry-after-minus-one", "HTTP 429"),
        ("retry-after-abc", "HTTP 429"),
        ("retry-after-huge", "HTTP 429"),
        ("retry-after-past", "HTTP 429"),
        ("retry-after-future", "HTTP 429"),
        ("retry-after-empty", "HTTP 429"),
        ("gzip-truncated-header", "Compressed file ended"),
        ("gzip-bomb", "exceeded DOWNLOAD_MAXSIZE"),
        ("oversized-length", "larger than download max size"),
        ("redirect-loop", "max redirections reached"),
        ("reset", None),
        ("oversized-chunked", "DownloadCancelledError"),  # Scrapy cancels it, wordless,
    ],
)
def test_an_unreadable_feed_fails_its_source_with_a_one_line_reason(
    feeds_run: CrawlResult, server: FaultServer, refused: str, name: str, fragment: str | None
) -> None:
    assert_reason(feeds_run, name, feed_url(server, refused, name), fragment)


def test_the_readable_feeds_are_archived_whole_with_their_real_titles(
    feeds_run: CrawlResult,
) -> None:
    titles = titles_of(feeds_run)
    # A feed served as image/png is still a feed; a UTF-8 feed labelled iso-8859-1 is read
    # as UTF-8 (its XML declaration), not as mojibake.
    for name in ("good", "content-type-lie", "charset-lie"):
        assert set(feed_titles(FEEDS[name])) <= titles, name
        assert feeds_run.stat(f"source/{name}/failed") is None
    assert feeds_run.stat("write/written") == 3 * len(feed_titles(GOOD_FEED))


def test_nothing_is_half_written(feeds_run: CrawlResult) -> None:
    posts = assert_whole_posts(feeds_run)
    assert len(posts) == 3 * len(feed_titles(GOOD_FEED))


def test_a_good_feed_keeps_its_validators(feeds_run: CrawlResult, server: FaultServer) -> None:
    state = ArchiveState(feeds_run.output_dir)
    try:
        assert state.feed_validators(server.url(GOOD_FEED))[0] == ETAG
    finally:
        state.close()


@pytest.mark.parametrize(
    "name",
    # gzip-truncated: see test_a_feed_whose_gzip_stream_was_cut_short_keeps_no_validators
    [
        name
        for name in FEEDS
        if name not in ("good", "content-type-lie", "charset-lie", "gzip-truncated")
    ],
)
def test_a_feed_that_failed_keeps_no_validators(
    feeds_run: CrawlResult, server: FaultServer, refused: str, name: str
) -> None:
    """Every fault that answers at all sends an ETag: none may be kept for the next run."""
    state = ArchiveState(feeds_run.output_dir)
    try:
        assert state.feed_validators(feed_url(server, refused, name)) == (None, None)
    finally:
        state.close()


def test_bombs_and_oversized_bodies_are_dropped_by_size(
    feeds_run: CrawlResult, server: FaultServer
) -> None:
    log = feeds_run.log
    bomb = server.url(FEEDS["gzip-bomb"])
    assert re.search(
        rf"Ignored response <200 {re.escape(bomb)}> because its body .* exceeded "
        rf"DOWNLOAD_MAXSIZE \({MAXSIZE} B\) during decompression",
        log,
    )
    length = server.url(FEEDS["oversized-length"])
    assert f"Expected to receive {OVERSIZED_BYTES} bytes which is larger than download max" in log
    assert f"({MAXSIZE}) in request <GET {length}>" in log
    chunked = server.url(FEEDS["oversized-chunked"])
    assert re.search(
        rf"Received \d+ bytes which is larger than download max size \({MAXSIZE}\) in request "
        rf"<GET {re.escape(chunked)}>",
        log,
    )
    # Dropped, not retried: one request each.
    for name in ("gzip-bomb", "oversized-length", "oversized-chunked"):
        assert len(server.requested(FEEDS[name])) == 1, name


@pytest.mark.parametrize(
    "name", [name for name in RETRY_AFTER_SOURCES if name != "retry-after-superscript"]
)
def test_a_429_is_retried_whatever_its_retry_after_says(
    feeds_run: CrawlResult, server: FaultServer, name: str
) -> None:
    """RETRY_TIMES=1: two requests; an unusable value falls back to the backoff, a date in
    9999 or 99999999999 seconds wait RETRY_AFTER_MAX at most (the crawl finished)."""
    assert len(server.requested(FEEDS[name])) == 2
    assert_reason(feeds_run, name, server.url(FEEDS[name]), "HTTP 429")


def test_a_retry_after_that_only_looks_like_digits_is_ignored(
    feeds_run: CrawlResult, server: FaultServer
) -> None:
    """``Retry-After: ²`` is as unusable as ``abc``: retried after the backoff, then HTTP 429."""
    name = "retry-after-superscript"
    assert len(server.requested(FEEDS[name])) == 2
    assert_reason(feeds_run, name, server.url(FEEDS[name]), "HTTP 429")


def test_only_usable_retry_after_values_are_honoured(feeds_run: CrawlResult) -> None:
    # the date in 2015 (no wait), the one in 9999 and 99999999999 seconds (both capped);
    # -1, abc and an empty value fall back to the backoff
    assert feeds_run.stat("retry/retry_after_honoured") == 3


def test_a_304_nobody_asked_for_fails_the_feed(feeds_run: CrawlResult, server: FaultServer) -> None:
    (request,) = server.requested(FEEDS["304-unasked"])
    assert "if-none-match" not in request.headers and "if-modified-since" not in request.headers
    assert_reason(feeds_run, "304-unasked", server.url(FEEDS["304-unasked"]), "304")


def test_a_feed_whose_gzip_stream_was_cut_short_keeps_no_validators(
    feeds_run: CrawlResult, server: FaultServer
) -> None:
    assert feeds_run.stat("source/gzip-truncated/bozo") == 1  # what could be inflated was read
    state = ArchiveState(feeds_run.output_dir)
    try:
        assert state.feed_validators(server.url(FEEDS["gzip-truncated"])) == (None, None)
    finally:
        state.close()


# --- an empty 200 feed (a crawl of its own: today it ends in a traceback) -------------------


@pytest_twisted.async_fixture(scope="module")
async def empty_feed_run(
    server: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> CrawlResult:
    sources = [
        feed_source("empty-200", server.url("/empty-200/feed")),
        feed_source("good", server.url(GOOD_FEED)),
    ]
    output = tmp_path_factory.mktemp("empty-feed")
    return await crawl_in_process("feeds", output, FAULT_SETTINGS, sources=sources)


def test_an_empty_200_feed_is_not_a_feed_and_no_traceback(
    empty_feed_run: CrawlResult, server: FaultServer
) -> None:
    assert_finished_cleanly(empty_feed_run)
    assert_reason(empty_feed_run, "empty-200", server.url("/empty-200/feed"), "not a feed")


def test_an_empty_200_feed_costs_the_other_feeds_nothing(
    empty_feed_run: CrawlResult, server: FaultServer
) -> None:
    assert empty_feed_run.stat("source/empty-200/failed") == 1
    assert set(feed_titles(GOOD_FEED)) <= titles_of(empty_feed_run)
    assert_whole_posts(empty_feed_run)
    state = ArchiveState(empty_feed_run.output_dir)
    try:
        assert state.feed_validators(server.url("/empty-200/feed")) == (None, None)
    finally:
        state.close()


# --- a list source whose articles fail --------------------------------------------------

ARCHIVED_ARTICLES = ["/ok/article/1", "/ok/article/2", "/content-type-lie/article"]
# path -> how it fails: source/<name>/article_<kind> counts it
FAILED_ARTICLES = {
    REFUSED: "fetch_failed",
    "/reset/article": "fetch_failed",
    "/gzip-truncated/header/article": "fetch_failed",
    "/gzip-bomb/article": "fetch_failed",
    "/oversized/length/article": "fetch_failed",
    "/oversized/chunked/article": "fetch_failed",
    "/status/500/article": "http_error",
    "/status/404/article": "http_error",
    "/retry-after/abc/article": "http_error",
    "/304-unasked/article": "http_error",
}
# Fetched, but nothing to archive: no title, no date (dropped, counted).
UNREADABLE_ARTICLES = ["/empty-200/article", "/gzip-truncated/article"]
CHARSET_LIE_ARTICLE = "/charset-lie/article"  # archived; its title is the question
LIST_ARGS = {"links": "ul.news a", "body": "article"}


def list_page(*urls: str) -> bytes:
    items = "".join(f'<li><a href="{url}">{url}</a></li>' for url in urls)
    return f'<html><body><ul class="news">{items}</ul></body></html>'.encode()


def article_url(server: FaultServer, path: str) -> str:
    return FaultServer.refused_url("/article") if path == REFUSED else server.url(path)


@pytest.fixture(scope="module")
def article_urls(server: FaultServer) -> dict[str, str]:
    paths = [*ARCHIVED_ARTICLES, *FAILED_ARTICLES, *UNREADABLE_ARTICLES, CHARSET_LIE_ARTICLE]
    return {path: article_url(server, path) for path in paths}


@pytest_twisted.async_fixture(scope="module")
async def list_run(
    server: FaultServer, article_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> CrawlResult:
    server.serve("/lists/faults", list_page(*article_urls.values()))
    output = tmp_path_factory.mktemp("list")
    # robots.txt of the refused article's port would be one more refused connection (the
    # feeds crawl has that); each costs Twisted's 0.3 s connection-attempt delay.
    settings = {**FAULT_SETTINGS, "ROBOTSTXT_OBEY": False}
    return await crawl_in_process(
        "list", output, settings, list=server.url("/lists/faults"), **LIST_ARGS
    )


def test_a_list_crawl_full_of_failing_articles_finishes_cleanly(list_run: CrawlResult) -> None:
    assert_finished_cleanly(list_run)
    assert list_run.stat("source/127.0.0.1/failed") is None  # its list page was read


def test_the_good_articles_are_archived_next_to_the_failing_ones(list_run: CrawlResult) -> None:
    titles = titles_of(list_run)
    # an HTML page served as application/octet-stream is still read as HTML
    assert {article_title(path) for path in ARCHIVED_ARTICLES} <= titles
    assert_whole_posts(list_run)


def test_every_listed_article_is_accounted_for(
    list_run: CrawlResult, article_urls: dict[str, str]
) -> None:
    stat = list_run.stat
    name = "source/127.0.0.1"
    assert stat(f"{name}/seen") == stat(f"{name}/article_requested") == len(article_urls)
    kinds = list(FAILED_ARTICLES.values())
    assert stat(f"{name}/article_fetch_failed") == kinds.count("fetch_failed")
    assert stat(f"{name}/article_http_error") == kinds.count("http_error")
    assert stat(f"{name}/dropped") == len(UNREADABLE_ARTICLES)
    assert stat(f"{name}/new") == len(ARCHIVED_ARTICLES) + 1  # with the charset lie
    accounted = sum(
        stat(f"{name}/{what}") or 0
        for what in ("new", "dropped", "article_fetch_failed", "article_http_error")
    )
    assert accounted == len(article_urls)


@pytest.mark.parametrize("path", [*FAILED_ARTICLES, *UNREADABLE_ARTICLES])
def test_a_failed_article_is_logged_and_remembered(
    list_run: CrawlResult, article_urls: dict[str, str], path: str
) -> None:
    """One warning line naming the page, and the archive waits before asking again."""
    url = article_urls[path]
    what = {
        "fetch_failed": f"article {url} could not be fetched",
        "http_error": f"article {url} answered HTTP ",
    }.get(FAILED_ARTICLES.get(path, ""), f"no publication date on {url}")
    assert f"WARNING: source 127.0.0.1: {what}" in list_run.log
    state = ArchiveState(list_run.output_dir)
    try:
        assert state.in_failure_backoff(url_key(url) or url, timedelta(hours=1))
    finally:
        state.close()


@pytest.mark.parametrize("path", ["/reset/article", "/oversized/chunked/article"])
def test_a_failed_article_line_says_why(
    list_run: CrawlResult, article_urls: dict[str, str], path: str
) -> None:
    url = re.escape(article_urls[path])
    (why,) = re.findall(rf"article {url} could not be fetched: (.*)$", list_run.log, re.MULTILINE)
    assert why.strip()


def test_a_gbk_article_labelled_utf8_keeps_its_title(list_run: CrawlResult) -> None:
    assert article_title(CHARSET_LIE_ARTICLE) in titles_of(list_run)
    assert not any("\ufffd" in title for title in titles_of(list_run))


@pytest_twisted.ensureDeferred
async def test_an_article_in_a_redirect_loop_is_counted_as_failed(
    server: FaultServer, tmp_path: Path
) -> None:
    loop, good = server.url("/redirect-loop/a/article"), server.url("/ok/article/loop")
    server.serve("/lists/loop", list_page(loop, good))
    result = await crawl_in_process(
        "list", tmp_path, FAULT_SETTINGS, list=server.url("/lists/loop"), **LIST_ARGS
    )
    assert_finished_cleanly(result)
    assert titles_of(result) == {article_title("/ok/article/loop")}
    failed = ("article_fetch_failed", "article_http_error")
    assert sum(result.stat(f"source/127.0.0.1/{what}") or 0 for what in failed) == 1


# --- the source's own page fails: a list page, cnBeta's home page ------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/status/503/list", "HTTP 503"),
        ("/304-unasked/list", "HTTP 304"),
        ("/gzip-bomb/list", "exceeded DOWNLOAD_MAXSIZE"),
        ("/reset/list", None),
        ("/redirect-loop/a/list", None),
        ("/empty-200/list", None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_unreadable_list_page_fails_its_source(
    server: FaultServer, tmp_path: Path, path: str, fragment: str | None
) -> None:
    url = server.url(path)
    result = await crawl_in_process("list", tmp_path, FAULT_SETTINGS, list=url, **LIST_ARGS)
    assert_finished_cleanly(result)
    assert result.stat("source/127.0.0.1/failed") == 1
    reason = result.stats["source/127.0.0.1/reason"]
    assert "\n" not in reason
    assert reason.startswith(f"list page {url}: ")
    why = reason.removeprefix(f"list page {url}: ").strip()
    assert why
    if fragment is not None:
        assert fragment in why
    assert not list(tmp_path.rglob("*.md"))


@pytest.mark.parametrize(
    ("base", "fragment"),
    [
        ("/gzip-bomb/cnbeta", "exceeded DOWNLOAD_MAXSIZE"),
        ("/retry-after/future/cnbeta", "HTTP 429"),
        ("/redirect-loop/a/cnbeta", None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_unreadable_cnbeta_home_page_fails_the_source(
    server: FaultServer, tmp_path: Path, base: str, fragment: str | None
) -> None:
    result = await crawl_in_process(
        "cnbeta", tmp_path, FAULT_SETTINGS, base_url=server.url(base), pages=1
    )
    assert_finished_cleanly(result)
    assert result.stat("source/cnbeta/failed") == 1
    home = server.url(base) + "/"
    reason = result.stats["source/cnbeta/reason"]
    assert reason.startswith(f"home page {home}: ") and "\n" not in reason
    if fragment is not None:
        assert fragment in reason
    assert result.stat("source/cnbeta/home_fetch_failed") or result.stat(
        "source/cnbeta/home_http_error"
    )
