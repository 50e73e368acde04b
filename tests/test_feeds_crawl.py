"""Real crawls of feed fixtures: ``scrapy crawl feeds``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from support import (
    ETAG,
    LAST_MODIFIED,
    CrawlResult,
    crawl,
    requested_paths,
    serve_cnbeta,
    write_sources,
)

CATEGORIES = "科技,测试,最新"


def crawl_feed(base_url: str, path: str, output: Path, *args: str) -> CrawlResult:
    result = crawl(
        "feeds", output, "-a", f"url={base_url}{path}", "-a", f"categories={CATEGORIES}",
        "-a", "author=测试", *args,
    )  # fmt: skip
    assert "Traceback" not in result.log
    return result


def by_title(result: CrawlResult) -> dict:
    return {post["title"]: post for post in result.posts().values()}


def test_rss2_with_cdata_content_encoded_and_odd_dates(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    result = crawl_feed(
        base_url, "/feeds/ithome.xml", tmp_path / "a", "-a", "timezone=Asia/Shanghai"
    )
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


def test_atom_with_xml_base_and_html_titles(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    result = crawl_feed(base_url, "/feeds/atom.xml", tmp_path / "a")
    posts = by_title(result)
    assert set(posts) == {"Rust async & you", "Plain title with <angle> brackets"}
    rust = posts["Rust async & you"]
    assert rust["date"] == "Fri, 16 Jul 2021 07:30:00 GMT"
    assert 'href="https://blog.example.org/posts/2020/old.html"' in rust.content
    assert rust["headimg"] == "https://blog.example.org/posts/2021/img/diagram.png"
    assert "fn main() &#123;&#10;" in rust.content
    plain = posts["Plain title with <angle> brackets"]
    assert 'href="https://blog.example.org/about.html"' in plain.content


def test_rss1_rdf(feed_site: HTTPServer, base_url: str, tmp_path: Path) -> None:
    posts = by_title(crawl_feed(base_url, "/feeds/rss1.rdf", tmp_path / "a"))
    assert posts["Linux Kernel 5.13 Released"]["date"] == "Sat, 17 Jul 2021 12:00:00 GMT"


@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/feeds/oschina.xml", "Rust 1.53 发布，支持数组的 IntoIterator"),  # GB2312 in prolog
        ("/feeds/gb2312-header.xml", "国产数据库登顶 TPC-C 榜单"),  # GB2312 in Content-Type
        ("/feeds/habr.xml", "Выпуск ядра Linux 5.13"),  # windows-1251
    ],
)
def test_legacy_encodings(
    feed_site: HTTPServer, base_url: str, tmp_path: Path, path: str, title: str
) -> None:
    result = crawl_feed(base_url, path, tmp_path / "a")
    (post,) = result.posts().values()
    assert post["title"] == title
    assert result.stat("feeds/bozo") is None


def test_lead_image_from_feed_media(feed_site: HTTPServer, base_url: str, tmp_path: Path) -> None:
    verge = by_title(crawl_feed(base_url, "/feeds/verge.xml", tmp_path / "a"))
    # media:thumbnail wins over the body's first image
    steam = verge["Valve announces the Steam Deck"]
    assert steam["headimg"] == "https://cdn.vox-cdn.com/thumbor/steam-deck-thumb.jpg"
    assert steam["date"] == "Thu, 15 Jul 2021 21:00:00 GMT"
    # media:content: the image, not the video
    flight = verge["Microsoft Flight Simulator comes to Xbox"]
    assert flight["headimg"] == "https://cdn.vox-cdn.com/uploads/flight-sim.jpg"
    sspai = by_title(crawl_feed(base_url, "/feeds/sspai.xml", tmp_path / "b"))
    assert sspai["派早报：Steam Deck 掌机发布"]["headimg"] == (
        "https://cdn.sspai.com/2021/07/16/steam-deck.png"
    )
    assert sspai["播客：本周科技新闻"]["headimg"].startswith("https://picsum.photos/")


def test_truncated_feed_keeps_what_was_recovered(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    result = crawl_feed(base_url, "/feeds/truncated.xml", tmp_path / "a")
    assert set(by_title(result)) == {
        "Valve announces the Steam Deck",
        "Microsoft Flight Simulator comes to Xbox",
    }
    assert result.stat("feeds/bozo") == 1
    assert result.log.count("malformed feed") == 1
    # an entry with no text at all gets a link to the article as its body
    flight = by_title(result)["Microsoft Flight Simulator comes to Xbox"]
    assert 'href="https://www.theverge.com/2021/7/14/flight-sim"' in flight.content


def test_shared_and_home_page_links_get_no_url_key(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    result = crawl_feed(base_url, "/feeds/solidot.xml", tmp_path / "a")
    assert len(result.posts()) == 4  # no entry is taken for a duplicate of another
    # neither the entry nor the feed has a date: the fetch time, counted
    assert result.stat("feeds/entry_without_date") == 1
    with sqlite3.connect(tmp_path / "a" / ".state.sqlite3") as db:
        urls = db.execute("SELECT key FROM story_keys WHERE kind = 'url'").fetchall()
    assert urls == [("https://www.solidot.org/story?sid=2",)]  # the one entry with its own link


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/feeds/html", "not a feed"), ("/feeds/missing.xml", "HTTP 404")],
)
def test_a_broken_source_is_one_line_and_the_others_go_on(
    feed_site: HTTPServer, base_url: str, tmp_path: Path, path: str, reason: str
) -> None:
    sources = write_sources(
        tmp_path / "sources.toml",
        feed_site,
        '[[source]]\nname = "broken"\nurl = "{base}' + path + '"\ncategories = ["a", "b", "c"]\n'
        'author = "Broken"\n',
        '[[source]]\nname = "rdf"\nurl = "{base}/feeds/rss1.rdf"\ncategories = ["a", "b", "c"]\n'
        'author = "RDF"\n',
    )
    result = crawl("feeds", tmp_path / "a", "-a", f"sources={sources}")
    assert result.returncode == 0
    assert "Traceback" not in result.log and "ERROR" not in result.log
    assert result.log.count("source broken failed: ") == 1
    assert reason in result.log
    assert result.stat("source/broken/failed") == 1
    assert result.stat("source/rdf/new") == 1
    assert "source broken: 0 seen, 0 new, 0 duplicate, 0 dropped, FAILED" in result.log
    assert len(result.posts()) == 1


def test_second_run_sends_validators_and_a_304_writes_nothing(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    first = crawl_feed(base_url, "/feeds/conditional.xml", tmp_path / "a")
    assert len(first.posts()) == 2
    feed_site.clear_log()
    second = crawl_feed(base_url, "/feeds/conditional.xml", tmp_path / "a")
    (request, response) = next(
        (req, resp) for req, resp in feed_site.log if req.path == "/feeds/conditional.xml"
    )
    assert request.headers.get("If-None-Match") == ETAG
    assert request.headers.get("If-Modified-Since") == LAST_MODIFIED
    assert response.status_code == 304
    assert second.stat("feeds/not_modified") == 1
    assert second.stat("write/written") is None
    assert len(second.posts()) == 2


def test_validators_are_not_kept_when_a_post_could_not_be_written(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    output = tmp_path / "a"
    output.mkdir()
    (output / "2021").write_text("a file where the year folder should be")
    first = crawl_feed(base_url, "/feeds/conditional.xml", output)
    assert first.stat("write/failed") == 2
    with sqlite3.connect(output / ".state.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM feed_validators").fetchone() == (0,)
    (output / "2021").unlink()
    feed_site.clear_log()
    second = crawl_feed(base_url, "/feeds/conditional.xml", output)
    assert second.stat("write/written") == 2  # nothing was skipped by a 304


def test_second_run_of_a_feed_writes_nothing(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    first = crawl_feed(base_url, "/feeds/ithome.xml", tmp_path / "a")
    before = {path: post.content for path, post in first.posts().items()}
    second = crawl_feed(base_url, "/feeds/ithome.xml", tmp_path / "a")
    assert second.stat("write/written") is None
    assert {path: post.content for path, post in second.posts().items()} == before


def test_max_age_days_skips_the_backlog(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    result = crawl_feed(base_url, "/feeds/ithome.xml", tmp_path / "a", "-s", "MAX_AGE_DAYS=30")
    # every dated entry is years old (the dateless one takes the feed's); the future one
    # takes the fetch time
    assert set(by_title(result)) == {"来自未来的文章"}
    assert result.stat("feeds/entry_too_old") == 4


def test_full_text_follows_new_entries_and_falls_back_to_the_feed(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    sources = write_sources(
        tmp_path / "sources.toml",
        feed_site,
        '[[source]]\nname = "links"\nurl = "{base}/feeds/fulltext.xml"\n'
        'categories = ["Tech", "Links", "Hottest"]\nauthor = "Links"\nfull_text = true\n',
    )
    result = crawl("feeds", tmp_path / "a", "-a", f"sources={sources}")
    posts = by_title(result)
    sqlite = posts["Why SQLite uses B-trees"].content
    assert "SQLite stores every table and every index as a B-tree" in sqlite
    assert "Privacy" not in sqlite and "dataLayer" not in sqlite
    assert posts["Why SQLite uses B-trees"]["headimg"] == f"{base_url}/images/btree.png"
    assert "The teaser is all we have." in posts["A page that is gone"].content
    assert result.stat("feeds/full_text_extracted") == 1
    assert result.stat("feeds/full_text_fallback") == 1
    feed_site.clear_log()
    again = crawl("feeds", tmp_path / "a", "-a", f"sources={sources}")
    assert again.stat("write/written") is None
    assert not any(p.startswith("/articles/") for p in requested_paths(feed_site))


def test_a_story_from_cnbeta_and_a_feed_is_archived_once(
    feed_site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    serve_cnbeta(feed_site)
    output = tmp_path / "a"
    cnbeta = crawl("cnbeta", output, "-a", f"base_url={base_url}", "-a", "pages=3")
    assert cnbeta.stat("write/written") == 7
    feed = crawl_feed(base_url, "/feeds/syndication.xml", output)
    assert feed.stat("write/written") == 1
    assert feed.stat("dedup/duplicate/archived_title") == 1  # same title, same UTC day
    assert feed.stat("dedup/duplicate/archived_url") == 1  # re-titled, same canonical URL
    assert "只在聚合源里出现的新闻" in by_title(feed)


def test_sources_file_mistake_is_exit_2_before_any_request(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    sources = write_sources(
        tmp_path / "bad.toml",
        feed_site,
        '[[source]]\nname = "x"\nurl = "{base}/feeds/rss1.rdf"\ncategories = ["a"]\n'
        'author = "X"\ntimezone = "Mars/Olympus"\n',
    )
    result = crawl("feeds", tmp_path / "a", "-a", f"sources={sources}")
    assert result.returncode == 2
    assert f"{sources}: source 'x': key 'timezone'" in result.log
    assert "Traceback" not in result.log
    assert feed_site.log == []


def test_only_picks_sources_and_rejects_unknown_names(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    tables = [
        f'[[source]]\nname = "{name}"\nurl = "{{base}}/feeds/{path}"\ncategories = ["a"]\n'
        f'author = "A"\n'
        for name, path in (("rdf", "rss1.rdf"), ("atom", "atom.xml"))
    ]
    sources = write_sources(tmp_path / "s.toml", feed_site, *tables)
    result = crawl("feeds", tmp_path / "a", "-a", f"sources={sources}", "-a", "only=atom")
    assert [p for p in requested_paths(feed_site) if p.startswith("/feeds/")] == ["/feeds/atom.xml"]
    assert len(result.posts()) == 2
    bad = crawl("feeds", tmp_path / "b", "-a", f"sources={sources}", "-a", "only=nope")
    assert bad.returncode == 2 and "no source named 'nope'" in bad.log
