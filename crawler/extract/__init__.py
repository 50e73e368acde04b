"""Pure extraction code: bytes and strings in, plain values out; no Scrapy imports.

dates (publication times as sites write them), feed (feed entries to article fields),
fulltext (the main article of a web page), page (an article page's metadata and selectors),
sitemap (the URLs of sitemaps and news sitemaps).
"""
