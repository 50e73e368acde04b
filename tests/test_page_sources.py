"""Sites without a feed, given as one sources-file table: a `list` site read with selectors
(IT之家's list and article layout) and a news `sitemap` read from the pages' own metadata
(TechCrunch's WordPress + Yoast shape). Real crawls in-process against fixture servers."""

from __future__ import annotations

import gzip
import html
import json
import re
import subprocess
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
import scrapy
from pytest_httpserver import HTTPServer
from support import (
    FIXTURES,
    CrawlResult,
    background_job,
    crawl_in_process,
    fixture_server,
    requested_paths,
    run_harvest,
)
from werkzeug import Request, Response

from crawler.extract.dates import parse_date
from crawler.extract.page import read_article
from crawler.extract.sitemap import is_recent, parse_sitemap
from crawler.sources import Source, SourcesError, load_sources, parse_source
from crawler.spiders.base import (
    ArgumentError,
    ArgumentSpec,
    Listing,
    SiteSpider,
    text_title,
    whole_number,
)

LIST_SITE = FIXTURES / "listsite"
SITEMAP_SITE = FIXTURES / "sitemap"
TAG = re.compile(r"<[^>]+>")
# A first crawl, the paths it requested, a second crawl, the paths that one requested.
Runs = tuple[CrawlResult, list[str], CrawlResult, list[str]]


def expected(site: Path) -> dict[str, Any]:
    return json.loads((site / "expected.json").read_text(encoding="utf-8"))


def serve_folder(server: HTTPServer, site: Path, route: Any) -> None:
    """Serve ``site``'s files with ``{base}`` replaced by the server's address; ``route``
    maps a request path to a file (None: 404)."""
    base = server.url_for("").rstrip("/").encode()

    def handler(request: Request) -> Response:
        path = route(request.path)
        if path is None or not path.is_file():
            return Response("<h1>404</h1>", status=404, content_type="text/html")
        body = path.read_bytes().replace(b"{base}", base)
        if path.suffix == ".xml":
            return Response(body, content_type="application/xml; charset=utf-8")
        charset = "gb2312" if b"charset=gb2312" in body[:2000] else "utf-8"
        return Response(body, content_type=f"text/html; charset={charset}")

    robots = f"User-agent: *\nDisallow: /wp-admin/\nSitemap: {base.decode()}/sitemap-index.xml.gz\n"
    server.expect_request(re.compile("^/robots.txt$")).respond_with_data(
        robots, content_type="text/plain"
    )
    server.expect_request(re.compile(r".*\.xml\.gz$")).respond_with_handler(
        lambda request: Response(
            gzip.compress(handler(Request.from_values(request.path[:-3])).get_data()),
            content_type="application/x-gzip",
        )
    )
    server.expect_request(re.compile(".*")).respond_with_handler(handler)


def list_route(path: str) -> Path | None:
    return LIST_SITE / path.lstrip("/")


def sitemap_route(path: str) -> Path | None:
    if path.endswith(".xml"):
        return SITEMAP_SITE / path.lstrip("/")
    match = re.fullmatch(r"/\d{4}/\d{2}/\d{2}/([a-z0-9-]+)/", path)
    return SITEMAP_SITE / "posts" / f"{match.group(1)}.html" if match else None


def source_of(site: Path, server: HTTPServer, **overrides: Any) -> Source:
    """The site's own sources-file table, pointed at the fixture server."""
    text = (site / "source.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text.replace("{base}", server.url_for("").rstrip("/")))["source"][0]
    return parse_source({**table, **overrides}, where="fixture")


def recent_enough_days() -> float:
    """A sitemap age limit that keeps the fixture's November 2026 entries, not the 2019 ones."""
    oldest_recent = datetime(2026, 11, 26, 21, 40, tzinfo=UTC)
    return (datetime.now(UTC) - oldest_recent).total_seconds() / 86400 + 1


def text_of(body: str) -> str:
    return html.unescape(TAG.sub("", body))


def check_posts(result: CrawlResult, site: Path, categories: list[str], author: str) -> None:
    """Every expected article archived once, exactly: title, date, lead image, body."""
    posts = {post["title"]: post for post in result.posts().values()}
    articles = expected(site)["articles"]
    assert sorted(posts) == sorted(article["title"] for article in articles)
    for article in articles:
        post = posts[article["title"]]
        assert post["date"] == article["date"], article["path"]
        assert post["categories"] == categories
        assert post["author"] == author
        if article["lead_image"]:
            assert post["headimg"] == article["lead_image"], article["path"]
        else:
            assert post["headimg"].startswith("https://picsum.photos/400/300?random=")
        body = text_of(post.content)
        for snippet in article["body_contains"]:
            assert snippet in body, (article["path"], snippet)
        for snippet in article["body_lacks"]:
            assert snippet not in body, (article["path"], snippet)


# --- the list site ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def list_server() -> Iterator[HTTPServer]:
    with fixture_server(lambda server: serve_folder(server, LIST_SITE, list_route)) as server:
        yield server


async def two_runs(spider: str, server: HTTPServer, source: Source, output: Path) -> Runs:
    """A first crawl of a site and a second one over the same archive."""
    first = await crawl_in_process(spider, output, server=server, source=source)
    second = await crawl_in_process(spider, output, server=server, source=source)
    return first, first.requested, second, second.requested


@pytest_twisted.async_fixture(scope="module")
async def list_runs(list_server: HTTPServer, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    output = tmp_path_factory.mktemp("list-archive")
    return await two_runs("list", list_server, source_of(LIST_SITE, list_server), output)


def test_list_site_articles_are_archived_exactly(list_runs: Any) -> None:
    first, _, _, _ = list_runs
    assert first.returncode == 0, first.log
    check_posts(first, LIST_SITE, ["科技", "IT之家", "最新"], "IT之家")
    assert "Traceback" not in first.log


def test_list_site_follows_next_links_and_only_the_selected_links(list_runs: Any) -> None:
    first, paths, _, _ = list_runs
    data = expected(LIST_SITE)
    for page in data["list_pages_requested"]:
        assert paths.count(page) == 1
    for skipped in data["list_pages_not_requested"]:
        assert skipped["path"] not in paths
    for sidebar in ("/articles/992870.html", "/articles/992911.html"):
        assert sidebar not in paths
    articles = [path for path in paths if path.startswith("/articles/")]
    assert len(articles) == len(set(articles))  # listed twice (page 1 and 2), fetched once
    assert first.stat("source/ithome-list/list_pages") == 2


def test_list_site_failures_are_counted_not_fatal(list_runs: Any) -> None:
    first, _, _, _ = list_runs
    assert first.stat("source/ithome-list/article_http_error") == 1  # the 404
    assert first.stat("source/ithome-list/article_without_date") == 1
    assert first.stat("normalize/dropped/missing_date") == 1
    assert first.stat("source/ithome-list/failed") is None


def test_list_site_rerun_writes_nothing_and_fetches_no_article(list_runs: Any) -> None:
    _, _, second, paths = list_runs
    assert second.stat("write/written") is None
    assert [path for path in paths if path.startswith("/articles/")] == []
    assert second.stat("source/ithome-list/article_skipped_archived") == 5
    assert second.stat("source/ithome-list/article_skipped_failed_recently") == 2


# --- the news sitemap ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sitemap_server() -> Iterator[HTTPServer]:
    with fixture_server(lambda server: serve_folder(server, SITEMAP_SITE, sitemap_route)) as server:
        yield server


@pytest_twisted.async_fixture(scope="module")
async def sitemap_runs(
    sitemap_server: HTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Runs:
    output = tmp_path_factory.mktemp("sitemap-archive")
    source = source_of(SITEMAP_SITE, sitemap_server, max_age_days=recent_enough_days())
    return await two_runs("sitemap", sitemap_server, source, output)


def test_sitemap_articles_are_archived_exactly(sitemap_runs: Any) -> None:
    first, _, _, _ = sitemap_runs
    assert first.returncode == 0, first.log
    check_posts(first, SITEMAP_SITE, ["Tech", "TechCrunch", "News"], "TechCrunch")
    assert "Traceback" not in first.log and "ERROR" not in first.log


def test_sitemap_fetches_only_recent_urls_once(sitemap_runs: Any) -> None:
    _, paths, _, _ = sitemap_runs
    for not_post in expected(SITEMAP_SITE)["not_posts"]:
        if not_post["path"].endswith(".xml"):
            assert paths.count(not_post["path"]) == 1
        else:
            assert not_post["path"] not in paths, not_post["reason"]
    pages = [path for path in paths if not path.endswith((".xml", ".txt"))]
    assert sorted(pages) == sorted(a["path"] for a in expected(SITEMAP_SITE)["articles"])


def test_sitemap_rerun_writes_nothing(sitemap_runs: Any) -> None:
    _, _, second, paths = sitemap_runs
    assert second.stat("write/written") is None
    assert [path for path in paths if not path.endswith((".xml", ".txt"))] == []


@pytest_twisted.ensureDeferred
async def test_default_age_limit_skips_an_old_sitemap(
    sitemap_server: HTTPServer, tmp_path: Path
) -> None:
    """With SITEMAP_MAX_AGE_DAYS at a day before the fixture's newest entry, nothing is old
    enough to be fetched but nothing fails either."""
    newest = datetime(2026, 11, 28, 3, 2, 41, tzinfo=UTC)
    days = (datetime.now(UTC) - newest).total_seconds() / 86400 - 1
    source = source_of(SITEMAP_SITE, sitemap_server)
    result = await crawl_in_process(
        "sitemap", tmp_path, {"SITEMAP_MAX_AGE_DAYS": max(days, 0.001)}, source=source
    )
    assert result.stat("write/written") is None
    assert result.stat("source/techcrunch-sitemap/failed") is None
    assert result.stat("source/techcrunch-sitemap/sitemap_too_old") >= 1


@pytest_twisted.ensureDeferred
async def test_sitemaps_named_by_robots_txt_and_gzipped(
    sitemap_server: HTTPServer, tmp_path: Path
) -> None:
    base = sitemap_server.url_for("").rstrip("/")
    source = source_of(
        SITEMAP_SITE,
        sitemap_server,
        sitemap=f"{base}/robots.txt",
        max_age_days=recent_enough_days(),
    )
    result = await crawl_in_process("sitemap", tmp_path, source=source)
    check_posts(result, SITEMAP_SITE, ["Tech", "TechCrunch", "News"], "TechCrunch")


@pytest_twisted.ensureDeferred
async def test_list_spider_from_command_line_arguments(
    list_server: HTTPServer, tmp_path: Path
) -> None:
    """``scrapy crawl list -a list=... -a links=...``: the same table, as spider arguments."""
    table = tomllib.loads(
        (LIST_SITE / "source.toml")
        .read_text(encoding="utf-8")
        .replace("{base}", list_server.url_for("").rstrip("/"))
    )["source"][0]
    arguments = {key: str(value) for key, value in table.items() if key != "name"}
    arguments["categories"] = ",".join(table["categories"])
    arguments["source_name"] = table["name"]
    result = await crawl_in_process("list", tmp_path, **arguments)
    check_posts(result, LIST_SITE, ["科技", "IT之家", "最新"], "IT之家")


def ithome_spider(site: str) -> type[SiteSpider]:
    """A new list + article spider on the base class, as README shows it: site knowledge only
    (IT之家's URLs, selectors and date format)."""

    class IthomeSpider(SiteSpider):
        name = "ithome-example"
        site_url = site
        default_categories = ("科技", "IT之家", "最新")
        default_author = "IT之家"
        default_timezone = "Asia/Shanghai"
        widget_selectors = ("div.tougao-user", "p.ad-tips", "a.topic-bar", "[id^='ad-id-']")
        arguments: ClassVar[ArgumentSpec] = {"pages": whole_number(1)}
        default_pages = 2

        async def start(self) -> AsyncIterator[Any]:
            yield scrapy.Request(self.fetch_url(f"{site}/list-1.html"), callback=self.parse_list)

        def parse_list(self, response: Any, page: int = 1) -> Iterator[Any]:
            links = response.css("div.post_list ul.ulcl > li > a::attr(href)").getall()
            listings = [Listing(url=urljoin(response.url, href)) for href in links]
            yield from self.article_requests(listings, self.parse_article)
            following = response.css("#Pager span.current ~ a[href]:nth-last-of-type(2)")
            if following and page < self.pages:
                yield response.follow(following[0], self.parse_list, cb_kwargs={"page": page + 1})

        def parse_article(self, response: Any, listing: Listing | None = None) -> Iterator[Any]:
            listing = self.listing_for(response, listing)
            yield self.article(
                listing,
                title=text_title(response.css("div.post_title h1::text").get()),
                published=parse_date(response.css("#pubtime_baidu::text").get(), self.source.zone),
                body="".join(response.css("#paragraph").xpath("node()").getall()),
            )

    return IthomeSpider


@pytest_twisted.ensureDeferred
async def test_a_new_site_spider_is_its_site_knowledge(
    list_server: HTTPServer, tmp_path: Path
) -> None:
    spider = ithome_spider(list_server.url_for("").rstrip("/"))
    first = await crawl_in_process(spider, tmp_path)
    check_posts(first, LIST_SITE, ["科技", "IT之家", "最新"], "IT之家")
    assert first.stat("source/ithome-example/article_http_error") == 1
    again = await crawl_in_process(spider, tmp_path, categories="a,b")
    assert again.stat("write/written") is None
    # Five posts (one listed on both list pages, looked at once), none fetched again.
    assert again.stat("source/ithome-example/article_skipped_archived") == 5
    assert again.stat("source/ithome-example/article_skipped_failed_recently") == 2
    assert again.stat("source/ithome-example/article_requested") is None
    with pytest.raises(ArgumentError, match="unknown argument -a nosuch"):
        spider(nosuch=1)


# --- the pure parts, on the fixture bytes ----------------------------------------------------


def test_news_sitemap_fields_are_read() -> None:
    sitemap = parse_sitemap((SITEMAP_SITE / "news-sitemap.xml").read_bytes(), UTC)
    assert sitemap.kind == "urlset"
    first = sitemap.entries[0]
    assert first.loc == "{base}/2026/11/28/larkspur-robotics-series-b/"
    assert (
        first.news_title == "Larkspur Robotics raises $48M to rent out warehouse arms 'by the pick'"
    )
    assert first.news_date == datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
    index = parse_sitemap((SITEMAP_SITE / "sitemap-index.xml").read_bytes(), UTC)
    assert index.kind == "sitemapindex" and len(index.entries) == 2
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    posts = parse_sitemap((SITEMAP_SITE / "posts-sitemap.xml").read_bytes(), UTC).entries
    old = [entry.loc for entry in posts if not is_recent(entry, now, 2)]
    assert len(old) == 3 and all(loc.startswith("{base}/2019/") for loc in old)


def test_hostile_sitemaps_give_nothing_and_never_expand_entities() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&c;</loc>'
        b"</url></urlset>"
    )
    assert all(len(entry.loc) < 100 for entry in parse_sitemap(bomb, UTC).entries)
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&x;</loc></url></urlset>"
    )
    assert all("root:" not in entry.loc for entry in parse_sitemap(xxe, UTC).entries)
    assert parse_sitemap(b"<html><body>not a sitemap</body></html>", UTC).kind == "html"
    assert parse_sitemap(b"\x00\xff garbage", UTC).entries == []


def test_page_metadata_json_ld_graph_and_opengraph() -> None:
    for article in expected(SITEMAP_SITE)["articles"]:
        page = (SITEMAP_SITE / article["file"]).read_text(encoding="utf-8")
        url = "https://techcrunch.com" + article["path"]
        read = read_article(page.replace("{base}", "https://techcrunch.com"), url, UTC)
        assert read.title == article["title"], article["path"]
        assert read.image == article["lead_image"], article["path"]
        assert read.published is not None
        assert (
            read.published.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
            == (article["date"])
        )
        assert read.body and all(s in text_of(read.body) for s in article["body_contains"])


def test_hostile_json_ld_is_skipped() -> None:
    nested = "[" * 100_000 + "]" * 100_000
    page = (
        f'<html><head><script type="application/ld+json">{nested}</script>'
        '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Kept",'
        '"datePublished": "2026-11-27T10:00:00+08:00"}</script></head><body></body></html>'
    )
    read = read_article(page, "https://e.com/a", ZoneInfo("Asia/Shanghai"))
    assert read.title == "Kept"
    assert read.published == datetime(2026, 11, 27, 2, tzinfo=UTC)


# --- mistakes in a table: one line, exit 2, nothing fetched -------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"list": "https://e.com/news"}, "key 'links': missing"),
        ({"list": "https://e.com/news", "links": "h2 >"}, "key 'links': must be a valid CSS"),
        ({"list": "https://e.com/n", "links": "a", "remove": ["a["]}, "key 'remove'"),
        ({"sitemap": "https://e.com/s.xml", "links": "a"}, "not used by a 'sitemap' source"),
        ({"sitemap": "https://e.com/s.xml", "pages": 2}, "key 'pages'"),
        ({"list": "https://e.com/n", "links": "a", "pages": 0}, "key 'pages'"),
        ({"sitemap": "https://e.com/s.xml", "max_age_days": -1}, "key 'max_age_days'"),
        ({"sitemap": "ftp://e.com/s.xml"}, "key 'sitemap': not an http(s) URL"),
    ],
)
def test_table_mistakes_name_the_key(table: dict[str, Any], message: str) -> None:
    base = {"name": "s", "categories": ["a", "b", "c"], "author": "A"}
    with pytest.raises(SourcesError, match=re.escape(message)):
        parse_source({**base, **table})


@dataclass
class PageHarvests:
    base: str
    sources: list[Source]  # the good sources file, as loaded
    drifting: subprocess.CompletedProcess[str]  # the harvest of it
    refused: subprocess.CompletedProcess[str]  # the harvest of a bad selector
    refused_requests: list[str]  # what the refused harvest asked the server for


@background_job
def page_harvests(home: Path) -> PageHarvests:
    """``harvest`` of the list site's source (with a strict DRIFT_MIN_EXTRACTION), then of
    the same source with an invalid selector, against a list site of its own."""
    with fixture_server(lambda server: serve_folder(server, LIST_SITE, list_route)) as server:
        base = server.url_for("").rstrip("/")
        good = (LIST_SITE / "source.toml").read_text(encoding="utf-8").replace("{base}", base)
        sources = home / "sources.toml"
        sources.write_text(good, encoding="utf-8")
        loaded = load_sources(sources)
        drifting = run_harvest("--sources", str(sources), "--output", str(home / "out"),
                               "--json", "-s", "DRIFT_MIN_EXTRACTION=0.9")  # fmt: skip
        sources.write_text(good.replace('links = "', 'links = "#wrapper >> '), encoding="utf-8")
        server.clear_log()
        refused = run_harvest("--sources", str(sources), "--output", str(home / "out2"))
        return PageHarvests(base, loaded, drifting, refused, requested_paths(server))


def test_harvest_runs_page_sources_and_refuses_a_bad_selector(page_harvests: PageHarvests) -> None:
    base, done = page_harvests.base, page_harvests.drifting
    assert [s.kind for s in page_harvests.sources] == ["list"]
    # One of its six article pages lost its date (5/6 < DRIFT_MIN_EXTRACTION 0.9): the five
    # good ones are archived, and the source is flagged DRIFT, which cron must hear about.
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert [(s["name"], s["kind"], s["new"], s["status"]) for s in report["sources"]] == [
        ("ithome-list", "list", 5, "DRIFT")
    ]
    drift = report["sources"][0]["drift"]
    assert drift == {
        "field": "date",
        "example": f"{base}/articles/993115.html",
        "rate": 0.833,
        "empty_runs": None,
    }
    assert report["sources"][0]["reason"].startswith("drift: date found on 83% of pages")
    assert report["totals"]["drift"] == 1
    done = page_harvests.refused
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "key 'links': must be a valid CSS selector" in done.stderr
    assert page_harvests.refused_requests == []
