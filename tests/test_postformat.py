"""The post layout: the reference post byte for byte, and values that load back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import frontmatter
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.post.cleaning import clean_text, clean_title
from crawler.post.format import http_date, render_post, yaml_scalar

# A byte-for-byte copy of ../shared/examples/cnbeta-2021-07-17.md, the format contract.
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "golden" / "cnbeta-2021-07-17.md"


def reference_fields() -> dict:
    text = REFERENCE.read_text(encoding="utf-8")
    post = frontmatter.loads(text)
    body = text.split("<div>   \n", 1)[1].rsplit("   \n</div>\n            ", 1)[0]
    assert post["headimg"] == post["thumbnail"]
    return {
        "title": post["title"],
        "categories": post["categories"],
        "lead_image": post["headimg"],
        "author": post["author"],
        "published": parsedate_to_datetime(post["date"]),
        "body": body,
    }


def test_writer_reproduces_the_reference_post_byte_for_byte() -> None:
    expected = REFERENCE.read_bytes()
    assert render_post(**reference_fields()).encode("utf-8") == expected


def test_date_is_written_in_gmt_with_english_names() -> None:
    from zoneinfo import ZoneInfo

    shanghai = datetime(2021, 7, 17, 22, 35, 32, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert http_date(shanghai) == "Sat, 17 Jul 2021 14:35:32 GMT"
    assert http_date(datetime(2021, 1, 3, 4, 5, 6, tzinfo=UTC)) == "Sun, 03 Jan 2021 04:05:06 GMT"


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("cnBeta", True),
        ("开源中国", True),
        ("新媒体", True),
        ("36氪", True),
        ("Ars Technica", True),
        ("1e3", False),
        ("0o17", False),
        ("0x1F", False),
        ("yes", False),
        ("No", False),
        ("on", False),
        ("~", False),
        ("null", False),
        ("2021-07-17", False),
        ("12:30", False),
        ("a: b", False),
        ("#tag", False),
        ("-dash", False),
        ("[x]", False),
        ("{x}", False),
        ("&anchor", False),
        ("*alias", False),
        ("!tag", False),
        ("|", False),
        (">", False),
        ("'q'", False),
        ('"q"', False),
        ("%x", False),
        ("@x", False),
        ("`x`", False),
        (".inf", False),
        ("1_000", False),
        ("O'Reilly", False),
    ],
)
def test_plain_scalars_only_where_every_yaml_reader_agrees(value: str, plain: bool) -> None:
    written = yaml_scalar(value)
    assert (written == value) is plain
    post = frontmatter.loads(f"---\nauthor: {written}\n---\n")
    assert post["author"] == value


TRICKY_TITLES = [
    'It\'s "quoted": #1 --- 🚀',
    "---",
    "title: nested: colons",
    "科技「新闻」：第一、二期！",
    "{{ template }} {% tag %} {# c #}",
    "  leading and trailing  ",
    "yes",
    "'",
    "& * ! | > % @ ` [ ] { }",
]


@pytest.mark.parametrize("title", TRICKY_TITLES)
def test_tricky_titles_load_back_exactly(title: str) -> None:
    cleaned = clean_title(title)
    text = render_post(
        title=cleaned,
        categories=["新媒体", "yes", "a: b"],
        lead_image="https://example.com/it's.jpg",
        author="#author",
        published=datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC),
        body="<p>x</p>",
    )
    post = frontmatter.loads(text)
    assert post["title"] == cleaned
    assert post["categories"] == ["新媒体", "yes", "a: b"]
    assert post["author"] == "#author"
    assert post["headimg"] == post["thumbnail"] == "https://example.com/it's.jpg"
    assert post["date"] == "Sat, 17 Jul 2021 14:35:32 GMT"
    assert post["comments"] is False


@given(st.text(), st.lists(st.text(min_size=1), min_size=1, max_size=4), st.text())
def test_any_cleaned_values_load_back_exactly(
    title: str, categories: list[str], author: str
) -> None:
    title = clean_title(title)
    categories = [c for c in (clean_text(c) for c in categories) if c]
    author = clean_text(author) or "cnBeta"
    text = render_post(
        title=title,
        categories=categories,
        lead_image="https://picsum.photos/400/300?random=1",
        author=author,
        published=datetime(2021, 7, 17, tzinfo=UTC),
        body="<p>x</p>",
    )
    post = frontmatter.loads(text)
    assert post["title"] == title
    assert post["categories"] == (categories or [])
    assert post["author"] == author


def test_the_post_schema_is_a_valid_draft_2020_12_schema() -> None:
    """Checked here once, not at every start of a crawl (crawler/post/schema.py)."""
    from jsonschema import Draft202012Validator

    from crawler.post.schema import post_schema

    Draft202012Validator.check_schema(post_schema())
    assert post_schema()["$schema"].endswith("/2020-12/schema")


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
        timezones=st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        ),
    )
)  # fmt: skip
def test_http_date_is_the_email_modules_gmt_date(moment: datetime) -> None:
    assert http_date(moment) == format_datetime(moment.astimezone(UTC), usegmt=True)
