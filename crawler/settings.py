"""Scrapy settings of the harvester. Every setting here can be overridden with ``-s NAME=VALUE``."""

from scrapy.settings import default_settings as _scrapy_defaults

BOT_NAME = "crawler"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
# Our `scrapy crawl` checks spider arguments first (a bad one: one line, exit status 2).
COMMANDS_MODULE = "crawler.commands"

# --- The archive -------------------------------------------------------------------------
# Folder that receives the posts and the archive's own hidden state (.state.sqlite3).
OUTPUT_DIR = "output"
# Lead image for articles without any image; {n} becomes a number stable per article.
FALLBACK_IMAGE = "https://picsum.photos/400/300?random={n}"

# An article page that failed (HTTP error, unreachable, no title or date) is not asked for
# again for this many seconds; the wait doubles with each further failure (at most 7 days).
FAILED_ARTICLE_RETRY_AFTER = 3600

# --- Several workers (README, "Several workers on one Redis") ------------------------------
# Where story keys, feed validators and failure memory live: "sqlite" (the archive's own
# .state.sqlite3) or a Redis URL shared by every worker, e.g. "redis://host:6379/0".
DEDUP_BACKEND = "sqlite"
DEDUP_REDIS_PREFIX = "technews:"
# A story claimed by a worker that died before writing it is free again after this long.
DEDUP_CLAIM_TTL = 3600
# Set to a Redis URL: scrapy-redis's scheduler and request filter, one frontier for every
# worker (pip install -e '.[redis]'); see crawler/frontier.py.
REDIS_URL = None
SHARED_FRONTIER = True  # False for a spider whose requests must stay in its worker (feeds)
ADDONS = {"crawler.frontier.SharedFrontier": 0}

# --- Feeds ----------------------------------------------------------------------------------
# Where `rsshub = "/route"` sources are fetched from; point it at your own RSSHub instance.
RSSHUB_BASE = "https://rsshub.app"
# Skip feed entries older than this many days (0: keep all), e.g. a feed's backlog.
MAX_AGE_DAYS = 0
# --- Sitemaps -------------------------------------------------------------------------------
# Fetch only sitemap URLs published or modified within this many days (0: all of them); a
# source's own max_age_days wins. Sitemaps list a site's whole history: keep this small.
SITEMAP_MAX_AGE_DAYS = 2

# --- Images: each new post's pictures kept in OUTPUT_DIR/images/ (off by default) -----------
ARCHIVE_IMAGES = False
# How posts point at archived images: this + "<2 hex>/<sha256>.<ext>" (a path from the site's
# root, or an http(s) URL, ending in "/"); `export --hexo` serves OUTPUT_DIR/images/ at /images/.
IMAGES_URL_PREFIX = "/images/"
# A larger image is not archived (the post keeps its URL); so are the images of a post past
# the first IMAGES_MAX_PER_POST (0: no cap).
IMAGES_MAX_SIZE = 10 * 1024 * 1024
IMAGES_MAX_PER_POST = 50

# One path for every article: normalize -> dedup -> [images] -> validate (the post schema)
# -> write.
ITEM_PIPELINES = {
    "crawler.pipelines.normalize.NormalizePipeline": 100,
    "crawler.pipelines.dedup.DedupPipeline": 200,
    # Off unless ARCHIVE_IMAGES (NotConfigured): only new posts' images are fetched.
    "crawler.pipelines.images.ArchiveImagesPipeline": 220,
    "crawler.pipelines.validate.ValidatePipeline": 250,
    "crawler.pipelines.write.WritePipeline": 300,
}
# Article bodies are cleaned and sanitized (lxml, nh3), and feeds parsed (feedparser), in
# this many worker processes, so that the crawl's own process keeps downloading on its core;
# 0: on a thread of the crawl's process (bodies) and on the reactor (feeds). Two: with the
# feeds parsed there, one worker was the feeds crawl's bottleneck (bench: 2 workers 0.86x
# its wall time; a site crawl's unchanged).
CLEAN_PROCESSES = 2
# Post files (and their fsyncs) written by a helper process, a batch at a time, so that the
# crawl's writer thread takes the GIL from the reactor once a batch instead of for every file
# operation. False: written by the writer thread itself.
WRITE_PROCESS = True
# Posts handed to the writer within this many seconds are stored as one batch (one fsync of
# each folder, one index append, one key transaction). 0: each batch as soon as the writer
# is free.
WRITE_BATCH_DELAY = 0.01
# A batch's post files made durable together, by one syncfs(2) of the archive's file system
# (Linux 5.8 and later), instead of one fsync each: one journal commit and one flush of the
# disk's cache a batch. It also flushes what other programs wrote to that file system, which
# a busy shared disk makes slower. False, or elsewhere: each file fsynced before its link.
WRITE_GROUP_COMMIT = True
# Items of one response taken through the pipelines at once. Scrapy starts this many tasks
# for every response (its default, 100, costs more than the one article most pages give).
CONCURRENT_ITEMS = 16
# Scrapy's memory stats, without the hook it runs on every access (crawler/stats.py).
STATS_CLASS = "crawler.stats.PlainStatsCollector"
# Dropped duplicates and bad articles are expected, not alarming: log them at INFO.
DEFAULT_DROPITEM_LOG_LEVEL = "INFO"
# Log a dropped or scraped item as one short line, not the whole article.
LOG_FORMATTER = "crawler.logformatter.OneLineLogFormatter"

# --- Drift: a site that changed its markup is flagged (DRIFT in the report, exit 1) ---------
# ...when fewer than this share of its pages (at least DRIFT_MIN_PAGES of them) give a title,
# a date and a body (feeds: a title and a date)...
DRIFT_MIN_EXTRACTION = 0.9
DRIFT_MIN_PAGES = 5
# ...or when it was reached but gave nothing new or known this many runs in a row (0: off).
DRIFT_EMPTY_RUNS = 3

# --- Politeness ----------------------------------------------------------------------------
# Identify ourselves: {contact} becomes CONTACT_URL, where a site operator can reach you.
USER_AGENT = "technews-harvester/0.1 (+{contact})"
CONTACT_URL = "https://github.com/technews-harvester/technews-harvester"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
RETRY_TIMES = 2
# Retries of 5xx/429 and network errors wait RETRY_BACKOFF_BASE seconds, doubling each time
# (at most RETRY_BACKOFF_MAX); a Retry-After header is honoured instead, up to RETRY_AFTER_MAX.
RETRY_BACKOFF_BASE = 2.0
RETRY_BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 300.0
# Each parsed page freed as soon as its callback is done (crawler/memory.py): outermost, so
# that every other middleware has seen the callback's output first.
SPIDER_MIDDLEWARES = {"crawler.memory.ReleaseParsedPages": 10}
DOWNLOADER_MIDDLEWARES = {
    "crawler.middlewares.ContentAddressGuard": 50,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.BackoffRetryMiddleware": 550,
    "scrapy.downloadermiddlewares.useragent.UserAgentMiddleware": None,
    "crawler.middlewares.ContactUserAgentMiddleware": 500,
}
# Spiders log a request that finally failed themselves, in one line: Scrapy's own line is noise.
RETRY_GIVE_UP_LOG_LEVEL = "DEBUG"
DOWNLOAD_TIMEOUT = 30

# A robots.txt that cannot be fetched is logged as one line, not an error with a traceback.
# ArchiveService is the crawl's one owner of the archive folder (pipelines and spiders use it).
# SourceStats counts what happened to each source's articles and logs one line per source.
EXTENSIONS = {
    "crawler.archive.service.ArchiveService": 0,
    "crawler.extensions.QuietRobotsTxtFailures": 0,
    "crawler.extensions.SourceStats": 500,
    "crawler.extensions.DriftMonitor": 550,
    "crawler.cli.progress.ProgressDisplay": 600,
    "crawler.memory.TunedGarbageCollection": 700,
}
# Scrapy's own extensions less the two consoles: Scrapy imports every extension it lists,
# even one set to None, and these two import aiohttp and twisted.conch (about 0.15 s of
# every crawl's start) to stay off (TELNETCONSOLE_ENABLED, REMOTE_CONTROL_ENABLED).
EXTENSIONS_BASE = {
    path: order
    for path, order in _scrapy_defaults.EXTENSIONS_BASE.items()
    if path not in ("scrapy.extensions.telnet.TelnetConsole",
                    "scrapy.extensions.remote_control.RemoteControl")
}  # fmt: skip
# Python's cyclic garbage collector run every this many allocations in the crawl's process
# (Python's own: 700), after start-up's objects are frozen out of it (crawler/memory.py).
# 0: the collector left as Python has it.
GC_GEN0_THRESHOLD = 10_000
# A live progress line on stderr; the harvest command turns it on only at a terminal.
PROGRESS_DISPLAY = False

# --- Limits: every byte from the web is hostile ----------------------------------------------
# A response larger than this (after decompression too: gzip bombs) is dropped, not read.
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024
DOWNLOAD_WARNSIZE = 8 * 1024 * 1024
# Entries of one feed read at most (the rest are counted and logged); real feeds have tens.
MAX_ENTRIES_PER_FEED = 1000
# Titles longer than this many characters are cut (with "…"); real headlines are far shorter.
MAX_TITLE_LENGTH = 300
# No listening consoles: Scrapy's telnet console and remote-control server run arbitrary
# Python inside the crawler for whoever reaches their port. Off, and their extensions left
# out of EXTENSIONS_BASE (above) so that they are not even imported. Turning one on takes
# both.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
# Links taken from content (feed entries, list pages, sitemaps) to another host than the
# source's are not fetched when they resolve to loopback, private, link-local or reserved
# addresses (before and after every redirect). True turns that off: local mirrors, tests.
ALLOW_PRIVATE_ADDRESSES = False

# --- Scrapy housekeeping -------------------------------------------------------------------
FEED_EXPORT_ENCODING = "utf-8"
# `scrapy crawl … -O items.jsonl` (and FEEDS) write only the public fields, in this order;
# internal ones (keys, selectors, body_base, …) stay internal. The post's lead image is
# exported as `image`; `published` (RFC 3339 UTC) and `body` (without the post encoding)
# have their serializers in crawler/items.py.
FEED_EXPORT_FIELDS = {
    "title": "title",
    "url": "url",
    "published": "published",
    "categories": "categories",
    "author": "author",
    "lead_image": "image",
    "source": "source",
    "body": "body",
}
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
LOG_LEVEL = "INFO"
