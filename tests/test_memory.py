"""The crawl's process and Python's garbage collector: a parsed page is freed when its last
reference goes (no Response-Selector cycle left for the collector), and the collector is
tuned once a crawl starts."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

import crawler.settings as project_settings
from crawler.memory import ReleaseParsedPages, TunedGarbageCollection

PAGE = b"<html><body><h1>Title</h1><p>" + "正文".encode() * 2000 + b"</p></body></html>"


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees anything while the test runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parsed_page() -> HtmlResponse:
    response = HtmlResponse("https://www.example.com/a.html", body=PAGE, encoding="utf-8",
                            request=Request("https://www.example.com/a.html"))  # fmt: skip
    assert response.css("h1::text").get() == "Title"  # the selector is made and cached
    return response


def test_a_parsed_page_alone_waits_for_the_collector(no_collector: None) -> None:
    response = parsed_page()
    page = weakref.ref(response)
    del response
    assert page() is not None  # Scrapy's response and its selector keep each other
    gc.collect()
    assert page() is None


def test_a_released_page_goes_with_its_last_reference(no_collector: None) -> None:
    response = parsed_page()
    outputs = [{"title": response.css("h1::text").get()}, Request("https://www.example.com/b")]
    passed = list(ReleaseParsedPages().process_spider_output(response, iter(outputs)))
    assert passed == outputs  # every output goes through, unchanged and in order
    page = weakref.ref(response)
    del response
    assert page() is None


async def test_an_async_callback_s_page_is_released_too(no_collector: None) -> None:
    response = parsed_page()

    async def callback(page: HtmlResponse) -> AsyncIterator[Any]:
        yield {"title": page.css("h1::text").get()}

    outputs = ReleaseParsedPages().process_spider_output_async(response, callback(response))
    assert [output async for output in outputs] == [{"title": "Title"}]
    del outputs
    page = weakref.ref(response)
    del response
    assert page() is None


def test_a_callback_that_fails_still_releases_its_page(no_collector: None) -> None:
    response = parsed_page()

    def callback(page: HtmlResponse) -> Iterator[Any]:
        yield page.css("h1::text").get()
        raise ValueError("a spider bug")

    with pytest.raises(ValueError, match="a spider bug"):
        list(ReleaseParsedPages().process_spider_output(response, callback(response)))
    page = weakref.ref(response)
    del response
    assert page() is None


def test_the_collector_is_tuned_once_a_crawl_starts() -> None:
    assert "crawler.memory.ReleaseParsedPages" in project_settings.SPIDER_MIDDLEWARES
    threshold = gc.get_threshold()
    was_frozen = TunedGarbageCollection.frozen
    try:
        TunedGarbageCollection.frozen = False
        crawler = get_crawler(settings_dict={"GC_GEN0_THRESHOLD": 12345})
        extension = TunedGarbageCollection.from_crawler(crawler)
        extension.engine_started()
        assert gc.get_threshold() == (12345, *threshold[1:])
        assert TunedGarbageCollection.frozen and gc.get_freeze_count() > 1000
        with pytest.raises(NotConfigured):
            TunedGarbageCollection.from_crawler(get_crawler(settings_dict={"GC_GEN0_THRESHOLD": 0}))
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
        TunedGarbageCollection.frozen = was_frozen


def test_the_stats_collector_counts_without_scrapy_s_access_hook() -> None:
    from scrapy.statscollectors import StatsCollector

    from crawler.stats import PlainStatsCollector

    assert project_settings.STATS_CLASS == "crawler.stats.PlainStatsCollector"
    assert StatsCollector.__getattribute__ is not object.__getattribute__  # Scrapy's hook
    crawler = get_crawler(settings_dict={"STATS_CLASS": project_settings.STATS_CLASS})
    stats = crawler.stats
    assert isinstance(stats, PlainStatsCollector)
    stats.open_spider()
    stats.inc_value("a")
    stats.inc_value("a", 2)
    stats.max_value("m", 3)
    stats.max_value("m", 1)
    stats.min_value("n", 3)
    stats.min_value("n", 1)
    stats.set_value("s", "x")
    assert stats.get_stats() == {"a": 3, "m": 3, "n": 1, "s": "x"}
    assert not hasattr(stats, "_cached_inc_value")  # nothing was wrapped
