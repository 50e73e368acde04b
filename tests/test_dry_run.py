"""Looking without touching: ``harvest --dry-run``, and crawls without the write pipeline.

A dry run fetches, parses and dedups against the archive, reports what would be written and
leaves the archive folder exactly as it was (posts, state, lock, index, runs log: bytes,
names, modes and times). A crawl without the write pipeline (``-s 'ITEM_PIPELINES={}'``, an
export) saves neither feed validators nor failure memory, so the next real run misses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from scrapy.settings import Settings
from support import (
    CrawlResult,
    background_job,
    base_url_of,
    crawl_in_process,
    fixture_server,
    run_harvest,
    serve_cnbeta,
    serve_feeds,
    source_table,
    write_sources,
)

from crawler.archive.lock import LOCK_FILE, ArchiveLock, ArchiveLocked
from crawler.archive.service import ArchiveService, writes_posts
from crawler.archive.state import KEY_VERSION, STATE_FILE, ArchiveState
from crawler.pipelines.write import WritePipeline

CNBETA = source_table("cnbeta", spider="cnbeta", base_url="{base}",
                      categories=["新媒体", "cnBeta", "最新"], author="cnBeta")  # fmt: skip
RDF = source_table("rdf", url="{base}/feeds/rss1.rdf", categories=["a", "b", "c"], author="R")
ETAGGED = source_table("etagged", url="{base}/feeds/conditional.xml", categories=["a"],
                       author="E")  # fmt: skip
NORMALIZE_AND_DEDUP = {
    "crawler.pipelines.normalize.NormalizePipeline": 100,
    "crawler.pipelines.dedup.DedupPipeline": 200,
}
READ_ONLY_LINE = "validators and failure memory are not saved"
WOULD_WRITE = re.compile(r"dry run: would write (\S+\.md)")


def snapshot(folder: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``folder`` (hidden ones included): kind, mode, modification time and,
    for a file, its bytes' sha256. An absent folder is an empty snapshot."""
    entries: dict[str, tuple[Any, ...]] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if name in files else None
            entries[path.relative_to(folder).as_posix()] = (
                stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_mtime_ns, digest
            )  # fmt: skip
    return entries


def post_paths(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.glob("*/*/*.md")}


def report_rows(stdout: str) -> dict[str, list[str]]:
    """The text report's rows by source: new, duplicate, dropped, failed."""
    rows = [line.split() for line in stdout.strip().splitlines()]
    return {row[0]: row[1:5] for row in rows if len(row) >= 5 and row[1].isdigit()}


def last_json_line(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


# --- harvest --dry-run, as cron would run it -----------------------------------------------


@dataclass
class DryRun:
    first: subprocess.CompletedProcess[str]  # a real harvest of one source
    before: dict[str, tuple[Any, ...]]  # the archive after it
    dry: subprocess.CompletedProcess[str]  # every source, --dry-run
    after: dict[str, tuple[Any, ...]]  # the archive after the dry run
    real: subprocess.CompletedProcess[str]  # every source, for real (--json)
    posts_before: set[str]
    posts_after: set[str]
    validators: list[tuple[str, str]]
    failures: set[str]
    runs: int  # lines of .runs.jsonl at the end


@background_job
def dry_run_over_an_archive(home: Path) -> DryRun:
    """A real harvest of one source; then the archive gains sources (a feed with an ETag, the
    cnBeta site with a 404 and a 500 article): a dry run of all, then the real run."""
    with fixture_server(serve_feeds, serve_cnbeta) as site:
        sources = str(write_sources(home / "sources.toml", site, CNBETA, RDF, ETAGGED))
        out = home / "archive"
        first = run_harvest("--sources", sources, "--output", str(out), "--only", "rdf")
        before, posts_before = snapshot(out), post_paths(out)
        dry = run_harvest("--sources", sources, "--output", str(out), "--dry-run")
        after = snapshot(out)
        real = run_harvest("--sources", sources, "--output", str(out), "--json")
    with sqlite3.connect(out / STATE_FILE) as db:
        validators = db.execute("SELECT feed_url, etag FROM feed_validators").fetchall()
        failures = {row[0] for row in db.execute("SELECT url_key FROM fetch_failures")}
    runs = len((out / ".runs.jsonl").read_text(encoding="utf-8").splitlines())
    return DryRun(
        first, before, dry, after, real, posts_before, post_paths(out), validators, failures, runs
    )


def test_a_dry_run_leaves_the_archive_byte_identical(dry_run_over_an_archive: DryRun) -> None:
    run = dry_run_over_an_archive
    assert run.first.returncode == 0, run.first.stderr
    assert "Traceback" not in run.dry.stderr
    assert run.dry.returncode in (0, 1), run.dry.stderr  # 1: a source FAILED or DRIFTed
    names = set(run.before)
    assert {STATE_FILE, LOCK_FILE, ".index.jsonl", ".runs.jsonl"} <= names
    assert run.after == run.before  # names, kinds, modes, times and bytes
    assert not any(name.startswith(f"{STATE_FILE}-") for name in run.after)  # no -wal/-shm
    assert READ_ONLY_LINE in run.dry.stderr


def test_a_dry_run_reports_what_the_real_run_then_writes(dry_run_over_an_archive: DryRun) -> None:
    run = dry_run_over_an_archive
    first_line, *_ = run.dry.stdout.splitlines()
    assert first_line.startswith("dry run: ") and "not changed" in first_line
    rows = report_rows(run.dry.stdout)
    assert rows["rdf"][:2] == ["0", "1"]  # new, duplicate: archived by the first run
    would = {name: int(row[0]) for name, row in rows.items() if name != "total"}
    assert would["etagged"] == 2 and would["cnbeta"] == 7

    real = last_json_line(run.real.stdout)
    assert "dry_run" not in real
    assert {source["name"]: source["new"] for source in real["sources"]} == would
    assert run.real.returncode == run.dry.returncode
    # The posts the dry run named are exactly the ones the real run wrote.
    named = WOULD_WRITE.findall(run.dry.stderr)
    assert len(named) == sum(would.values()) == len(set(named))
    assert set(named) == run.posts_after - run.posts_before
    # What the dry run did not save, the real run did; the dry run left no .runs.jsonl line.
    assert [etag for url, etag in run.validators if url.endswith("/conditional.xml")] != []
    assert {"https://www.cnbeta.com.tw/articles/tech/1153347.htm",
            "https://www.cnbeta.com.tw/articles/tech/1153348.htm"} <= run.failures  # fmt: skip
    assert run.runs == 2


@dataclass
class NoArchive:
    done: subprocess.CompletedProcess[str]
    home_after: list[str]


@background_job
def dry_run_of_no_archive(home: Path) -> NoArchive:
    """A dry run (as ``-s DRY_RUN=true``, the same) into an archive folder that does not exist."""
    with fixture_server(serve_feeds) as site:
        sources = write_sources(home / "sources.toml", site, RDF, ETAGGED)
        done = run_harvest(
            "--sources", str(sources), "--output", str(home / "nowhere" / "archive"),
            "-s", "DRY_RUN=true", "--json",
        )  # fmt: skip
    return NoArchive(done, sorted(os.listdir(home)))


def test_a_dry_run_of_a_missing_archive_creates_nothing(dry_run_of_no_archive: NoArchive) -> None:
    done = dry_run_of_no_archive.done
    assert done.returncode == 0, done.stderr
    assert dry_run_of_no_archive.home_after == ["sources.toml"]
    report = last_json_line(done.stdout)
    assert report["dry_run"] is True
    assert {s["name"]: s["new"] for s in report["sources"]} == {"rdf": 1, "etagged": 2}


# --- crawls without the write pipeline, in-process -----------------------------------------


async def crawl_feed(
    site: HTTPServer, path: str, output: Path, settings: dict[str, Any] | None = None
) -> CrawlResult:
    result = await crawl_in_process(
        "feeds", output, settings, server=site, url=f"{base_url_of(site)}{path}",
        categories="a,b,c", author="T",
    )  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.log, result.log
    return result


def conditional_requests(site: HTTPServer, since: int) -> list[tuple[str | None, int]]:
    """(If-None-Match, status) of each request for the ETag feed after ``since``."""
    return [
        (request.headers.get("If-None-Match"), response.status_code)
        for request, response in site.log[since:]
        if request.path == "/feeds/conditional.xml"
    ]


@pytest_twisted.ensureDeferred
async def test_an_export_only_crawl_saves_no_validators(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    out = tmp_path / "archive"
    seeded = await crawl_feed(feed_site, "/feeds/rss1.rdf", out)  # an archive with a state
    assert seeded.stat("write/written") == 1
    before = snapshot(out)
    exported = tmp_path / "items.jsonl"
    looked = await crawl_feed(
        feed_site, "/feeds/conditional.xml", out,
        {"ITEM_PIPELINES": "{}", "FEEDS": {str(exported): {"format": "jsonlines"}}},
    )  # fmt: skip
    assert len(exported.read_text(encoding="utf-8").splitlines()) == 2
    assert READ_ONLY_LINE in looked.log
    assert snapshot(out) == before

    since = len(feed_site.log)
    real = await crawl_feed(feed_site, "/feeds/conditional.xml", out)
    assert conditional_requests(feed_site, since) == [(None, 200)]
    assert real.stat("write/written") == 2
    assert READ_ONLY_LINE not in real.log


@pytest.fixture(scope="module")
def cnbeta_site() -> Iterator[HTTPServer]:
    with fixture_server(serve_cnbeta) as server:
        yield server


async def crawl_cnbeta(site: HTTPServer, output: Path, settings: dict[str, Any] | None = None):
    return await crawl_in_process(
        "cnbeta", output, settings, server=site, base_url=base_url_of(site), pages=3
    )


@pytest_twisted.ensureDeferred
async def test_a_failed_article_is_not_remembered_without_the_write_pipeline(
    cnbeta_site: HTTPServer, tmp_path: Path
) -> None:
    out = tmp_path / "archive"
    ArchiveState(out).close()  # an archive with an (empty) state
    before = snapshot(out)
    looked = await crawl_cnbeta(cnbeta_site, out, {"ITEM_PIPELINES": NORMALIZE_AND_DEDUP})
    assert "/articles/tech/1153347.htm" in looked.requested  # the 404
    assert looked.stat("item_scraped_count") == 7
    assert snapshot(out) == before

    real = await crawl_cnbeta(cnbeta_site, out)
    assert {"/articles/tech/1153347.htm", "/articles/tech/1153348.htm"} <= set(real.requested)
    assert real.stat("source/cnbeta/article_skipped_failed_recently") is None
    assert real.stat("write/written") == 7


@pytest_twisted.ensureDeferred
async def test_dry_run_setting_in_a_crawl_of_no_folder(
    cnbeta_site: HTTPServer, tmp_path: Path
) -> None:
    out = tmp_path / "nowhere" / "archive"
    # The project's own pipelines: the write pipeline turns itself off in a dry run.
    looked = await crawl_cnbeta(cnbeta_site, out, {"DRY_RUN": "True"})
    assert looked.stat("item_scraped_count") == 7
    assert len(WOULD_WRITE.findall(looked.log)) == 7
    assert not (tmp_path / "nowhere").exists()


# --- the pieces ----------------------------------------------------------------------------


class OwnWritePipeline(WritePipeline):
    pass


@pytest.mark.parametrize(
    ("pipelines", "writes"),
    [
        (None, True),  # the project's
        ("{}", False),
        (NORMALIZE_AND_DEDUP, False),
        ({**NORMALIZE_AND_DEDUP, OwnWritePipeline: 300}, True),
        ({"crawler.pipelines.write.WritePipeline": None}, False),
        ({"no.such.Pipeline": 100}, False),
    ],
)
def test_which_crawls_write_posts(pipelines: Any, writes: bool) -> None:
    settings = Settings()
    settings.setmodule("crawler.settings")
    if pipelines is not None:
        settings.set("ITEM_PIPELINES", pipelines, priority="cmdline")
    assert writes_posts(settings) is writes


def state_with_a_post(folder: Path) -> None:
    service = ArchiveService(folder, timedelta(hours=1))
    service.state.remember("2021/07/a.md", "title-key", "https://e.com/a")
    service.save_feed_validators("https://e.com/feed", '"e"', None)
    service.close()


def test_a_read_only_service_reads_and_saves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_with_a_post(tmp_path)
    before = snapshot(tmp_path)
    service = ArchiveService(tmp_path, timedelta(hours=1), read_only=True)
    assert service.knows("title-key", None) == "title"
    assert service.feed_validators("https://e.com/feed") == ('"e"', None)
    with caplog.at_level("INFO"):
        service.page_failed("https://e.com/b", "http_404")
        service.page_succeeded("https://e.com/b")
        service.save_feed_validators("https://e.com/feed", '"f"', None)
    assert [r.getMessage() for r in caplog.records].count(
        "read-only archive (dry run / no write pipeline): " + READ_ONLY_LINE
    ) == 1
    assert not service.in_failure_backoff("https://e.com/b")
    assert service.feed_validators("https://e.com/feed") == ('"e"', None)
    with pytest.raises(RuntimeError, match="read-only"):
        service.store_post(b"x", published=datetime.now(UTC), title_key="t", url_key=None,
                           index={"title": "t"})  # fmt: skip
    with pytest.raises(sqlite3.OperationalError):  # and the state itself refuses writes
        service.state.record_failure("https://e.com/c", "http_404")
    service.close()
    assert snapshot(tmp_path) == before


def test_a_read_only_service_does_not_rekey(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_with_a_post(tmp_path)
    with sqlite3.connect(tmp_path / STATE_FILE) as db:
        db.execute("DROP TABLE meta")  # an archive from before key versions
    before = snapshot(tmp_path)
    service = ArchiveService(tmp_path, timedelta(hours=1), read_only=True)
    with caplog.at_level("INFO"):
        assert service.state.key_version() == 1 < KEY_VERSION
    assert "a real run will re-key it" in caplog.text
    assert service.knows("title-key", None) == "title"
    service.close()
    assert snapshot(tmp_path) == before


def test_a_read_only_state_reads_a_wal_a_killed_run_left(tmp_path: Path) -> None:
    state_with_a_post(tmp_path)
    writer = ArchiveState(tmp_path)  # still open, as a killed run's: its WAL holds this
    writer.remember("2021/07/b.md", "other-key", None)
    try:
        assert (tmp_path / f"{STATE_FILE}-wal").stat().st_size > 0
        before = snapshot(tmp_path)
        reader = ArchiveState(tmp_path, read_only=True)
        assert reader.knows(title_key="other-key") == "title"
        assert reader.knows(title_key="title-key") == "title"
        reader.close()
        assert snapshot(tmp_path) == before
    finally:
        writer.close()


def test_a_read_only_state_of_no_folder_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    state = ArchiveState(tmp_path / "none", read_only=True)
    assert state.key_version() == KEY_VERSION and not state.has_story_keys()
    assert state.feed_validators("https://e.com/feed") == (None, None)
    state.close()
    assert os.listdir(tmp_path) == []


def test_read_only_locks_share_and_keep_writers_out(tmp_path: Path) -> None:
    with ArchiveLock(tmp_path / "archive"):  # a real run: creates the folder and .lock
        pass
    lock_file = tmp_path / "archive" / LOCK_FILE
    before = snapshot(tmp_path)
    with ArchiveLock(tmp_path / "archive", read_only=True):
        with ArchiveLock(tmp_path / "archive", read_only=True):  # dry runs side by side
            pass
        with pytest.raises(ArchiveLocked, match=r"in use by another run \(a dry run\)"):
            ArchiveLock(tmp_path / "archive").acquire()
    assert snapshot(tmp_path) == before
    with ArchiveLock(tmp_path / "archive"):  # a real run holds it: a dry run is refused
        pid = f"(pid {os.getpid()})"
        with pytest.raises(ArchiveLocked, match=re.escape(pid)):
            ArchiveLock(tmp_path / "archive", read_only=True).acquire()
    assert lock_file.read_text() == f"{os.getpid()}\n"


def test_a_read_only_lock_of_a_folder_without_lock_file(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "post.md").write_text("x")
    before = snapshot(tmp_path)
    with ArchiveLock(tmp_path / "archive", read_only=True):  # locks the folder itself
        with pytest.raises(ArchiveLocked):
            ArchiveLock(tmp_path / "archive").acquire()
        assert snapshot(tmp_path) == before
    with ArchiveLock(tmp_path / "nowhere", read_only=True):
        pass
    assert not (tmp_path / "nowhere").exists()
    with ArchiveLock(tmp_path / "archive"):  # free again
        pass
