"""The public form of a post's values: the body without the post encoding, dates in RFC 3339.

Posts encode their body for Hexo (docs/FORMAT.md, Body): ``{``/``}`` as ``&#123;``/``&#125;``
and a fence-like line start as ``&#96;``/``&#126;``. Everyone else gets the plain characters:
the same HTML, since these are only character references. ``&#10;`` (an empty line in
``<pre>``) is left as it is: it is valid HTML and its newline matters there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_POST_REFERENCES = {"&#123;": "{", "&#125;": "}", "&#96;": "`", "&#126;": "~"}
_POST_REFERENCE = re.compile("|".join(map(re.escape, _POST_REFERENCES)))
# What XML 1.0 forbids in a document (Char production): C0 controls but tab and line breaks,
# surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def decode_post_body(body: str) -> str:
    """The body as sanitized HTML, the post encoding undone.

    A literal ``&#123;`` of the article text was written ``&amp;#123;`` by the sanitizer, so
    it is not taken for an encoded brace here.
    """
    return _POST_REFERENCE.sub(lambda match: _POST_REFERENCES[match.group()], body)


def xml_text(value: str) -> str:
    """``value`` without the characters an XML 1.0 document cannot hold."""
    return _NOT_XML.sub("", value)


def rfc3339(moment: datetime) -> str:
    """``2021-07-17T14:35:32Z``: the moment in UTC (ISO 8601, RFC 3339)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serialize_published(value: object) -> object:
    """An item's ``published`` in feed exports: RFC 3339 UTC (other values as they are)."""
    return rfc3339(value) if isinstance(value, datetime) else value


def serialize_body(value: object) -> object:
    """An item's ``body`` in feed exports: sanitized HTML without the post encoding."""
    return decode_post_body(value) if isinstance(value, str) else value
