"""Body-cleaning worker processes: same result as cleaning in place, errors carried back,
a killed worker's articles failed (not hung) and the worker replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.test import get_crawler
from support import FEEDS

from crawler.extract.feed import BadEntry, FeedEntry, read_feed
from crawler.items import Article
from crawler.pipelines.normalize import NormalizePipeline
from crawler.post.article import finish_article
from crawler.post.clean_worker import (
    CleanWorkerLost,
    CleanWorkers,
    shared_workers,
    stop_shared_workers,
)
from crawler.post.cleaning import clean_body
from crawler.settings import FALLBACK_IMAGE

BODY = '<div><p>正文 <img data-original="/a.jpg" src="grey.gif"></p><script>x()</script></div>'
BASE = "https://news.example/a/1.html"
FIELDS = {"title": "标题", "url": BASE, "published": datetime(2021, 7, 17, tzinfo=UTC)}


def job(body: object) -> tuple[object, ...]:
    """finish_article's arguments for an article with this body."""
    return (body, BASE, (), FIELDS, FALLBACK_IMAGE)


async def test_a_worker_cleans_as_in_place_and_carries_errors_back() -> None:
    async def run() -> tuple[object, BaseException]:
        workers = CleanWorkers(2)
        try:
            results = await asyncio.gather(
                *(workers.finish(*job(BODY + f"<p>{n}</p>")) for n in range(20))
            )
            with pytest.raises(TypeError) as raised:  # a body that is not text
                await workers.finish(*job(5))
            assert len(workers._workers) == 2
            return results, raised.value
        finally:
            workers.close()

    results, error = await deferred_from_coro(run())  # an asyncio task, as in a crawl
    assert results == [finish_article(*job(BODY + f"<p>{n}</p>")) for n in range(20)]
    assert "https://news.example/a.jpg" in results[0]["body"]  # type: ignore[index]
    assert isinstance(error, TypeError)


def feed_job(name: str, cap: int = 0) -> tuple[object, ...]:
    """read_feed's arguments for a fixture feed, as the feeds spider gives them."""
    headers = {"content-type": "application/rss+xml"}
    fetched_at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    url = f"https://feeds.example/{name}"
    return ((FEEDS / name).read_bytes(), headers, url, ZoneInfo("Asia/Shanghai"), fetched_at, cap)


async def test_a_feed_read_in_a_worker_is_the_feed_read_in_place() -> None:
    names = ["ithome-rss2.xml", "truncated.xml", "not-a-feed.html", "shared-links.xml"]

    async def run() -> list[object]:
        workers = CleanWorkers(1)
        try:
            read = [await workers.read_feed(None, *feed_job(name)) for name in names]
            return [*read, await workers.read_feed(None, *feed_job("ithome-rss2.xml", cap=2))]
        finally:
            workers.close()

    ithome, truncated, not_a_feed, shared, capped = await deferred_from_coro(run())
    # Entries, dates (and their zones), problems: as read here, after the trip back.
    assert [ithome, truncated, not_a_feed, shared] == [read_feed(*feed_job(n)) for n in names]
    assert ithome.is_feed and ithome.entry_count == len(ithome.entries) > 2
    assert all(isinstance(entry, FeedEntry | BadEntry | None) for entry in ithome.entries)
    assert truncated.bozo and truncated.broken_xml and truncated.entries
    assert not not_a_feed.is_feed and not_a_feed.problem
    # Capped: the first two entries mapped, the feed's size still known.
    assert capped.entries == ithome.entries[:2]
    assert capped.entry_count == ithome.entry_count


async def test_a_killed_worker_fails_its_articles_and_is_replaced() -> None:
    async def run() -> tuple[list[BaseException | object], object]:
        workers = CleanWorkers(1)
        try:
            await workers.finish(*job(BODY))
            (worker,) = workers._workers
            assert worker.transport is not None
            os.kill(worker.transport.get_pid(), signal.SIGSTOP)  # it answers nothing now
            held = [asyncio.ensure_future(workers.finish(*job(BODY))) for _ in range(5)]
            await asyncio.sleep(0.05)  # sent
            os.kill(worker.transport.get_pid(), signal.SIGKILL)
            outcomes = await asyncio.gather(*held, return_exceptions=True)
            after = await asyncio.wait_for(workers.finish(*job(BODY)), timeout=30)
            assert workers._workers[0] is not worker
            return outcomes, after
        finally:
            workers.close()

    outcomes, after = await deferred_from_coro(run())  # an asyncio task, as in a crawl
    assert all(isinstance(outcome, CleanWorkerLost) for outcome in outcomes), outcomes
    assert after == finish_article(*job(BODY))


async def test_the_pipeline_cleans_a_lost_workers_article_in_place_and_counts_it() -> None:
    crawler = get_crawler(settings_dict={"FALLBACK_IMAGE": FALLBACK_IMAGE, "CLEAN_PROCESSES": 1})
    crawler.stats.open_spider()
    pipeline = NormalizePipeline.from_crawler(crawler)
    item = Article(
        title="标题", url=BASE, body=BODY, source="test",
        published=datetime(2021, 7, 17, tzinfo=UTC),
    )  # fmt: skip

    async def run() -> Article:
        try:
            await pipeline.process_item(Article(item))  # the worker is up
            assert pipeline._workers is not None
            (worker,) = pipeline._workers._workers
            assert worker.transport is not None
            os.kill(worker.transport.get_pid(), signal.SIGSTOP)  # it answers nothing now
            pending = asyncio.ensure_future(pipeline.process_item(Article(item)))
            await asyncio.sleep(0.05)
            os.kill(worker.transport.get_pid(), signal.SIGKILL)
            return await pending
        finally:
            await pipeline.close_spider()

    done = await deferred_from_coro(run())  # an asyncio task, as in a crawl
    assert done["body"] == clean_body(BODY, BASE).html
    assert crawler.stats.get_value("normalize/clean_worker_lost") == 1
    assert crawler.stats.get_value("normalize/ok") == 2


async def test_the_crawls_of_one_process_share_their_workers() -> None:
    async def pids() -> list[int]:
        settings = {"FALLBACK_IMAGE": FALLBACK_IMAGE, "CLEAN_PROCESSES": 1}
        crawler = get_crawler(settings_dict=settings)
        crawler.stats.open_spider()
        pipeline = NormalizePipeline.from_crawler(crawler)
        item = Article(
            title="标题", url=BASE, body=BODY, source="test", published=FIELDS["published"]
        )
        await pipeline.process_item(item)
        assert pipeline._workers is not None
        running = [worker.transport.get_pid() for worker in pipeline._workers._workers]
        await pipeline.close_spider()  # the worker stays for the next crawl
        assert shared_workers(1) is not shared_workers(2)
        return running

    first = await deferred_from_coro(pids())
    second = await deferred_from_coro(pids())
    assert first == second and len(first) == 1


async def test_a_loops_shared_workers_stop_and_are_waited_for() -> None:
    """For a program that closes its loop after the pipelines (the benchmark): the workers
    have exited when stop_shared_workers returns, and the next use starts new ones."""

    async def run() -> tuple[list[int | None], bool]:
        workers = shared_workers(1)
        await workers.finish(*job(BODY))
        started = list(workers._workers)
        await stop_shared_workers()
        codes = [worker.transport.get_returncode() for worker in started]  # type: ignore[union-attr]
        return codes, shared_workers(1) is not workers

    codes, renewed = await deferred_from_coro(run())
    assert len(codes) == 1 and codes[0] is not None  # exited, not merely told to
    assert renewed


def test_no_worker_outlives_the_process_that_started_it() -> None:
    script = (
        "import asyncio\n"
        "from datetime import UTC, datetime\n"
        "from crawler.post.clean_worker import shared_workers\n"
        "fields = {'title': 't', 'url': 'https://e.com/', 'published': datetime(2021, 7, 17, "
        "tzinfo=UTC)}\n"
        "async def main():\n"
        "    workers = shared_workers(1)\n"
        "    await workers.finish('<p>x</p>', 'https://e.com/', (), fields, 'f')\n"
        "    print(workers._workers[0].transport.get_pid(), flush=True)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped before the process ended


async def test_the_workers_start_when_the_crawl_opens_not_at_its_first_article() -> None:
    async def run() -> None:
        await stop_shared_workers()  # none left by an earlier test on this loop
        crawler = get_crawler(
            settings_dict={"FALLBACK_IMAGE": FALLBACK_IMAGE, "CLEAN_PROCESSES": 1}
        )
        pipeline = NormalizePipeline.from_crawler(crawler)
        pipeline.open_spider()
        await pipeline.close_spider()  # a crawl that got no article: its start waited for
        (pid,) = shared_workers(1).running_pids()  # started, without any article
        os.kill(pid, 0)  # and running

    await deferred_from_coro(run())
