"""Images: each new post's pictures downloaded into the archive (``ARCHIVE_IMAGES``, off by
default), so that a post outlives the hosts it hot-linked.

Scrapy's FilesPipeline, kept whole for what it does well (requests through the engine and
its downloader middlewares: the SSRF guard, retries, robots.txt; one download per URL per
crawl; the item waits for its images) and given its own store, names and checks:

- an image is named by the SHA-256 of its bytes, ``images/<2 hex>/<sha256>.<ext>``, the
  extension from the bytes themselves (PNG, JPEG, GIF, WebP, AVIF; SVG is refused);
- a response that is not 200, not one of those formats (an HTML error page served as 200),
  empty or larger than ``IMAGES_MAX_SIZE`` is a failed image; so is a URL that resolves to
  an internal address (unless ``ALLOW_PRIVATE_ADDRESSES``), except on the source's own host;
- a failed image keeps its original URL (one log line with the reason, ``images/failed``
  and ``images/failed/<reason>``); the post is written all the same;
- the body's ``<img src>`` and the lead image (``headimg``/``thumbnail``) then point at
  ``IMAGES_URL_PREFIX + <2 hex>/<sha256>.<ext>``. The generated ``FALLBACK_IMAGE``
  placeholder (a template with ``{n}``) is not the article's picture and is left as it is.

It sits after dedup (only new posts' images are fetched) and before validate and write. In
a dry run images are fetched and checked but nothing is stored.
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import Any, Self
from urllib.parse import urlsplit

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DownloadCancelledError, IgnoreRequest, NotConfigured
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.files import FilesPipeline
from scrapy.pipelines.media import FileInfo, FileInfoOrError, MediaPipeline
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from crawler.archive.images import ImageStore
from crawler.middlewares import TRUSTED_HOST
from crawler.post.cleaning import one_line
from crawler.post.images import (
    IMAGES_FOLDER,
    body_image_urls,
    image_extension,
    is_placeholder,
    rewrite_body,
    wanted_url,
)

logger = logging.getLogger(__name__)
# Request meta: the source of the post an image belongs to.
SOURCE_META = "technews_image_source"


class ImageRejected(Exception):
    """A downloaded response that is not an image to keep; ``reason`` is its stat name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ArchiveImagesPipeline(FilesPipeline):
    MEDIA_NAME = "image"
    STORE_SCHEMES = {"": ImageStore, "file": ImageStore}  # noqa: RUF012 -- as Scrapy's

    def __init__(self, store_uri: str, *, crawler: Crawler) -> None:
        super().__init__(store_uri, crawler=crawler)
        settings = crawler.settings
        self.store: ImageStore = ImageStore(store_uri, read_only=settings.getbool("DRY_RUN"))
        self.prefix: str = settings.get("IMAGES_URL_PREFIX", "/images/")
        self.max_size = settings.getint("IMAGES_MAX_SIZE")
        self.max_per_post = settings.getint("IMAGES_MAX_PER_POST")
        self.fallback_template = str(settings.get("FALLBACK_IMAGE") or "")
        # CDNs answer 301/302 (http -> https, a resized copy): followed, every hop checked
        # by the SSRF guard again.
        self.allow_redirects = True
        self._handle_statuses(True)
        self.stats = crawler.stats
        self._trusted: dict[str, set[str]] | None = None
        self._would_store: set[str] = set()  # a dry run's images, by name

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("ARCHIVE_IMAGES"):
            # Off is the default: no message, so Scrapy logs no "Disabled" warning (a cron
            # job mails whatever reaches stderr).
            raise NotConfigured
        return cls(str(settings["OUTPUT_DIR"]), crawler=crawler)

    # --- which images ----------------------------------------------------------------------

    def image_urls(self, item: Any) -> list[str]:
        """The item's images to archive, in order, each once: the lead image, then the
        body's; at most ``IMAGES_MAX_PER_POST`` (0: all)."""
        urls = self._candidates(item)
        return urls[: self.max_per_post] if self.max_per_post else urls

    def _candidates(self, item: Any) -> list[str]:
        adapter = ItemAdapter(item)
        lead = adapter.get("lead_image")
        candidates = [lead] if not is_placeholder(str(lead), self.fallback_template) else []
        candidates += body_image_urls(adapter.get("body") or "")
        return list(dict.fromkeys(url for url in candidates if _fetchable(url, self.prefix)))

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        source = ItemAdapter(item).get("source")
        over = len(self._candidates(item)) - self.max_per_post
        if self.max_per_post and over > 0:
            self.stats.inc_value("images/over_cap", over)
            logger.warning(
                "%d images of %s not archived: more than IMAGES_MAX_PER_POST (%d)",
                over, ItemAdapter(item).get("url"), self.max_per_post,
            )  # fmt: skip
        trusted = self._trusted_hosts().get(str(source), set())
        requests = []
        for url in self.image_urls(item):
            host = (urlsplit(url).hostname or "").lower()
            meta = {
                # An image is content: the SSRF guard checks it unless it is on one of the
                # hosts the user configured for its source ("" matches no image's host).
                TRUSTED_HOST: host if host in trusted else "",
                "download_maxsize": self.max_size,
                "download_warnsize": 0,
                SOURCE_META: source,  # a failure is counted for its source's report line
            }
            requests.append(
                Request(url, callback=NO_CALLBACK, meta=meta, headers={"Accept": "image/*"})
            )
        return requests

    def _trusted_hosts(self) -> dict[str, set[str]]:
        """The hosts of each source's own URLs (feed, RSSHub, sitemap, list, mirror)."""
        if self._trusted is None:
            rsshub = str(self.crawler.settings.get("RSSHUB_BASE") or "")
            self._trusted = {}
            for source in getattr(self.crawler.spider, "sources_read", None) or []:
                urls = [source.url, source.sitemap, source.list, source.base_url]
                if source.rsshub:
                    urls.append(source.feed_url(rsshub))
                hosts = {(urlsplit(url).hostname or "").lower() for url in urls if url}
                self._trusted[source.name] = hosts - {""}
        return self._trusted

    # --- download, check, store ------------------------------------------------------------

    def media_to_download(
        self, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> None:
        return None  # the name is the content's hash: known only once downloaded

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        if response is None:
            raise ValueError("an archived image is named by its content")
        extension = image_extension(response.body)
        if extension is None:
            raise ImageRejected("not_an_image", "not an image")
        return ImageStore.name_of(response.body, extension)

    async def media_downloaded(
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
    ) -> FileInfo:
        if response.status != 200:
            raise ImageRejected(f"http_{response.status}", f"HTTP {response.status}")
        if not response.body:
            raise ImageRejected("empty", "empty response")
        if len(response.body) > self.max_size:
            raise ImageRejected("too_large", f"larger than IMAGES_MAX_SIZE ({self.max_size})")
        if image_extension(response.body) is None:
            kind = response.headers.get("Content-Type", b"").decode("latin-1") or "no type"
            raise ImageRejected("not_an_image", f"not a PNG/JPEG/GIF/WebP/AVIF image ({kind})")
        name = self.file_path(request, response, info, item=item)
        if self.store.exists(name):
            status = "reused"  # the same picture, archived before or under another URL
        elif self.store.persist_file(name, BytesIO(response.body), info):
            status = "downloaded"
        elif self.store.read_only:  # a dry run: what a real run would store, once
            status = "reused" if name in self._would_store else "downloaded"
            if status == "downloaded":
                self._would_store.add(name)
                logger.info("dry run: would store %s/%s", IMAGES_FOLDER, name)
        else:
            status = "reused"  # stored meanwhile
        self.stats.inc_value(f"images/{status}")
        logger.debug("image %s: %s %s/%s", status, request.url, IMAGES_FOLDER, name)
        return {"url": request.url, "path": name, "checksum": None, "status": status}

    def media_failed(
        self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo
    ) -> None:  # type: ignore[override]
        """Every failure of one image, counted and logged in one line (never a traceback);
        the post keeps the image's URL."""
        error = failure.value
        if isinstance(error, ImageRejected):
            reason, why = error.reason, str(error)
        elif isinstance(error, DownloadCancelledError | CancelledError):  # past the size cap
            reason, why = "too_large", f"larger than IMAGES_MAX_SIZE ({self.max_size} bytes)"
        elif isinstance(error, IgnoreRequest):
            reason, why = "refused", one_line(error) or "refused"
        elif isinstance(error, OSError):
            reason, why = "write_error", one_line(error)
        else:
            reason = "unreachable"
            why = one_line(f"{type(error).__name__}: {error}".rstrip(": "))
        self.stats.inc_value("images/failed")
        self.stats.inc_value(f"images/failed/{reason}")
        if request.meta.get(SOURCE_META):
            self.stats.inc_value(f"source/{request.meta[SOURCE_META]}/images_failed")
        logger.warning("image not archived, the post keeps its URL: %s: %s", request.url, why)
        # Returning (not raising) marks the image as handled: the item gets no result for
        # it and Scrapy logs no traceback.
        return None

    # --- the post --------------------------------------------------------------------------

    def item_completed(
        self, results: list[FileInfoOrError], item: Any, info: MediaPipeline.SpiderInfo
    ) -> Any:
        local: dict[str, str] = {}
        for url, (ok, result) in zip(self.image_urls(item), results, strict=True):
            if ok and isinstance(result, dict) and result.get("path"):
                local[url] = self.prefix + result["path"]
        if local:
            adapter = ItemAdapter(item)
            adapter["body"] = rewrite_body(adapter.get("body") or "", local)
            lead = adapter.get("lead_image")
            if lead in local:
                adapter["lead_image"] = local[lead]
        return item


def _fetchable(url: object, prefix: str) -> bool:
    """An image URL to archive that a request can be made of (hostile URLs: a bad port)."""
    if not wanted_url(url, prefix):
        return False
    try:
        parts = urlsplit(str(url))
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        return False
    return bool(parts.hostname)
