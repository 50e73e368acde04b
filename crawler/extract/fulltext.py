"""Article text from a whole web page, for feeds whose entries carry only a teaser."""

from __future__ import annotations

import re

_DOCUMENT = re.compile(r"^\s*<html>\s*<body>(?P<body>.*)</body>\s*</html>\s*$", re.DOTALL)
# Less than this much text is a failed extraction (a cookie wall, a login page).
MIN_TEXT_CHARS = 80


def extract_article(page_html: str, url: str) -> str | None:
    """The main article of ``page_html`` as HTML (links and images kept), or None."""
    # Imported on first use: 80 ms of every crawl's start-up, and most never need it.
    import trafilatura

    extracted = trafilatura.extract(
        page_html,
        url=url,
        output_format="html",
        include_images=True,
        include_links=True,
        include_tables=True,
        include_comments=False,
    )
    if not extracted:
        return None
    match = _DOCUMENT.match(extracted)
    body = match.group("body") if match else extracted
    text = re.sub(r"<[^>]+>|\s+", "", body)
    return body if len(text) >= MIN_TEXT_CHARS else None
