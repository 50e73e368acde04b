"""``python -m crawler demo``: the bundled demo site served on 127.0.0.1 and harvested, from a
folder outside the project, with no request anywhere else (crawler/demo/)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import frontmatter
import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from support import background_job, base_url_of, crawl_in_process, fixture_server

from crawler.cli import demo
from crawler.cli.main import main
from crawler.demo.server import SITE, DemoServer, bundled_file, content_type
from crawler.sources import parse_source

DEMO = Path(demo.__file__).resolve().parent.parent / "demo"
SOURCES = tomllib.loads((DEMO / "sources.toml").read_text(encoding="utf-8"))["source"]
SERVED = re.compile(r"\[crawler\.demo\.server\] INFO: demo server: (GET|HEAD) (\S+) -> (\d+)$")


@dataclass
class DemoRuns:
    home: Path  # the folder the demo ran in (not the project)
    first: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]  # the same folder once more, with --json
    log: str  # the first run's --log-file


def run_demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "demo", *args],
        cwd=home, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@background_job
def demo_runs(home: Path) -> DemoRuns:
    """The demo as a newcomer runs it (default folder), then a second time."""
    first = run_demo(home, "--log-file", "demo.log")
    again = run_demo(home, "--json")
    return DemoRuns(home, first, again, (home / "demo.log").read_text(encoding="utf-8"))


# --- the command line --------------------------------------------------------------------


def test_demo_harvests_every_source_and_ends_well(demo_runs: DemoRuns) -> None:
    done = demo_runs.first
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""  # nothing to warn about
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["source", "new", "duplicate", "dropped", "failed", "seconds"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1 : len(SOURCES) + 2]}
    assert list(rows) == [source["name"] for source in SOURCES] + ["total"]
    for name, (new, _duplicate, dropped, failed, _seconds) in rows.items():
        assert (int(new) > 0, dropped, failed) == (True, "0", "0" if name == "total" else "no")
    # The syndication feed repeats two cnBeta stories: archived once, from cnBeta's pages.
    assert rows["syndication"][:2] == ["1", "2"]
    assert "FAILED" not in done.stdout and "DRIFT" not in done.stdout
    assert len(lines) < 30  # a newcomer reads all of it


def test_demo_prints_three_valid_posts_of_different_sources(demo_runs: DemoRuns) -> None:
    stdout = demo_runs.first.stdout
    shown = stdout.split("Three of the posts:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(shown) == 3
    index = {}
    for line in (demo_runs.home / "demo-output" / ".index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        index[entry["path"]] = entry
    sources = set()
    for line in shown:
        path = Path(line.strip())
        assert path.parts[0] == "demo-output"  # as typed from the folder the demo ran in
        post = frontmatter.load(demo_runs.home / path)
        assert post["title"] and post["date"].endswith(" GMT") and len(post["categories"]) == 3
        assert post.content.strip()
        sources.add(index[path.relative_to("demo-output").as_posix()]["source"])
    assert len(sources) == 3


def test_demo_tells_how_to_view_the_posts_with_hexo(demo_runs: DemoRuns) -> None:
    assert (
        "  npx hexo init site && python -m crawler export --hexo site demo-output "
        "&& cd site && npx hexo server\n"
    ) in demo_runs.first.stdout


def test_every_request_went_to_the_demo_server(demo_runs: DemoRuns) -> None:
    """What Scrapy downloaded (its stats dumps, one per crawl) is exactly what the demo
    server answered, all from the bundled files: nothing was asked anywhere else."""
    served = [SERVED.search(line) for line in demo_runs.log.splitlines()]
    answers = [match.groups() for match in served if match]
    downloaded = sum(
        int(n) for n in re.findall(r"'downloader/request_count': (\d+)", demo_runs.log)
    )
    assert len(answers) == downloaded > 20
    assert {status for _method, _path, status in answers} == {"200"}
    assert ("GET", "/robots.txt", "200") in answers  # robots.txt obeyed, of the server only
    assert "refused a request off the demo server" not in demo_runs.log
    assert "demo/refused_offsite" not in demo_runs.log
    origin = re.search(
        r"all answered by the demo site on (http://127\.0\.0\.1:\d+)\.", demo_runs.first.stdout
    )
    assert origin is not None
    assert f"{downloaded} requests, all answered" in demo_runs.first.stdout


def test_a_second_demo_writes_nothing_and_shows_the_duplicates(demo_runs: DemoRuns) -> None:
    done = demo_runs.again
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["totals"]["new"] == 0
    assert report["totals"]["duplicate"] >= 8  # every feed entry, the syndicated ones too
    assert {source["status"] for source in report["sources"]} == {"ok"}
    assert report["demo"]["server"].startswith("http://127.0.0.1:")
    assert report["demo"]["requests"] > 0
    assert len(report["demo"]["examples"]) == 3
    assert all(Path(path).is_file() for path in report["demo"]["examples"])
    runs = (demo_runs.home / "demo-output" / ".runs.jsonl").read_text().splitlines()
    assert [json.loads(run)["totals"]["new"] > 0 for run in runs] == [True, False]


def test_a_folder_of_something_else_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: the folder is checked before anything starts."""
    mine = tmp_path / "my-archive"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "link").symlink_to(mine)
    for args, message in [
        (["--output", str(mine)], "not empty and not an earlier demo's archive"),
        (["--output", str(tmp_path / "a-file")], "not a folder"),
        (["--output", str(tmp_path / "link")], "my-archive: not empty"),  # resolved first
        (["--log-file", str(tmp_path / "missing" / "log")], "its folder does not exist"),
    ]:
        assert main(["demo", *args]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: ") and message in line, line
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]  # untouched


# --- the demo site and its sources -----------------------------------------------------------


def test_every_demo_source_is_fetched_from_the_demo_server() -> None:
    names = []
    for table in SOURCES:
        source = demo._mirrored(parse_source(table), "http://127.0.0.1:8000")
        assert source.base_url == "http://127.0.0.1:8000/" + table["base_url"].split("/")[3]
        host = source.url or source.list or source.sitemap or "https://www.cnbeta.com.tw"
        assert source.base_url.endswith("/" + host.split("/")[2])  # its folder is its host
        assert (DEMO / "site" / host.split("/")[2]).is_dir()
        assert source.enabled and not source.full_text and not source.rsshub
        names.append(source.name)
    assert [source.name for source in demo.demo_sources()] == names
    with pytest.raises(AssertionError, match=r"base_url not on http://demo\.invalid"):
        demo._mirrored(parse_source({**SOURCES[0], "base_url": "https://mirror"}), "x")


def test_the_demo_site_is_small_and_complete() -> None:
    files = [path for path in (DEMO / "site").rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 400_000
    for path in files:
        assert b"{base}" not in path.read_bytes(), path  # every fixture placeholder filled


def test_the_server_answers_only_bundled_files() -> None:
    assert bundled_file("/robots.txt") is not None
    assert bundled_file("/www.cnbeta.com.tw/") == SITE / "www.cnbeta.com.tw" / "index.html"
    paged = bundled_file("/www.cnbeta.com.tw/home/more?type=all&page=2&_csrf=x")
    assert paged == SITE / "www.cnbeta.com.tw" / "home" / "more" / "page-2.json"
    for hostile in [
        "/../sources.toml", "/www.cnbeta.com.tw/../../server.py", "/%2e%2e/sources.toml",
        "/.hidden", "/www.cnbeta.com.tw", "/www.cnbeta.com.tw//index.html",
        "/www.cnbeta.com.tw/home/more?page=0", "/www.cnbeta.com.tw/home/more?page=1&page=2",
        "/www.cnbeta.com.tw/home/more?page=../x", "/" + "a/" * 600, "/nothing/here.html",
    ]:  # fmt: skip
        assert bundled_file(hostile) is None, hostile


def test_content_types() -> None:
    assert content_type("a.html", b'<meta charset="gbk">') == "text/html; charset=gbk"
    assert content_type("a.htm", b"<p>") == "text/html; charset=utf-8"
    assert content_type("feed.xml", b"") == "application/xml"
    assert content_type("page-1.json", b"") == "application/json; charset=utf-8"
    assert content_type("x.bin", b"") == "application/octet-stream"


def test_the_server_listens_on_loopback_and_records_what_it_served() -> None:
    with DemoServer() as server:
        assert server.server_address[0] == "127.0.0.1"
        host, port = server.server_address[:2]
        answers = []
        for method, path in [("GET", "/robots.txt"), ("HEAD", "/www.cnbeta.com.tw/"),
                             ("GET", "/../../etc/passwd")]:  # fmt: skip
            connection = http.client.HTTPConnection(str(host), port, timeout=10)
            connection.request(method, path)
            response = connection.getresponse()
            answers.append((response.status, response.getheader("Content-Type"), response.read()))
            connection.close()
        served = server.requests()
    assert answers[0] == (200, "text/plain; charset=utf-8", (SITE / "robots.txt").read_bytes())
    assert answers[1][:2] == (200, "text/html; charset=utf-8") and answers[1][2] == b""
    assert answers[2][0] == 404
    assert [(s.client, s.method, s.path, s.status) for s in served] == [
        ("127.0.0.1", "GET", "/robots.txt", 200),
        ("127.0.0.1", "HEAD", "/www.cnbeta.com.tw/", 200),
        ("127.0.0.1", "GET", "/../../etc/passwd", 404),
    ]


# --- the guard ----------------------------------------------------------------------------

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Demo</title><link>{base}/</link>
<item><title>Local story</title><link>{base}/story.html</link>
<pubDate>Sat, 17 Jul 2021 10:00:00 GMT</pubDate><description>here</description></item>
<item><title>A story elsewhere</title><link>{elsewhere}/story.html</link>
<pubDate>Sat, 17 Jul 2021 11:00:00 GMT</pubDate><description>there</description></item>
</channel></rss>"""


@pytest_twisted.ensureDeferred
async def test_the_guard_refuses_any_request_off_the_demo_server(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """A full-text feed whose second entry links to another server: that request is refused
    before robots.txt or the page is asked for, and the source fails with the URL."""
    with fixture_server() as elsewhere:
        elsewhere.expect_request("/story.html").respond_with_data("<p>x</p>")
        base, other = base_url_of(httpserver), base_url_of(elsewhere)
        httpserver.expect_request("/feed.xml").respond_with_data(
            FEED.format(base=base, elsewhere=other), content_type="application/rss+xml"
        )
        httpserver.expect_request("/story.html").respond_with_data(
            "<html><body><article><p>The local story, in full.</p></article></body></html>",
            content_type="text/html",
        )
        source = parse_source({
            "name": "guarded", "url": f"{base}/feed.xml", "categories": ["a", "b", "c"],
            "author": "T", "full_text": True,
        })  # fmt: skip
        result = await crawl_in_process(
            "feeds",
            tmp_path,
            {
                "DEMO_SERVER": base,
                "DOWNLOADER_MIDDLEWARES": {demo.GUARD: 10},
                "ALLOW_PRIVATE_ADDRESSES": True,
            },
            sources=[source],
        )
        assert elsewhere.log == []  # not even its robots.txt
    assert result.stat("demo/refused_offsite") == 1
    assert result.stats["source/guarded/failed"] == 1
    reason = result.stats["source/guarded/reason"]
    assert reason == f"demo: refused a request off the demo server: {other}/story.html"
    assert f"refused a request off the demo server: {other}/story.html" in result.log
    assert {post["title"] for post in result.posts().values()} == {
        "Local story",
        "A story elsewhere",
    }


def test_the_summary_does_not_claim_all_requests_when_some_were_refused() -> None:
    text = demo.summary("report", Path.cwd() / "out", [], 3, "http://127.0.0.1:1", refused=True)
    assert "3 requests answered by the demo site on http://127.0.0.1:1; requests elsewhere" in text
    assert "all answered" not in text and "Three of the posts" not in text
