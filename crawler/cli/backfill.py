"""``images --backfill``: the images of posts already in the archive downloaded, and those
posts rewritten in place.

A small crawl: :class:`BackfillSpider` reads every post (``YYYY/MM/*.md``, no symlink
followed) and yields it as a :class:`PostImages` item; the same
:class:`~crawler.pipelines.images.ArchiveImagesPipeline` a harvest uses downloads its images
and points its body and lead image at the local copies; :class:`RewritePostPipeline` then
replaces the post file atomically and appends its index line with the new sha256 (the last
line of a path wins; the index is compacted to one line per post when the crawl ends). Run
under the archive's lock. Idempotent: a post whose images are all local asks for nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import scrapy
from scrapy.crawler import Crawler
from scrapy.http import Response

from crawler.archive.files import post_entries, read_post
from crawler.archive.images import replace_post
from crawler.archive.index import append_index, read_index, rewrite_index
from crawler.post.images import NotAPost, join_post, lead_images, rewrite_lead_images, split_post

logger = logging.getLogger(__name__)

# The backfill crawl's own pipelines; the harvest's extensions (the archive service, source
# stats, drift, progress) have nothing to watch here.
PIPELINES = {
    "crawler.pipelines.images.ArchiveImagesPipeline": 100,
    "crawler.cli.backfill.RewritePostPipeline": 200,
}
EXTENSIONS_OFF = {
    "crawler.archive.service.ArchiveService": None,
    "crawler.extensions.SourceStats": None,
    "crawler.extensions.DriftMonitor": None,
    "crawler.cli.progress.ProgressDisplay": None,
}


def backfill_settings(output_dir: Path, *, dry_run: bool = False) -> dict[str, Any]:
    """The settings a backfill crawl of ``output_dir`` overrides."""
    return {
        "OUTPUT_DIR": str(output_dir),
        "ARCHIVE_IMAGES": True,
        "DRY_RUN": dry_run,
        "ITEM_PIPELINES": PIPELINES,
        "EXTENSIONS": EXTENSIONS_OFF,
    }


@dataclass
class PostImages:
    """One post of the archive, split for the images pipeline (``body``, ``lead_image``)."""

    relpath: str
    front: str
    body: str
    lead_image: str | None
    original: bytes


class BackfillSpider(scrapy.Spider):
    """One post at a time: each is read in the callback of a ``data:`` request (no
    network), so that the crawl holds only the posts being worked on, and ends as soon as
    the last one is done."""

    name = "images-backfill"

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for relpath, problem in post_entries(self.output_dir):
            if problem is not None:
                self._unreadable(relpath, problem)
                continue
            yield scrapy.Request(
                "data:,", callback=self.parse_post, cb_kwargs={"relpath": relpath},
                dont_filter=True,
            )  # fmt: skip

    @property
    def output_dir(self) -> Path:
        return Path(self.settings["OUTPUT_DIR"])

    def parse_post(self, response: Response, relpath: str) -> Iterator[PostImages]:
        try:
            data = read_post(self.output_dir, relpath)
            front, body = split_post(data.decode("utf-8"))
        except (OSError, UnicodeDecodeError, NotAPost) as error:
            self._unreadable(relpath, error)
            return
        self.crawler.stats.inc_value("backfill/posts")
        leads = lead_images(front)
        yield PostImages(relpath, front, body, leads[0] if leads else None, data)

    def _unreadable(self, relpath: str, problem: object) -> None:
        self.crawler.stats.inc_value("backfill/unreadable")
        logger.warning("backfill: %s left as it is: %s", relpath, problem)


class RewritePostPipeline:
    """Writes a post whose images were archived back in place, and its index line."""

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats
        self.output_dir = Path(crawler.settings["OUTPUT_DIR"])
        self.dry_run = crawler.settings.getbool("DRY_RUN")
        self.index: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def open_spider(self) -> None:
        self.index = read_index(self.output_dir)

    def process_item(self, item: PostImages) -> PostImages:
        leads = lead_images(item.front)
        front = item.front
        if leads and item.lead_image != leads[0]:
            front = rewrite_lead_images(front, {leads[0]: str(item.lead_image)})
        data = join_post(front, item.body).encode("utf-8")
        if data == item.original:
            return item  # nothing archived (all local already, or every image failed)
        if self.dry_run:
            self.stats.inc_value("backfill/rewritten")
            logger.info("dry run: would rewrite %s", item.relpath)
            return item
        try:
            replace_post(self.output_dir, item.relpath, data)
            entry = self.index.get(item.relpath)
            if entry is not None:  # a post the index lacks is reindex's to add
                entry = {**entry, "sha256": hashlib.sha256(data).hexdigest()}
                append_index(self.output_dir, entry)
                self.index[item.relpath] = entry
        except OSError as error:
            self.stats.inc_value("backfill/write_failed")
            logger.error("backfill: could not rewrite %s: %s", item.relpath, error)
            return item
        self.stats.inc_value("backfill/rewritten")
        logger.info("rewrote %s", item.relpath)
        return item

    def close_spider(self) -> None:
        """One line per post again (each rewrite appended one)."""
        if self.dry_run or not self.stats.get_value("backfill/rewritten"):
            return
        try:
            rewrite_index(self.output_dir, read_index(self.output_dir).values())
        except OSError as error:
            self.stats.inc_value("backfill/write_failed")
            logger.error("backfill: could not compact the index: %s", error)
