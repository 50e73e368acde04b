"""The archive on disk: names, atomic writes that never replace, the state file."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.archive.files import post_relpath, resolve_inside, slugify, write_atomically
from crawler.archive.state import STATE_FILE, ArchiveState

MOMENT = datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
WINDOWS_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def test_slug_keeps_letters_and_digits_of_any_script() -> None:
    assert (
        slugify('阿里腾讯已悄然"握手" 下一个开放的会是支付吗？', 200)
        == "阿里腾讯已悄然-握手-下一个开放的会是支付吗"
    )
    assert slugify("Linux 5.14-rc2: AMD / Intel", 200) == "Linux-5-14-rc2-AMD-Intel"
    assert slugify("Привет, мир! हिन्दी", 200) == "Привет-мир-हिन्दी"
    assert slugify("../../etc/passwd", 200) == "etc-passwd"
    assert slugify("?!…", 200) == ""


def test_post_path_layout_and_name_length() -> None:
    relpath = post_relpath('阿里腾讯已悄然"握手"', MOMENT, "0123abcd")
    assert relpath == "2021/07/2021-07-17-阿里腾讯已悄然-握手-0123abcd.md"
    long_name = post_relpath("很长的标题" * 100, MOMENT, "0123abcd").split("/")[-1]
    assert len(long_name.encode("utf-8")) <= 120
    assert long_name.startswith("2021-07-17-很长的标题") and long_name.endswith("-0123abcd.md")
    assert post_relpath("???", MOMENT, "0123abcd") == "2021/07/2021-07-17-0123abcd.md"


@pytest.mark.parametrize("title", ["CON", 'a<b>c:"d"/e\\f|g?h*i', "trailing dot.", " ", "\x01x"])
def test_names_are_valid_on_every_system(title: str) -> None:
    name = post_relpath(title, MOMENT, "0123abcd").split("/")[-1]
    assert not WINDOWS_FORBIDDEN.search(name)
    assert not name.endswith((".", " ")) and not name.startswith(".")


def test_resolve_inside_refuses_to_leave_the_archive(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "2021/07/x.md") == tmp_path.resolve() / "2021/07/x.md"
    for bad in ("../x.md", "/etc/passwd", "2021/../../x.md"):
        with pytest.raises(ValueError):
            resolve_inside(tmp_path, bad)


def test_atomic_write_never_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "2021" / "07" / "post.md"
    assert write_atomically(target, b"first") is True
    assert write_atomically(target, b"second") is False
    assert target.read_bytes() == b"first"
    assert sorted(os.listdir(target.parent)) == ["post.md"]


def test_state_remembers_keys_across_connections(tmp_path: Path) -> None:
    state = ArchiveState(tmp_path)
    assert state.knows(title_key="2021-07-17 t", url_key="https://e.com/a") is None
    state.remember("2021/07/x.md", "2021-07-17 t", "https://e.com/a")
    state.remember("2021/07/y.md", "2021-07-18 u", None)
    state.close()
    again = ArchiveState(tmp_path)
    assert again.knows(title_key="2021-07-17 t") == "title"
    assert again.knows(title_key="other", url_key="https://e.com/a") == "url"
    assert again.knows(title_key="2021-07-18 u", url_key="https://e.com/b") == "title"
    assert again.knows(title_key="nope", url_key="https://e.com/b") is None
    again.close()
    assert (tmp_path / STATE_FILE).is_file()


def test_failed_pages_wait_longer_after_each_failure(tmp_path: Path) -> None:
    from datetime import timedelta

    state = ArchiveState(tmp_path)
    hour = timedelta(hours=1)
    url = "https://www.cnbeta.com.tw/articles/tech/1.htm"
    assert not state.in_failure_backoff(url, hour, now=MOMENT)
    state.record_failure(url, "http_404", now=MOMENT)
    assert state.in_failure_backoff(url, hour, now=MOMENT + timedelta(minutes=59))
    assert not state.in_failure_backoff(url, hour, now=MOMENT + timedelta(minutes=61))
    state.record_failure(url, "http_404", now=MOMENT)
    assert state.in_failure_backoff(url, hour, now=MOMENT + timedelta(minutes=119))
    assert not state.in_failure_backoff(url, hour, now=MOMENT + timedelta(minutes=121))
    for _ in range(30):
        state.record_failure(url, "http_404", now=MOMENT)
    assert not state.in_failure_backoff(url, hour, now=MOMENT + timedelta(days=7, minutes=1))
    state.forget_failure(url)
    assert not state.in_failure_backoff(url, hour, now=MOMENT)
    state.close()


def test_a_page_that_never_failed_does_not_wait_for_the_writer_threads_transaction(
    tmp_path: Path,
) -> None:
    """Every article page is forgotten as a failure: the crawl's thread must not queue behind
    the writer thread, which holds the state's lock through a batch's transaction."""
    state = ArchiveState(tmp_path)
    state.record_failure("url-a", "http_404", now=MOMENT)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with state._lock:  # a batch's transaction, as the writer thread runs it
            holding.set()
            release.wait()

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait()
    try:
        forgetting = threading.Thread(target=state.forget_failure, args=("url-b",))
        forgetting.start()
        forgetting.join(timeout=30)
        assert not forgetting.is_alive()  # returned while the lock is held
        # A failure there is to forget waits for the lock, then is gone from the file.
        deleting = threading.Thread(target=state.forget_failure, args=("url-a",))
        deleting.start()
        assert deleting.is_alive()
    finally:
        release.set()
        thread.join()
    deleting.join()
    state.close()
    with closing(sqlite3.connect(tmp_path / STATE_FILE)) as db:
        assert db.execute("SELECT url_key FROM fetch_failures").fetchall() == []


def test_failures_are_known_to_the_next_run_and_forgotten_on_disk(tmp_path: Path) -> None:
    """The failed pages are read once per run: a failure recorded by an earlier run still
    holds the page back, and one forgotten is gone from the file, not only from memory."""
    from datetime import timedelta

    hour = timedelta(hours=1)
    first = ArchiveState(tmp_path)
    first.record_failure("url-a", "http_404", now=MOMENT)
    first.record_failure("url-b", "http_503", now=MOMENT)
    first.close()
    second = ArchiveState(tmp_path)
    assert second.in_failure_backoff("url-a", hour, now=MOMENT + timedelta(minutes=30))
    assert not second.in_failure_backoff("url-c", hour, now=MOMENT)
    second.forget_failure("url-a")
    second.forget_failure("url-c")  # never failed: nothing to do
    assert not second.in_failure_backoff("url-a", hour, now=MOMENT)
    second.close()
    with closing(sqlite3.connect(tmp_path / STATE_FILE)) as db:
        assert db.execute("SELECT url_key FROM fetch_failures").fetchall() == [("url-b",)]


def test_lookups_never_wait_for_the_writers_transaction(tmp_path: Path) -> None:
    """The crawl thread's knows/in_failure_backoff read what is committed on a connection of
    their own, while the writer thread holds a transaction open (the reactor never waits)."""
    import threading
    from datetime import timedelta

    state = ArchiveState(tmp_path)
    state.remember("2021/07/a.md", "title-a", "url-a")
    state.record_failure("url-broken", "http_404")
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with state._lock, state._transaction():  # as remember_many holds them
            state._db.execute(
                "INSERT INTO story_keys (kind, key, path, archived_at) VALUES (?, ?, ?, ?)",
                ("title", "title-b", "2021/07/b.md", "2021-07-17T00:00:00+00:00"),
            )
            inside.set()
            release.wait(timeout=60)

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(timeout=60)
    seen: list[object] = []

    def crawl_thread() -> None:
        seen.extend((
            state.knows(title_key="title-a"),
            state.knows(title_key="title-b"),  # not committed yet
            state.in_failure_backoff("url-broken", timedelta(hours=1)),
        ))  # fmt: skip

    lookups = threading.Thread(target=crawl_thread)
    lookups.start()
    try:
        lookups.join(timeout=30)  # microseconds unless they wait for the writer
        answered_while_writing = not lookups.is_alive()
    finally:
        release.set()
        thread.join()
        lookups.join()
    assert answered_while_writing
    assert seen == ["title", None, True]
    assert state.knows(title_key="title-b") == "title"  # committed now
    state.close()
