"""Real crawls of feed fixtures, in-process (the spider arguments of ``scrapy crawl feeds``);
its usage errors in a subprocess."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from scrapy.utils.defer import deferred_from_coro
from support import (
    ETAG,
    LAST_MODIFIED,
    CrawlResult,
    background_job,
    base_url_of,
    crawl,
    crawl_in_process,
    fixture_server,
    run_concurrently,
    serve_cnbeta,
    serve_feeds,
    usage_error,
    write_sources,
)

from crawler import child
from crawler.post.clean_worker import shared_workers

CATEGORIES = "科技,测试,最新"  # as -a passes it


async def crawl_feed(
    site: HTTPServer,
    path: str,
    output: Path,
    settings: dict[str, Any] | None = None,
    **arguments: Any,
) -> CrawlResult:
    result = await crawl_in_process(
        "feeds", output, settings, server=site, url=f"{base_url_of(site)}{path}",
        categories=CATEGORIES, author="测试", **arguments,
    )  # fmt: skip
    assert "Traceback" not in result.log
    return result


async def crawl_sources(
    site: HTTPServer, sources: Path, output: Path, **arguments: Any
) -> CrawlResult:
    return await crawl_in_process("feeds", output, server=site, sources=str(sources), **arguments)


@pytest.fixture(scope="module")
def site() -> Iterator[HTTPServer]:
    with fixture_server(serve_feeds) as server:
        yield server


@pytest_twisted.async_fixture(scope="module")
async def ithome(site: HTTPServer, tmp_path_factory: pytest.TempPathFactory) -> CrawlResult:
    """The RSS 2.0 fixture read once, in its site's time zone (a second run copies it)."""
    output = tmp_path_factory.mktemp("ithome") / "a"
    return await crawl_feed(site, "/feeds/ithome.xml", output, timezone="Asia/Shanghai")


def by_title(result: CrawlResult) -> dict:
    return {post["title"]: post for post in result.posts().values()}


def test_rss2_with_cdata_content_encoded_and_odd_dates(ithome: CrawlResult) -> None:
    result = ithome
    assert result.returncode == 0, result.log
    posts = by_title(result)
    assert set(posts) == {
        "微软 Windows 11 预览版 22000.71 发布：新增娱乐小组件",
        "苹果 iOS 15 公测版 Beta 3 推送",
        "小米 MIX 4 官宣：8 月发布",
        "没有日期的快讯",
        "来自未来的文章",
    }
    win = posts["微软 Windows 11 预览版 22000.71 发布：新增娱乐小组件"]
    assert win["date"] == "Sat, 17 Jul 2021 14:10:00 GMT"
    assert win["categories"] == ["科技", "测试", "最新"] and win["author"] == "测试"
    assert win["headimg"] == "https://img.ithome.com/newsuploadfiles/2021/7/win11-widgets.jpg"
    body = win.content
    assert "向 Dev 频道推送了" in body  # content:encoded, the fuller text, not the description
    assert 'href="https://www.ithome.com/0/562/999.htm"' in body
    for forbidden in ("<script", "onclick", "onerror", "grey.gif", "{", "}"):
        assert forbidden not in body
    # zone-less dates are read in the source's zone; feedparser alone misreads the second
    assert posts["苹果 iOS 15 公测版 Beta 3 推送"]["date"] == "Wed, 26 Oct 2016 13:53:13 GMT"
    assert posts["小米 MIX 4 官宣：8 月发布"]["date"] == "Fri, 10 Jan 2020 06:33:00 GMT"
    assert result.stat("feeds/entry_without_title") == 1
    # no date of its own: the feed's date (lastBuildDate)
    assert posts["没有日期的快讯"]["date"] == "Sat, 17 Jul 2021 15:00:00 GMT"
    assert result.stat("feeds/entry_future_date") == 1
    assert "2099" not in posts["来自未来的文章"]["date"]


@pytest_twisted.ensureDeferred
async def test_atom_with_xml_base_and_html_titles(site: HTTPServer, tmp_path: Path) -> None:
    result = await crawl_feed(site, "/feeds/atom.xml", tmp_path / "a")
    posts = by_title(result)
    assert set(posts) == {"Rust async & you", "Plain title with <angle> brackets"}
    rust = posts["Rust async & you"]
    assert rust["date"] == "Fri, 16 Jul 2021 07:30:00 GMT"
    assert 'href="https://blog.example.org/posts/2020/old.html"' in rust.content
    assert rust["headimg"] == "https://blog.example.org/posts/2021/img/diagram.png"
    assert "fn main() &#123;&#10;" in rust.content
    plain = posts["Plain title with <angle> brackets"]
    assert 'href="https://blog.example.org/about.html"' in plain.content


@pytest_twisted.ensureDeferred
async def test_rss1_rdf(site: HTTPServer, tmp_path: Path) -> None:
    posts = by_title(await crawl_feed(site, "/feeds/rss1.rdf", tmp_path / "a"))
    assert posts["Linux Kernel 5.13 Released"]["date"] == "Sat, 17 Jul 2021 12:00:00 GMT"


@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/feeds/oschina.xml", "Rust 1.53 发布，支持数组的 IntoIterator"),  # GB2312 in prolog
        ("/feeds/gb2312-header.xml", "国产数据库登顶 TPC-C 榜单"),  # GB2312 in Content-Type
        ("/feeds/habr.xml", "Выпуск ядра Linux 5.13"),  # windows-1251
    ],
)
@pytest_twisted.ensureDeferred
async def test_legacy_encodings(site: HTTPServer, tmp_path: Path, path: str, title: str) -> None:
    result = await crawl_feed(site, path, tmp_path / "a")
    (post,) = result.posts().values()
    assert post["title"] == title
    assert result.stat("feeds/bozo") is None


@pytest_twisted.ensureDeferred
async def test_lead_image_from_feed_media(site: HTTPServer, tmp_path: Path) -> None:
    verge = by_title(await crawl_feed(site, "/feeds/verge.xml", tmp_path / "a"))
    # media:thumbnail wins over the body's first image
    steam = verge["Valve announces the Steam Deck"]
    assert steam["headimg"] == "https://cdn.vox-cdn.com/thumbor/steam-deck-thumb.jpg"
    assert steam["date"] == "Thu, 15 Jul 2021 21:00:00 GMT"
    # media:content: the image, not the video
    flight = verge["Microsoft Flight Simulator comes to Xbox"]
    assert flight["headimg"] == "https://cdn.vox-cdn.com/uploads/flight-sim.jpg"
    sspai = by_title(await crawl_feed(site, "/feeds/sspai.xml", tmp_path / "b"))
    assert sspai["派早报：Steam Deck 掌机发布"]["headimg"] == (
        "https://cdn.sspai.com/2021/07/16/steam-deck.png"
    )
    assert sspai["播客：本周科技新闻"]["headimg"].startswith("https://picsum.photos/")


async def stop_the_worker_and_kill_it_once_it_holds_a_job() -> asyncio.Future[None]:
    """The crawl's one worker (CLEAN_PROCESSES=1) stopped now, and killed as soon as it holds
    a job: the feed, the first job of a feeds crawl."""
    workers = shared_workers(1)
    await workers.warm_up()
    (worker,) = workers._workers
    assert worker.transport is not None
    os.kill(worker.transport.get_pid(), signal.SIGSTOP)  # it answers nothing now

    async def kill_once_it_holds_the_feed() -> None:
        while not worker.pending:
            await asyncio.sleep(0.005)
        os.kill(worker.transport.get_pid(), signal.SIGKILL)

    return asyncio.ensure_future(asyncio.wait_for(kill_once_it_holds_the_feed(), 60))


@pytest_twisted.ensureDeferred
async def test_a_feed_whose_worker_is_lost_is_read_again_and_counted(
    site: HTTPServer, tmp_path: Path, ithome: CrawlResult
) -> None:
    killer = await deferred_from_coro(stop_the_worker_and_kill_it_once_it_holds_a_job())
    result = await crawl_feed(
        site, "/feeds/ithome.xml", tmp_path, {"CLEAN_PROCESSES": 1}, timezone="Asia/Shanghai"
    )
    await deferred_from_coro(killer)
    assert result.stats["feeds/worker_lost"] == 1
    assert "body-cleaning worker lost" in result.log and "reading" in result.log
    # Read again by a new worker: every entry still a post, as in a crawl without the loss.
    assert sorted(result.posts()) == sorted(ithome.posts())
    assert "feeds/failed" not in result.stats


@pytest_twisted.ensureDeferred
async def test_a_feed_that_loses_two_workers_fails_and_the_crawl_goes_on(
    site: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killer = await deferred_from_coro(stop_the_worker_and_kill_it_once_it_holds_a_job())
    # The next worker dies as it starts (Python refuses an unknown encoding for its
    # streams): as with a feed that kills whatever reads it. In the environment helpers
    # get, not in os.environ: the session's background commands must not inherit it.
    helper_environment = child.environment
    monkeypatch.setattr(
        child, "environment", lambda: {**helper_environment(), "PYTHONIOENCODING": "no-such-codec"}
    )
    result = await crawl_feed(
        site, "/feeds/ithome.xml", tmp_path / "out", {"CLEAN_PROCESSES": 1},
        timezone="Asia/Shanghai",
    )  # fmt: skip
    await deferred_from_coro(killer)
    assert result.stats["feeds/worker_lost"] == 2
    assert result.stats["feeds/failed"] == 1
    (name,) = {key.split("/")[1] for key in result.stats if key.startswith("source/")}
    assert result.stats[f"source/{name}/reason"].startswith("two workers lost reading it")
    assert result.stats["finish_reason"] == "finished"  # the crawl went on to its end
    assert not result.posts()


@pytest_twisted.ensureDeferred
async def test_entries_finished_by_the_worker_that_read_the_feed_make_the_same_posts(
    site: HTTPServer, tmp_path: Path, ithome: CrawlResult
) -> None:
    # ithome: read and finished in a worker. Here: read in the crawl's process and each
    # article finished by the normalize pipeline, the path without workers.
    assert ithome.stats["normalize/finished_ahead"] == len(ithome.posts())
    assert "normalize/finished_ahead_stale" not in ithome.stats
    in_place = await crawl_feed(
        site, "/feeds/ithome.xml", tmp_path, {"CLEAN_PROCESSES": 0}, timezone="Asia/Shanghai"
    )
    assert "normalize/finished_ahead" not in in_place.stats
    assert {path: post.content for path, post in in_place.posts().items()} == {
        path: post.content for path, post in ithome.posts().items()
    }

    def front_matter(result: CrawlResult) -> dict[str, dict[str, Any]]:
        # The entry from the future takes each crawl's own fetch time: its date differs.
        return {
            path: {k: v for k, v in post.metadata.items() if k != "date" or "未来" not in path}
            for path, post in result.posts().items()
        }

    assert front_matter(in_place) == front_matter(ithome)
    # Nothing of the finished-ahead record left in the archive (posts, index, state).
    assert not any(b"finished_ahead" in path.read_bytes() for path in tmp_path.rglob("*.*"))


@pytest_twisted.ensureDeferred
async def test_entries_past_the_cap_are_counted_and_said_not_read(
    site: HTTPServer, tmp_path: Path, ithome: CrawlResult
) -> None:
    result = await crawl_feed(
        site, "/feeds/ithome.xml", tmp_path, {"MAX_ENTRIES_PER_FEED": 2}, timezone="Asia/Shanghai"
    )
    assert len(result.posts()) == 2
    (name,) = {key.split("/")[1] for key in result.stats if key.startswith("source/")}
    entries = ithome.stats[f"source/{name}/seen"]  # every entry, read without a cap
    assert result.stats[f"source/{name}/seen"] == 2
    assert result.stats[f"source/{name}/entries_over_cap"] == entries - 2
    assert f"{entries - 2} entries past MAX_ENTRIES_PER_FEED (2) not read" in result.log


@pytest_twisted.ensureDeferred
async def test_truncated_feed_keeps_what_was_recovered(site: HTTPServer, tmp_path: Path) -> None:
    result = await crawl_feed(site, "/feeds/truncated.xml", tmp_path / "a")
    assert set(by_title(result)) == {
        "Valve announces the Steam Deck",
        "Microsoft Flight Simulator comes to Xbox",
    }
    assert result.stat("feeds/bozo") == 1
    assert result.log.count("malformed feed") == 1
    # an entry with no text at all gets a link to the article as its body
    flight = by_title(result)["Microsoft Flight Simulator comes to Xbox"]
    assert 'href="https://www.theverge.com/2021/7/14/flight-sim"' in flight.content


@pytest_twisted.ensureDeferred
async def test_shared_and_home_page_links_get_no_url_key(site: HTTPServer, tmp_path: Path) -> None:
    result = await crawl_feed(site, "/feeds/solidot.xml", tmp_path / "a")
    assert len(result.posts()) == 4  # no entry is taken for a duplicate of another
    # neither the entry nor the feed has a date: the fetch time, counted
    assert result.stat("feeds/entry_without_date") == 1
    with sqlite3.connect(tmp_path / "a" / ".state.sqlite3") as db:
        urls = db.execute("SELECT key FROM story_keys WHERE kind = 'url'").fetchall()
    # The one entry with its own link has its URL key; the others (a shared link, the home
    # page, none) have their identity instead (no guid here: a hash of feed, title, content).
    keys = sorted(key for (key,) in urls)
    assert keys[-1] == "https://www.solidot.org/story?sid=2"
    assert len(keys) == 4 and all(key.startswith("entry:sha256:") for key in keys[:3])


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/feeds/html", "not a feed"), ("/feeds/missing.xml", "HTTP 404")],
)
@pytest_twisted.ensureDeferred
async def test_a_broken_source_is_one_line_and_the_others_go_on(
    site: HTTPServer, tmp_path: Path, path: str, reason: str
) -> None:
    sources = write_sources(
        tmp_path / "sources.toml",
        site,
        '[[source]]\nname = "broken"\nurl = "{base}' + path + '"\ncategories = ["a", "b", "c"]\n'
        'author = "Broken"\n',
        '[[source]]\nname = "rdf"\nurl = "{base}/feeds/rss1.rdf"\ncategories = ["a", "b", "c"]\n'
        'author = "RDF"\n',
    )
    result = await crawl_sources(site, sources, tmp_path / "a")
    assert result.returncode == 0
    assert "Traceback" not in result.log and "ERROR" not in result.log
    assert result.log.count("source broken failed: ") == 1
    assert reason in result.log
    assert result.stat("source/broken/failed") == 1
    assert result.stat("source/rdf/new") == 1
    assert "source broken: 0 seen, 0 new, 0 duplicate, 0 dropped, FAILED" in result.log
    assert len(result.posts()) == 1


@pytest_twisted.ensureDeferred
async def test_second_run_sends_validators_and_a_304_writes_nothing(
    site: HTTPServer, tmp_path: Path
) -> None:
    first = await crawl_feed(site, "/feeds/conditional.xml", tmp_path / "a")
    assert len(first.posts()) == 2
    already = len(site.log)
    second = await crawl_feed(site, "/feeds/conditional.xml", tmp_path / "a")
    (request, response) = next(
        (req, resp) for req, resp in site.log[already:] if req.path == "/feeds/conditional.xml"
    )
    assert request.headers.get("If-None-Match") == ETAG
    assert request.headers.get("If-Modified-Since") == LAST_MODIFIED
    assert response.status_code == 304
    assert second.stat("feeds/not_modified") == 1
    assert second.stat("write/written") is None
    assert len(second.posts()) == 2


@pytest_twisted.ensureDeferred
async def test_validators_are_not_kept_when_a_post_could_not_be_written(
    site: HTTPServer, tmp_path: Path
) -> None:
    output = tmp_path / "a"
    output.mkdir()
    (output / "2021").write_text("a file where the year folder should be")
    first = await crawl_feed(site, "/feeds/conditional.xml", output)
    assert first.stat("write/failed") == 2
    with sqlite3.connect(output / ".state.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM feed_validators").fetchone() == (0,)
    (output / "2021").unlink()
    second = await crawl_feed(site, "/feeds/conditional.xml", output)
    assert second.requested.count("/feeds/conditional.xml") == 1
    assert second.stat("write/written") == 2  # nothing was skipped by a 304


@pytest_twisted.ensureDeferred
async def test_second_run_of_a_feed_writes_nothing(
    ithome: CrawlResult, site: HTTPServer, tmp_path: Path
) -> None:
    before = {path: post.content for path, post in ithome.posts().items()}
    output = Path(shutil.copytree(ithome.output_dir, tmp_path / "a"))
    second = await crawl_feed(site, "/feeds/ithome.xml", output, timezone="Asia/Shanghai")
    assert second.stat("feeds/not_modified") is None  # no validators: the feed was read again
    assert second.stat("write/written") is None
    assert {path: post.content for path, post in second.posts().items()} == before


@pytest_twisted.ensureDeferred
async def test_max_age_days_skips_the_backlog(site: HTTPServer, tmp_path: Path) -> None:
    result = await crawl_feed(site, "/feeds/ithome.xml", tmp_path / "a", {"MAX_AGE_DAYS": 30})
    # every dated entry is years old (the dateless one takes the feed's); the future one
    # takes the fetch time
    assert set(by_title(result)) == {"来自未来的文章"}
    assert result.stat("feeds/entry_too_old") == 4


@pytest_twisted.ensureDeferred
async def test_full_text_follows_new_entries_and_falls_back_to_the_feed(
    site: HTTPServer, tmp_path: Path
) -> None:
    base_url = base_url_of(site)
    sources = write_sources(
        tmp_path / "sources.toml",
        site,
        '[[source]]\nname = "links"\nurl = "{base}/feeds/fulltext.xml"\n'
        'categories = ["Tech", "Links", "Hottest"]\nauthor = "Links"\nfull_text = true\n',
    )
    result = await crawl_sources(site, sources, tmp_path / "a")
    posts = by_title(result)
    sqlite = posts["Why SQLite uses B-trees"].content
    assert "SQLite stores every table and every index as a B-tree" in sqlite
    assert "Privacy" not in sqlite and "dataLayer" not in sqlite
    assert posts["Why SQLite uses B-trees"]["headimg"] == f"{base_url}/images/btree.png"
    assert "The teaser is all we have." in posts["A page that is gone"].content
    assert result.stat("feeds/full_text_extracted") == 1
    assert result.stat("feeds/full_text_fallback") == 1
    # Bodies to be replaced by their full text are not finished as the feed is read.
    assert result.stat("normalize/finished_ahead") is None
    assert "/articles/sqlite-btrees.html" in result.requested
    again = await crawl_sources(site, sources, tmp_path / "a")
    assert again.stat("write/written") is None
    assert not any(p.startswith("/articles/") for p in again.requested)


@pytest_twisted.ensureDeferred
async def test_a_story_from_cnbeta_and_a_feed_is_archived_once(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    serve_cnbeta(feed_site)
    output = tmp_path / "a"
    cnbeta = await crawl_in_process("cnbeta", output, base_url=base_url_of(feed_site), pages=3)
    assert cnbeta.stat("write/written") == 7
    feed = await crawl_feed(feed_site, "/feeds/syndication.xml", output)
    assert feed.stat("write/written") == 1
    assert feed.stat("dedup/duplicate/archived_title") == 1  # same title, same UTC day
    assert feed.stat("dedup/duplicate/archived_url") == 1  # re-titled, same canonical URL
    assert "只在聚合源里出现的新闻" in by_title(feed)


TWO_FEEDS = [
    f'[[source]]\nname = "{name}"\nurl = "{{base}}/feeds/{path}"\ncategories = ["a"]\n'
    f'author = "A"\n'
    for name, path in (("rdf", "rss1.rdf"), ("atom", "atom.xml"))
]
BAD_TIME_ZONE = (
    '[[source]]\nname = "x"\nurl = "{base}/feeds/rss1.rdf"\ncategories = ["a"]\n'
    'author = "X"\ntimezone = "Mars/Olympus"\n'
)


@background_job
def refused(home: Path) -> dict[str, tuple[CrawlResult, Path]]:
    """``scrapy crawl feeds`` runs that must be refused (exit 2), against a server of their
    own that must not be asked for anything: (result, sources file) by name."""
    with fixture_server(serve_feeds) as server:
        bad = write_sources(home / "bad.toml", server, BAD_TIME_ZONE)
        two = write_sources(home / "two.toml", server, *TWO_FEEDS)
        runs = run_concurrently(
            {
                "bad-time-zone": lambda: (crawl("feeds", home / "a", "-a", f"sources={bad}"), bad),
                "unknown-only": lambda: (
                    crawl("feeds", home / "b", "-a", f"sources={two}", "-a", "only=nope"),
                    two,
                ),
            }
        )
        assert server.log == []  # nothing was fetched
    return runs


def test_sources_file_mistake_is_exit_2_before_any_request(
    refused: dict[str, tuple[CrawlResult, Path]],
) -> None:
    result, sources = refused["bad-time-zone"]
    assert result.process is not None
    assert usage_error(result.process).startswith(f"{sources}: source 'x': key 'timezone'")


@pytest_twisted.ensureDeferred
async def test_only_picks_sources_and_rejects_unknown_names(
    refused: dict[str, tuple[CrawlResult, Path]], feed_site: HTTPServer, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path / "s.toml", feed_site, *TWO_FEEDS)
    result = await crawl_sources(feed_site, sources, tmp_path / "a", only="atom")
    assert [p for p in result.requested if p.startswith("/feeds/")] == ["/feeds/atom.xml"]
    assert len(result.posts()) == 2
    bad, bad_sources = refused["unknown-only"]
    assert bad.process is not None
    assert usage_error(bad.process) == f"{bad_sources}: no source named 'nope'"
