"""Test helpers: fixture sites on a real HTTP server, real crawls in-process (and, where the
process itself matters, in a subprocess, started in the background as soon as the tests are
collected: see :func:`background_job`)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import frontmatter
import pytest
from pytest_httpserver import HTTPServer
from scrapy import Spider
from scrapy.crawler import Crawler, CrawlerRunner
from scrapy.settings import Settings
from werkzeug import Request, Response

import crawler.settings as project_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CNBETA = FIXTURES / "cnbeta"
CSRF_TOKEN = "Q3RfS2VfVG9rZW4-Mx8yU0BhVE0+aW4="
K = TypeVar("K")
T = TypeVar("T")

# Turn politeness delays off: the server is ours and on loopback.
FAST = (
    "-s", "DOWNLOAD_DELAY=0", "-s", "AUTOTHROTTLE_ENABLED=False",
    "-s", "RETRY_TIMES=1", "-s", "RETRY_BACKOFF_BASE=0",
)  # fmt: skip


# The same, as settings of an in-process crawl.
FAST_SETTINGS = {
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": False,
    "RETRY_TIMES": 1,
    "RETRY_BACKOFF_BASE": 0,
    "TELNETCONSOLE_ENABLED": False,
}


@dataclass
class CrawlResult:
    returncode: int
    log: str
    output_dir: Path
    stats: dict[str, Any] = field(default_factory=dict)
    crawler: Crawler | None = None
    # Paths (with query) the fixture server was asked for during this crawl, in order
    # (in-process crawls given ``server=``).
    requested: list[str] = field(default_factory=list)
    process: subprocess.CompletedProcess[str] | None = None  # a crawl in a subprocess

    def posts(self) -> dict[str, frontmatter.Post]:
        """Every post file of the archive, by path relative to it."""
        return {
            path.relative_to(self.output_dir).as_posix(): frontmatter.load(path)
            for path in sorted(self.output_dir.glob("*/*/*.md"))
        }

    def stat(self, name: str) -> int | None:
        """A counter of the crawl's stats (in-process), else from Scrapy's end-of-crawl stats
        dump in the log (subprocess), or None when it is absent."""
        if self.crawler is not None:
            value = self.stats.get(name)
            return int(value) if value is not None else None
        match = re.search(rf"'{re.escape(name)}': (\d+)", self.log)
        return int(match.group(1)) if match else None


def crawl_settings(output_dir: Path, **overrides: Any) -> Settings:
    """The project's settings, as ``scrapy crawl`` reads them, for a crawl into output_dir."""
    settings = Settings()
    settings.setmodule(project_settings, priority="project")
    settings.update({**FAST_SETTINGS, "OUTPUT_DIR": str(output_dir)}, priority="cmdline")
    settings.update(overrides, priority="cmdline")
    return settings


@contextmanager
def captured_log() -> Iterator[list[str]]:
    """Every log line (INFO and up) this thread writes while the block runs, formatted as
    Scrapy does. Other threads' lines (fixture servers' access logs, background jobs) are not
    the crawl's."""
    lines: list[str] = []
    thread = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                lines.append(f"[{record.name}] {record.levelname}: {self.format(record)}")

    handler = Collect(level=logging.INFO)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def crawl_in_process(
    spider: str | type[Spider],
    output_dir: Path,
    settings: dict[str, Any] | None = None,
    *,
    server: HTTPServer | None = None,
    **spider_arguments: Any,
) -> CrawlResult:
    """A real crawl in this process (await it in a ``pytest_twisted.ensureDeferred`` test or
    an ``async_fixture``): ``get_crawler`` + ``crawl``, stats read from the crawler.

    With ``server``, the result's ``requested`` lists what this crawl asked that server for
    (a server shared by several crawls needs no ``clear_log()``).
    """
    runner = CrawlerRunner(crawl_settings(output_dir, **(settings or {})))
    crawler = runner.create_crawler(spider)
    already = len(server.log) if server is not None else 0
    with captured_log() as lines:
        await crawler.crawl(**spider_arguments)
    stats = crawler.stats.get_stats()
    failed = stats.get("finish_reason") != "finished"
    result = CrawlResult(int(failed), "\n".join(lines), output_dir, stats, crawler)
    if server is not None:
        result.requested = _paths(server.log[already:])
    return result


def run_scrapy(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def crawl(spider: str, output_dir: Path, *args: str) -> CrawlResult:
    """``scrapy crawl SPIDER`` as a user runs it, into ``output_dir``."""
    done = run_scrapy("crawl", spider, *FAST, "-s", f"OUTPUT_DIR={output_dir}", *args)
    return CrawlResult(done.returncode, done.stdout + done.stderr, output_dir, process=done)


def requested_paths(server: HTTPServer) -> list[str]:
    """Paths (with query) the server was asked for, in order."""
    return _paths(server.log)


def _paths(log: list[tuple[Request, Response]]) -> list[str]:
    return [
        request.full_path.rstrip("?") if request.query_string else request.path
        for request, _response in log
    ]


class QuickStopServer(HTTPServer):
    """Stops at once: its thread looks for a stop every 20 ms instead of every 0.5 s."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


@contextmanager
def fixture_server(*serve: Callable[[HTTPServer], None]) -> Iterator[HTTPServer]:
    """A fixture server of its own (for a module-scoped fixture: the ``httpserver`` fixture is
    cleared after every test), serving what each of ``serve`` sets up."""
    server = QuickStopServer(host="127.0.0.1", port=0)
    server.start()
    try:
        for setup in serve:
            setup(server)
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def base_url_of(server: HTTPServer) -> str:
    return server.url_for("").rstrip("/")


# --- the cnBeta fixture site ---------------------------------------------------------------


def _file_response(path: Path, content_type: str, status: int = 200) -> Response:
    return Response(path.read_bytes(), status=status, content_type=content_type)


def serve_cnbeta(server: HTTPServer) -> None:
    """A saved copy of cnBeta: home page, JSON list pages, article pages and broken ones."""
    html = "text/html; charset=utf-8"
    server.expect_request("/robots.txt").respond_with_data(
        "User-agent: *\nDisallow: /search\n", content_type="text/plain"
    )
    server.expect_request("/").respond_with_response(_file_response(CNBETA / "home.html", html))
    for page in range(1, 5):
        server.expect_request(
            "/home/more",
            query_string={"type": "all", "page": str(page), "_csrf": CSRF_TOKEN},
        ).respond_with_response(
            _file_response(CNBETA / f"more-{page}.json", "application/json; charset=UTF-8")
        )
    # Later pages: the site answers an empty list.
    server.expect_request("/home/more").respond_with_response(
        _file_response(CNBETA / "more-4.json", "application/json; charset=UTF-8")
    )
    for article in sorted((CNBETA / "articles").glob("*.htm")):
        channel = {"1153349": "science", "1153352": "game"}.get(article.stem, "tech")
        content_type = "text/html; charset=GBK" if article.stem == "1153344" else html
        server.expect_request(f"/articles/{channel}/{article.name}").respond_with_response(
            _file_response(article, content_type)
        )
    server.expect_request("/articles/tech/1153347.htm").respond_with_data(
        "<html><body><h1>404 Not Found</h1></body></html>", status=404, content_type=html
    )
    server.expect_request("/articles/tech/1153348.htm").respond_with_data(
        "<html><body><h1>500 Internal Server Error</h1></body></html>",
        status=500,
        content_type=html,
    )
    # Anything else (sidebar links we must not follow, for one) is a 404, as on the site.
    server.no_handler_status_code = 404


# --- feed fixtures -------------------------------------------------------------------------

FEEDS = FIXTURES / "feeds"
RSS = "application/rss+xml"
# path on the server -> (fixture file, Content-Type)
FEED_ROUTES = {
    "/feeds/ithome.xml": ("ithome-rss2.xml", "application/rss+xml; charset=utf-8"),
    "/feeds/atom.xml": ("atom.xml", "application/atom+xml; charset=utf-8"),
    "/feeds/rss1.rdf": ("rss1.rdf", "application/rdf+xml"),
    "/feeds/oschina.xml": ("oschina-gb2312.xml", RSS),  # charset in the XML prolog only
    "/feeds/gb2312-header.xml": ("gb2312-header-only.xml", f"{RSS}; charset=gb2312"),
    "/feeds/habr.xml": ("habr-cp1251.xml", RSS),
    "/feeds/verge.xml": ("verge-media.xml", f"{RSS}; charset=utf-8"),
    "/feeds/sspai.xml": ("enclosure.xml", f"{RSS}; charset=utf-8"),
    "/feeds/solidot.xml": ("shared-links.xml", "text/xml; charset=utf-8"),
    "/feeds/truncated.xml": ("truncated.xml", f"{RSS}; charset=utf-8"),
    "/feeds/syndication.xml": ("cnbeta-syndication.xml", f"{RSS}; charset=utf-8"),
    "/feeds/html": ("not-a-feed.html", "text/html; charset=utf-8"),
}
ETAG = '"5f3c-1626534000"'
LAST_MODIFIED = "Sat, 17 Jul 2021 15:00:00 GMT"


def serve_feeds(server: HTTPServer) -> None:
    """Feed fixtures, a feed with validators (answers 304 to them), full-text pages."""
    server.no_handler_status_code = 404
    server.expect_request("/robots.txt").respond_with_data(
        "User-agent: *\nDisallow: /private/\n", content_type="text/plain"
    )
    for path, (name, content_type) in FEED_ROUTES.items():
        server.expect_request(path).respond_with_response(
            _file_response(FEEDS / name, content_type)
        )

    def conditional(request: Request) -> Response:
        if request.headers.get("If-None-Match") == ETAG:
            return Response(status=304, headers={"ETag": ETAG})
        response = _file_response(FEEDS / "verge-media.xml", f"{RSS}; charset=utf-8")
        response.headers["ETag"] = ETAG
        response.headers["Last-Modified"] = LAST_MODIFIED
        return response

    server.expect_request("/feeds/conditional.xml").respond_with_handler(conditional)
    base = server.url_for("").rstrip("/")
    full_text = (FEEDS / "fulltext.xml").read_text(encoding="utf-8").replace("{base}", base)
    server.expect_request("/feeds/fulltext.xml").respond_with_data(
        full_text, content_type=f"{RSS}; charset=utf-8"
    )
    server.expect_request("/articles/sqlite-btrees.html").respond_with_response(
        _file_response(FEEDS / "pages" / "sqlite-btrees.html", "text/html; charset=utf-8")
    )


def write_sources(path: Path, server: HTTPServer, *tables: str) -> Path:
    """A sources file; ``{base}`` in the tables becomes the server's address."""
    base = server.url_for("").rstrip("/")
    path.write_text("\n".join(tables).replace("{base}", base), encoding="utf-8")
    return path


# The cnBeta and list fixture sites each carry one deliberately undated article among 6-8
# pages (87.5% and 83% extracted): below the default DRIFT_MIN_EXTRACTION of 0.9. Harvest tests
# about other things use this lower bar; drift tests give their own (the last -s wins).
LENIENT_DRIFT = ("-s", "DRIFT_MIN_EXTRACTION=0.8")


def run_harvest(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m crawler harvest`` as cron runs it (no terminal), fast politeness."""
    return subprocess.run(
        [sys.executable, "-m", "crawler", "harvest", *FAST, *LENIENT_DRIFT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def run_main(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m crawler ARGV`` in this process: its exit status (returned or raised, as
    argparse does) and what it printed. For commands refused before any crawl starts (a
    crawl needs a reactor of its own: those run in a subprocess, :func:`run_harvest`)."""
    from crawler.cli.main import main

    return _in_process(["python", "-m", "crawler", *argv], lambda: main(list(argv)))


def run_scrapy_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``scrapy ARGS`` in this process (Scrapy's own ``execute``, which always exits), for
    commands refused before a crawl starts, as :func:`run_main`."""
    from scrapy.cmdline import execute

    return _in_process(["scrapy", *args], lambda: execute(["scrapy", *args]))


def _in_process(
    argv: list[str], command: Callable[[], int | None]
) -> subprocess.CompletedProcess[str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    # Both commands set SCRAPY_SETTINGS_MODULE, as they would in a process of their own.
    environment = dict(os.environ)
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            status = command() or 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os.environ.clear()
            os.environ.update(environment)
    return subprocess.CompletedProcess(argv, status, stdout.getvalue(), stderr.getvalue())


def source_table(name: str, **keys: object) -> str:
    """One [[source]] table; lists become TOML arrays, dicts inline tables."""
    lines = ["[[source]]", f'name = "{name}"']
    lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return f'"{value}"'


def run_concurrently(jobs: dict[K, Callable[[], T]]) -> dict[K, T]:
    """Run independent jobs (subprocesses) side by side; their results by key.

    The machine's cores share the start-up of the Python processes: quick-failing harvests
    and crawls, each mostly import time, finish in a fraction of their sequential time.
    """
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def usage_error(done: subprocess.CompletedProcess[str]) -> str:
    """The message of a ``scrapy crawl`` usage error: exit status 2 and exactly one line on
    stderr, ``error: MESSAGE`` (no usage banner, no start-up log, no traceback)."""
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    return line.removeprefix("error: ")


# --- subprocesses in the background ---------------------------------------------------------


class BackgroundJobs:
    """Jobs (subprocess runs and their checks) that start when the session does, on two worker
    threads, and run while the in-process tests keep the other core busy; a test waits for the
    result of the job it needs (the job's fixture)."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], Callable[[Path], Any]] = {}
        self._futures: dict[tuple[str, str], Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._tmp: pytest.TempPathFactory | None = None

    def register(self, module: str, name: str, job: Callable[[Path], Any]) -> None:
        self._jobs[module, name] = job

    def is_job(self, module: str, name: str) -> bool:
        return (module, name) in self._jobs

    def start(self, needed: Collection[tuple[str, str]], tmp: pytest.TempPathFactory) -> None:
        """Start every registered job a selected test needs (``(module, fixture name)``), in
        the order they were registered: the order the tests ask for them."""
        self._tmp = tmp
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="background-job")
        for key in self._jobs:
            if key in needed:
                self._submit(key)

    def _submit(self, key: tuple[str, str]) -> Future[Any]:
        assert self._pool is not None and self._tmp is not None, "start() was not called"
        folder = self._tmp.mktemp(key[1])  # here, in the main thread: mktemp is not thread-safe
        future = self._futures[key] = self._pool.submit(self._jobs[key], folder)
        return future

    def result(self, module: str, name: str) -> Any:
        future = self._futures.get((module, name)) or self._submit((module, name))
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()


BACKGROUND = BackgroundJobs()


def background_job(job: Callable[[Path], T]) -> Any:
    """A session-scoped fixture named after ``job`` whose value is ``job(folder)``, run in the
    background from the start of the session (``folder`` is a fresh temporary folder).

    For subprocesses that several tests read, or that only need the process to be checked:
    their start-up (mostly imports) overlaps the in-process tests. A job runs in a thread:
    it must use servers and folders of its own, and return what the tests assert.
    """
    module, name = job.__module__, job.__name__
    BACKGROUND.register(module, name, job)

    @pytest.fixture(scope="session", name=name)
    def result() -> T:
        return BACKGROUND.result(module, name)

    result.__doc__ = job.__doc__
    return result


def post_validator() -> Any:
    """The post schema in Python's jsonschema: a second implementation beside the crawl's
    jsonschema-rs (crawler/post/schema.py), for tests."""
    from jsonschema import Draft202012Validator

    from crawler.post.schema import post_schema

    return Draft202012Validator(post_schema())
