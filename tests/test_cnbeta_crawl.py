"""Real crawls of the cnBeta fixture site, in-process (``-a base_url=...``); the usage errors
of ``scrapy crawl cnbeta`` in a subprocess."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from support import (
    CrawlResult,
    background_job,
    base_url_of,
    crawl,
    crawl_in_process,
    fixture_server,
    run_concurrently,
    serve_cnbeta,
    usage_error,
)

CATEGORIES = ["新媒体", "cnBeta", "最新"]
# title -> (GMT date, lead image) of every article the fixture site lists and serves.
EXPECTED = {
    '阿里腾讯已悄然"握手" 下一个开放的会是支付吗？': (
        "Sat, 17 Jul 2021 14:35:32 GMT",  # JSON inputtime (seconds), not the page's minute
        "https://n.sinaimg.cn/tech/crawl/84/w550h1134/20210717/5e6c-93030f1c16b12b25a270c6c9888cc1e6.jpg",
    ),
    "国产操作系统统信UOS发布新版本": (
        "Sat, 17 Jul 2021 12:11:05 GMT",
        "https://www.cnbeta.com.tw/upimg/article/2021/0717/uos-desktop.png",
    ),
    "苹果发布 iOS 14.7 正式版：支持 MagSafe 外接电池": (
        "Sat, 17 Jul 2021 00:00:00 GMT",
        "https://static.cnbetacdn.com/article/2021/0717/ios147-1.jpg",
    ),
    "这是一篇没有图片的快讯": ("Fri, 16 Jul 2021 15:59:59 GMT", None),
    'It\'s "quoted": #1 --- 🚀 科技「新闻」— {{ 模板 }}': (
        "Thu, 15 Jul 2021 08:30:00 GMT",
        "https://static.cnbetacdn.com/article/2021/0715/rocket.jpg",
    ),
    "Linux 5.14-rc2 发布：修复了多个 AMD 显卡驱动问题": ("Sat, 17 Jul 2021 13:02:00 GMT", None),
    "任天堂公布新款 Switch OLED 机型": (
        "Tue, 06 Jul 2021 14:10:00 GMT",
        "https://static.cnbetacdn.com/article/2021/0706/switch-oled.jpg",
    ),
}


async def crawl_site(
    site: HTTPServer, output: Path, settings: dict[str, Any] | None = None, **arguments: Any
) -> CrawlResult:
    arguments = {"base_url": base_url_of(site), "pages": 3, **arguments}
    return await crawl_in_process("cnbeta", output, settings, server=site, **arguments)


@pytest.fixture(scope="module")
def site() -> Iterator[HTTPServer]:
    """One fixture site for the module; each crawl reads its own requests off ``requested``."""
    with fixture_server(serve_cnbeta) as server:
        yield server


@pytest_twisted.async_fixture(scope="module")
async def first_run(site: HTTPServer, tmp_path_factory: pytest.TempPathFactory) -> CrawlResult:
    """One crawl of the whole fixture site, read by every test that only looks at its results
    (tests that crawl again do it in a copy of its archive)."""
    result = await crawl_site(site, tmp_path_factory.mktemp("first") / "archive")
    assert result.returncode == 0, result.log
    return result


def copy_of(run: CrawlResult, tmp_path: Path) -> Path:
    """The archive of ``run`` copied, state included, for a test that crawls it again."""
    return Path(shutil.copytree(run.output_dir, tmp_path / "archive"))


def test_one_correct_post_per_listed_article(first_run: CrawlResult) -> None:
    posts = first_run.posts()
    by_title = {post["title"]: post for post in posts.values()}
    assert set(by_title) == set(EXPECTED)
    for title, (date, lead_image) in EXPECTED.items():
        post = by_title[title]
        assert post["date"] == date
        assert post["categories"] == CATEGORIES
        assert post["author"] == "cnBeta"
        assert post["comments"] is False
        assert post["headimg"] == post["thumbnail"]
        if lead_image:
            assert post["headimg"] == lead_image
        else:
            assert post["headimg"].startswith("https://picsum.photos/400/300?random=")


def test_files_follow_the_post_layout(first_run: CrawlResult) -> None:
    for relpath in first_run.posts():
        text = (first_run.output_dir / relpath).read_text(encoding="utf-8")
        assert text.startswith("\n---\ntitle: '")
        assert "\ncategories: \n - 新媒体\n - cnBeta\n - 最新\nheadimg: '" in text
        assert "\nauthor: cnBeta\ncomments: false\ndate: " in text
        assert "\n---\n\n<div>   \n" in text
        assert text.endswith("   \n</div>\n            ")
        body = text.split("<div>   \n", 1)[1].rsplit("   \n</div>", 1)[0]
        assert all(line.strip() for line in body.split("\n")), relpath
        assert "{" not in body and "}" not in body
        year, month, name = relpath.split("/")
        assert name.startswith(f"{year}-{month}-") and len(name.encode()) <= 120


def test_bodies_are_sanitized_and_absolute(first_run: CrawlResult) -> None:
    bodies = {post["title"]: post.content for post in first_run.posts().values()}
    ios = bodies["苹果发布 iOS 14.7 正式版：支持 MagSafe 外接电池"]
    for forbidden in (
        "<script",
        "<style",
        "onclick",
        "onmouseover",
        "onload",
        "javascript:",
        "data:",
        "<iframe",
        "<form",
        "pixel.gif",
        "grey.gif",
    ):
        assert forbidden not in ios
    assert 'src="https://static.cnbetacdn.com/article/2021/0717/ios147-2.jpg"' in ios
    assert ">https://player.bilibili.com/player.html?bvid=BV1xx411c7mD</a>" in ios
    assert "&#123;&#123; MagSafe &#125;&#125;" in ios
    assert "softwareupdate --list&#10;" in ios
    assert ios.count('referrerpolicy="no-referrer"') == ios.count("<img")

    uos = bodies["国产操作系统统信UOS发布新版本"]  # served in GBK
    assert "统信软件今日发布了统信UOS桌面操作系统的新版本。" in uos
    assert 'href="https://www.cnbeta.com.tw/articles/tech/1153000.htm"' in uos
    assert 'href="https://www.cnbeta.com.tw/topics/1021.htm"' in uos
    assert "127.0.0.1" not in uos and "localhost" not in uos

    ali = bodies['阿里腾讯已悄然"握手" 下一个开放的会是支付吗？']
    assert ali.startswith("<div>   \n<p><strong>对立多年后")  # summary first, topic logo removed
    assert "topics/63.png" not in ali and "618-promo" not in ali and "更多文章" not in ali


def test_bad_input_is_logged_and_counted_without_traceback(first_run: CrawlResult) -> None:
    log = first_run.log
    assert "Traceback" not in log
    assert "ERROR" not in log
    assert first_run.stat("source/cnbeta/article_http_error") == 2  # the 404 and the 500
    assert first_run.stat("source/cnbeta/list_page_invalid_json") == 1
    assert first_run.stat("normalize/dropped/missing_date") == 1
    assert first_run.stat("write/written") == len(EXPECTED)
    assert log.count("answered HTTP 404") == 1
    assert log.count("answered HTTP 500") == 1
    assert log.count("JSON list page 2 is not JSON") == 1
    assert log.count("Dropped: article without a publication time") == 1


def test_only_the_main_list_is_followed_and_no_page_twice(first_run: CrawlResult) -> None:
    paths = first_run.requested
    articles = Counter(path for path in paths if path.startswith("/articles/"))
    assert "/articles/tech/1100001.htm" not in articles  # sidebar
    assert "/articles/tech/1100002.htm" not in articles  # related list
    assert "/articles/tech/1100003.htm" not in articles  # related list of an article
    assert "/articles/game/1153352.htm" in articles  # hot.cnbeta.com link, fetched via base_url
    retried = {"/articles/tech/1153348.htm"}  # the 500 is retried once
    assert all(count == 1 for path, count in articles.items() if path not in retried)
    assert not any("page=4" in path for path in paths)  # pages=3


@pytest_twisted.ensureDeferred
async def test_each_list_page_is_asked_for_after_the_articles_it_lists(
    site: HTTPServer, tmp_path: Path
) -> None:
    """Streaming: a JSON page's articles are requested as it is parsed, ahead of the next
    page, so the queue holds one page of articles, never the whole list; the home page's bare
    links go last, only those no JSON entry listed. One request at a time, so the server
    sees the order the scheduler hands them out."""
    run = await crawl_site(site, tmp_path / "archive", {"CONCURRENT_REQUESTS": 1})
    assert run.returncode == 0, run.log
    paths = run.requested
    page = {n: paths.index(next(p for p in paths if f"page={n}&" in p)) for n in (1, 2, 3)}
    first_asked = {p: paths.index(p) for p in paths if p.startswith("/articles/")}
    page_one = [f"/articles/tech/{n}.htm" for n in range(1153343, 1153349)]
    assert all(page[1] < first_asked[p] < page[2] for p in page_one)
    home_only = ["/articles/tech/1153350.htm", "/articles/tech/1153351.htm"]
    assert all(first_asked[p] > page[3] for p in home_only)
    assert len(run.posts()) == len(EXPECTED)


@pytest_twisted.ensureDeferred
async def test_second_run_writes_nothing_and_fetches_no_article(
    first_run: CrawlResult, site: HTTPServer, tmp_path: Path
) -> None:
    before = {p: (first_run.output_dir / p).read_bytes() for p in first_run.posts()}
    second = await crawl_site(site, copy_of(first_run, tmp_path))
    assert second.returncode == 0, second.log
    assert second.stat("write/written") is None
    after = {p: (second.output_dir / p).read_bytes() for p in second.posts()}
    assert after == before
    assert [p for p in second.requested if p.startswith("/articles/")] == []
    assert second.stat("source/cnbeta/article_skipped_archived") == len(EXPECTED)
    # The 404, the 500 and the dateless page wait before they are asked for again.
    assert second.stat("source/cnbeta/article_skipped_failed_recently") == 3


@pytest_twisted.ensureDeferred
async def test_failed_articles_are_retried_once_their_wait_is_over(
    first_run: CrawlResult, site: HTTPServer, tmp_path: Path
) -> None:
    again = await crawl_site(site, copy_of(first_run, tmp_path), {"FAILED_ARTICLE_RETRY_AFTER": 0})
    assert again.returncode == 0, again.log
    fetched = {p for p in again.requested if p.startswith("/articles/")}
    assert fetched == {
        "/articles/tech/1153347.htm",
        "/articles/tech/1153348.htm",
        "/articles/tech/1153351.htm",
    }
    assert again.stat("write/written") is None


@pytest_twisted.ensureDeferred
async def test_a_story_archived_by_title_and_day_is_not_fetched(
    site: HTTPServer, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from crawler.archive.state import ArchiveState
    from crawler.post.keys import title_key

    state = ArchiveState(tmp_path / "a")  # archived from another source, under another URL
    published = datetime(2021, 7, 17, 12, 11, 5, tzinfo=UTC)
    state.remember(
        "2021/07/elsewhere.md", title_key("国产操作系统统信UOS发布新版本", published), None
    )
    state.close()
    result = await crawl_site(site, tmp_path / "a")
    assert result.returncode == 0, result.log
    assert "/articles/tech/1153344.htm" not in result.requested
    assert result.stat("source/cnbeta/article_skipped_archived") == 1
    assert len(result.posts()) == len(EXPECTED) - 1


@pytest_twisted.ensureDeferred
async def test_list_stops_at_an_empty_page(site: HTTPServer, tmp_path: Path) -> None:
    result = await crawl_site(site, tmp_path / "a", pages=6)
    assert result.returncode == 0, result.log
    list_pages = [p for p in result.requested if p.startswith("/home/more")]
    assert [p.split("page=")[1].split("&")[0] for p in list_pages] == ["1", "2", "3", "4"]
    assert len(result.posts()) == len(EXPECTED)


@pytest_twisted.ensureDeferred
async def test_pages_zero_reads_the_home_page_only(site: HTTPServer, tmp_path: Path) -> None:
    result = await crawl_site(
        site, tmp_path / "a", pages="0", categories="科技,cnBeta", author="cnBeta中文业界资讯站"
    )  # as -a passes them: strings
    assert result.returncode == 0, result.log
    assert not any(p.startswith("/home/more") for p in result.requested)
    posts = {post["title"]: post for post in result.posts().values()}
    # The home page lists four cnBeta articles; one of them has no date on its page.
    assert set(posts) == {
        '阿里腾讯已悄然"握手" 下一个开放的会是支付吗？',
        "Linux 5.14-rc2 发布：修复了多个 AMD 显卡驱动问题",
        "任天堂公布新款 Switch OLED 机型",
    }
    ali = posts['阿里腾讯已悄然"握手" 下一个开放的会是支付吗？']
    assert ali["date"] == "Sat, 17 Jul 2021 14:35:00 GMT"  # the page's minute, ":00" seconds
    assert ali["categories"] == ["科技", "cnBeta"]
    assert ali["author"] == "cnBeta中文业界资讯站"


@pytest_twisted.ensureDeferred
async def test_a_fresh_output_dir_starts_clean(
    first_run: CrawlResult, site: HTTPServer, tmp_path: Path
) -> None:
    other = await crawl_site(site, tmp_path / "another-archive")
    assert other.returncode == 0, other.log
    assert len(other.posts()) == len(EXPECTED)
    assert (tmp_path / "another-archive" / ".state.sqlite3").is_file()
    hidden = [p.name for p in (tmp_path / "another-archive").iterdir() if not p.is_dir()]
    assert all(name.startswith(".") for name in hidden)


BAD_ARGUMENTS = {
    "pages=abc": "cnbeta: -a pages: must be a whole number >= 0, not 'abc'",
    "pages=-1": "cnbeta: -a pages: must be a whole number >= 0, not '-1'",
    "base_url=ftp://mirror": "cnbeta: -a base_url: must be an http(s) URL, not 'ftp://mirror'",
}


@background_job
def bad_argument_runs(home: Path) -> dict[str, tuple[CrawlResult, Path]]:
    """``scrapy crawl cnbeta -a <bad argument>``, each in its own process."""

    def job(index: int, argument: str) -> tuple[CrawlResult, Path]:
        output = home / str(index)
        return crawl("cnbeta", output, "-a", argument), output

    return run_concurrently(
        {
            argument: (lambda index=index, argument=argument: job(index, argument))
            for index, argument in enumerate(BAD_ARGUMENTS)
        }
    )


@pytest.mark.parametrize("argument", list(BAD_ARGUMENTS))
def test_bad_spider_arguments_are_one_usage_error(
    bad_argument_runs: dict[str, tuple[CrawlResult, Path]], argument: str
) -> None:
    result, output = bad_argument_runs[argument]
    assert result.process is not None
    assert usage_error(result.process) == BAD_ARGUMENTS[argument]
    assert not output.exists()


@pytest_twisted.ensureDeferred
async def test_unreachable_site_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await crawl_in_process("cnbeta", tmp_path / "a", base_url=f"http://127.0.0.1:{port}")
    assert result.returncode == 0
    assert "Traceback" not in result.log and "ERROR" not in result.log
    assert result.stat("source/cnbeta/home_fetch_failed") == 1
    assert result.stat("source/cnbeta/failed") == 1
    assert result.log.count("could not be fetched") == 1
    assert result.posts() == {}


@pytest.mark.parametrize(
    ("href", "canonical"),
    [
        (
            "https://www.cnbeta.com.tw/articles/tech/1.htm",
            "https://www.cnbeta.com.tw/articles/tech/1.htm",
        ),
        (
            "http://www.cnbeta.com/articles/tech/1.htm",
            "https://www.cnbeta.com.tw/articles/tech/1.htm",
        ),
        ("//hot.cnbeta.com/articles/game/2.htm", "https://www.cnbeta.com.tw/articles/game/2.htm"),
        ("https://m.cnbeta.com.tw/view/3.htm?x=1", "https://www.cnbeta.com.tw/view/3.htm?x=1"),
        ("/articles/tech/4.htm", "https://www.cnbeta.com.tw/articles/tech/4.htm"),
        ("https://www.cnbetacdn.com/ad.htm", None),
        ("https://c.duomai.com/track.php", None),
        ("javascript:void(0)", None),
        ("", None),
        (None, None),
    ],
)
def test_cnbeta_links_of_every_host_map_to_the_canonical_site(href, canonical) -> None:
    from crawler.spiders.cnbeta import canonical_article_url

    assert canonical_article_url(href) == canonical


def test_dedup_holds_no_keys_once_the_crawl_is_done(first_run: CrawlResult) -> None:
    """Its run memory is the items in flight: written posts' keys are the archive's."""
    from crawler.pipelines.dedup import DedupPipeline

    assert first_run.crawler is not None and first_run.crawler.engine is not None
    pipelines = first_run.crawler.engine.scraper.itemproc.middlewares
    (dedup,) = [p for p in pipelines if isinstance(p, DedupPipeline)]
    assert first_run.stat("item_scraped_count") == len(EXPECTED)
    assert dedup.in_flight == {} and dedup.passed == set()
