"""What the dedup and write pipelines share: the crawl's stats and the archive's state."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

from crawler.archive import ArchiveState


class ArchivePipeline:
    """A pipeline with its own connection to ``OUTPUT_DIR/.state.sqlite3`` while the spider runs."""

    def __init__(self, stats: StatsCollector, output_dir: Path) -> None:
        self.stats = stats
        self.output_dir = output_dir
        self.state: ArchiveState | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        assert crawler.stats is not None
        return cls(crawler.stats, Path(crawler.settings["OUTPUT_DIR"]))

    def open_spider(self) -> None:
        self.state = ArchiveState(self.output_dir)

    def close_spider(self) -> None:
        if self.state is not None:
            self.state.close()
