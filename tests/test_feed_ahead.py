"""Feed articles finished as their feed is read (in a worker), and how normalize takes them:
directly on fixture bytes, no crawl."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from scrapy.utils.test import get_crawler
from support import FEEDS

from crawler.extract.feed import FeedEntry, entry_fields
from crawler.items import Article
from crawler.pipelines.normalize import NormalizePipeline, finishing_for
from crawler.post.article import MAX_BODY_LENGTH, FinishedAhead, Finishing, finish_ahead
from crawler.post.feed_ahead import FinishAhead, read_and_finish
from crawler.settings import FALLBACK_IMAGE, ITEM_PIPELINES

FETCHED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SOURCE = {"categories": ["科技", "IT之家", "最新"], "author": "IT之家", "source": "ithome",
          "fallback_image": None}  # fmt: skip
FINISHING = Finishing(300, FALLBACK_IMAGE, False)


def read(ahead: FinishAhead | None) -> tuple[list[object], list[object]]:
    found = read_and_finish(
        ahead, (FEEDS / "ithome-rss2.xml").read_bytes(), {"content-type": "application/rss+xml"},
        "https://www.ithome.com/rss/", ZoneInfo("Asia/Shanghai"), FETCHED, 0,
    )  # fmt: skip
    return found.entries, found.finished


@pytest.fixture
def pipeline() -> NormalizePipeline:
    crawler = get_crawler(settings_dict={"FALLBACK_IMAGE": FALLBACK_IMAGE})
    crawler.stats.open_spider()
    return NormalizePipeline.from_crawler(crawler)


def test_each_entry_is_finished_except_those_the_spider_drops_or_skips() -> None:
    entries, finished = read(FinishAhead(FINISHING, SOURCE))
    assert len(finished) == len(entries)
    for entry, ahead in zip(entries, finished, strict=True):
        # The entry without a title is dropped by normalize, with its reason: not here.
        assert (ahead is None) == (entry is None)
    # Entries older than the spider keeps (MAX_AGE_DAYS) are not finished: only the one
    # from the future (it takes the fetch time) is.
    entries, finished = read(FinishAhead(FINISHING, SOURCE, FETCHED - timedelta(days=30)))
    kept = [entry for entry, ahead in zip(entries, finished, strict=True) if ahead is not None]
    assert [entry.title for entry in kept if isinstance(entry, FeedEntry)] == ["来自未来的文章"]


def test_without_ahead_the_feed_is_only_read() -> None:
    entries, finished = read(None)
    assert entries and finished == []


def test_normalize_takes_the_values_finished_ahead(pipeline: NormalizePipeline) -> None:
    entries, finished = read(FinishAhead(FINISHING, SOURCE))
    entry, ahead = next((e, a) for e, a in zip(entries, finished, strict=True) if a is not None)
    assert isinstance(entry, FeedEntry) and isinstance(ahead, FinishedAhead)
    expected = pipeline.normalize(Article(**entry_fields(entry, SOURCE)))
    assert pipeline.stats.get_value("normalize/finished_ahead") is None
    item = Article(**entry_fields(entry, SOURCE), finished_ahead=ahead)
    assert dict(pipeline.normalize(item)) == dict(expected)
    assert pipeline.stats.get_value("normalize/finished_ahead") == 1
    assert "finished_ahead" not in item  # never passed on to the next pipelines
    # Taken, not finished again: a marked value shows which.
    marked = dataclasses.replace(ahead, values={**ahead.values, "body": "<p>ahead</p>"})
    item = Article(**entry_fields(entry, SOURCE), finished_ahead=marked)
    assert pipeline.normalize(item)["body"] == "<p>ahead</p>"


def test_an_article_changed_since_it_was_finished_is_finished_again(
    pipeline: NormalizePipeline,
) -> None:
    fields = {**entry_fields(_first_entry(), SOURCE), "body": "<p>feed text</p>"}
    ahead = finish_ahead(fields, FINISHING)
    assert ahead is not None
    # Its full text replaced the feed's text after it was finished.
    item = Article(**{**fields, "body": "<p>full text</p>"}, finished_ahead=ahead)
    assert pipeline.normalize(item)["body"] == "<p>full text</p>"
    assert pipeline.stats.get_value("normalize/finished_ahead_stale") == 1
    assert pipeline.stats.get_value("normalize/finished_ahead") is None


def test_an_article_normalize_drops_is_not_finished_ahead() -> None:
    fields = entry_fields(_first_entry(), SOURCE)
    assert finish_ahead({**fields, "title": "  "}, FINISHING) is None
    assert finish_ahead({**fields, "published": datetime(2021, 7, 17)}, FINISHING) is None


def test_finishing_is_the_normalize_pipelines_or_none_without_it() -> None:
    settings = get_crawler(
        settings_dict={"ITEM_PIPELINES": ITEM_PIPELINES, "MAX_TITLE_LENGTH": 80}
    ).settings
    assert finishing_for(settings) == Finishing(80, "", True)
    without = get_crawler(settings_dict={"ITEM_PIPELINES": {}}).settings
    assert finishing_for(without) is None


def _first_entry() -> FeedEntry:
    entries, _ = read(None)
    return next(entry for entry in entries if isinstance(entry, FeedEntry))


def test_a_body_cut_and_a_title_shortened_ahead_are_still_counted(
    pipeline: NormalizePipeline,
) -> None:
    fields = {
        **entry_fields(_first_entry(), SOURCE),
        "title": "长" * 400,
        "body": "<p>" + "字" * (MAX_BODY_LENGTH + 1000) + "</p>",
    }
    ahead = finish_ahead(fields, FINISHING)
    assert ahead is not None
    assert ahead.checked.body_truncated and ahead.checked.title_truncated
    item = pipeline.normalize(Article(**fields, finished_ahead=ahead))
    assert pipeline.stats.get_value("normalize/finished_ahead") == 1
    assert pipeline.stats.get_value("normalize/body_truncated") == 1
    assert pipeline.stats.get_value("normalize/title_truncated") == 1
    assert len(item["title"]) == 300 and item["title"].endswith("…")
