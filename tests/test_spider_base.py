"""The site-spider base: typed arguments (unknown ones refused), a harvest's Source and its
``args``, and the spider contracts of the article callback (``scrapy check``/``scrapy parse``).
"""

from __future__ import annotations

import re
import subprocess
import unittest
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from pytest_httpserver import HTTPServer
from scrapy.contracts import ContractsManager
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import load_object
from support import (
    CNBETA,
    FAST,
    CrawlResult,
    background_job,
    base_url_of,
    crawl,
    crawl_in_process,
    fixture_server,
    run_scrapy,
    serve_cnbeta,
    source_table,
    usage_error,
    write_sources,
)

from crawler.cli.harvest import plan
from crawler.sources import load_sources
from crawler.spiders.base import ArgumentError
from crawler.spiders.cnbeta import CnbetaSpider

TYPED_CATEGORIES = ["Tech, Science", "cnBeta", "最新"]
ARTICLE = "/articles/tech/1153343.htm"
ARTICLE_TITLE = '阿里腾讯已悄然"握手" 下一个开放的会是支付吗？'
UNTITLED = "/articles/tech/untitled.htm"  # the same page without its <h1>


def serve_untitled_article(server: HTTPServer) -> None:
    page = (CNBETA / "articles" / "1153343.htm").read_text(encoding="utf-8")
    untitled, count = re.subn(r"<h1>.*?</h1>", "", page, flags=re.S)
    assert count == 1
    server.expect_request(UNTITLED).respond_with_data(
        untitled, content_type="text/html; charset=utf-8"
    )


@pytest.fixture(scope="module")
def site() -> Iterator[HTTPServer]:
    with fixture_server(serve_untitled_article, serve_cnbeta) as server:
        yield server


# --- arguments --------------------------------------------------------------------------------


@background_job
def unknown_argument_run(home: Path) -> CrawlResult:
    """``scrapy crawl cnbeta -a nosuch=1``."""
    return crawl("cnbeta", home / "a", "-a", "nosuch=1")


def test_an_unknown_argument_is_one_usage_line_and_exit_2(
    unknown_argument_run: CrawlResult,
) -> None:
    result = unknown_argument_run
    assert result.process is not None
    assert usage_error(result.process) == (
        "cnbeta: unknown argument -a nosuch "
        "(known: author, base_url, categories, pages, source, source_name, timezone)"
    )
    assert not result.output_dir.exists()


@pytest_twisted.ensureDeferred
async def test_an_unknown_argument_in_process_is_refused_before_any_request(
    site: HTTPServer, tmp_path: Path
) -> None:
    already = len(site.log)
    with pytest.raises(ArgumentError, match=r"^cnbeta: unknown argument -a nosuch \(known: "):
        await crawl_in_process("cnbeta", tmp_path / "a", base_url=base_url_of(site), nosuch=1)
    assert site.log[already:] == []


def test_arguments_are_converted_to_their_types() -> None:
    converted = CnbetaSpider.check_arguments(
        pages="2", categories='["Tech, Science", "cnBeta"]', base_url="http://127.0.0.1:8/"
    )
    assert converted == {
        "pages": 2,
        "categories": ["Tech, Science", "cnBeta"],  # a JSON array keeps commas in names
        "base_url": "http://127.0.0.1:8",
    }
    assert CnbetaSpider.check_arguments(categories="科技, cnBeta,")["categories"] == [
        "科技",
        "cnBeta",
    ]
    spider = CnbetaSpider(pages="0", categories="科技,cnBeta", author="作者")
    assert spider.pages == 0
    assert spider.source.categories == ("科技", "cnBeta") and spider.source.author == "作者"
    assert CnbetaSpider().pages == 3  # the default


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pages": True}, "cnbeta: -a pages: must be a whole number >= 0, not True"),
        ({"pages": "1.5"}, "cnbeta: -a pages: must be a whole number >= 0, not '1.5'"),
        ({"categories": " , "}, "cnbeta: -a categories: must name at least one"),
        ({"categories": "[1, 2]"}, "cnbeta: -a categories: must be a list of strings, not [1, 2]"),
        ({"categories": '["a",'}, "cnbeta: -a categories: not a JSON array: '[\"a\",'"),
        ({"timezone": "Mars/Olympus"}, "key 'timezone': unknown time zone 'Mars/Olympus'"),
        ({"source": "cnbeta"}, "cnbeta: -a source: only the harvest passes a source"),
    ],
)
def test_bad_arguments_are_argument_errors(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError) as raised:
        CnbetaSpider.check_arguments(**arguments)
    assert message in str(raised.value)


# --- a harvest's Source -----------------------------------------------------------------------


@pytest_twisted.async_fixture(scope="module")
async def typed_source_run(
    site: HTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> CrawlResult:
    """A sources file's cnbeta table with typed categories and ``args = { pages = 1 }``,
    crawled as the harvest plans it: the spider gets the Source object."""
    home = tmp_path_factory.mktemp("typed")
    table = source_table("cnbeta", spider="cnbeta", base_url="{base}", author="cnBeta",
                         categories=TYPED_CATEGORIES, args={"pages": 1})  # fmt: skip
    (source,) = load_sources(write_sources(home / "sources.toml", site, table))
    (crawl_plan,) = plan([source])
    assert crawl_plan.arguments == {"source": source}
    result = await crawl_in_process(
        crawl_plan.spider, home / "archive", server=site, **crawl_plan.arguments
    )
    assert result.returncode == 0, result.log
    return result


def test_typed_categories_keep_their_commas(typed_source_run: CrawlResult) -> None:
    posts = typed_source_run.posts()
    assert posts
    for relpath, post in posts.items():
        assert post["categories"] == TYPED_CATEGORIES
        text = (typed_source_run.output_dir / relpath).read_text(encoding="utf-8")
        assert "\ncategories: \n - 'Tech, Science'\n - cnBeta\n - 最新\n" in text


def test_args_of_a_sources_table_are_spider_arguments(typed_source_run: CrawlResult) -> None:
    list_pages = [p for p in typed_source_run.requested if p.startswith("/home/more")]
    assert len(list_pages) == 1 and "page=1&" in list_pages[0]  # pages = 1, not the default 3
    # the home page and the one JSON page were read; their articles fetched via base_url
    assert typed_source_run.requested[:2] == ["/robots.txt", "/"]
    assert typed_source_run.stat("source/cnbeta/article_requested")


# --- scrapy parse and the contracts of parse_article ------------------------------------------


@dataclass
class ParseRun:
    done: subprocess.CompletedProcess[str]
    url: str  # of the fixture article
    output: Path  # OUTPUT_DIR


@background_job
def parse_run(home: Path) -> ParseRun:
    """``scrapy parse --spider=cnbeta -c parse_article <a fixture article>``."""
    with fixture_server(serve_cnbeta) as server:
        url = server.url_for(ARTICLE)
        done = run_scrapy(
            "parse", "--spider=cnbeta", "-c", "parse_article", *FAST,
            "-s", f"OUTPUT_DIR={home / 'a'}", url,
        )  # fmt: skip
    return ParseRun(done, url, home / "a")


def test_scrapy_parse_runs_the_article_callback(parse_run: ParseRun) -> None:
    done = parse_run.done
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr
    scraped = done.stdout.split("# Scraped Items", 1)[1].split("# Requests", 1)[0]
    assert f"'title': '{ARTICLE_TITLE}'" in scraped
    assert f"'url': '{parse_run.url}'" in scraped
    assert list(parse_run.output.glob("*/*/*.md")) == []  # parse runs no pipeline


def contracts_spider(results: unittest.TestResult, path: str) -> type[CnbetaSpider]:
    """cnBeta, whose only request is the one the contracts of ``parse_article`` make (its
    ``@url`` fetched from the fixture site at ``path``), as ``scrapy check`` runs them."""

    class ContractsOfParseArticle(CnbetaSpider):
        name = "cnbeta_contracts"

        async def start(self) -> AsyncIterator[Any]:
            contracts = build_component_list(self.settings.getwithbase("SPIDER_CONTRACTS"))
            manager = ContractsManager(load_object(contract) for contract in contracts)
            request = manager.from_method(self.parse_article, results)
            assert request is not None
            assert request.url == "https://www.cnbeta.com.tw/articles/tech/1153343.htm"
            yield request.replace(url=self.source.base_url + path)

    return ContractsOfParseArticle


async def check_contracts(site: HTTPServer, output: Path, path: str) -> unittest.TestResult:
    results = unittest.TestResult()
    spider = contracts_spider(results, path)
    result = await crawl_in_process(spider, output, base_url=base_url_of(site))
    assert result.returncode == 0, result.log
    assert "Traceback" not in result.log
    return results


def problems(results: unittest.TestResult) -> list[str]:
    return [f"{case}: {text}" for case, text in results.failures + results.errors]


@pytest_twisted.ensureDeferred
async def test_the_contracts_of_parse_article_pass(site: HTTPServer, tmp_path: Path) -> None:
    results = await check_contracts(site, tmp_path / "a", ARTICLE)
    assert problems(results) == []
    assert results.testsRun == 3  # @returns items, @returns requests, @scrapes
    assert results.wasSuccessful()


@pytest_twisted.ensureDeferred
async def test_the_contracts_of_parse_article_fail_without_a_title(
    site: HTTPServer, tmp_path: Path
) -> None:
    results = await check_contracts(site, tmp_path / "a", UNTITLED)
    assert not results.wasSuccessful()
    (failure,) = problems(results)
    assert "(@scrapes post-hook)" in failure and "Missing fields: title" in failure


def test_scrapyds_job_argument_is_accepted_and_dropped() -> None:
    # Scrapyd passes -a _job=<id> to every crawl it starts; refusing it fails every job.
    from crawler.spiders.cnbeta import CnbetaSpider

    assert "_job" not in CnbetaSpider.check_arguments(_job="6487ec79947edab326d6db28")


def test_the_consoles_are_off_and_not_even_loaded() -> None:
    """Scrapy imports every extension its settings list (even one set to None): the telnet
    console and the remote-control server (aiohttp) are not listed; the rest of Scrapy's are."""
    from scrapy.settings import Settings
    from scrapy.settings import default_settings as scrapy_defaults

    from crawler import settings as project_settings

    settings = Settings()
    settings.setmodule(project_settings, priority="project")
    listed = set(settings.getwithbase("EXTENSIONS"))
    consoles = {"scrapy.extensions.telnet.TelnetConsole",
                "scrapy.extensions.remote_control.RemoteControl"}  # fmt: skip
    assert not listed & consoles
    assert set(scrapy_defaults.EXTENSIONS_BASE) - consoles <= listed
    assert not settings.getbool("TELNETCONSOLE_ENABLED")
    assert not settings.getbool("REMOTE_CONTROL_ENABLED")
