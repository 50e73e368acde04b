"""Unattended runs that tell the truth: every failure reaches the report with its reason and
the exit status; a site whose markup changed is flagged DRIFT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from scrapy import Request, Spider
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler
from support import (
    CSRF_TOKEN,
    FAST,
    LENIENT_DRIFT,
    PROJECT_ROOT,
    TESTS,
    background_job,
    crawl_in_process,
    crawl_settings,
    fixture_server,
    run_main,
    run_scrapy,
    run_scrapy_in_process,
    serve_cnbeta,
    serve_feeds,
    source_table,
    usage_error,
    write_sources,
)
from twisted.python.failure import Failure

from crawler import settings as project_settings
from crawler.archive.state import ArchiveState
from crawler.checks import SettingError, check_settings
from crawler.extensions import SourceStats
from crawler.pipelines.normalize import NormalizePipeline
from crawler.pipelines.validate import InvalidPost, ValidatePipeline


@pytest.fixture(scope="module")
def cnbeta_server() -> Iterator[HTTPServer]:
    with fixture_server(serve_cnbeta) as server:
        yield server


EMPTY_RSS = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title>'
    "<link>https://quiet.example/</link><description>d</description></channel></rss>"
)


@background_job
def unknown_spider_run(home: Path) -> subprocess.CompletedProcess[str]:
    return run_scrapy("crawl", "nosuchspider")


def test_an_unknown_spider_is_one_line_and_exit_2(
    unknown_spider_run: subprocess.CompletedProcess[str],
) -> None:
    message = usage_error(unknown_spider_run)
    assert message == "no spider named 'nosuchspider' (known: cnbeta, feeds, list, sitemap)"


@pytest_twisted.ensureDeferred
async def test_a_post_that_cannot_be_written_fails_its_source(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    (tmp_path / "2021").write_text("a file where the year's folder should be")
    result = await crawl_in_process(
        "feeds", tmp_path, url=feed_site.url_for("/feeds/conditional.xml"), author="Verge"
    )
    name = "localhost" if "localhost" in feed_site.url_for("/") else "127.0.0.1"
    assert result.stat(f"source/{name}/failed") == 1
    assert result.stats[f"source/{name}/reason"] == "write failed: ENOTDIR"
    assert result.stat("write/failed") == 2
    # Not a word of it is remembered: the next run fetches the feed in full again.
    state = ArchiveState(tmp_path)
    assert state.feed_validators(feed_site.url_for("/feeds/conditional.xml")) == (None, None)
    state.close()


def test_an_exception_in_a_callback_fails_the_source_with_its_reason() -> None:
    """A bug while reading a page (whatever raised in a callback) fails that page's source,
    with the exception as its one-line reason."""
    crawler = get_crawler()
    stats = crawler.stats
    monitor = SourceStats(crawler)
    response = HtmlResponse(
        "https://e.com/feed",
        body=b"",
        request=Request("https://e.com/feed", meta={"source_name": "e"}),
    )
    try:
        raise ValueError("offset must be a timedelta\nstrictly between -24h and 24h")
    except ValueError:
        failure = Failure()
    monitor.spider_error(failure, response, Spider("feeds"))
    assert stats.get_value("source/e/failed") == 1
    assert stats.get_value("source/e/reason") == (
        "error reading https://e.com/feed: ValueError: offset must be a timedelta "
        "strictly between -24h and 24h"
    )


@pytest_twisted.ensureDeferred
async def test_one_bad_entry_never_costs_the_others(httpserver: HTTPServer, tmp_path: Path) -> None:
    """An impossible zone offset (+99:99) and a malformed link (http://[::1) used to stop the
    entry loop with the feed's validators saved: the rest of the feed lost for good."""
    items = [
        ("good one", "https://e.com/1", "Sat, 17 Jul 2021 10:00:00 GMT", ""),
        ("bad date", "https://e.com/2", "2021-07-17T10:00:00+99:99", ""),
        ("bad link", "http://[::1", "Sat, 17 Jul 2021 11:00:00 GMT", ""),
        ("bad media", "https://e.com/4", "Sat, 17 Jul 2021 12:00:00 GMT",
         '<media:thumbnail url="http://[::1/x.jpg"/>'),
        ("good two", "https://e.com/5", "Sat, 17 Jul 2021 13:00:00 GMT", ""),
    ]  # fmt: skip
    feed = "".join(
        f"<item><title>{title}</title><link>{link}</link><pubDate>{date}</pubDate>{extra}"
        "<description>text</description></item>"
        for title, link, date, extra in items
    )
    httpserver.expect_request("/feed.xml").respond_with_data(
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>t</title>{feed}</channel></rss>",
        content_type="application/rss+xml",
        headers={"ETag": '"v1"'},
    )
    url = httpserver.url_for("/feed.xml")
    result = await crawl_in_process("feeds", tmp_path, url=url)
    titles = sorted(post["title"] for post in result.posts().values())
    # A malformed link or image is no link or image; an impossible date is no article.
    assert titles == ["bad link", "bad media", "good one", "good two"]
    (name,) = {key.split("/")[1] for key in result.stats if key.endswith("/bad_entry")}
    assert result.stat(f"source/{name}/bad_entry") == 1
    assert result.stat(f"source/{name}/failed") is None
    assert "entry 2 dropped (ValueError: offset must be a timedelta" in result.log
    index = (tmp_path / ".index.jsonl").read_text(encoding="utf-8")
    assert "[::1" not in index
    # Every entry was archived or deliberately dropped: the validators are kept.
    state = ArchiveState(tmp_path)
    assert state.feed_validators(url) == ('"v1"', None)
    state.close()


def harvest_with_broken_spiders(sources: Path, output: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(PROJECT_ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "crawler", "harvest", *FAST, "--json",
         "-s", "SPIDER_MODULES=crawler.spiders,broken_spiders",
         "--sources", str(sources), "--output", str(output)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env=env,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


@background_job
def broken_spiders_run(home: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    categories = ["a", "b", "c"]
    with fixture_server(serve_feeds) as site:
        sources = write_sources(
            home / "sources.toml", site,
            source_table("exploding", spider="exploding", categories=categories, author="A"),
            source_table("startfails", spider="startfails", categories=categories, author="A"),
            source_table("rdf", url="{base}/feeds/rss1.rdf", categories=categories, author="A"),
        )  # fmt: skip
        return harvest_with_broken_spiders(sources, home / "out"), home / "out"


def test_crawls_that_cannot_start_fail_with_a_reason_and_the_rest_run(
    broken_spiders_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, output = broken_spiders_run
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    by_name = {source["name"]: source for source in report["sources"]}
    assert by_name["exploding"]["status"] == "FAILED"
    assert by_name["exploding"]["reason"] == "crawl failed: RuntimeError: boom while starting"
    assert by_name["startfails"]["status"] == "FAILED"
    assert "RuntimeError: no start requests today" in by_name["startfails"]["reason"]
    assert (by_name["rdf"]["status"], by_name["rdf"]["new"]) == ("ok", 1)
    assert "Unhandled error in Deferred" not in done.stderr
    runs = (output / ".runs.jsonl").read_text().splitlines()
    assert json.loads(runs[-1]) == report


# --- drift -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_home_page_without_its_list_is_drift_at_once(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    serve_cnbeta(httpserver)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/").respond_with_data(
        '<html><head><meta name="csrf-token" content="x"></head><body>'
        '<div class="new-layout"><a href="/articles/tech/1.htm">a</a></div></body></html>',
        content_type="text/html; charset=utf-8",
    )
    base = httpserver.url_for("").rstrip("/")
    result = await crawl_in_process("cnbeta", tmp_path, base_url=base, pages=0)
    drift = result.stats["source/cnbeta/drift"]
    assert drift == {
        "field": "list",
        "example": f"{base}/",
        "rate": None,
        "empty_runs": None,
    }
    assert "source cnbeta: DRIFT: unexpected list" in result.log


@pytest_twisted.ensureDeferred
async def test_a_source_that_gives_nothing_three_runs_in_a_row_is_drift(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/quiet.xml").respond_with_data(
        EMPTY_RSS, content_type="application/rss+xml"
    )
    url = httpserver.url_for("/quiet.xml")
    results = [await crawl_in_process("feeds", tmp_path, url=url) for _ in range(3)]
    (name,) = {key.split("/")[1] for key in results[0].stats if key.startswith("source/")}
    assert [r.stats.get(f"source/{name}/drift") for r in results[:2]] == [None, None]
    assert results[2].stats[f"source/{name}/drift"]["empty_runs"] == 3
    state = ArchiveState(tmp_path)
    assert state.empty_runs(name) == 3
    state.close()


@pytest_twisted.ensureDeferred
async def test_unchanged_sources_are_not_empty_runs(
    feed_site: HTTPServer, cnbeta_server: HTTPServer, tmp_path: Path
) -> None:
    """A feed that answers 304, and a site whose listed articles are all archived, are quiet
    because nothing happened: never DRIFT, however many runs in a row."""
    url = feed_site.url_for("/feeds/conditional.xml")
    feeds = [await crawl_in_process("feeds", tmp_path / "f", url=url) for _ in range(4)]
    assert [r.stat("feeds/not_modified") for r in feeds] == [None, 1, 1, 1]
    assert not any(key.endswith("/drift") for r in feeds for key in r.stats)
    base = cnbeta_server.url_for("").rstrip("/")
    settings = {"DRIFT_MIN_EXTRACTION": 0.5}  # the fixture site has one undated article
    sites = [
        await crawl_in_process("cnbeta", tmp_path / "c", settings, base_url=base) for _ in range(4)
    ]
    assert sites[-1].stat("source/cnbeta/article_skipped_archived") == 7
    assert not any("source/cnbeta/drift" in r.stats for r in sites)
    state = ArchiveState(tmp_path / "c")
    assert state.empty_runs("cnbeta") == 0
    state.close()


@pytest_twisted.ensureDeferred
async def test_an_overlong_title_is_cut(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/feed.xml").respond_with_data(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>{'长' * 2500}</title><link>https://e.com/1</link>"
        "<pubDate>Sat, 17 Jul 2021 14:35:32 GMT</pubDate><description>d</description></item>"
        "</channel></rss>",
        content_type="application/rss+xml; charset=utf-8",
    )
    result = await crawl_in_process("feeds", tmp_path, url=httpserver.url_for("/feed.xml"))
    (post,) = result.posts().values()
    assert post["title"] == "长" * 299 + "…"
    assert result.stat("normalize/title_truncated") == 1


def test_a_post_breaking_the_schema_is_dropped_and_counted() -> None:
    stats = get_crawler().stats
    pipeline = ValidatePipeline(stats)
    good = {
        "title": "Valve announces the Steam Deck",
        "categories": ["Tech", "The Verge", "All"],
        "lead_image": "https://cdn.example/deck.jpg",
        "author": "The Verge",
        "published": datetime(2021, 7, 15, 21, tzinfo=UTC),
        "body": "<p>Valve is making a handheld.</p>",
        "source": "verge",
        "url": "https://www.theverge.com/a",
    }
    assert pipeline.process_item(dict(good)) == good
    broken = {
        "lead_image": "https://cdn.example/a deck.jpg",  # a space: not a URL
        "body": "<p>a</p>\n\n<p>b</p>",  # an empty line: Hexo would end the HTML block
        "categories": [],
        "title": " padded",
    }
    for field, value in broken.items():
        with pytest.raises(
            InvalidPost, match=rf"\({'headimg' if field == 'lead_image' else field}:"
        ):
            pipeline.process_item({**good, field: value})
    assert stats.get_value("source/verge/invalid") == 4
    assert stats.get_value("source/verge/example/body") == "https://www.theverge.com/a"


def test_validate_takes_the_verdict_normalize_gave_the_post() -> None:
    # Checked where the post was finished (the cleaning worker): not checked again here.
    stats = get_crawler().stats
    pipeline = ValidatePipeline(stats)
    good = {
        "title": "Valve announces the Steam Deck", "categories": ["Tech"], "author": "V",
        "lead_image": "https://cdn.example/deck.jpg", "body": "<p>a</p>", "source": "verge",
        "published": datetime(2021, 7, 15, 21, tzinfo=UTC), "url": "https://e.com/a",
    }  # fmt: skip
    with pytest.raises(InvalidPost, match=r"\(title: pattern failed\)"):
        pipeline.process_item({**good, "format_problem": ("title", "pattern")})
    assert pipeline.process_item({**good, "format_problem": None})["title"] == good["title"]
    assert stats.get_value("source/verge/invalid") == 1


class RetitlingPipeline:
    def process_item(self, item: dict[str, object]) -> dict[str, object]:
        return {**item, "title": "changed"}


@pytest.mark.parametrize(
    ("settings", "early"),
    [
        ({}, True),
        ({"ARCHIVE_IMAGES": True}, False),  # images rewrite the body after normalize
        ({"ITEM_PIPELINES": {"crawler.pipelines.validate.ValidatePipeline": None}}, False),
        ({"ITEM_PIPELINES": {"no_such_module.Pipeline": 230}}, False),
        ({"ITEM_PIPELINES": {RetitlingPipeline: 230}}, False),  # it may change the post
        ({"ITEM_PIPELINES": {"crawler.pipelines.validate.ValidatePipeline": 50}}, False),
    ],
)
def test_normalize_checks_the_format_only_when_nothing_changes_the_post_after_it(
    settings: dict[str, object], early: bool
) -> None:
    pipelines = {**project_settings.ITEM_PIPELINES, **settings.pop("ITEM_PIPELINES", {})}  # type: ignore[dict-item]
    crawler = get_crawler(settings_dict={**settings, "ITEM_PIPELINES": pipelines})
    pipeline = NormalizePipeline.from_crawler(crawler)
    assert pipeline.finishing.check_format is early


@pytest_twisted.ensureDeferred
async def test_a_post_breaking_the_schema_in_a_crawl_is_dropped_and_counted(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    entry = (
        "<item><title>{title}</title><link>https://e.com/{n}</link>{media}"
        "<pubDate>Sat, 17 Jul 2021 14:35:32 GMT</pubDate><description>d</description></item>"
    )
    httpserver.expect_request("/feed.xml").respond_with_data(
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
        "<channel><title>t</title>"
        + entry.format(title="Kept", n=1, media="")
        # A space in the image's URL: the post's headimg would not be a URL.
        + entry.format(title="Broken", n=2, media='<media:thumbnail url="https://c.e/a b.jpg"/>')
        + "</channel></rss>",
        content_type="application/rss+xml; charset=utf-8",
    )
    result = await crawl_in_process("feeds", tmp_path, url=httpserver.url_for("/feed.xml"))
    assert [post["title"] for post in result.posts().values()] == ["Kept"]
    invalid = {key: value for key, value in result.stats.items() if key.endswith("/invalid")}
    assert list(invalid.values()) == [1]


# --- configuration mistakes: one line, exit 2, nothing fetched ---------------------------------


BAD_SETTINGS = {
    "MAX_AGE_DAYS=abc": "-s MAX_AGE_DAYS='abc': must be a number of days >= 0",
    "MAX_AGE_DAYS=-1": "-s MAX_AGE_DAYS='-1': must be a number of days >= 0",
    "MAX_AGE_DAYS=nan": "-s MAX_AGE_DAYS='nan': must be a number of days >= 0",
    "DRIFT_MIN_EXTRACTION=2": "-s DRIFT_MIN_EXTRACTION='2': must be a share between 0 and 1",
    "LOG_LEVEL=LOUD": "-s LOG_LEVEL='LOUD': must be DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "DOWNLOAD_TIMEOUT=0": "-s DOWNLOAD_TIMEOUT='0': must be a number of seconds > 0",
    "TWISTED_REACTOR=x.Y": "-s TWISTED_REACTOR='x.Y': the harvester runs on",
}


@pytest.mark.parametrize(("setting", "message"), BAD_SETTINGS.items())
def test_a_bad_setting_is_refused_before_anything_runs(setting: str, message: str) -> None:
    settings = crawl_settings(Path("unused"))
    name, _, value = setting.partition("=")
    settings.set(name, value, priority="cmdline")
    with pytest.raises(SettingError) as refused:
        check_settings(settings)
    assert str(refused.value).startswith(message)


def test_a_bad_setting_is_one_line_and_exit_2() -> None:
    """The same check runs in ``scrapy crawl`` (and ``harvest``) before anything else (in
    this process: refused before a crawl starts; a real process's refusal is above)."""
    done = run_scrapy_in_process("crawl", "cnbeta", "-s", "MAX_AGE_DAYS=nan")
    assert usage_error(done) == "-s MAX_AGE_DAYS='nan': must be a number of days >= 0"


@pytest.fixture(scope="module")
def unusable_archive_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, subprocess.CompletedProcess[str]], Path]:
    """Harvests refused before a crawl starts: in this process (support.run_main)."""
    home = tmp_path_factory.mktemp("unusable")
    (home / "file").write_text("not a folder")
    corrupt = home / "corrupt"
    corrupt.mkdir()
    (corrupt / ".state.sqlite3").write_bytes(b"\x13garbage, not SQLite" * 100)
    harvest = ("harvest", *FAST, *LENIENT_DRIFT)
    runs = {
        "file": run_main(*harvest, "--output", str(home / "file")),
        "log": run_main(
            *harvest, "--output", str(home / "o"), "--log-file", str(home / "nowhere" / "h.log")
        ),
        "corrupt": run_main(*harvest, "--output", str(corrupt), "--only", "cnbeta"),
    }
    return runs, home


def test_an_unusable_archive_or_log_is_one_line(
    unusable_archive_runs: tuple[dict[str, subprocess.CompletedProcess[str]], Path],
) -> None:
    runs, tmp_path = unusable_archive_runs
    corrupt = tmp_path / "corrupt"
    expected = {
        "file": (2, f"error: --output {tmp_path / 'file'}: not a folder"),
        "log": (
            2,
            f"error: --log-file {tmp_path / 'nowhere' / 'h.log'}: its folder does not exist",
        ),
        "corrupt": (
            1,
            f"error: {corrupt / '.state.sqlite3'}: not a database; run "
            f"`python -m crawler reindex {corrupt}`",
        ),
    }
    for name, (code, message) in expected.items():
        done = runs[name]
        assert done.returncode == code, (name, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(message), (name, line)
    assert not (tmp_path / "o").exists()


@pytest_twisted.ensureDeferred
async def test_an_entry_without_date_or_link_is_archived_once(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Its title key would change with the fetch day; its guid keeps it one story."""

    def serve(title: str) -> None:
        httpserver.clear_all_handlers()
        httpserver.expect_request("/feed.xml").respond_with_data(
            '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            f'<item><title>{title}</title><guid isPermaLink="false">tag:e.com,2021:42</guid>'
            "<description>text</description></item></channel></rss>",
            content_type="application/rss+xml",
        )

    serve("Undated, linkless")
    url = httpserver.url_for("/feed.xml")
    first = await crawl_in_process("feeds", tmp_path, url=url)
    assert first.stat("write/written") == 1
    serve("Undated, linkless, edited the next day")
    second = await crawl_in_process("feeds", tmp_path, url=url)
    assert second.stat("write/written") is None
    assert second.stat("dedup/duplicate/archived_url") == 1
    line = json.loads((tmp_path / ".index.jsonl").read_text(encoding="utf-8"))
    assert line["canonical_url"] == "entry:tag:e.com,2021:42"


@pytest_twisted.ensureDeferred
async def test_a_json_list_page_nested_too_deep_skips_only_that_page(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError, not ValueError
    page_1 = {"type": "all", "page": "1", "_csrf": CSRF_TOKEN}
    httpserver.expect_request("/home/more", query_string=page_1).respond_with_data(
        deep, content_type="application/json"
    )  # registered first: it wins over the fixture site's page 1
    serve_cnbeta(httpserver)
    result = await crawl_in_process(
        "cnbeta", tmp_path, {"DRIFT_MIN_EXTRACTION": 0}, base_url=httpserver.url_for("").rstrip("/")
    )
    # This page and the fixture site's own broken page 3; pages 2 and 4 were still read.
    assert result.stat("source/cnbeta/list_page_invalid_json") == 2
    assert result.stat("source/cnbeta/failed") is None
    assert result.stat("write/written") >= 4  # the home page's articles and the later pages'


# Refused before a crawl starts, in this process (support.run_main, run_scrapy_in_process):
# the spider and its arguments checked by `scrapy crawl`, the images command's own checks.
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("crawl", "nosuchspider"),
         "no spider named 'nosuchspider' (known: cnbeta, feeds, list, sitemap)"),
        (("crawl", "cnbeta", "-a", "pages=-1"),
         "cnbeta: -a pages: must be a whole number >= 0, not '-1'"),
        (("crawl", "cnbeta", "-a", "nosuch=1"), "cnbeta: unknown argument -a nosuch (known: "),
    ],
)  # fmt: skip
def test_scrapy_crawl_checks_the_spider_and_its_arguments(
    args: tuple[str, ...], message: str
) -> None:
    assert usage_error(run_scrapy_in_process(*args)).startswith(message)


def test_the_images_command_refuses_before_it_reads_anything(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    refusals = {
        ("images", str(archive)): "images: give --backfill (the only action for now)",
        ("images", str(tmp_path / "none"), "--backfill"): f"{tmp_path / 'none'} is not a directory",
        ("images", str(archive), "--backfill", "-s", "NOEQUALS"):
            "-s 'NOEQUALS': expected NAME=VALUE",
        ("images", str(archive), "--backfill", "-s", "MAX_AGE_DAYS=-1"):
            "-s MAX_AGE_DAYS='-1': must be a number of days >= 0",
    }  # fmt: skip
    for argv, message in refusals.items():
        assert usage_error(run_main(*argv)).startswith(message), argv
    assert list(archive.iterdir()) == []  # nothing written, not even a lock
