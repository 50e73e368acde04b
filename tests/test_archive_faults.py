"""The archive under faults and hostile input (SECURITY.md): a full disk, a killed run, a
corrupt state, broken index lines and symlinks planted in the archive folder.

Nothing is lost silently (a post on disk without its index line or keys is repaired by the
next run that meets it), and nothing is written outside the archive (every planted symlink is
refused with ELOOP, and its target is byte-identical afterwards).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from support import PROJECT_ROOT, background_job, base_url_of, crawl_in_process

from crawler.archive import files
from crawler.archive import service as archive_service
from crawler.archive.files import (
    SymlinkRefused,
    append_line,
    post_entries,
    post_relpath,
    write_atomically,
)
from crawler.archive.index import INDEX_FILE, read_index, rewrite_index
from crawler.archive.lock import LOCK_FILE, ArchiveLock
from crawler.archive.reindex import reindex
from crawler.archive.service import ArchiveService, StoredPost
from crawler.archive.state import STATE_FILE, ArchiveState, CorruptState, check_state
from crawler.cli.main import main
from crawler.cli.report import RUNS_FILE
from crawler.post.format import http_date
from crawler.post.keys import key_digest, story_keys

PUBLISHED = datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
HOUR = timedelta(hours=1)


def post_bytes(title: str) -> bytes:
    return (
        f"\n---\ntitle: '{title}'\ndate: {http_date(PUBLISHED)}\n---\n\n<div>   \nx   \n</div>\n"
    ).encode()


def store(service: ArchiveService, title: str) -> Any:
    url = f"https://e.com/{title.replace(' ', '-')}"
    title_key, url_key = story_keys(title, PUBLISHED, url, has_own_url=True)
    index = {"title": title, "date": http_date(PUBLISHED), "url": url, "source": "e",
             "categories": ["Tech"]}  # fmt: skip
    return service.store_post(
        post_bytes(title), published=PUBLISHED, title_key=title_key, url_key=url_key, index=index
    )


def knows(folder: Path, title: str) -> bool:
    title_key, url_key = story_keys(title, PUBLISHED, f"https://e.com/{title.replace(' ', '-')}",
                                    has_own_url=True)  # fmt: skip
    state = ArchiveState(folder)
    try:
        return state.knows(title_key=title_key) == "title" and state.knows(url_key=url_key) == "url"
    finally:
        state.close()


def post_files(folder: Path) -> set[str]:
    return {path for path, problem in post_entries(folder) if problem is None}


def index_paths(folder: Path) -> list[str]:
    """The paths of the index's lines, in order (every line must be JSON)."""
    lines = (folder / INDEX_FILE).read_bytes().split(b"\n")
    assert lines[-1] == b""
    return [json.loads(line)["path"] for line in lines[:-1]]


def tree(folder: Path) -> dict[str, tuple[int, str | None]]:
    """Every entry under ``folder``: its mode and, for a file, the sha256 of its bytes."""
    found: dict[str, tuple[int, str | None]] = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(root, name)
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if name in names else None
            found[path.relative_to(folder).as_posix()] = (info.st_mode, digest)
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the archive with a file a planted symlink points to."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_bytes(b"not the archive's\n")
    return folder


# --- a post, its index line and its keys are one unit ---------------------------------------


def test_a_post_whose_index_append_failed_is_repaired_by_the_next_store(tmp_path: Path) -> None:
    service = ArchiveService(tmp_path, HOUR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("crawler.archive.service.append_index_lines", fail_with(errno.ENOSPC))
        with pytest.raises(OSError) as failed:
            store(service, "Disk full")
    assert failed.value.errno == errno.ENOSPC
    service.close()
    (relpath,) = post_files(tmp_path)  # the post is on disk, without index line or keys
    assert not (tmp_path / INDEX_FILE).exists()
    assert not knows(tmp_path, "Disk full")

    again = ArchiveService(tmp_path, HOUR)
    stored = store(again, "Disk full")
    assert (stored.relpath, stored.written, stored.repaired) == (relpath, False, True)
    assert not store(again, "Disk full").repaired  # once repaired, nothing more to do
    again.close()
    assert index_paths(tmp_path) == [relpath]
    entry = read_index(tmp_path)[relpath]
    assert entry["sha256"] == hashlib.sha256((tmp_path / relpath).read_bytes()).hexdigest()
    assert entry["url"] == "https://e.com/Disk-full" and entry["source"] == "e"
    assert knows(tmp_path, "Disk full")


def test_a_post_whose_keys_were_not_committed_is_repaired(tmp_path: Path) -> None:
    """Stopped between the index line and the key commit (a kill there rolls back the
    transaction, as this exception does)."""
    service = ArchiveService(tmp_path, HOUR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ArchiveState, "remember_many", fail_with(errno.EIO))
        with pytest.raises(OSError):
            store(service, "No keys")
    service.close()
    (relpath,) = post_files(tmp_path)
    assert index_paths(tmp_path) == [relpath] and not knows(tmp_path, "No keys")
    again = ArchiveService(tmp_path, HOUR)
    assert store(again, "No keys").repaired
    again.close()
    assert index_paths(tmp_path) == [relpath] and knows(tmp_path, "No keys")


def test_a_state_that_cannot_be_written_is_a_failed_write_with_its_errno(tmp_path: Path) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]

    def remember(*_args: Any) -> None:
        raise full

    service = ArchiveService(tmp_path, HOUR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ArchiveState, "remember_many", remember)
        with pytest.raises(OSError) as failed:
            store(service, "Full state")
    service.close()
    assert failed.value.errno == errno.ENOSPC and "disk is full" in str(failed.value)


def test_a_crawl_ends_with_a_warning_for_posts_the_index_lacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = ArchiveService(tmp_path, HOUR)
    store(service, "Indexed")
    orphan = tmp_path / "2021" / "07" / "2021-07-17-orphan-0123abcd.md"
    orphan.write_bytes(post_bytes("orphan"))
    with caplog.at_level(logging.WARNING):
        service.close()
    assert "1 post files are not in .index.jsonl (e.g. 2021/07/2021-07-17-orphan" in caplog.text
    assert f"python -m crawler reindex {tmp_path}" in caplog.text


def test_the_end_of_crawl_check_costs_what_the_crawl_wrote_not_the_archive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Posts with keys have their index lines: the index is not read, and folders the crawl
    did not write into are not looked at (an orphan there waits for `reindex`)."""
    service = ArchiveService(tmp_path, HOUR)
    store(service, "Earlier")
    service.close()
    elsewhere = tmp_path / "2019" / "01"
    elsewhere.mkdir(parents=True)
    (elsewhere / "2019-01-01-old-orphan-0123abcd.md").write_bytes(post_bytes("old orphan"))
    service = ArchiveService(tmp_path, HOUR)
    store(service, "Later")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(archive_service, "indexed_paths", _never_read)
        with caplog.at_level(logging.WARNING):
            service.close()
    assert "not in .index.jsonl" not in caplog.text


def _never_read(output_dir: Path) -> set[str]:
    raise AssertionError(f"the whole index of {output_dir} read")


def test_a_post_without_keys_but_with_its_index_line_is_no_orphan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = ArchiveService(tmp_path, HOUR)
    relpath = store(service, "Keys lost").relpath
    service.state._db.execute("DELETE FROM story_keys")  # as if its key transaction failed
    store(service, "Another")
    with caplog.at_level(logging.WARNING):
        service.close()  # the index read (a post without keys), and it lists the first one
    assert "not in .index.jsonl" not in caplog.text
    assert relpath.startswith("2021/07/")


def test_a_months_keyed_paths_are_its_own(tmp_path: Path) -> None:
    state = ArchiveState(tmp_path)
    state.remember_many([
        ("2021/07/a.md", "t-a", "u-a"), ("2021/07/b.md", "t-b", None),
        ("2021/08/c.md", "t-c", None), ("2021/1/d.md", "t-d", None), ("2021/070.md", "t-e", None),
    ])  # fmt: skip
    assert state.keyed_paths_in("2021/07") == {"2021/07/a.md", "2021/07/b.md"}
    assert state.keyed_paths_in("2020/07") == set()
    state.close()


@dataclass
class Stopped:
    folder: Path
    done: subprocess.CompletedProcess[str]


STOPPED_RUN = r"""
import errno, os, resource, signal, sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, sys.argv[2])
import test_archive_faults as t
from crawler.archive import service as module

service = module.ArchiveService(Path(sys.argv[1]), timedelta(hours=1))
t.store(service, "Seed")
size = (Path(sys.argv[1]) / ".index.jsonl").stat().st_size
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))  # the disk fills mid-line
try:
    t.store(service, "Disk full")
except OSError as error:
    print("full:", errno.errorcode[error.errno], flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
module.append_index_lines = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # kill -9 here
t.store(service, "Killed")
print("still alive", flush=True)
"""


@background_job
def stopped_run(home: Path) -> Stopped:
    """A process that writes a post, then fills the disk in the middle of the next post's
    index line (RLIMIT_FSIZE: Python ignores SIGXFSZ, so the write fails with EFBIG), then
    is killed with SIGKILL between the rename of a third post and its index line."""
    folder = home / "archive"
    done = subprocess.run(
        [sys.executable, "-c", STOPPED_RUN, str(folder), str(Path(__file__).parent)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return Stopped(folder, done)


def test_a_full_disk_and_a_kill_are_repaired_by_the_next_run(
    stopped_run: Stopped, caplog: pytest.LogCaptureFixture
) -> None:
    folder, done = stopped_run.folder, stopped_run.done
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == "full: EFBIG\n", done.stderr
    assert len(post_files(folder)) == 3  # every post reached the disk
    raw = (folder / INDEX_FILE).read_bytes()
    assert raw.count(b"\n") == 1 and not raw.endswith(b"\n")  # the seed's, then a cut line
    assert [knows(folder, t) for t in ("Seed", "Disk full", "Killed")] == [True, False, False]

    service = ArchiveService(folder, HOUR)  # the next run meets the three stories again
    with caplog.at_level(logging.WARNING):
        repaired = [store(service, title).repaired for title in ("Seed", "Disk full", "Killed")]
    service.close()
    assert repaired == [False, True, True]
    assert "line 2: not JSON (cut short?), skipped" in caplog.text
    entries = read_index(folder)
    assert set(entries) == post_files(folder)  # the index matches the files exactly
    assert [knows(folder, t) for t in ("Seed", "Disk full", "Killed")] == [True, True, True]


@pytest_twisted.ensureDeferred
async def test_a_crawl_whose_index_appends_failed_is_repaired_by_the_next_crawl(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    """The disk fills after the posts' renames: every index append fails (here the index is
    a folder for one run). The sources fail; the next crawl indexes and keys every post."""
    out = tmp_path / "out"
    (out / INDEX_FILE).mkdir(parents=True)
    arguments = {"url": f"{base_url_of(feed_site)}/feeds/atom.xml", "categories": "a,b,c",
                 "author": "T"}  # fmt: skip
    first = await crawl_in_process("feeds", out, server=feed_site, **arguments)
    name = failed_source(first.stats)
    assert first.stats[f"source/{name}/reason"] == "write failed: EISDIR"
    assert len(post_files(out)) == 2 and first.stat("write/failed") == 2

    (out / INDEX_FILE).rmdir()  # the disk has room again
    second = await crawl_in_process("feeds", out, server=feed_site, **arguments)
    assert second.stat("write/repaired") == 2 and second.stat("write/written") is None
    assert f"source/{name}/failed" not in second.stats
    assert sorted(index_paths(out)) == sorted(post_files(out))
    third = await crawl_in_process("feeds", out, server=feed_site, **arguments)
    assert third.stat(f"source/{name}/duplicate") == 2  # the keys were recorded too
    assert third.stat("write/repaired") is None


# --- index and runs lines -------------------------------------------------------------------


@pytest.mark.parametrize("name", [INDEX_FILE, RUNS_FILE])
def test_an_append_after_a_cut_last_line_starts_a_fresh_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b'{"path": "2021/07/a.md"}\n{"path": "2021/0')  # crash mid-append
    append_line(path, b'{"path": "2021/07/c.md"}\n')
    append_line(path, b'{"path": "2021/07/d.md"}\n')
    assert path.read_bytes().split(b"\n") == [
        b'{"path": "2021/07/a.md"}', b'{"path": "2021/0', b'{"path": "2021/07/c.md"}',
        b'{"path": "2021/07/d.md"}', b"",
    ]  # fmt: skip


def test_the_index_reader_skips_broken_lines_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / INDEX_FILE).write_bytes(
        b'{"path": "a.md", "title": "A"}\n'
        b'{"path": "b.md", "title": "\xff\xfe"}\n'  # not UTF-8
        b"[1, 2]\n"  # not an entry
        b"\n"
        b'{"path": "c.md", "title": "\xe4\xb8\xad"}\n'
        b'{"path": "d.m'  # cut short
    )
    with caplog.at_level(logging.WARNING):
        entries = read_index(tmp_path)
    assert list(entries) == ["a.md", "c.md"] and entries["c.md"]["title"] == "中"
    assert [r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records] == [
        "not UTF-8, skipped", "not an index entry, skipped", "not JSON (cut short?), skipped",
    ]  # fmt: skip
    assert "line 2" in caplog.records[0].getMessage()


def test_a_flood_of_broken_lines_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / INDEX_FILE).write_bytes(b"{\n" * 50)
    with caplog.at_level(logging.WARNING):
        assert read_index(tmp_path) == {}
    assert len(caplog.records) == 21 and "30 more broken lines" in caplog.text


# --- a corrupt state ------------------------------------------------------------------------

GARBAGE = bytes(range(256)) * 20


def corrupt_archive(folder: Path) -> str:
    """An archive of one post whose state is garbage; the post's path."""
    service = ArchiveService(folder, HOUR)
    relpath = store(service, "Good post").relpath
    service.close()
    (folder / STATE_FILE).write_bytes(GARBAGE)
    return relpath


def test_a_corrupt_state_is_one_clear_error_naming_the_file_and_reindex(tmp_path: Path) -> None:
    corrupt_archive(tmp_path)
    before = tree(tmp_path)
    for read_only in (False, True):
        with pytest.raises(CorruptState) as corrupt:
            ArchiveState(tmp_path, read_only=read_only)
        message = str(corrupt.value)
        assert "\n" not in message
        assert message.startswith(
            f"{tmp_path / STATE_FILE}: not a database; run `python -m crawler reindex {tmp_path}`"
        )
        assert isinstance(corrupt.value, RuntimeError)
    with pytest.raises(CorruptState):
        check_state(tmp_path)
    assert tree(tmp_path) == before  # checking wrote nothing


@pytest_twisted.ensureDeferred
async def test_a_crawl_of_a_corrupt_archive_fails_before_any_request(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    corrupt_archive(tmp_path)
    asked = len(feed_site.log)
    with pytest.raises(CorruptState):
        await crawl_in_process("feeds", tmp_path, url=feed_site.url_for("/feeds/atom.xml"))
    assert len(feed_site.log) == asked


def test_reindex_moves_a_corrupt_state_aside_and_counts_unreadable_posts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relpath = corrupt_archive(tmp_path)
    month = tmp_path / "2021" / "07"
    (month / "2021-07-17-bad-yaml.md").write_text("\n---\ntitle: 'open\n: [\n---\n")
    (month / "x.md").mkdir()
    (month / "y.md").symlink_to(tmp_path / "nowhere.md")
    assert main(["reindex", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    (aside,) = [p for p in os.listdir(tmp_path) if p.startswith(f"{STATE_FILE}.corrupt-")]
    assert re.fullmatch(r"\.state\.sqlite3\.corrupt-\d{8}T\d{6}Z", aside)
    assert (tmp_path / aside).read_bytes() == GARBAGE
    assert out == [
        f"the corrupt state was moved aside to {tmp_path / aside}",
        f"reindexed 1 posts in {tmp_path} (1 with a URL key, 3 unreadable)",
    ]
    assert knows(tmp_path, "Good post")  # rebuilt
    assert list(read_index(tmp_path)) == [relpath]


# --- planted symlinks -----------------------------------------------------------------------


def test_a_symlink_at_the_old_temporary_name_is_not_followed(tmp_path: Path, outside: Path) -> None:
    archive = tmp_path / "archive"
    service = ArchiveService(archive, HOUR)
    store(service, "First")  # the month's folder is there
    title_key, _ = story_keys("Second", PUBLISHED, None, has_own_url=False)
    target = archive / post_relpath("Second", PUBLISHED, key_digest(title_key))
    planted = target.with_name(f".{target.name}.tmp")  # the predictable name of old
    planted.symlink_to(outside / "victim.txt")
    before = tree(outside)
    stored = store(service, "Second")
    service.close()
    assert stored.written and (archive / stored.relpath) == target
    assert target.read_bytes() == post_bytes("Second") and not target.is_symlink()
    assert tree(outside) == before and planted.is_symlink()
    hidden = [p for p in os.listdir(target.parent) if p.startswith(".")]
    assert hidden == [planted.name]  # no temporary file left behind


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_at_a_posts_name_is_refused(
    tmp_path: Path, outside: Path, dangling: bool
) -> None:
    target = tmp_path / "archive" / "2021" / "07" / "post.md"
    target.parent.mkdir(parents=True)
    target.symlink_to(outside / ("missing.txt" if dangling else "victim.txt"))
    before = tree(outside)
    with pytest.raises(SymlinkRefused) as refused:
        write_atomically(target, b"post", root=tmp_path / "archive")
    assert refused.value.errno == errno.ELOOP and str(target) in str(refused.value)
    assert tree(outside) == before
    assert os.listdir(target.parent) == ["post.md"]


@pytest.mark.parametrize("planted", ["2021", "2021/07"])
def test_a_symlinked_year_or_month_folder_is_refused(
    tmp_path: Path, outside: Path, planted: str
) -> None:
    archive = tmp_path / "archive"
    (archive / planted).parent.mkdir(parents=True, exist_ok=True)
    (archive / planted).symlink_to(outside, target_is_directory=True)
    before = tree(outside)
    service = ArchiveService(archive, HOUR)
    with pytest.raises(SymlinkRefused) as refused:
        store(service, "Escape")
    service.close()
    assert refused.value.errno == errno.ELOOP and refused.value.filename == str(
        archive.resolve() / planted
    )
    assert tree(outside) == before


@pytest_twisted.ensureDeferred
async def test_a_refused_symlink_fails_the_source_of_a_crawl(
    feed_site: HTTPServer, tmp_path: Path, outside: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "2021").symlink_to(outside, target_is_directory=True)
    before = tree(outside)
    result = await crawl_in_process(
        "feeds", out, server=feed_site, url=f"{base_url_of(feed_site)}/feeds/atom.xml",
        categories="a,b,c", author="T",
    )  # fmt: skip
    name = failed_source(result.stats)
    assert result.stats[f"source/{name}/reason"] == "write failed: ELOOP"
    assert result.stat("write/failed") == 2
    assert tree(outside) == before


def test_a_symlink_at_the_index_is_refused_and_the_post_repaired_later(
    tmp_path: Path, outside: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / INDEX_FILE).symlink_to(outside / "victim.txt")
    before = tree(outside)
    service = ArchiveService(archive, HOUR)
    with pytest.raises(SymlinkRefused):
        store(service, "Linked index")
    with pytest.raises(SymlinkRefused):
        read_index(archive)
    with pytest.raises(SymlinkRefused):
        rewrite_index(archive, [])
    service.close()
    assert tree(outside) == before
    (archive / INDEX_FILE).unlink()
    again = ArchiveService(archive, HOUR)
    assert store(again, "Linked index").repaired
    again.close()
    assert index_paths(archive) == sorted(post_files(archive))


def test_a_symlink_at_the_runs_log_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / RUNS_FILE).symlink_to(outside / "victim.txt")
    before = tree(outside)
    with pytest.raises(SymlinkRefused):
        append_line(tmp_path / RUNS_FILE, b"{}\n")
    assert tree(outside) == before


def test_a_fifo_at_the_index_fails_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / INDEX_FILE)
    with pytest.raises(OSError) as failed:
        append_line(tmp_path / INDEX_FILE, b"{}\n")  # no reader: would block without O_NONBLOCK
    assert failed.value.errno in (errno.ENXIO, errno.EINVAL)
    with pytest.raises(OSError, match="not a regular file"):
        read_index(tmp_path)


@pytest.mark.parametrize("read_only", [False, True])
def test_a_symlink_at_the_lock_is_refused(tmp_path: Path, outside: Path, read_only: bool) -> None:
    (tmp_path / LOCK_FILE).symlink_to(outside / "victim.txt")
    before = tree(outside)
    with pytest.raises(SymlinkRefused):
        ArchiveLock(tmp_path, read_only=read_only).acquire()
    assert tree(outside) == before
    (tmp_path / LOCK_FILE).unlink()
    with ArchiveLock(tmp_path):  # the folder's lock was released on the way out
        pass


@pytest.mark.parametrize("name", ["", "-wal", "-shm", "-journal"])
def test_a_symlink_at_the_state_or_its_companions_is_refused(
    tmp_path: Path, outside: Path, name: str
) -> None:
    archive = tmp_path / "archive"
    ArchiveState(archive).close()
    if name == "":
        (archive / STATE_FILE).rename(outside / "state.sqlite3")
        (archive / STATE_FILE).symlink_to(outside / "state.sqlite3")
    else:
        (archive / f"{STATE_FILE}{name}").symlink_to(outside / "victim.txt")
    before = tree(outside)
    for read_only in (False, True):
        with pytest.raises(SymlinkRefused):
            ArchiveState(archive, read_only=read_only)
    assert tree(outside) == before


def test_the_index_rewrite_ignores_a_symlink_at_the_old_temporary_name(
    tmp_path: Path, outside: Path
) -> None:
    service = ArchiveService(tmp_path / "archive", HOUR)
    store(service, "Post")
    service.close()
    (tmp_path / "archive" / f".{INDEX_FILE}.tmp").symlink_to(outside / "victim.txt")
    before = tree(outside)
    assert reindex(tmp_path / "archive").posts == 1
    assert tree(outside) == before
    assert not (tmp_path / "archive" / INDEX_FILE).is_symlink()
    assert len(index_paths(tmp_path / "archive")) == 1


def test_reindex_reads_no_post_through_a_symlink(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    service = ArchiveService(archive, HOUR)
    store(service, "Real")
    service.close()
    (outside / "2021-07-17-elsewhere.md").write_bytes(post_bytes("Elsewhere"))
    (archive / "2021" / "07" / "2021-07-17-linked.md").symlink_to(
        outside / "2021-07-17-elsewhere.md"
    )
    (archive / "2020").symlink_to(outside, target_is_directory=True)
    assert main(["reindex", str(archive)]) == 0
    assert capsys.readouterr().out.endswith("(1 with a URL key, 2 unreadable)\n")
    assert len(read_index(archive)) == 1


def test_reindex_of_an_archive_with_a_symlinked_index_is_one_error_line(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / INDEX_FILE).symlink_to(outside / "victim.txt")
    assert main(["reindex", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: [Errno {errno.ELOOP}] refusing to use a symlink inside the "
                   f"archive: '{tmp_path / INDEX_FILE}'"]  # fmt: skip


# --- permissions, and file systems without hard links -------------------------------------


def test_the_state_and_lock_are_owner_only_posts_and_index_world_readable(
    tmp_path: Path,
) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    archive = tmp_path / "archive"
    with ArchiveLock(archive):
        service = ArchiveService(archive, HOUR)
        relpath = store(service, "Modes").relpath
        modes = {
            name: stat.S_IMODE(os.stat(archive / name).st_mode)
            for name in (STATE_FILE, f"{STATE_FILE}-wal", f"{STATE_FILE}-shm", LOCK_FILE)
        }
        service.close()
    assert modes == dict.fromkeys(modes, 0o600)
    for name in (relpath, INDEX_FILE):
        assert stat.S_IMODE(os.stat(archive / name).st_mode) == 0o644 & ~umask


def test_without_hard_links_a_post_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files.os, "link", fail_with(errno.EPERM))
    target = tmp_path / "2021" / "07" / "post.md"
    assert write_atomically(target, b"first", root=tmp_path)
    assert not write_atomically(target, b"second", root=tmp_path)
    assert target.read_bytes() == b"first" and os.listdir(target.parent) == ["post.md"]


def failed_source(stats: dict[str, Any]) -> str:
    """The one source a crawl's stats mark failed."""
    (name,) = {key.split("/")[1] for key in stats if re.fullmatch(r"source/[^/]+/failed", key)}
    return name


def fail_with(code: int) -> Any:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(code, os.strerror(code))

    return fail


# --- a batch of posts (the writer's group commit) -------------------------------------------


def batch_post(title: str) -> tuple[bytes, dict[str, Any]]:
    url = f"https://e.com/{title.replace(' ', '-')}"
    title_key, url_key = story_keys(title, PUBLISHED, url, has_own_url=True)
    index = {"title": title, "date": http_date(PUBLISHED), "url": url, "source": "e",
             "categories": []}  # fmt: skip
    fields = {"published": PUBLISHED, "title_key": title_key, "url_key": url_key, "index": index}
    return post_bytes(title), fields


def test_one_bad_post_of_a_batch_fails_alone(tmp_path: Path, outside: Path) -> None:
    service = ArchiveService(tmp_path, HOUR)
    store(service, "Seed")  # makes the month folder
    (relpath,) = post_files(tmp_path)
    planted = batch_post("Planted")
    target = tmp_path / relpath.rsplit("/", 1)[0] / service_relpath_name(planted)
    target.symlink_to(outside / "victim.txt")
    results = service.store_posts([batch_post("First"), planted, batch_post("Third")])
    service.close()
    assert isinstance(results[1], OSError)  # the symlink, refused
    assert [r.written for r in (results[0], results[2])] == [True, True]  # type: ignore[union-attr]
    assert (outside / "victim.txt").read_bytes() == b"not the archive's\n"
    assert set(index_paths(tmp_path)) == {relpath, results[0].relpath, results[2].relpath}  # type: ignore[union-attr]
    assert knows(tmp_path, "First") and knows(tmp_path, "Third") and not knows(tmp_path, "Planted")


def test_the_same_story_twice_in_a_batch_is_written_once(tmp_path: Path) -> None:
    service = ArchiveService(tmp_path, HOUR)
    first, again = service.store_posts([batch_post("Twice"), batch_post("Twice")])
    service.close()
    assert isinstance(first, StoredPost) and isinstance(again, StoredPost)
    assert (first.written, again.written, again.relpath) == (True, False, first.relpath)
    assert index_paths(tmp_path) == [first.relpath] and knows(tmp_path, "Twice")


def test_a_failed_index_append_fails_every_post_of_the_batch(tmp_path: Path) -> None:
    service = ArchiveService(tmp_path, HOUR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("crawler.archive.service.append_index_lines", fail_with(errno.ENOSPC))
        results = service.store_posts([batch_post("A"), batch_post("B")])
    service.close()
    assert all(isinstance(r, OSError) and r.errno == errno.ENOSPC for r in results)
    assert len(post_files(tmp_path)) == 2  # on disk, repaired by the next run that meets them
    assert not knows(tmp_path, "A") and not knows(tmp_path, "B")


def service_relpath_name(post: tuple[bytes, dict[str, Any]]) -> str:
    fields = post[1]
    return post_relpath(
        fields["index"]["title"], fields["published"], key_digest(fields["title_key"])
    ).rsplit("/", 1)[1]
