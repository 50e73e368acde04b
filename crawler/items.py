"""The one item every spider yields."""

from __future__ import annotations

import scrapy

from crawler.publish.body import serialize_body, serialize_published


class Article(scrapy.Item):
    """One news article, as a spider saw it; the pipelines normalize, dedup and write it.

    Spiders fill the fields they know. After the normalize pipeline every field below is set
    and cleaned (``published`` is an aware UTC datetime, ``body`` is sanitized HTML).
    """

    title = scrapy.Field()  # str: HTML (tags, entities); normalize makes it plain text
    url = scrapy.Field()  # str: the article's own URL (body links resolve against it)
    # Feed exports (-O items.jsonl) write FEED_EXPORT_FIELDS only, with these serializers.
    published = scrapy.Field(serializer=serialize_published)  # datetime: timezone-aware
    categories = scrapy.Field()  # list[str]: topic, source, channel
    author = scrapy.Field()  # str
    body = scrapy.Field(serializer=serialize_body)  # str: raw HTML of the article body
    body_base = scrapy.Field()  # str | None: base URL of the body's links when not ``url``
    source = scrapy.Field()  # str: the source's name, e.g. "cnbeta"
    image = scrapy.Field()  # str | None: explicit lead image (a feed's media); wins
    thumb = scrapy.Field()  # str | None: list thumbnail, used when the body has no image
    fallback_image = scrapy.Field()  # str | None: the source's own fallback lead image
    # False when ``url`` is not the story's own address (no link, the site's home page, a
    # link shared by several entries): such items get no URL dedup key.
    has_own_url = scrapy.Field()
    # str | None: a stable name for an item without its own URL (a feed entry's guid or a
    # hash): it stands in for the URL key, so an undated, linkless entry is archived once.
    identity = scrapy.Field()
    # CSS selectors of site widgets to remove from the body (site knowledge stays in spiders).
    strip_selectors = scrapy.Field()
    lead_image = scrapy.Field()  # str: set by normalize, the post's headimg/thumbnail
    # Set by normalize (crawler/post/keys.py), read by dedup and write: the story's keys.
    title_key = scrapy.Field()  # str: UTC day + normalized title
    url_key = scrapy.Field()  # str | None: canonical URL, for an item with its own URL
    # Set by normalize when nothing between it and validate changes the post (no images
    # archived): (field, rule) that breaks the post schema, or None. Absent: not checked yet.
    format_problem = scrapy.Field()
    # crawler.post.article.FinishedAhead | None: the article already finished (by the worker
    # that read its feed); normalize uses and removes it. Never written or exported.
    finished_ahead = scrapy.Field()
