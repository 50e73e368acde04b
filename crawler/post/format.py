"""The post layout of FORMAT.md, byte for byte: YAML front matter, then the body in a <div>."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import yaml

# A plain scalar we allow: starts and ends with a letter or digit of any script, with only
# letters, digits, spaces, '.', '_', '-' and '+' between. Nothing YAML treats as syntax.
_PLAIN_CANDIDATE = re.compile(r"^[^\W_](?:[\w .+-]*[^\W_])?$")
# What YAML 1.2 (js-yaml, Hexo) resolves to something other than a string, beyond what
# PyYAML (YAML 1.1) already does: 1e3, 0o17, 0x1F, .inf, .nan, null, booleans.
_YAML12_NON_STRING = re.compile(
    r"""^(?:
        [-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
      | 0o[0-7_]+ | 0x[0-9a-fA-F_]+ | 0b[01_]+
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | null|Null|NULL|true|True|TRUE|false|False|FALSE
    )$""",
    re.VERBOSE,
)


def single_quoted(value: str) -> str:
    """A YAML single-quoted scalar: ``'`` inside is written ``''``."""
    return "'" + value.replace("'", "''") + "'"


# Categories and authors repeat across a source's posts: the YAML round trip of each value
# (a full PyYAML parse) is done once per distinct value, not once per post.
@lru_cache(maxsize=4096)
def yaml_scalar(value: str) -> str:
    """``value`` plain when PyYAML and js-yaml both read it back as that string, else quoted."""
    if (
        _PLAIN_CANDIDATE.match(value)
        and not _YAML12_NON_STRING.match(value)
        and yaml.safe_load(value) == value
    ):
        return value
    return single_quoted(value)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """``Sat, 17 Jul 2021 14:35:32 GMT``: the moment in GMT, English names, as HTTP dates;
    ``email.utils.format_datetime(moment, usegmt=True)``'s text, without its time tuple and
    zone checks (3% of a feeds crawl's main thread)."""
    m = moment.astimezone(UTC)
    return (
        f"{_DAYS[m.weekday()]}, {m.day:02d} {_MONTHS[m.month - 1]} {m.year:04d} "
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d} GMT"
    )


# What a post is made of, by render_post's (and schema.post_values') argument names.
POST_FIELDS = ("title", "categories", "lead_image", "author", "published", "body")


def post_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """A normalized item's :data:`POST_FIELDS`, ready for ``render_post(**...)``."""
    return {name: item[name] for name in POST_FIELDS}


def render_post(
    *,
    title: str,
    categories: Sequence[str],
    lead_image: str,
    author: str,
    published: datetime,
    body: str,
) -> str:
    """The whole post file. ``body`` is already cleaned and encoded (see cleaning.py)."""
    lines = ["", "---", f"title: {single_quoted(title)}"]
    if categories:
        lines.append("categories: ")
        lines.extend(f" - {yaml_scalar(category)}" for category in categories)
    else:
        lines.append("categories: []")
    lines += [
        f"headimg: {single_quoted(lead_image)}",
        f"author: {yaml_scalar(author)}",
        "comments: false",
        f"date: {http_date(published)}",
        f"thumbnail: {single_quoted(lead_image)}",
        "---",
        "",
        "<div>   ",
        f"{body}   ",
        "</div>",
        "            ",
    ]
    return "\n".join(lines)
