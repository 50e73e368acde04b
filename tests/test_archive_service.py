"""The archive service: the one owner of an archive's state, post files and index."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_twisted

from crawler.archive.service import ArchiveService
from crawler.archive.state import KEY_VERSION, STATE_FILE
from crawler.post.format import http_date
from crawler.post.keys import story_keys

PUBLISHED = datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
URL = "https://www.theverge.com/2021/7/15/steam-deck#comments"


def store(service: ArchiveService, title: str, url: str) -> str:
    title_key, url_key = story_keys(title, PUBLISHED, url, has_own_url=True)
    index = {"title": title, "date": http_date(PUBLISHED), "url": url, "source": "verge",
             "categories": ["Tech"]}  # fmt: skip
    stored = service.store_post(
        b"\n---\ntitle: 'x'\ndate: Sat, 17 Jul 2021 14:35:32 GMT\n---\n",
        published=PUBLISHED, title_key=title_key, url_key=url_key, index=index,
    )  # fmt: skip
    assert stored.written
    return stored.relpath


def test_a_post_is_written_keyed_and_indexed_once(tmp_path: Path) -> None:
    service = ArchiveService(tmp_path, timedelta(hours=1))
    relpath = store(service, "Valve announces the Steam Deck", URL)
    assert (tmp_path / relpath).is_file()
    assert service.is_archived("Valve announces the Steam Deck", PUBLISHED, None)
    # The spider-side question uses the same keys: same story under another URL spelling.
    assert service.is_archived(None, None, "HTTPS://www.theverge.com:443/2021/7/15/steam-deck")
    assert not service.is_archived("Another story", PUBLISHED, "https://e.com/other")
    lines = (tmp_path / ".index.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["path"] for line in lines] == [relpath]
    service.close()


def test_failed_pages_wait_and_a_good_page_clears_them(tmp_path: Path) -> None:
    service = ArchiveService(tmp_path, timedelta(hours=1))
    assert not service.state.has_failures()
    service.page_succeeded("https://e.com/b")  # never failed: nothing to forget
    service.page_failed("https://e.com/a#top", "http_500")
    assert service.in_failure_backoff("https://e.com/a")
    service.page_succeeded("https://e.com/b")
    assert service.state.has_failures() and service.in_failure_backoff("https://e.com/a")
    service.page_succeeded("https://e.com/a")
    assert not service.in_failure_backoff("https://e.com/a")
    assert not service.state.has_failures()
    service.close()
    # Remembered across runs: the next crawl's first good page clears it.
    service = ArchiveService(tmp_path, timedelta(hours=1))
    service.page_failed("https://e.com/c", "http_500")
    service.close()
    service = ArchiveService(tmp_path, timedelta(hours=1))
    assert service.state.has_failures()
    service.page_succeeded("https://e.com/c")
    assert not service.in_failure_backoff("https://e.com/c")
    service.close()


def test_an_archive_keyed_by_older_rules_is_rekeyed_when_opened(tmp_path: Path) -> None:
    service = ArchiveService(tmp_path, timedelta(hours=1))
    relpath = store(service, "Valve announces the Steam Deck", URL)
    service.close()
    # Make it look like an archive of key version 1: the URL key kept the fragment.
    with sqlite3.connect(tmp_path / STATE_FILE) as db:
        db.execute("DELETE FROM story_keys WHERE kind = 'url'")
        db.execute(
            "INSERT INTO story_keys VALUES ('url', ?, ?, '2021-07-17T00:00:00+00:00')",
            ("https://www.theverge.com/2021/7/15/steam-deck#comments", relpath),
        )
        db.execute("DELETE FROM meta")
    reopened = ArchiveService(tmp_path, timedelta(hours=1))
    assert reopened.state.key_version() == KEY_VERSION
    assert reopened.is_archived(None, None, "https://www.theverge.com/2021/7/15/steam-deck")
    reopened.close()


@pytest_twisted.ensureDeferred
async def test_posts_stored_on_the_writer_thread_while_the_crawl_thread_records(
    tmp_path: Path,
) -> None:
    """The writer thread's key transactions and the crawl thread's own state writes share
    one connection: each is whole, none lost, and the crawl thread never ran a store."""
    import asyncio
    import threading

    from scrapy.utils.defer import deferred_from_coro

    service = ArchiveService(tmp_path, timedelta(hours=1))
    data = b"\n---\ntitle: 'x'\ndate: Sat, 17 Jul 2021 14:35:32 GMT\n---\n"
    writers: set[str] = set()
    real_store = service.store_posts

    def recording_store(*args: object, **kwargs: object) -> object:
        writers.add(threading.current_thread().name)
        return real_store(*args, **kwargs)  # type: ignore[arg-type]

    service.store_posts = recording_store  # type: ignore[method-assign]

    async def crawl() -> list[str]:
        stores = []
        for n in range(200):
            title = f"Story {n}"
            title_key, url_key = story_keys(
                title, PUBLISHED, f"https://e.com/story/{n}", has_own_url=True
            )
            index = {"title": title, "date": http_date(PUBLISHED), "url": f"https://e.com/story/{n}",
                     "source": "verge", "categories": []}  # fmt: skip
            stores.append(service.store_post_in_writer(
                data, published=PUBLISHED, title_key=title_key, url_key=url_key, index=index
            ))  # fmt: skip
            service.page_failed(f"https://e.com/broken/{n}", "http_404")  # meanwhile
        return [stored.relpath for stored in await asyncio.gather(*stores)]

    relpaths = await deferred_from_coro(crawl())  # an asyncio task, as in a crawl
    service.close()
    assert writers and all(name.startswith("archive-writer") for name in writers)
    assert len(set(relpaths)) == 200 and all((tmp_path / p).is_file() for p in relpaths)
    db = sqlite3.connect(tmp_path / STATE_FILE)
    assert db.execute("SELECT COUNT(*) FROM story_keys").fetchone()[0] == 400
    assert db.execute("SELECT COUNT(*) FROM fetch_failures").fetchone()[0] == 200
    lines = (tmp_path / ".index.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(relpaths)


@pytest_twisted.ensureDeferred
async def test_posts_handed_over_within_the_batch_delay_are_stored_as_one_batch(
    tmp_path: Path,
) -> None:
    import asyncio

    from scrapy.utils.defer import deferred_from_coro

    service = ArchiveService(tmp_path, timedelta(hours=1))
    service.batch_delay = 0.05
    batches: list[int] = []
    real_store = service.store_posts

    def recording_store(posts: list) -> list:  # type: ignore[type-arg]
        batches.append(len(posts))
        return real_store(posts)

    service.store_posts = recording_store  # type: ignore[method-assign]
    data = b"\n---\ntitle: 'x'\ndate: Sat, 17 Jul 2021 14:35:32 GMT\n---\n"

    async def crawl() -> list[bool]:
        stores = []
        for n in range(20):
            title = f"Story {n}"
            title_key, url_key = story_keys(title, PUBLISHED, f"https://e.com/{n}", True)
            index = {"title": title, "date": http_date(PUBLISHED), "url": f"https://e.com/{n}",
                     "source": "e", "categories": []}  # fmt: skip
            stores.append(service.store_post_in_writer(
                data, published=PUBLISHED, title_key=title_key, url_key=url_key, index=index
            ))  # fmt: skip
        return [stored.written for stored in await asyncio.gather(*stores)]

    written = await deferred_from_coro(crawl())
    service.close()
    assert written == [True] * 20
    assert batches == [20]  # handed over at once, well within the delay: one batch


def test_a_post_stored_after_its_loop_closed_is_kept_and_the_lost_result_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer hands a batch's results to the waiting loop in one call; a loop that is
    gone by then (a crawl torn down while a store ran) costs a logged error, not the post
    and not the writer thread."""
    import asyncio
    import threading

    service = ArchiveService(tmp_path, timedelta(hours=1))
    gate = threading.Event()
    real_store = service.store_posts

    def held_store(posts: list) -> list:  # type: ignore[type-arg]
        assert gate.wait(10), "the test never opened the gate"
        return real_store(posts)

    service.store_posts = held_store  # type: ignore[method-assign]
    title = "Story kept"
    title_key, url_key = story_keys(title, PUBLISHED, URL, has_own_url=True)
    index = {"title": title, "date": http_date(PUBLISHED), "url": URL, "source": "verge",
             "categories": []}  # fmt: skip

    def crawl_torn_down() -> None:  # its own thread: the test's reactor runs a loop here
        loop = asyncio.new_event_loop()
        task = loop.create_task(service.store_post_in_writer(
            b"\n---\ntitle: 'x'\ndate: Sat, 17 Jul 2021 14:35:32 GMT\n---\n",
            published=PUBLISHED, title_key=title_key, url_key=url_key, index=index,
        ))  # fmt: skip
        loop.run_until_complete(asyncio.sleep(0))  # handed to the writer, which is held
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()

    crawl = threading.Thread(target=crawl_torn_down)
    crawl.start()
    crawl.join()
    with caplog.at_level(logging.ERROR, logger="crawler.archive.service"):
        gate.set()
        service.close()  # waits for the writer
    assert [p.name for p in tmp_path.glob("*/*/*.md")] != []
    assert "1 post(s) stored but their crawl's event loop is closed" in caplog.text
    db = sqlite3.connect(tmp_path / STATE_FILE)
    assert db.execute("SELECT COUNT(*) FROM story_keys").fetchone()[0] == 2
