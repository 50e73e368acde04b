"""Several workers, one Redis (``DEDUP_BACKEND``): a real ``redis-server`` on a free port,
real ``scrapy crawl`` processes over one local cnBeta-shaped site."""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
import redis
from pytest_httpserver import HTTPServer
from scrapy.utils.misc import load_object
from scrapy.utils.project import get_project_settings
from support import (
    FAST,
    PROJECT_ROOT,
    QuickStopServer,
    background_job,
    base_url_of,
    crawl_in_process,
    fixture_server,
    run_harvest,
    run_scrapy_in_process,
    serve_cnbeta,
    serve_feeds,
    source_table,
    write_sources,
)
from werkzeug import Request, Response

from crawler.archive.shared import SharedKeys, SharedUnavailable
from crawler.shared_scheduler import frontier_name
from crawler.spiders.cnbeta import CnbetaSpider
from crawler.spiders.feeds import FeedsSpider

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import run as bench  # bench/run.py: the synthetic site

ARTICLES = 400
WORKERS = ("a", "b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """``redis-server`` (the Debian package) on a free port, nothing saved to disk."""

    def __init__(self, folder: Path) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed (.ci/run installs it)"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.025)
        client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


# --- the backend itself ---------------------------------------------------------------------


def shared(server: RedisServer) -> SharedKeys:
    return SharedKeys(server.url, "test:", timedelta(hours=1))


def test_a_story_is_claimed_by_one_worker_and_confirmed_for_all(redis_server: RedisServer):
    one, other = shared(redis_server), shared(redis_server)
    assert one.claim("t1", "u1") is None  # ours now
    assert other.claim("t1", "u2") == "title"  # same title+day, being written by one
    assert other.claim("t2", "u1") == "url"
    assert other.knows("t1", "u1") is None  # claimed is not archived
    one.confirm("t1", "u1", "2021/07/a.md")
    assert other.knows("t1", None) == "title" and other.knows(None, "u1") == "url"
    assert other.claim("t1", "u1") == "url"
    other.release("t1", "u1")  # not its claim: nothing happens
    assert one.knows("t1", "u1") == "url"


def test_a_released_claim_frees_the_story(redis_server: RedisServer) -> None:
    one, other = shared(redis_server), shared(redis_server)
    assert one.claim("t1", "u1") is None
    one.release("t1", "u1")  # the write failed
    assert other.claim("t1", "u1") is None


def test_a_claim_of_a_dead_worker_expires(redis_server: RedisServer) -> None:
    dead = SharedKeys(redis_server.url, "test:", timedelta(milliseconds=50))
    assert dead.claim("t1", "u1") is None
    client = redis.Redis.from_url(redis_server.url)
    assert 0 < client.pttl("test:title:t1") <= 50  # Redis forgets it; no clock of ours


def test_adopting_an_archive_keeps_other_workers_posts(redis_server: RedisServer) -> None:
    one, other = shared(redis_server), shared(redis_server)
    other.claim("t1", None)
    other.confirm("t1", None, "2021/07/theirs.md")
    one.claim("t2", None)  # a claim whose confirm was lost to a crash
    sent = one.adopt([("title", "t1", "2021/07/mine.md"), ("title", "t2", "2021/07/t2.md")])
    assert sent == 2
    client = redis.Redis.from_url(redis_server.url)
    assert client.get("test:title:t1") == b"post:2021/07/theirs.md"
    assert client.get("test:title:t2") == b"post:2021/07/t2.md"
    assert client.pttl("test:title:t2") == -1  # kept


def test_failures_and_validators_are_shared(redis_server: RedisServer) -> None:
    one, other = shared(redis_server), shared(redis_server)
    one.record_failure("u1", "HTTP 503", timedelta(days=7))
    one.record_failure("u1", "HTTP 503", timedelta(days=7))
    failure = other.failure("u1")
    assert failure is not None and failure[0] == 2
    other.forget_failure("u1")
    assert one.failure("u1") is None
    one.save_feed_validators("https://e.com/feed", '"abc"', None)
    assert other.feed_validators("https://e.com/feed") == ('"abc"', None)


def test_a_redis_that_is_gone_is_shared_unavailable(redis_server: RedisServer) -> None:
    keys = shared(redis_server)
    redis_server.stop()
    with pytest.raises(SharedUnavailable, match=r"Redis at redis://127\.0\.0\.1"):
        keys.claim("t1", "u1")


# --- workers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    output: Path
    returncode: int
    log: str

    def titles(self) -> list[str]:
        return [
            line.removeprefix("title: ").strip("'\"")
            for path in self.output.glob("*/*/*.md")
            for line in path.read_text(encoding="utf-8").splitlines()[:3]
            if line.startswith("title: ")
        ]

    def keyed_paths(self) -> set[str]:
        """The post paths the worker's own state records keys for."""
        db = sqlite3.connect(self.output / ".state.sqlite3")
        try:
            return {row[0] for row in db.execute("SELECT path FROM story_keys")}
        finally:
            db.close()


class Site:
    """The synthetic site, served from memory; article pages wait until every worker has
    asked for something (told apart by User-Agent), so that both get work whatever their
    start-up times. ``after_articles(n, action)`` runs ``action`` once ``n`` were served."""

    def __init__(self, folder: Path, articles: int) -> None:
        self.pages = bench.build_site(folder, articles)
        self.files = {
            "/" + path.relative_to(folder).as_posix(): path.read_bytes()
            for path in folder.rglob("*")
            if path.is_file()
        }
        self.seen: set[str] = set()
        self.all_here = threading.Event()
        self.served = 0
        self.lock = threading.Lock()
        self.trigger: tuple[int, Callable[[], None]] | None = None
        self.server = QuickStopServer(host="127.0.0.1", port=0, threaded=True)
        self.server.expect_request("/robots.txt").respond_with_data("", status=404)
        self.server.expect_request(re.compile("/.*")).respond_with_handler(self.handle)
        self.server.start()

    def handle(self, request: Request) -> Response:
        worker = request.headers.get("User-Agent", "")
        with self.lock:
            self.seen.add(worker)
            if self.seen >= {f"worker-{name}" for name in WORKERS}:
                self.all_here.set()
        path = request.path
        kind = "text/html; charset=utf-8"
        if path == "/":
            body = self.files["/index.html"]
        elif path == "/home/more":
            page = request.args.get("page", "1")
            body = self.files.get(f"/more/{page}.json", b'{"state":"success","result":{"list":[]}}')
            kind = "application/json; charset=UTF-8"
        else:
            self.all_here.wait(timeout=60)
            body = self.files.get(path)
            if body is None:
                return Response("not found", status=404)
            with self.lock:
                self.served += 1
                if self.trigger is not None and self.served >= self.trigger[0]:
                    action, self.trigger = self.trigger[1], None
                    action()
        return Response(body, content_type=kind)

    def stop(self) -> None:
        self.server.clear()
        self.server.stop()


def start_worker(name: str, home: Path, site: Site, redis_url: str) -> subprocess.Popen[str]:
    """One worker: its own archive folder, story keys and frontier in the shared Redis. Its
    log goes to a file: a pipe read after the other worker's would fill and stall it."""
    with (home / f"{name}.log").open("w", encoding="utf-8") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "scrapy", "crawl", "cnbeta", *FAST,
             "-s", f"OUTPUT_DIR={home / name}", "-s", f"DEDUP_BACKEND={redis_url}",
             "-s", f"REDIS_URL={redis_url}",
             "-s", f"USER_AGENT=worker-{name}", "-s", "CONCURRENT_REQUESTS=8",
             "-s", "ROBOTSTXT_OBEY=False", "-s", "LOG_LEVEL=INFO",
             "-a", f"base_url={base_url_of(site.server)}", "-a", f"pages={site.pages}"],
            cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


@dataclass
class Run:
    workers: dict[str, Worker]
    article_fetches: int  # article pages the site served, to every worker

    def titles(self) -> list[str]:
        return [title for worker in self.workers.values() for title in worker.titles()]


def run_workers(home: Path, kill_redis_after: int | None = None) -> Run:
    site = Site(home / "site", ARTICLES)
    server = RedisServer(home)
    if kill_redis_after is not None:
        site.trigger = (kill_redis_after, server.stop)
    try:
        processes = {name: start_worker(name, home, site, server.url) for name in WORKERS}
        for process in processes.values():
            process.wait(timeout=240)
    finally:
        site.stop()
        server.stop()
    workers = {
        name: Worker(
            name,
            home / name,
            processes[name].returncode,
            (home / f"{name}.log").read_text(encoding="utf-8"),
        )
        for name in WORKERS
    }
    return Run(workers, site.served)


@background_job
def two_workers(home: Path) -> Run:
    """Two ``scrapy crawl cnbeta`` processes, one Redis for their story keys and their
    frontier, one site of 400 articles."""
    return run_workers(home)


@background_job
def redis_lost_workers(home: Path) -> Run:
    """The same, Redis killed once 120 article pages were served."""
    return run_workers(home, kill_redis_after=120)


def test_two_workers_write_every_story_once_and_both_work(two_workers: Run) -> None:
    for worker in two_workers.workers.values():
        assert worker.returncode == 0, worker.log[-3000:]
    titles = two_workers.titles()
    assert len(titles) == ARTICLES  # none lost
    assert len(set(titles)) == ARTICLES  # none twice, across the two archives
    for worker in two_workers.workers.values():
        assert len(worker.titles()) > ARTICLES // 10, (worker.name, len(worker.titles()))
    # One frontier: an article asked for by one worker is not asked for by the other (each
    # on its own would fetch all 1,000); a retried fetch is the only repeat.
    assert two_workers.article_fetches < ARTICLES * 1.05
    # The frontier is emptied by the last worker out, for the next run.
    assert sum("the last worker out" in w.log for w in two_workers.workers.values()) == 1


def test_a_lost_redis_stops_every_worker_with_one_line_and_no_duplicate(
    redis_lost_workers: Run,
) -> None:
    titles = redis_lost_workers.titles()
    assert len(titles) == len(set(titles))  # no story in both archives
    assert len(titles) < ARTICLES  # stopped
    for worker in redis_lost_workers.workers.values():
        assert worker.returncode == 1, worker.log[-3000:]
        assert worker.log.count("shared archive keys lost") == 1, worker.log[-3000:]
        assert "'finish_reason': 'archive_unavailable'" in worker.log
        # Nothing is marked archived without its post.
        for path in worker.keyed_paths():
            assert (worker.output / path).is_file(), path


@pytest.mark.parametrize("setting", ["DEDUP_BACKEND", "REDIS_URL"])
def test_a_redis_that_does_not_answer_at_start_is_one_line(tmp_path: Path, setting: str):
    port = free_port()  # nothing listens there
    done = run_scrapy_in_process("crawl", "cnbeta", "-s", f"OUTPUT_DIR={tmp_path}",
                                 "-s", f"{setting}=redis://127.0.0.1:{port}/0")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {setting}: Redis at redis://127.0.0.1:{port}/0: "
        f"Error 111 connecting to 127.0.0.1:{port}. Connection refused."
    ]
    assert not list(tmp_path.glob("*/*/*.md"))


def test_each_source_has_a_frontier_of_its_own() -> None:
    # Two workers on two different sitemap sources at once must not share one queue.
    def spider(name: str, source: str | None) -> Any:
        return SimpleNamespace(name=name, source=SimpleNamespace(name=source) if source else None)

    assert frontier_name(spider("cnbeta", "cnbeta")) == "cnbeta"
    assert frontier_name(spider("sitemap", "example.com")) == "sitemap:example.com"
    assert frontier_name(spider("sitemap", "other.org")) == "sitemap:other.org"
    assert frontier_name(spider("backfill", None)) == "backfill"


@pytest.mark.parametrize(
    ("spider", "scheduler"),
    [
        (CnbetaSpider, "crawler.shared_scheduler.SharedScheduler"),
        # A feed's entries wait in the worker that read it for their full text.
        (FeedsSpider, "scrapy.core.scheduler.Scheduler"),
    ],
)
def test_redis_url_gives_the_site_spiders_a_shared_frontier(spider: Any, scheduler: str) -> None:
    settings = get_project_settings()
    settings.set("REDIS_URL", "redis://127.0.0.1:6379/0", priority="cmdline")
    spider.update_settings(settings)
    for name, priority in settings.getwithbase("ADDONS").items():
        assert priority == 0
        load_object(name)().update_settings(settings)
    assert settings.get("SCHEDULER") == scheduler


@dataclass
class SharedHarvest:
    done: subprocess.CompletedProcess[str]
    posts: int
    redis_keys: list[str]


@background_job
def shared_harvest(home: Path) -> SharedHarvest:
    """``harvest`` of a site source and a feed, both settings on one Redis."""
    server = RedisServer(home)
    try:
        with fixture_server(serve_feeds, serve_cnbeta) as site:
            sources = write_sources(
                home / "sources.toml",
                site,
                source_table("cnbeta", spider="cnbeta", base_url="{base}",
                             categories=["新媒体", "cnBeta", "最新"], author="cnBeta"),
                source_table("rdf", url="{base}/feeds/rss1.rdf", categories=["a"], author="R"),
            )  # fmt: skip
            done = run_harvest(
                "--sources", str(sources), "--output", str(home / "archive"),
                "-s", f"DEDUP_BACKEND={server.url}", "-s", f"REDIS_URL={server.url}",
            )  # fmt: skip
        client = redis.Redis.from_url(server.url)
        keys = sorted(key.decode() for key in client.keys("*"))
        client.close()
    finally:
        server.stop()
    return SharedHarvest(done, len(list((home / "archive").glob("*/*/*.md"))), keys)


def test_a_harvest_on_redis_leaves_its_keys_and_no_frontier(shared_harvest: SharedHarvest):
    done = shared_harvest.done
    assert done.returncode == 0, done.stdout + done.stderr
    assert shared_harvest.posts > 0
    titles = [key for key in shared_harvest.redis_keys if key.startswith("technews:title:")]
    assert len(titles) == shared_harvest.posts  # every post's story key, shared
    # The cnbeta crawl's frontier is gone with its last worker; the feeds never had one.
    assert not [key for key in shared_harvest.redis_keys if key.startswith("technews:cnbeta")]
    assert not [key for key in shared_harvest.redis_keys if key.startswith("technews:feeds")]
    # The fixture site's failing article pages (HTTP 404, 500): remembered for every worker.
    assert any(key.startswith("technews:failure") for key in shared_harvest.redis_keys)


# --- the shared frontier in this process ------------------------------------------------------


# scrapy-redis still passes `spider=` to the stats collector (a deprecation warning in a real
# crawl; the suite makes Scrapy's deprecations errors, for our own code).
@pytest.mark.filterwarnings("ignore:Passing a 'spider' argument to StatsCollector")
@pytest_twisted.ensureDeferred
async def test_one_worker_in_process_crawls_through_the_shared_frontier(
    redis_server: RedisServer, feed_site: HTTPServer, tmp_path: Path
) -> None:
    """The scheduler and the story keys in a real Redis, the crawl in this process (the
    worker processes above run the same code); the last worker out empties the frontier."""
    serve_cnbeta(feed_site)
    url = redis_server.url
    result = await crawl_in_process(
        "cnbeta", tmp_path / "out",
        {"REDIS_URL": url, "DEDUP_BACKEND": url, "DRIFT_MIN_EXTRACTION": 0.8},
        base_url=base_url_of(feed_site),
    )  # fmt: skip
    assert result.returncode == 0, result.log
    assert (result.stat("scheduler/enqueued/redis") or 0) > 7  # the list pages and articles
    assert len(result.posts()) == 7
    assert "the last worker out" in result.log
    client = redis.Redis.from_url(url)
    try:
        assert not [key for key in client.keys("*") if b"requests" in key]  # frontier emptied
    finally:
        client.close()
