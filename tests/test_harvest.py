"""Real harvests: ``python -m crawler harvest`` against local servers, as cron runs it.

The process is the point here (exit statuses, the printed report, the lock, a killed run, a
terminal), so harvests run in subprocesses, as background jobs that start with the session; a
harvest whose results several tests read runs once, and harvests that go on from its archive
work on copies of it. Retries are the middleware's business: they are crawled in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import frontmatter
import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from support import (
    FAST,
    LENIENT_DRIFT,
    PROJECT_ROOT,
    background_job,
    crawl_in_process,
    fixture_server,
    requested_paths,
    run_concurrently,
    run_harvest,
    run_main,
    run_scrapy,
    serve_cnbeta,
    serve_feeds,
    source_table,
    write_sources,
)
from werkzeug import Request, Response

from crawler.archive.lock import ArchiveLock, ArchiveLocked

CNBETA = source_table("cnbeta", spider="cnbeta", base_url="{base}",
                      categories=["新媒体", "cnBeta", "最新"], author="cnBeta")  # fmt: skip
# The cnBeta spider under another name, categories and author.
MIRROR = source_table("cnbeta-mirror", spider="cnbeta", base_url="{base}",
                      categories=["科技", "cnBeta"], author="cnBeta 镜像")  # fmt: skip
RDF = source_table("rdf", url="{base}/feeds/rss1.rdf", categories=["a", "b", "c"], author="R")
MISSING = source_table("missing", url="{base}/feeds/missing.xml", categories=["a"], author="M")


def post_files(output: Path) -> list[Path]:
    return sorted(output.glob("*/*/*.md"))


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def reindex(output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", "reindex", str(output)],
                          capture_output=True, text=True, check=False)  # fmt: skip


@dataclass
class Harvest:
    done: subprocess.CompletedProcess[str]
    output: Path
    requested: list[str]  # paths the server was asked for during the harvest, in order


def harvest(server: HTTPServer, sources: Path, output: Path, *args: str) -> Harvest:
    already = len(server.log)
    done = run_harvest("--sources", str(sources), "--output", str(output), *args)
    requested = [request.path for request, _ in server.log[already:]]
    return Harvest(done, output, requested)


# Each harvest below is a background job (support.background_job): it starts with the session,
# against a server of its own, and the tests read what it returns.


@background_job
def failing_run(home: Path) -> Harvest:
    """A renamed spider source, a feed and a missing feed, reported as text (exit 1)."""
    with fixture_server(serve_feeds, serve_cnbeta) as site:
        sources = write_sources(home / "sources.toml", site, MIRROR, RDF, MISSING)
        return harvest(site, sources, home / "archive")


def test_a_failing_source_is_exit_1_and_the_others_are_archived(failing_run: Harvest) -> None:
    done, out = failing_run.done, failing_run.output
    assert done.returncode == 1, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.strip().splitlines()}
    assert lines["missing"][4] == "FAILED"
    assert lines["cnbeta-mirror"][1:5] == ["7", "0", "1", "no"]  # new, duplicate, dropped, failed
    assert lines["rdf"][1:5] == ["1", "0", "0", "no"]
    assert lines["total"][1] == "8"
    # Every FAILED has its one-line reason under the table.
    assert lines["missing:"][:2] == ["missing:", "FAILED:"]
    assert " ".join(lines["missing:"][2:]).startswith("HTTP 404: http://")
    assert len(post_files(out)) == 8
    assert "Traceback" not in done.stderr
    # spider sources first, then the feeds
    paths = failing_run.requested
    assert paths.index("/") < paths.index("/feeds/rss1.rdf")


def test_a_spider_source_reports_under_its_own_name(failing_run: Harvest) -> None:
    runs = (failing_run.output / ".runs.jsonl").read_text().splitlines()
    (report,) = [json.loads(line) for line in runs]
    assert report["exit_status"] == 1
    assert [(s["name"], s["kind"], s["new"], s["failed"]) for s in report["sources"]] == [
        ("cnbeta-mirror", "spider", 7, False),
        ("rdf", "feed", 1, False),
        ("missing", "feed", 0, True),
    ]
    missing = report["sources"][2]
    assert missing["status"] == "FAILED"
    assert missing["reason"].startswith("HTTP 404: http://") and "\n" not in missing["reason"]
    lines = (failing_run.output / ".index.jsonl").read_text().splitlines()
    index = [json.loads(line) for line in lines]
    mirrored = [entry["path"] for entry in index if entry["source"] == "cnbeta-mirror"]
    assert len(mirrored) == 7
    for path in mirrored:
        post = frontmatter.load(failing_run.output / path)
        assert post["categories"] == ["科技", "cnBeta"] and post["author"] == "cnBeta 镜像"


def test_no_progress_output_without_a_terminal(failing_run: Harvest) -> None:
    stderr = failing_run.done.stderr
    assert " pages/s" not in stderr and "\r" not in stderr
    assert "ProgressDisplay" not in stderr.split("Enabled extensions")[1].split("]")[0]


@dataclass
class Archive:
    """An archive as it was at some point: its posts' bytes and its index."""

    posts: dict[str, bytes]
    index: str

    @classmethod
    def of(cls, out: Path) -> Archive:
        posts = {p.relative_to(out).as_posix(): p.read_bytes() for p in post_files(out)}
        return cls(posts, (out / ".index.jsonl").read_text(encoding="utf-8"))


@dataclass
class JsonRuns:
    first: Harvest  # cnBeta and a feed, --json
    second: Harvest  # the same harvest again, on a copy of the first's archive
    # Another copy without its state: reindexed, then harvested again.
    before_reindex: Archive
    reindexed: subprocess.CompletedProcess[str]
    reindexed_archive: Archive
    after_reindex: Harvest
    # Another copy with one post deleted, reindexed.
    pruned: Path
    deleted: str
    reindexed_without_it: subprocess.CompletedProcess[str]


@background_job
def json_runs(home: Path) -> JsonRuns:
    """A harvest reported as JSON, then three ways on from its archive, each on a copy."""
    with fixture_server(serve_feeds, serve_cnbeta) as site:
        sources = write_sources(home / "sources.toml", site, CNBETA, RDF)
        first = harvest(site, sources, home / "first", "--json")
        assert first.done.returncode == 0, first.done.stderr
        second, stateless, pruned = (
            Path(shutil.copytree(first.output, home / name))
            for name in ("second", "stateless", "pruned")
        )
        before_reindex = Archive.of(stateless)
        for name in (".state.sqlite3", ".state.sqlite3-wal", ".state.sqlite3-shm"):
            (stateless / name).unlink(missing_ok=True)
        victim = post_files(pruned)[0]
        victim.unlink()

        def reindex_and_harvest() -> tuple[subprocess.CompletedProcess[str], Archive, Harvest]:
            reindexed = reindex(stateless)
            return reindexed, Archive.of(stateless), harvest(site, sources, stateless, "--json")

        # The three go on side by side (the server's log is not read).
        runs = run_concurrently(
            {
                "second": lambda: harvest(site, sources, second, "--json"),
                "stateless": reindex_and_harvest,
                "pruned": lambda: reindex(pruned),
            }
        )
    reindexed, reindexed_archive, after_reindex = runs["stateless"]
    return JsonRuns(
        first, runs["second"], before_reindex, reindexed, reindexed_archive, after_reindex,
        pruned, victim.relative_to(pruned).as_posix(), runs["pruned"],
    )  # fmt: skip


def test_json_report_runs_file_and_index_match_the_files(json_runs: JsonRuns) -> None:
    out = json_runs.first.output
    report = last_json_line(json_runs.first.done.stdout)
    files = post_files(out)
    assert report["totals"]["new"] == len(files) == 8
    assert report["exit_status"] == 0
    assert {s["name"]: s["new"] for s in report["sources"]} == {"cnbeta": 7, "rdf": 1}
    assert all(set(s) == {"name", "kind", "seen", "new", "duplicate", "dropped", "failed",
                          "seconds", "status", "reason", "drift", "images_failed"}
               for s in report["sources"])  # fmt: skip
    assert {(s["status"], s["reason"], s["drift"]) for s in report["sources"]} == {
        ("ok", None, None)
    }
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

    second = json_runs.second
    assert last_json_line(second.done.stdout)["totals"]["new"] == 0
    assert len((second.output / ".runs.jsonl").read_text().splitlines()) == 2
    assert len((second.output / ".index.jsonl").read_text().splitlines()) == 8


def test_reindex_after_losing_the_state_means_no_duplicates(json_runs: JsonRuns) -> None:
    done = json_runs.reindexed
    assert done.returncode == 0, done.stderr
    assert "reindexed 8 posts" in done.stdout
    assert sorted(json_runs.reindexed_archive.index.splitlines()) == sorted(
        json_runs.before_reindex.index.splitlines()
    )
    again = json_runs.after_reindex
    assert last_json_line(again.done.stdout)["totals"]["new"] == 0
    assert Archive.of(again.output).posts == json_runs.before_reindex.posts


def test_reindex_drops_index_lines_of_deleted_posts(json_runs: JsonRuns) -> None:
    assert json_runs.reindexed_without_it.returncode == 0
    index = (json_runs.pruned / ".index.jsonl").read_text().splitlines()
    paths = [json.loads(line)["path"] for line in index]
    assert json_runs.deleted not in paths
    assert len(paths) == 7


@dataclass
class Refusals:
    harvest: subprocess.CompletedProcess[str]
    crawl: subprocess.CompletedProcess[str]
    reindex: subprocess.CompletedProcess[str]
    requested: list[str]
    posts: list[Path]


@background_job
def overlapping_runs(home: Path) -> Refusals:
    """A harvest, a crawl and a reindex of an archive another run holds, side by side."""
    with fixture_server(serve_feeds) as site:
        sources = write_sources(home / "sources.toml", site, RDF)
        out = home / "archive"
        with ArchiveLock(out):  # another run holds the archive
            runs = run_concurrently(
                {
                    "harvest": lambda: run_harvest("--sources", str(sources), "--output", str(out)),
                    "crawl": lambda: run_scrapy(
                        "crawl", "feeds", "-a", f"sources={sources}", "-s", f"OUTPUT_DIR={out}"
                    ),
                    "reindex": lambda: reindex(out),
                }
            )
        return Refusals(**runs, requested=requested_paths(site), posts=post_files(out))


def test_an_overlapping_run_is_refused_with_75(overlapping_runs: Refusals) -> None:
    done, crawled = overlapping_runs.harvest, overlapping_runs.crawl
    assert done.returncode == 75
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "in use by another run" in done.stderr
    assert crawled.returncode == 75 and "in use by another run" in crawled.stderr
    assert overlapping_runs.reindex.returncode == 75
    assert overlapping_runs.requested == []  # nothing was fetched
    assert overlapping_runs.posts == []


@dataclass
class KilledThenNext:
    entered: bool  # the killed harvest was asking for its feed
    was_running: bool
    lock_refused: bool  # while it ran, the archive's lock was taken
    next: subprocess.CompletedProcess[str]
    posts: list[Path]


@background_job
def killed_then_next(home: Path) -> KilledThenNext:
    """A harvest SIGKILLed while it holds the archive, then the next harvest of it."""
    entered, release = threading.Event(), threading.Event()

    def stuck(request: Request) -> Response:
        entered.set()  # the harvest is running and holds the lock
        release.wait(timeout=120)
        return Response("", status=503)

    with fixture_server(serve_feeds) as site:
        site.expect_request("/feeds/stuck.xml").respond_with_handler(stuck)
        stuck_sources = write_sources(home / "stuck.toml", site, source_table(
            "stuck", url="{base}/feeds/stuck.xml", categories=["a"], author="S"))  # fmt: skip
        out = home / "archive"
        first = subprocess.Popen(
            [sys.executable, "-m", "crawler", "harvest", *FAST, "--sources", str(stuck_sources),
             "--output", str(out)],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            was_entered = entered.wait(timeout=120)
            was_running = first.poll() is None
            try:
                ArchiveLock(out).acquire().release()
                lock_refused = False
            except ArchiveLocked:
                lock_refused = True
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=60)
        finally:
            release.set()
            if first.poll() is None:
                first.kill()
        sources = write_sources(home / "sources.toml", site, RDF)
        done = run_harvest("--sources", str(sources), "--output", str(out))
    return KilledThenNext(was_entered, was_running, lock_refused, done, post_files(out))


def test_a_killed_run_does_not_block_the_next(killed_then_next: KilledThenNext) -> None:
    assert killed_then_next.entered, "the first harvest never asked for its feed"
    assert killed_then_next.was_running
    assert killed_then_next.lock_refused
    done = killed_then_next.next
    assert done.returncode == 0, done.stderr
    assert len(killed_then_next.posts) == 1


@background_job
def run_elsewhere(home: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``--quiet`` harvest from another working directory, with relative paths."""
    with fixture_server(serve_feeds) as site:
        write_sources(home / "sources.toml", site, RDF)
        done = run_harvest("--sources", "sources.toml", "--output", "news", "--quiet", cwd=home)
    return done, home


def test_harvest_from_another_working_directory(
    run_elsewhere: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, home = run_elsewhere
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # --quiet: silent on success
    assert len(post_files(home / "news")) == 1
    assert (home / "sources.toml").exists() and not (home / "scrapy.cfg").exists()


@background_job
def terminal_run(home: Path) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """A harvest whose stderr is a terminal: (the process, what the terminal showed)."""
    import fcntl
    import pty
    import struct
    import termios

    with fixture_server(serve_feeds) as site:
        sources = write_sources(home / "sources.toml", site, RDF)
        controller, terminal = pty.openpty()
        # a terminal 120 columns wide (a new pty has none, and tqdm would draw nothing)
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "crawler", "harvest", *FAST, "--sources", str(sources),
                 "--output", str(home / "a"), "-s", "LOG_LEVEL=WARNING"],
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
    return done, shown


def test_a_terminal_gets_a_live_progress_line(
    terminal_run: tuple[subprocess.CompletedProcess[str], bytes],
) -> None:
    done, shown = terminal_run
    assert done.returncode == 0
    assert b"feeds: " in shown and b" pages" in shown and b"new=1" in shown


# --- harvests refused before anything is fetched ---------------------------------------------

# name -> (sources file tables, extra arguments); each is a harvest that must not fetch a thing
REFUSED = {
    "only-unknown": ((RDF,), ("--only", "nope")),
    "bad-setting": ((RDF,), ("-s", "NOEQUALS")),
    "no-such-spider": (
        (source_table("x", spider="nosuchspider", categories=["a"], author="X"),),
        (),
    ),
    "unknown-key": ((RDF + 'colour = "blue"\n',), ()),
    "bad-mirror": ((CNBETA.replace('"{base}"', '"ftp://mirror"'),), ()),
    "feeds-as-spider": ((source_table("x", spider="feeds", categories=["a"], author="X"),), ()),
    "unknown-spider-argument": ((CNBETA + "args = { nosuch = 1 }\n",), ()),
    "bad-spider-argument": ((CNBETA + "args = { pages = -1 }\n",), ()),
    "nothing-enabled": ((RDF + "enabled = false\n",), ("--json",)),
}


@dataclass
class Refused:
    done: subprocess.CompletedProcess[str]
    sources: Path


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Refused]]:
    """Every harvest of REFUSED, in this process (``main()``, as ``python -m crawler`` calls
    it: each is refused before a crawl would start), against a server of their own, which
    must be asked for nothing. A real process's refusal: tests/test_terminal.py."""
    home = tmp_path_factory.mktemp("refused")
    with fixture_server(serve_feeds, serve_cnbeta) as server:
        sources = {
            name: write_sources(home / f"{name}.toml", server, *tables)
            for name, (tables, _args) in REFUSED.items()
        }
        runs = {}
        for name, (_tables, args) in REFUSED.items():
            where = ("--sources", str(sources[name]), "--output", str(home / name))
            runs[name] = Refused(run_main("harvest", *FAST, *LENIENT_DRIFT, *where, *args),
                                 sources[name])  # fmt: skip
        assert server.log == []  # nothing was fetched
        yield runs


def one_error_line(run: Refused) -> str:
    """The whole of stderr, which must be one ``error: ...`` line, without ``error: ``."""
    assert run.done.returncode == 2, run.done.stderr
    (line,) = run.done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line.removeprefix("error: ")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("only-unknown", "--only ({sources}): no source named 'nope'"),
        ("bad-setting", "-s 'NOEQUALS': expected NAME=VALUE"),
    ],
)
def test_usage_errors_are_exit_2(refused: dict[str, Refused], name: str, message: str) -> None:
    run = refused[name]
    assert one_error_line(run) == message.format(sources=run.sources)


CNBETA_ARGUMENTS = "author, base_url, categories, pages, source, source_name, timezone"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unknown-key", "source 'rdf': key 'colour': unknown key"),
        (
            "feeds-as-spider",
            "source 'x': key 'spider': 'feeds' reads url/rsshub/sitemap/list tables",
        ),
        (
            "unknown-spider-argument",
            f"source 'cnbeta': cnbeta: unknown argument -a nosuch (known: {CNBETA_ARGUMENTS})",
        ),
        (
            "bad-spider-argument",
            "source 'cnbeta': cnbeta: -a pages: must be a whole number >= 0, not -1",
        ),
    ],
)
def test_configuration_errors_are_exit_2(
    refused: dict[str, Refused], name: str, message: str
) -> None:
    run = refused[name]
    assert one_error_line(run) == f"{run.sources}: {message}"


def test_a_source_of_no_spider_is_exit_2(refused: dict[str, Refused]) -> None:
    run = refused["no-such-spider"]
    message = one_error_line(run)
    assert message.startswith(
        f"{run.sources}: source 'x': key 'spider': no spider named 'nosuchspider' (known: "
    )
    assert "cnbeta" in message.split("(known: ")[1]


def test_a_bad_mirror_setting_is_exit_2(refused: dict[str, Refused]) -> None:
    run = refused["bad-mirror"]
    assert one_error_line(run) == (
        f"{run.sources}: source 'cnbeta': key 'base_url': not an http(s) URL: 'ftp://mirror'"
    )


def test_nothing_enabled_is_an_empty_report(refused: dict[str, Refused]) -> None:
    done = refused["nothing-enabled"].done
    assert done.returncode == 0
    assert last_json_line(done.stdout)["totals"] == {
        "sources": 0, "failed": 0, "drift": 0, "seen": 0, "new": 0, "duplicate": 0,
        "dropped": 0,
    }  # fmt: skip


# --- retries (in-process: the middleware, not the process, is tested) ------------------------


@pytest_twisted.ensureDeferred
async def test_retries_wait_and_honour_retry_after(feed_site: HTTPServer, tmp_path: Path) -> None:
    seen: list[float] = []

    def busy_then_ok(request: Request) -> Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return Response("busy", status=503, headers={"Retry-After": "1"})
        return Response((PROJECT_ROOT / "tests/fixtures/feeds/rss1.rdf").read_bytes(),
                        content_type="application/rdf+xml")  # fmt: skip

    feed_site.expect_request("/feeds/busy.xml").respond_with_handler(busy_then_ok)
    result = await crawl_in_process(
        "feeds", tmp_path / "a", {"RETRY_TIMES": 2, "CONTACT_URL": "https://example.org/contact"},
        url=feed_site.url_for("/feeds/busy.xml"), categories="a", author="A",
    )  # fmt: skip
    assert result.returncode == 0, result.log
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 1.0  # Retry-After: 1 was waited out
    assert result.stat("retry/retry_after_honoured") == 1
    assert len(result.posts()) == 1
    agent = next(r for r, _ in feed_site.log if r.path == "/feeds/busy.xml").headers["User-Agent"]
    assert agent == "technews-harvester/0.1 (+https://example.org/contact)"


@pytest_twisted.ensureDeferred
async def test_retry_after_is_capped(feed_site: HTTPServer, tmp_path: Path) -> None:
    calls: list[int] = []

    def slow_down(request: Request) -> Response:
        calls.append(1)
        return Response("slow down", status=429, headers={"Retry-After": "86400"})

    feed_site.expect_request("/feeds/429.xml").respond_with_handler(slow_down)
    result = await crawl_in_process(
        "feeds", tmp_path / "a", {"RETRY_TIMES": 1, "RETRY_AFTER_MAX": 0.5},
        url=feed_site.url_for("/feeds/429.xml"), categories="a", author="A",
    )  # fmt: skip
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
