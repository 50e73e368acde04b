"""Post files written by the helper process: as in place, errors carried back with their
errno, a lost helper's batch failed (never reported written) and the helper started again."""

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

from crawler.archive.file_writer import FileWriterProcess
from crawler.archive.files import write_posts
from crawler.child import ChildLost


@pytest.fixture
def writer() -> FileWriterProcess:
    process = FileWriterProcess()
    yield process
    process.close()


def test_the_helper_writes_as_in_place(tmp_path: Path, writer: FileWriterProcess) -> None:
    posts = [(f"2021/07/{n}.md", f"post {n}".encode()) for n in range(40)]
    helper, here = tmp_path / "helper", tmp_path / "here"
    assert writer.write_posts(helper, posts) == write_posts(here, posts) == [True] * 40
    assert writer.write_posts(helper, posts[:2]) == [False, False]  # never replaced
    for relpath, data in posts:
        assert (helper / relpath).read_bytes() == (here / relpath).read_bytes() == data


def test_errors_come_back_with_their_errno(tmp_path: Path, writer: FileWriterProcess) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "2021").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "2022").write_text("a file where a folder should be")
    results = writer.write_posts(
        tmp_path,
        [("2021/07/a.md", b"a"), ("2022/07/b.md", b"b"), ("../out.md", b"c"), ("2023/c.md", b"")],
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
        while struct.unpack("i", fcntl.ioctl(requests, termios.FIONREAD, b"\0" * 4))[0] == 0:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_the_batch_is_sent)
    killer.start()
    lost = writer.write_posts(tmp_path, [("b.md", b"b"), ("c.md", b"c")])
    killer.join()
    assert [type(result) for result in lost] == [ChildLost, ChildLost]
    assert isinstance(lost[0], OSError)  # a write failure like any other (WriteFailed)
    assert writer.write_posts(tmp_path, [("b.md", b"b")]) == [True]
    assert writer._child._process is not None and writer._child._process.pid != process.pid
