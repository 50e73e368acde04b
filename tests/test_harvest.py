"""Real harvests: ``python -m crawler harvest`` against local servers, as cron runs it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import frontmatter
import pytest
from pytest_httpserver import HTTPServer
from support import (
    PROJECT_ROOT,
    crawl,
    run_harvest,
    serve_cnbeta,
    source_table,
    write_sources,
)
from werkzeug import Request, Response

from crawler.archive.lock import ArchiveLock, ArchiveLocked

CNBETA = source_table("cnbeta", spider="cnbeta", categories=["新媒体", "cnBeta", "最新"],
                      author="cnBeta")  # fmt: skip
RDF = source_table("rdf", url="{base}/feeds/rss1.rdf", categories=["a", "b", "c"], author="R")
MISSING = source_table("missing", url="{base}/feeds/missing.xml", categories=["a"], author="M")


def post_files(output: Path) -> list[Path]:
    return sorted(output.glob("*/*/*.md"))


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def site(feed_site: HTTPServer) -> HTTPServer:
    serve_cnbeta(feed_site)
    return feed_site


def test_a_failing_source_is_exit_1_and_the_others_are_archived(
    site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path / "sources.toml", site, CNBETA, RDF, MISSING)
    out = tmp_path / "archive"
    done = run_harvest("--sources", str(sources), "--output", str(out),
                       "-s", f"CNBETA_BASE_URL={base_url}")  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.strip().splitlines()}
    assert lines["missing"][4] == "FAILED"
    assert lines["cnbeta"][1:5] == ["7", "0", "1", "no"]  # new, duplicate, dropped, failed
    assert lines["rdf"][1:5] == ["1", "0", "0", "no"]
    assert lines["total"][1] == "8"
    assert len(post_files(out)) == 8
    assert "Traceback" not in done.stderr
    # spider sources first, then the feeds
    paths = [request.path for request, _ in site.log]
    assert paths.index("/") < paths.index("/feeds/rss1.rdf")


def test_json_report_runs_file_and_index_match_the_files(
    site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path / "sources.toml", site, CNBETA, RDF)
    out = tmp_path / "archive"
    done = run_harvest("--sources", str(sources), "--output", str(out), "--json",
                       "-s", f"CNBETA_BASE_URL={base_url}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = last_json_line(done.stdout)
    files = post_files(out)
    assert report["totals"]["new"] == len(files) == 8
    assert report["exit_status"] == 0
    assert {s["name"]: s["new"] for s in report["sources"]} == {"cnbeta": 7, "rdf": 1}
    assert all(set(s) == {"name", "kind", "seen", "new", "duplicate", "dropped", "failed",
                          "seconds"} for s in report["sources"])  # fmt: skip
    assert report["output"] == str(out.resolve())
    runs = (out / ".runs.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in runs] == [report]

    index = [json.loads(line) for line in (out / ".index.jsonl").read_text().splitlines()]
    assert sorted(entry["path"] for entry in index) == [
        f.relative_to(out).as_posix() for f in files
    ]
    for entry in index:
        data = (out / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        post = frontmatter.loads(data.decode())
        assert entry["title"] == post["title"] and entry["date"] == post["date"]
        assert entry["categories"] == post["categories"]
        assert entry["source"] in {"cnbeta", "rdf"}

    again = run_harvest("--sources", str(sources), "--output", str(out), "--json",
                        "-s", f"CNBETA_BASE_URL={base_url}")  # fmt: skip
    assert last_json_line(again.stdout)["totals"]["new"] == 0
    assert len((out / ".runs.jsonl").read_text().splitlines()) == 2
    assert len((out / ".index.jsonl").read_text().splitlines()) == 8


def test_reindex_after_losing_the_state_means_no_duplicates(
    site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path / "sources.toml", site, CNBETA, RDF)
    out = tmp_path / "archive"
    args = ("--sources", str(sources), "--output", str(out), "--json",
            "-s", f"CNBETA_BASE_URL={base_url}")  # fmt: skip
    assert run_harvest(*args).returncode == 0
    before = {p: p.read_bytes() for p in post_files(out)}
    index_before = (out / ".index.jsonl").read_text()
    for name in (".state.sqlite3", ".state.sqlite3-wal", ".state.sqlite3-shm"):
        (out / name).unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "crawler", "reindex", str(out)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "reindexed 8 posts" in done.stdout
    assert sorted((out / ".index.jsonl").read_text().splitlines()) == sorted(
        index_before.splitlines()
    )
    again = run_harvest(*args)
    assert last_json_line(again.stdout)["totals"]["new"] == 0
    assert {p: p.read_bytes() for p in post_files(out)} == before


def test_reindex_drops_index_lines_of_deleted_posts(
    site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path / "sources.toml", site, RDF, CNBETA)
    out = tmp_path / "archive"
    run_harvest("--sources", str(sources), "--output", str(out), "-s",
                f"CNBETA_BASE_URL={base_url}")  # fmt: skip
    victim = post_files(out)[0]
    victim.unlink()
    subprocess.run([sys.executable, "-m", "crawler", "reindex", str(out)], check=True,
                   capture_output=True)  # fmt: skip
    paths = [json.loads(line)["path"] for line in (out / ".index.jsonl").read_text().splitlines()]
    assert victim.relative_to(out).as_posix() not in paths
    assert len(paths) == 7


def test_an_overlapping_run_is_refused_with_75(feed_site: HTTPServer, tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "sources.toml", feed_site, RDF)
    out = tmp_path / "archive"
    with ArchiveLock(out):  # another run holds the archive
        done = run_harvest("--sources", str(sources), "--output", str(out))
        crawled = crawl("feeds", out, "-a", f"sources={sources}")
        reindexed = subprocess.run([sys.executable, "-m", "crawler", "reindex", str(out)],
                                   capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 75
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "in use by another run" in done.stderr
    assert crawled.returncode == 75 and "in use by another run" in crawled.log
    assert reindexed.returncode == 75
    assert feed_site.log == []  # nothing was fetched
    assert post_files(out) == []


def test_a_killed_run_does_not_block_the_next(feed_site: HTTPServer, tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def stuck(request: Request) -> Response:
        entered.set()  # the harvest is running and holds the lock
        release.wait(timeout=120)
        return Response("", status=503)

    feed_site.expect_request("/feeds/stuck.xml").respond_with_handler(stuck)
    stuck_sources = write_sources(tmp_path / "stuck.toml", feed_site, source_table(
        "stuck", url="{base}/feeds/stuck.xml", categories=["a"], author="S"))  # fmt: skip
    out = tmp_path / "archive"
    first = subprocess.Popen(
        [sys.executable, "-m", "crawler", "harvest", "--sources", str(stuck_sources),
         "--output", str(out)],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert entered.wait(timeout=120), "the first harvest never asked for its feed"
        assert first.poll() is None
        with pytest.raises(ArchiveLocked):
            ArchiveLock(out).acquire()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        release.set()
        if first.poll() is None:
            first.kill()
    sources = write_sources(tmp_path / "sources.toml", feed_site, RDF)
    done = run_harvest("--sources", str(sources), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert len(post_files(out)) == 1


def test_harvest_from_another_working_directory(feed_site: HTTPServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    sources = write_sources(home / "sources.toml", feed_site, RDF)
    done = run_harvest("--sources", "sources.toml", "--output", "news", "--quiet", cwd=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # --quiet: silent on success
    assert len(post_files(home / "news")) == 1
    assert sources.exists() and not (home / "scrapy.cfg").exists()


def test_no_progress_output_without_a_terminal(feed_site: HTTPServer, tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "sources.toml", feed_site, RDF)
    done = run_harvest("--sources", str(sources), "--output", str(tmp_path / "a"))
    assert done.returncode == 0
    assert " pages/s" not in done.stderr and "\r" not in done.stderr
    assert "ProgressDisplay" not in done.stderr.split("Enabled extensions")[1].split("]")[0]


def test_a_terminal_gets_a_live_progress_line(feed_site: HTTPServer, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    sources = write_sources(tmp_path / "sources.toml", feed_site, RDF)
    controller, terminal = pty.openpty()
    # a terminal 120 columns wide (a new pty has none, and tqdm would draw nothing)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "crawler", "harvest", "--sources", str(sources),
             "--output", str(tmp_path / "a"), "-s", "LOG_LEVEL=WARNING"],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=terminal, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other side is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"feeds: " in shown and b" pages" in shown and b"new=1" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--only", "nope"), "--only: no source named 'nope'"),
        (("-s", "NOEQUALS"), "expected NAME=VALUE"),
    ],
)
def test_usage_errors_are_exit_2(
    feed_site: HTTPServer, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    sources = write_sources(tmp_path / "sources.toml", feed_site, RDF)
    done = run_harvest("--sources", str(sources), "--output", str(tmp_path / "a"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert feed_site.log == []


def test_configuration_errors_are_exit_2(feed_site: HTTPServer, tmp_path: Path) -> None:
    bad_spider = write_sources(tmp_path / "s.toml", feed_site, source_table(
        "x", spider="nosuchspider", categories=["a"], author="X"))  # fmt: skip
    done = run_harvest("--sources", str(bad_spider), "--output", str(tmp_path / "a"))
    assert done.returncode == 2
    assert "source 'x': key 'spider': no spider named 'nosuchspider'" in done.stderr
    bad_key = write_sources(tmp_path / "t.toml", feed_site, RDF + 'colour = "blue"\n')
    done = run_harvest("--sources", str(bad_key), "--output", str(tmp_path / "a"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {bad_key}: source 'rdf': key 'colour': unknown key"
    assert feed_site.log == []


def test_retries_wait_and_honour_retry_after(feed_site: HTTPServer, tmp_path: Path) -> None:
    seen: list[float] = []

    def busy_then_ok(request: Request) -> Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return Response("busy", status=503, headers={"Retry-After": "1"})
        return Response((PROJECT_ROOT / "tests/fixtures/feeds/rss1.rdf").read_bytes(),
                        content_type="application/rdf+xml")  # fmt: skip

    feed_site.expect_request("/feeds/busy.xml").respond_with_handler(busy_then_ok)
    result = crawl("feeds", tmp_path / "a", "-a", f"url={feed_site.url_for('/feeds/busy.xml')}",
                   "-a", "categories=a", "-a", "author=A", "-s", "RETRY_TIMES=2",
                   "-s", "CONTACT_URL=https://example.org/contact")  # fmt: skip
    assert result.returncode == 0, result.log
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 1.0  # Retry-After: 1 was waited out
    assert result.stat("retry/retry_after_honoured") == 1
    assert len(result.posts()) == 1
    agent = next(r for r, _ in feed_site.log if r.path == "/feeds/busy.xml").headers["User-Agent"]
    assert agent == "technews-harvester/0.1 (+https://example.org/contact)"


def test_retry_after_is_capped(feed_site: HTTPServer, tmp_path: Path) -> None:
    calls: list[int] = []

    def slow_down(request: Request) -> Response:
        calls.append(1)
        return Response("slow down", status=429, headers={"Retry-After": "86400"})

    feed_site.expect_request("/feeds/429.xml").respond_with_handler(slow_down)
    result = crawl("feeds", tmp_path / "a", "-a", f"url={feed_site.url_for('/feeds/429.xml')}",
                   "-a", "categories=a", "-a", "author=A", "-s", "RETRY_TIMES=1",
                   "-s", "RETRY_AFTER_MAX=0.5")  # fmt: skip
    # a day's Retry-After would outlive the test's timeout; the cap makes it half a second
    assert result.returncode == 0
    assert len(calls) == 2
    assert result.log.count("failed: HTTP 429") == 1


def test_backoff_and_retry_after_arithmetic() -> None:
    from datetime import UTC, datetime

    from crawler.middlewares import backoff_delay, retry_after_seconds

    assert [backoff_delay(n, 2.0, 60.0) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0,
    ]  # fmt: skip
    now = datetime(2021, 7, 17, 14, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(b"120", now) == 120.0
    assert retry_after_seconds("Sat, 17 Jul 2021 14:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Sat, 17 Jul 2021 13:00:00 GMT", now) == 0.0
    assert retry_after_seconds(b"soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_a_spider_source_reports_under_its_own_name(
    site: HTTPServer, base_url: str, tmp_path: Path
) -> None:
    renamed = source_table("cnbeta-mirror", spider="cnbeta", categories=["科技", "cnBeta"],
                           author="cnBeta 镜像")  # fmt: skip
    sources = write_sources(tmp_path / "sources.toml", site, renamed)
    out = tmp_path / "archive"
    done = run_harvest("--sources", str(sources), "--output", str(out), "--json",
                       "-s", f"CNBETA_BASE_URL={base_url}")  # fmt: skip
    report = last_json_line(done.stdout)
    assert [(s["name"], s["kind"], s["new"]) for s in report["sources"]] == [
        ("cnbeta-mirror", "spider", 7)
    ]
    post = frontmatter.load(post_files(out)[0])
    assert post["categories"] == ["科技", "cnBeta"] and post["author"] == "cnBeta 镜像"


def test_nothing_enabled_is_an_empty_report(feed_site: HTTPServer, tmp_path: Path) -> None:
    off = RDF + "enabled = false\n"
    sources = write_sources(tmp_path / "sources.toml", feed_site, off)
    done = run_harvest("--sources", str(sources), "--output", str(tmp_path / "a"), "--json")
    assert done.returncode == 0
    assert last_json_line(done.stdout)["totals"] == {
        "sources": 0, "failed": 0, "seen": 0, "new": 0, "duplicate": 0, "dropped": 0,
    }  # fmt: skip
    assert feed_site.log == []


def test_a_bad_mirror_setting_is_exit_2(feed_site: HTTPServer, tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "sources.toml", feed_site, CNBETA)
    done = run_harvest("--sources", str(sources), "--output", str(tmp_path / "a"),
                       "-s", "CNBETA_BASE_URL=ftp://mirror")  # fmt: skip
    assert done.returncode == 2
    assert "CNBETA_BASE_URL" in done.stderr
