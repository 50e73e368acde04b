"""Post files written by the helper process: as in place, errors carried back with their
errno, a lost helper's batch failed (never reported written) and the helper started again.
A batch written with a group commit (one syncfs for the batch) as with one fsync a file."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import termios
import threading
import time
from pathlib import Path

import pytest

import crawler.archive.files as files
from crawler.archive.file_writer import FileWriterProcess
from crawler.archive.files import write_posts
from crawler.child import ChildLost


@pytest.fixture
def writer() -> FileWriterProcess:
    process = FileWriterProcess()
    yield process
    process.close()


GROUP_COMMIT = pytest.mark.parametrize("group_commit", [False, True], ids=["fsync", "syncfs"])


@GROUP_COMMIT
def test_the_helper_writes_as_in_place(
    tmp_path: Path, writer: FileWriterProcess, group_commit: bool
) -> None:
    posts = [(f"2021/07/{n}.md", f"post {n}".encode()) for n in range(40)]
    helper, here = tmp_path / "helper", tmp_path / "here"
    written = writer.write_posts(helper, posts, group_commit=group_commit)
    assert written == write_posts(here, posts) == [True] * 40
    assert writer.write_posts(helper, posts[:2], group_commit=group_commit) == [False, False]
    for relpath, data in posts:
        assert (helper / relpath).read_bytes() == (here / relpath).read_bytes() == data


@GROUP_COMMIT
def test_errors_come_back_with_their_errno(
    tmp_path: Path, writer: FileWriterProcess, group_commit: bool
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "2021").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "2022").write_text("a file where a folder should be")
    results = writer.write_posts(
        tmp_path,
        [("2021/07/a.md", b"a"), ("2022/07/b.md", b"b"), ("../out.md", b"c"), ("2023/c.md", b"")],
        group_commit=group_commit,
    )
    assert isinstance(results[0], OSError) and results[0].errno == errno.ELOOP
    assert isinstance(results[1], OSError) and results[1].errno == errno.ENOTDIR
    assert isinstance(results[2], ValueError)
    assert results[3] is True
    assert os.listdir(tmp_path / "elsewhere") == [] and not (tmp_path.parent / "out.md").exists()


def test_a_lost_helper_fails_its_batch_and_is_started_again(
    tmp_path: Path, writer: FileWriterProcess
) -> None:
    assert writer.write_posts(tmp_path, [("a.md", b"a")]) == [True]
    process = writer._child._process
    assert process is not None and process.stdin is not None
    os.kill(process.pid, signal.SIGSTOP)  # alive, reading nothing
    requests = process.stdin.fileno()

    def kill_once_the_batch_is_sent() -> None:
        # Killed in any case (a bound, and finally): if the helper read the batch before the
        # stop took effect, nothing stays in the pipe, and the test must not wait forever.
        deadline = time.monotonic() + 30
        try:
            while (
                time.monotonic() < deadline
                and not struct.unpack("i", fcntl.ioctl(requests, termios.FIONREAD, b"\0" * 4))[0]
            ):
                time.sleep(0.01)
        finally:
            os.kill(process.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_the_batch_is_sent)
    killer.start()
    lost = writer.write_posts(tmp_path, [("b.md", b"b"), ("c.md", b"c")])
    killer.join()
    assert [type(result) for result in lost] == [ChildLost, ChildLost]
    assert isinstance(lost[0], OSError)  # a write failure like any other (WriteFailed)
    assert writer.write_posts(tmp_path, [("b.md", b"b")]) == [True]
    assert writer._child._process is not None and writer._child._process.pid != process.pid


@GROUP_COMMIT
def test_a_batch_fails_each_post_alone(tmp_path: Path, group_commit: bool) -> None:
    (tmp_path / "2021" / "07" / "taken.md").mkdir(parents=True)  # a folder at a post's name
    posts = [(f"2021/0{7 + n % 2}/{n}.md", f"post {n}".encode()) for n in range(30)]
    posts[5] = ("2021/07/taken.md", b"x")
    posts.append(("2021/08/1.md", b"the same name again"))
    results = write_posts(tmp_path, posts, group_commit=group_commit)
    assert isinstance(results[5], OSError) and results[5].errno == errno.EISDIR
    assert results[-1] is False  # a repeat of the batch: the first copy is there
    assert results[:5] + results[6:-1] == [True] * 29
    for relpath, data in posts[:5] + posts[6:-1]:
        assert (tmp_path / relpath).read_bytes() == data
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


def test_a_forked_child_writes_with_threads_of_its_own(tmp_path: Path) -> None:
    assert write_posts(tmp_path / "parent", [("a.md", b"a"), ("b.md", b"b")]) == [True, True]
    pid = os.fork()
    if pid == 0:  # the parent's writing threads do not exist here
        ok = write_posts(tmp_path / "child", [("a.md", b"a"), ("b.md", b"b")]) == [True, True]
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if status[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert status[0] == pid and os.waitstatus_to_exitcode(status[1]) == 0, "child hung or failed"
    assert (tmp_path / "child" / "b.md").read_bytes() == b"b"


def test_an_archive_folder_that_cannot_be_resolved_fails_every_post(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    results = write_posts(tmp_path / "loop", [("a.md", b"a"), ("../b.md", b"b")])
    # An error naming the folder (mkdir's EEXIST here: the loop is not a folder), not a crash.
    assert isinstance(results[0], OSError) and "loop" in str(results[0])
    assert isinstance(results[1], ValueError)


class CountedFsyncs:
    """``os.fsync`` as it is, counted (the calls a batch makes are what group commit saves)."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = os.fsync

        def fsync(fd: int) -> None:
            self.calls += 1
            real(fd)

        patch.setattr(os, "fsync", fsync)


def test_a_group_commit_syncs_the_batch_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert files.can_sync_file_system()  # Linux 5.8 or later: this machine and CI's
    posts = [(f"2021/0{7 + n % 2}/{n}.md", f"post {n}".encode()) for n in range(20)]
    fsyncs = CountedFsyncs(monkeypatch)
    assert write_posts(tmp_path / "file", posts) == [True] * 20
    assert fsyncs.calls == 20 + 2  # each file, then each of the two folders
    fsyncs.calls = 0
    assert write_posts(tmp_path / "group", posts, group_commit=True) == [True] * 20
    assert fsyncs.calls == 2  # the folders only: the files were synced by one syncfs
    for relpath, data in posts:
        grouped = tmp_path / "group" / relpath
        assert grouped.read_bytes() == data
        assert grouped.stat().st_mode == (tmp_path / "file" / relpath).stat().st_mode
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


def test_a_failed_group_commit_links_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert write_posts(tmp_path, [("2021/07/old.md", b"old")]) == [True]

    def disk_error(fd: int) -> None:
        raise OSError(errno.EIO, "syncfs: Input/output error")

    monkeypatch.setattr(files, "sync_file_system", disk_error)
    posts = [("2021/07/old.md", b"new"), ("2021/07/a.md", b"a"), ("2021/08/b.md", b"b")]
    results = write_posts(tmp_path, posts, group_commit=True)
    assert results[0] is False  # on disk already: not part of the commit
    assert [getattr(result, "errno", None) for result in results[1:]] == [errno.EIO] * 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.md")) == [
        "2021/07/old.md"
    ]  # nothing linked before its bytes were known to be on disk
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left
    monkeypatch.undo()
    assert write_posts(tmp_path, posts, group_commit=True) == [False, True, True]  # next run


@pytest.mark.parametrize(("system", "release", "available"), [
    ("linux", "6.18.44-fc-v1300", True), ("linux", "5.8.0", True),
    ("linux", "5.4.0-150-generic", False), ("darwin", "23.1.0", False),
])  # fmt: skip
def test_group_commit_only_where_syncfs_reports_errors(
    system: str, release: str, available: bool
) -> None:
    assert (files.syncfs_of(system, release) is not None) is available


def test_without_syncfs_a_group_commit_fsyncs_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_syncfs", lambda: None)
    fsyncs = CountedFsyncs(monkeypatch)
    posts = [(f"2021/07/{n}.md", b"post") for n in range(5)]
    assert write_posts(tmp_path, posts, group_commit=True) == [True] * 5
    assert fsyncs.calls == 5 + 1


@GROUP_COMMIT
def test_a_failed_folder_fsync_fails_the_posts_linked_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_commit: bool
) -> None:
    """A link whose folder could not be made durable may vanish in a crash: its post is
    reported failed (written again next run), never written; the other folder's are fine."""
    assert write_posts(tmp_path, [("2021/07/old.md", b"old")]) == [True]
    failing = os.stat(tmp_path / "2021" / "07").st_ino
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_ino == failing:
            raise OSError(errno.EIO, "fsync: Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    posts = [("2021/07/old.md", b"new"), ("2021/07/a.md", b"a"), ("2021/08/b.md", b"b")]
    results = write_posts(tmp_path, posts, group_commit=group_commit)
    assert results[0] is False  # there already: not this batch's
    assert isinstance(results[1], OSError) and results[1].errno == errno.EIO
    assert results[2] is True


def test_the_writer_starts_when_the_crawl_opens(tmp_path: Path) -> None:
    from scrapy import signals
    from scrapy.utils.test import get_crawler

    from crawler.archive.service import ArchiveService

    settings = {"OUTPUT_DIR": str(tmp_path), "WRITE_PROCESS": True,
                "ITEM_PIPELINES": {"crawler.pipelines.write.WritePipeline": 300}}  # fmt: skip
    crawler = get_crawler(settings_dict=settings)
    service = ArchiveService.from_crawler(crawler)
    assert service.file_writer is not None
    service.file_writer.close()  # whatever an earlier test left running
    assert service.file_writer.pid is None
    crawler.signals.send_catch_log(signals.spider_opened, spider=None)
    assert service.file_writer.pid is not None  # before any batch
    os.kill(service.file_writer.pid, 0)
    service.close()


def test_starting_never_waits_for_a_call_in_progress(writer: FileWriterProcess) -> None:
    with writer._child._lock:  # as while another crawl's batch is being written
        writer.start()  # returns at once instead of waiting for that batch
        assert writer.pid is None
    writer.start()
    assert writer.pid is not None
