"""Interrupted harvests: SIGTERM, SIGINT and a second signal stop promptly, report what was
done (``"interrupted": true``, exit 130 / 143) and leave the archive so that the next run
writes the rest; usage errors are one line.

The harvests run in subprocesses (the signals and the exit status are the point), as
background jobs (support.background_job). Nothing waits on the clock: each job polls, with a
bound, for a condition (a post on disk, a request reaching the server, a log line), and a
request the server holds keeps a crawl from ending before the signal arrives.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from pathlib import Path

import pytest
from support import (
    FAST,
    PROJECT_ROOT,
    background_job,
    fixture_server,
    run_concurrently,
    run_harvest,
    source_table,
    write_sources,
)
from werkzeug import Request, Response

from crawler.archive.state import ArchiveState
from crawler.cli.harvest import Crawl, _results
from crawler.cli.main import main
from crawler.cli.report import Report, SourceResult
from crawler.sources import Source, parse_source

RSS = "application/rss+xml; charset=utf-8"
BOUND = 120.0  # seconds: the most any condition below is waited for (a hung run fails)
ENTRIES = 10_000  # the large feed of the SIGTERM run


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` until it holds; fail after BOUND seconds (never the test's point)."""
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def post_files(output: Path) -> list[Path]:
    return sorted(output.glob("*/*/*.md"))


@cache
def rss_items(count: int) -> list[str]:
    """``count`` small RSS items, newest first, one minute apart."""
    newest = datetime(2021, 7, 17, 12, tzinfo=UTC)
    return [
        f"<item><title>Entry {n:05d}</title><link>https://example.org/big/{n}</link>"
        f"<pubDate>{format_datetime(newest - timedelta(minutes=n), usegmt=True)}</pubDate>"
        f"<description>Body {n}.</description></item>"
        for n in range(count)
    ]


def rss(items: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Big</title>'
        "<link>https://example.org/</link><description>A large feed</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


class Held:
    """A request the server holds until the test lets it go: a crawl cannot end meanwhile."""

    def __init__(self, answer: Callable[[], Response]) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        self.answer = answer

    def __call__(self, request: Request) -> Response:
        self.entered.set()
        self.released.wait(timeout=BOUND)
        return self.answer()


@dataclass
class Running:
    """A harvest started in the background, as cron starts it."""

    process: subprocess.Popen[str]
    output: Path
    log: Path

    def logged(self, text: str) -> bool:
        return self.log.exists() and text in self.log.read_text(encoding="utf-8", errors="replace")

    def finish(self) -> subprocess.CompletedProcess[str]:
        stdout, stderr = self.process.communicate(timeout=BOUND)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout,
                                           stderr)  # fmt: skip


def start_harvest(home: Path, sources: Path, *args: str) -> Running:
    output, log = home / "archive", home / "harvest.log"
    process = subprocess.Popen(
        # No entry cap: the 10,000-entry feed is what a signal must cut short.
        [sys.executable, "-m", "crawler", "harvest", *FAST, "-s", "MAX_ENTRIES_PER_FEED=0",
         "--sources", str(sources),
         "--output", str(output), "--log-file", str(log), *args],
        cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Running(process, output, log)


def stopped(running: Running, *signals: signal.Signals) -> subprocess.CompletedProcess[str]:
    """Send the signals, each once the harvest has said it received the one before."""
    try:
        for number, signum in enumerate(signals):
            running.process.send_signal(signum)
            said = f"received {signum.name}" + (": stopping;" if number == 0 else " again")
            if number + 1 < len(signals):
                wait_for(lambda said=said: running.logged(said), f"the log line {said!r}")
        return running.finish()
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def runs_lines(output: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (output / ".runs.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def index_by_path(output: Path) -> dict[str, dict]:
    lines = (output / ".index.jsonl").read_text(encoding="utf-8").splitlines()
    return {entry["path"]: entry for entry in map(json.loads, lines)}


def complete_and_indexed(output: Path) -> bool:
    """Every post file is whole (its sha256 is the index's) and listed; nothing half-written."""
    index = index_by_path(output)
    files = {path.relative_to(output).as_posix(): path for path in post_files(output)}
    whole = all(sha256(path) == index[name]["sha256"] for name, path in files.items())
    return set(index) == set(files) and whole and not list(output.rglob(".*.tmp"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- SIGTERM during a feed of 10,000 entries, then the next run --------------------------------


@dataclass
class Terminated:
    done: subprocess.CompletedProcess[str]
    output: Path
    log: str
    posts: int  # post files when the harvest had exited
    complete: bool  # and each of them whole and indexed
    validators: tuple[str | None, str | None]  # the feed's, after the interrupted run
    written: list[int]  # entry numbers the interrupted run wrote
    runs: list[dict]  # .runs.jsonl after the interrupted run
    # The next run, of the feed's first `served` entries (see `terminated_then_next`):
    conditional: bool  # it asked with If-None-Match / If-Modified-Since
    next_run: subprocess.CompletedProcess[str]
    served: int
    titles: list[str]  # of every post after it, sorted
    next_validators: tuple[str | None, str | None]


@background_job
def terminated_then_next(home: Path) -> Terminated:
    """A harvest of one feed of 10,000 entries, SIGTERMed once its first posts are on disk;
    then the next harvest of the archive.

    Writing all 10,000 takes some 30 s, so the next run is served the feed's first entries
    only, up to 200 past the last one the interrupted run wrote: it must write exactly those
    the interrupted run did not, and none twice.
    """
    served = {"items": rss_items(ENTRIES)}
    headers: list[dict[str, str]] = []

    def feed(request: Request) -> Response:
        headers.append(dict(request.headers))
        items = served["items"]
        return Response(rss(items), content_type=RSS, headers={"ETag": f'"big-{len(items)}"'})

    with fixture_server() as site:
        site.no_handler_status_code = 404
        site.expect_request("/big.xml").respond_with_handler(feed)
        sources = write_sources(home / "sources.toml", site, source_table(
            "big", url="{base}/big.xml", categories=["Tech"], author="Big"))  # fmt: skip
        feed_url = site.url_for("/big.xml")
        running = start_harvest(home, sources, "--json")
        wait_for(lambda: post_files(running.output), "the first post on disk")
        done = stopped(running, signal.SIGTERM)
        output = running.output
        state = ArchiveState(output, read_only=True)
        validators = state.feed_validators(feed_url)
        state.close()
        written = sorted(int(e["title"].split()[1]) for e in index_by_path(output).values())
        posts = len(post_files(output))
        complete = complete_and_indexed(output)
        runs = runs_lines(output)

        count = min(ENTRIES, max(written, default=0) + 201)
        served["items"] = rss_items(ENTRIES)[:count]
        already = len(headers)
        next_run = run_harvest("--sources", str(sources), "--output", str(output), "--json")
        conditional = any(
            name.lower() in ("if-none-match", "if-modified-since")
            for request_headers in headers[already:]
            for name in request_headers
        )
        state = ArchiveState(output, read_only=True)
        next_validators = state.feed_validators(feed_url)
        state.close()
        titles = sorted(e["title"] for e in index_by_path(output).values())
    return Terminated(done, output, running.log.read_text(encoding="utf-8"), posts, complete,
                      validators, written, runs, conditional, next_run, count, titles,
                      next_validators)  # fmt: skip


def test_sigterm_stops_a_large_feed_promptly_with_exit_143(
    terminated_then_next: Terminated,
) -> None:
    run = terminated_then_next
    assert run.done.returncode == 143, run.done.stderr + run.log
    assert 0 < run.posts < ENTRIES // 2  # stopped early, not after draining the feed
    assert run.complete  # every post on disk whole and in .index.jsonl
    assert "Traceback" not in run.log + run.done.stderr
    assert "received SIGTERM: stopping;" in run.log
    assert "entries of the feed not read" in run.log


def test_an_interrupted_feed_keeps_no_validators(terminated_then_next: Terminated) -> None:
    assert terminated_then_next.validators == (None, None)


def test_the_interrupted_report_is_printed_and_appended_with_the_real_counts(
    terminated_then_next: Terminated,
) -> None:
    run = terminated_then_next
    (line,) = run.runs
    printed = json.loads(run.done.stdout.strip().splitlines()[-1])
    assert {**printed, "finished": None} == {**line, "finished": None}
    assert (line["interrupted"], line["exit_status"]) == (True, 143)
    (source,) = line["sources"]
    assert source["status"] == "interrupted" and not source["failed"]
    assert source["reason"] == "SIGTERM before it was done"
    assert source["new"] == run.posts == len(run.written) == line["totals"]["new"]
    assert source["seen"] == run.posts  # the entries it read, each archived
    assert line["totals"]["failed"] == 0 and source["drift"] is None


def test_the_next_run_writes_the_rest_and_nothing_twice(terminated_then_next: Terminated) -> None:
    run = terminated_then_next
    done = run.next_run
    assert done.returncode == 0, done.stderr
    assert not run.conditional  # no validators: the whole feed was asked for again
    assert run.written == list(range(len(run.written)))  # the interrupted run's were the first
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["interrupted"] is False
    (source,) = report["sources"]
    assert (source["status"], source["new"], source["duplicate"]) == (
        "ok", run.served - run.posts, run.posts,
    )  # fmt: skip
    assert run.titles == [f"Entry {n:05d}" for n in range(run.served)]  # each once
    assert run.next_validators == (f'"big-{run.served}"', None)  # a whole read keeps them
    assert [line["interrupted"] for line in runs_lines(run.output)] == [True, False]


# --- SIGINT during the first of two crawls ------------------------------------------------------


@dataclass
class Interrupted:
    done: subprocess.CompletedProcess[str]
    output: Path
    log: str
    requested: list[str]
    empty_runs: dict[str, int]  # as the archive's state counts them for DRIFT


def empty_runs(output: Path, *names: str) -> dict[str, int]:
    state = ArchiveState(output, read_only=True)
    try:
        return {name: state.empty_runs(name) for name in names}
    finally:
        state.close()


FRONT = source_table("front", list="{base}/front.html", links="h2 a", categories=["Tech"],
                     author="Front")  # fmt: skip
LATER = source_table("later", url="{base}/later.xml", categories=["Tech"], author="Later")


@background_job
def sigint_in_the_first_crawl(home: Path) -> Interrupted:
    """A list source, then a feed (a crawl of its own, after the first): SIGINT while the
    list page is being fetched. The server holds that page until the harvest said it stops;
    it then lists two articles, which must not be asked for."""
    page = Held(lambda: Response(
        '<html><body><h2><a href="/a/1.html">One</a></h2><h2><a href="/a/2.html">Two</a></h2>'
        "</body></html>", content_type="text/html; charset=utf-8"))  # fmt: skip
    with fixture_server() as site:
        site.no_handler_status_code = 404
        site.expect_request("/front.html").respond_with_handler(page)
        site.expect_request("/later.xml").respond_with_data(rss(rss_items(3)), content_type=RSS)
        sources = write_sources(home / "sources.toml", site, FRONT, LATER)
        running = start_harvest(home, sources)  # the text report
        try:
            wait_for(page.entered.is_set, "the list page to be asked for")
            running.process.send_signal(signal.SIGINT)
            wait_for(lambda: running.logged("received SIGINT: stopping;"), "the harvest to stop")
        finally:
            page.released.set()
        done = stopped(running)
        requested = [request.path for request, _ in site.log]
    return Interrupted(done, running.output, running.log.read_text(encoding="utf-8"),
                       requested, empty_runs(running.output, "front", "later"))  # fmt: skip


def test_sigint_is_exit_130_with_the_text_report(sigint_in_the_first_crawl: Interrupted) -> None:
    done = sigint_in_the_first_crawl.done
    assert done.returncode == 130, done.stderr + sigint_in_the_first_crawl.log
    lines = done.stdout.strip().splitlines()
    table = {line.split()[0]: line.split() for line in lines[1:4]}
    assert table["front"][1:5] == ["0", "0", "0", "interrupted"]
    assert table["later"][1:5] == ["0", "0", "0", "interrupted"]
    assert lines[4:] == [
        "front: interrupted: SIGINT before it was done",
        "later: interrupted: not run: interrupted",
        "interrupted by SIGINT",
    ]


def test_a_crawl_never_started_is_reported_not_run(sigint_in_the_first_crawl: Interrupted) -> None:
    run = sigint_in_the_first_crawl
    (line,) = runs_lines(run.output)
    assert (line["interrupted"], line["exit_status"]) == (True, 130)
    front, later = line["sources"]
    assert (front["name"], front["status"], front["failed"]) == ("front", "interrupted", False)
    assert front["seen"] == 2  # its list page came back after the signal: no article asked for
    assert later == {
        "name": "later", "kind": "feed", "seen": 0, "new": 0, "duplicate": 0, "dropped": 0,
        "failed": False, "seconds": 0.0, "reason": "not run: interrupted", "drift": None,
        "images_failed": 0, "status": "interrupted",
    }  # fmt: skip
    assert "/later.xml" not in run.requested
    assert not [path for path in run.requested if path.startswith("/a/")]
    assert "DRIFT" not in run.log and "Traceback" not in run.log
    assert run.empty_runs == {"front": 0, "later": 0}  # an interrupted run is not an empty one


# --- a second signal stops at once ---------------------------------------------------------------


@background_job
def sigint_twice(home: Path) -> Interrupted:
    """A feed of 2,000 entries and one the server holds (so the graceful stop cannot end):
    SIGINT once a post is stored, then SIGINT again once the harvest said it stops."""
    held = Held(lambda: Response(rss(rss_items(1)), content_type=RSS))
    with fixture_server() as site:
        site.no_handler_status_code = 404
        site.expect_request("/many.xml").respond_with_data(rss(rss_items(2000)), content_type=RSS)
        site.expect_request("/held.xml").respond_with_handler(held)
        sources = write_sources(home / "sources.toml", site,
            source_table("many", url="{base}/many.xml", categories=["Tech"], author="M"),
            source_table("held", url="{base}/held.xml", categories=["Tech"], author="H"),
        )  # fmt: skip
        running = start_harvest(home, sources, "--json")
        try:
            wait_for(held.entered.is_set, "the held feed to be asked for")
            # Stored and counted (its file on disk comes earlier, from the file writer).
            wait_for(lambda: running.logged("INFO: wrote "), "the first post stored")
            done = stopped(running, signal.SIGINT, signal.SIGINT)
        finally:
            held.released.set()
        requested = [request.path for request, _ in site.log]
    return Interrupted(done, running.output, running.log.read_text(encoding="utf-8"),
                       requested, empty_runs(running.output, "many", "held"))  # fmt: skip


def test_a_second_sigint_stops_at_once_and_still_reports(sigint_twice: Interrupted) -> None:
    run = sigint_twice
    assert run.done.returncode == 130, run.done.stderr + run.log
    assert "received SIGINT again: stopping at once" in run.log
    (line,) = runs_lines(run.output)
    assert json.loads(run.done.stdout.strip().splitlines()[-1])["sources"] == line["sources"]
    assert (line["interrupted"], line["exit_status"]) == (True, 130)
    statuses = {source["name"]: source["status"] for source in line["sources"]}
    assert statuses == {"many": "interrupted", "held": "interrupted"}
    many = line["sources"][0]
    posts = len(post_files(run.output))
    assert 0 < many["new"] <= posts < 2000  # the real counts, not an empty report
    assert complete_and_indexed(run.output)
    assert run.empty_runs == {"many": 0, "held": 0}
    assert "Traceback" not in run.log + run.done.stderr


# --- usage errors ---------------------------------------------------------------------------------


@background_job
def usage_errors(home: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The commands as an operator types them: stderr is all they print."""
    commands = {
        "harvest --nosuch": ("harvest", "--nosuch"),
        "status --fail-after x": ("status", str(home), "--fail-after", "x"),
    }

    def run(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "crawler", *args], cwd=home, text=True,
                              capture_output=True, timeout=BOUND, check=False)  # fmt: skip

    return run_concurrently(
        {name: (lambda args=args: run(args)) for name, args in commands.items()}
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("harvest --nosuch",
         "error: unrecognized arguments: --nosuch (see python -m crawler harvest --help)"),
        ("status --fail-after x", "error: --fail-after: expected a whole number >= 1, got 'x'"),
    ],
)  # fmt: skip
def test_a_usage_error_is_one_line_and_exit_2(
    usage_errors: dict[str, subprocess.CompletedProcess[str]], name: str, message: str
) -> None:
    done = usage_errors[name]
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command (see python -m crawler --help)"),
        (["harvest", "--only"],
         "argument --only: expected one argument (see python -m crawler harvest --help)"),
        (["reindex", "a", "b"],
         "unrecognized arguments: b (see python -m crawler reindex --help)"),
    ],
)  # fmt: skip
def test_every_parser_error_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert (exited.value.code, out, err) == (2, "", f"error: {message}\n")


def test_help_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["harvest", "--help"])
    out, err = capsys.readouterr()
    assert (exited.value.code, err) == (0, "")
    assert out.startswith("usage: python -m crawler harvest")


# --- the report of a crawl a signal cut short (no process) ----------------------------------------


def feed(name: str) -> Source:
    return parse_source(
        {"name": name, "url": f"https://example.org/{name}.xml", "categories": ["a"],
         "author": "A"}, where="test",
    )  # fmt: skip


def test_a_cut_crawl_fails_nothing_and_keeps_what_was_done() -> None:
    done, cut, failed, unread = (feed(n) for n in ("done", "cut", "failed", "unread"))
    crawl = Crawl(spider="feeds", arguments={}, sources=[done, cut, failed, unread])
    stats = {
        "finish_reason": "shutdown",
        "source/done/seen": 4, "source/done/new": 4, "source/done/seconds": 1.5,
        "source/cut/seen": 7, "source/cut/new": 7, "source/cut/seconds": 2.0,
        "source/cut/interrupted": 1,
        "source/failed/failed": 1, "source/failed/reason": "HTTP 404: x",
        "source/failed/seconds": 0.1,
    }  # fmt: skip
    results = {r.name: r for r in _results(stats, crawl, 3.0, None, "SIGTERM")}
    assert {name: r.status for name, r in results.items()} == {
        "done": "ok", "cut": "interrupted", "failed": "FAILED", "unread": "interrupted",
    }  # fmt: skip
    assert (results["cut"].new, results["cut"].reason) == (7, "SIGTERM before it was done")
    # The same crawl without a signal: Scrapy's shutdown is a failure, as before.
    plain = {r.name: r.status for r in _results(stats, crawl, 3.0, None)}
    assert set(plain.values()) == {"FAILED"}
    # Closed as finished, but a feed's entries were cut: that feed still says so.
    finished = {**stats, "finish_reason": "finished"}
    statuses = {r.name: r.status for r in _results(finished, crawl, 3.0, None, "SIGINT")}
    assert statuses == {"done": "ok", "cut": "interrupted", "failed": "FAILED", "unread": "ok"}


def test_an_interrupted_report_is_exit_128_plus_the_signal() -> None:
    report = Report("s", "f", 1.0, "/a", [SourceResult("x", "feed", failed=True, reason="r")])
    assert (report.exit_status, report.as_dict()["interrupted"]) == (1, False)
    report.interrupted_by = signal.SIGTERM
    assert (report.exit_status, report.as_dict()["interrupted"]) == (143, True)
    assert report.as_text().splitlines()[-1] == "interrupted by SIGTERM"
