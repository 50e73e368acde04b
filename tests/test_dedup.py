"""The dedup pipeline's memory of this run: the keys of the items still in flight, no more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scrapy.statscollectors import MemoryStatsCollector
from scrapy.utils.test import get_crawler

from crawler.archive.service import ArchiveService
from crawler.items import Article
from crawler.pipelines.dedup import DedupPipeline, DuplicateItem
from crawler.post.keys import story_keys

PUBLISHED = datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)


def article(title: str, url: str) -> Article:
    title_key, url_key = story_keys(title, PUBLISHED, url, has_own_url=True)
    return Article(title=title, url=url, title_key=title_key, url_key=url_key)


def pipeline(tmp_path: Path, *, read_only: bool = False) -> DedupPipeline:
    stats = MemoryStatsCollector(get_crawler())
    archive = ArchiveService(tmp_path, timedelta(hours=1), read_only=read_only)
    return DedupPipeline(stats, archive)


def test_a_copy_of_a_story_in_flight_is_an_in_run_duplicate(tmp_path: Path) -> None:
    dedup = pipeline(tmp_path)
    first = dedup.process_item(article("Steam Deck", "https://e.com/a"))
    with pytest.raises(DuplicateItem, match="in_run"):
        dedup.process_item(article("Steam Deck", "https://e.com/b"))  # same title and day
    with pytest.raises(DuplicateItem, match="in_run"):
        dedup.process_item(article("Other title", "https://e.com/a"))  # same URL
    # The dropped copies' signals leave the first copy's keys alone.
    dedup.item_not_written(article("Steam Deck", "https://e.com/b"))
    assert len(dedup.in_flight) == 1 and len(dedup.passed) == 2
    assert dedup.in_flight[id(first)][0] is first


def test_a_written_item_leaves_its_keys_to_the_archive(tmp_path: Path) -> None:
    dedup = pipeline(tmp_path)
    first = dedup.process_item(article("Steam Deck", "https://e.com/a"))
    dedup.item_written(first)
    assert dedup.in_flight == {} and dedup.passed == set()  # memory does not grow with the run


def test_a_story_whose_write_failed_can_come_again(tmp_path: Path) -> None:
    dedup = pipeline(tmp_path)
    first = dedup.process_item(article("Steam Deck", "https://e.com/a"))
    dedup.item_not_written(first)  # dropped or failed after dedup: never archived
    again = article("Steam Deck", "https://e.com/a")
    assert dedup.process_item(again) is again


def test_a_dry_run_keeps_what_it_let_through(tmp_path: Path) -> None:
    dedup = pipeline(tmp_path, read_only=True)
    first = dedup.process_item(article("Steam Deck", "https://e.com/a"))
    dedup.item_written(first)  # "scraped", but nothing was written: the archive knows nothing
    with pytest.raises(DuplicateItem, match="in_run"):
        dedup.process_item(article("Steam Deck", "https://e.com/b"))
