"""The normalize pipeline: what reaches dedup and write, and what is dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from crawler.items import Article
from crawler.pipelines.normalize import NormalizePipeline
from crawler.settings import FALLBACK_IMAGE

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def pipeline() -> NormalizePipeline:
    crawler = get_crawler(settings_dict={"FALLBACK_IMAGE": FALLBACK_IMAGE})
    crawler.stats.open_spider()
    return NormalizePipeline.from_crawler(crawler)


def article(**fields: object) -> Article:
    values: dict[str, object] = {
        "title": "<b>Title</b> &amp; more",
        "url": "https://news.example/a/1.html",
        "published": datetime(2021, 7, 17, 22, 35, 32, tzinfo=SHANGHAI),
        "categories": ["新媒体", " cnBeta ", "", "最新"],
        "author": "cnBeta",
        "body": '<p>text <img src="/body.jpg"></p>',
        "source": "test",
    }
    values.update(fields)
    return Article(**values)


def test_fields_are_cleaned_and_time_is_utc(pipeline: NormalizePipeline) -> None:
    item = pipeline.normalize(article())
    assert item["title"] == "Title & more"
    assert item["published"] == datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
    assert item["published"].utcoffset().total_seconds() == 0
    assert item["categories"] == ["新媒体", "cnBeta", "最新"]
    assert item["body"] == (
        '<p>text <img src="https://news.example/body.jpg" referrerpolicy="no-referrer"></p>'
    )
    assert item["has_own_url"] is True


@pytest.mark.parametrize(
    ("fields", "lead"),
    [
        (
            {"image": "https://media.example/lead.jpg", "thumb": "https://t.example/t.jpg"},
            "https://media.example/lead.jpg",
        ),
        ({"thumb": "https://t.example/t.jpg"}, "https://news.example/body.jpg"),
        ({"body": "<p>no image</p>", "thumb": "//t.example/t.jpg"}, "https://t.example/t.jpg"),
        (
            {"body": "<p>none</p>", "fallback_image": "https://site.example/logo.png"},
            "https://site.example/logo.png",
        ),
    ],
)
def test_lead_image_order(pipeline: NormalizePipeline, fields: dict, lead: str) -> None:
    assert pipeline.normalize(article(**fields))["lead_image"] == lead


def test_fallback_image_is_stable_per_article(pipeline: NormalizePipeline) -> None:
    first = pipeline.normalize(article(body="<p>none</p>"))["lead_image"]
    again = pipeline.normalize(article(body="<p>none</p>"))["lead_image"]
    other = pipeline.normalize(article(title="Another", body="<p>none</p>"))["lead_image"]
    assert first == again
    assert first.startswith("https://picsum.photos/400/300?random=")
    assert first != other


@pytest.mark.parametrize(
    ("fields", "stat"),
    [
        ({"title": "  <b> </b> "}, "normalize/dropped/missing_title"),
        ({"published": None}, "normalize/dropped/missing_date"),
        ({"published": datetime(2021, 7, 17, 12, 0)}, "normalize/dropped/naive_date"),
    ],
)
def test_bad_articles_are_dropped_and_counted(
    pipeline: NormalizePipeline, fields: dict, stat: str
) -> None:
    with pytest.raises(DropItem):
        pipeline.normalize(article(**fields))
    assert pipeline.stats.get_value(stat) == 1


def test_items_without_an_own_url_are_marked(pipeline: NormalizePipeline) -> None:
    assert pipeline.normalize(article(has_own_url=False))["has_own_url"] is False
    assert pipeline.normalize(article(url=None))["has_own_url"] is False


def test_an_unusable_article_is_dropped_with_its_reason(pipeline: NormalizePipeline) -> None:
    with pytest.raises(DropItem, match=r"unusable article \(TypeError: .*\): https://e.com/x"):
        pipeline.normalize(article(title=b"bytes, not text", url="https://e.com/x"))
    assert pipeline.stats.get_value("normalize/dropped/unusable") == 1
