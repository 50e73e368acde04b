"""The harvest's crawls and its report, in-process: :class:`crawler.cli.harvest.Harvest` on a
CrawlerRunner of the test's reactor (the command runs the same on its CrawlerProcess). What
only the process shows (exit statuses, real signals, the lock) is in tests/test_harvest.py
and tests/test_interrupt.py."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest_twisted
from pytest_httpserver import HTTPServer
from scrapy.crawler import CrawlerRunner
from support import captured_log, crawl_settings, serve_cnbeta, source_table, write_sources
from twisted.internet import reactor

from crawler.cli.harvest import Crawl, Harvest, Interruption, plan
from crawler.cli.report import Report
from crawler.sources import load_sources

CNBETA = source_table("cnbeta", spider="cnbeta", base_url="{base}",
                      categories=["新媒体", "cnBeta", "最新"], author="cnBeta")  # fmt: skip
RDF = source_table("rdf", url="{base}/feeds/rss1.rdf", categories=["a", "b"], author="R")
MISSING = source_table("missing", url="{base}/feeds/missing.xml", categories=["a"], author="M")


async def harvest(
    runner: CrawlerRunner, crawls: list[Crawl], output: Path, signum: int | None = None
) -> tuple[Report, list[str]]:
    """The crawls one after the other, as the command runs them; with ``signum``, that
    signal's handler is called on the reactor's next turn (the first crawl is starting)."""
    run = Harvest(crawls, output)
    interruption = Interruption(runner, reactor)
    if signum is not None:
        reactor.callLater(0, interruption._received, signum, None)
    with captured_log() as log:
        await run.crawl_all(runner, interruption)
    return run.report(interruption), log


def runner_for(output: Path) -> CrawlerRunner:
    # The fixture site carries one undated article of eight (tests/support.py LENIENT_DRIFT).
    return CrawlerRunner(crawl_settings(output, DRIFT_MIN_EXTRACTION=0.8))


@pytest_twisted.ensureDeferred
async def test_site_sources_then_the_feeds_each_reported(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    serve_cnbeta(feed_site)
    sources = load_sources(write_sources(tmp_path / "s.toml", feed_site, CNBETA, RDF, MISSING))
    crawls = plan(sources)
    assert [crawl.spider for crawl in crawls] == ["cnbeta", "feeds"]
    report, _ = await harvest(runner_for(tmp_path / "out"), crawls, tmp_path / "out")
    by_name = {source.name: source for source in report.sources}
    assert {name: (s.new, s.status) for name, s in by_name.items()} == {
        "cnbeta": (7, "ok"), "rdf": (1, "ok"), "missing": (0, "FAILED"),
    }  # fmt: skip
    assert "404" in (by_name["missing"].reason or "")
    assert report.exit_status == 1
    assert len(list((tmp_path / "out").glob("*/*/*.md"))) == 8


@pytest_twisted.ensureDeferred
async def test_a_crawl_that_cannot_start_fails_its_sources_and_the_next_runs(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    sources = load_sources(write_sources(tmp_path / "s.toml", feed_site, RDF))
    broken = Crawl(spider="nosuchspider", arguments={}, sources=sources)
    report, log = await harvest(
        runner_for(tmp_path / "out"), [broken, *plan(sources)], tmp_path / "out"
    )
    first, second = report.sources
    assert first.status == "FAILED"
    assert (first.reason or "").startswith("crawl failed: KeyError: ")
    assert any("crawl failed: KeyError" in line for line in log)
    assert (second.name, second.new, second.status) == ("rdf", 1, "ok")
    assert report.exit_status == 1


@pytest_twisted.ensureDeferred
async def test_a_signal_stops_the_running_crawl_and_no_other_starts(
    feed_site: HTTPServer, tmp_path: Path
) -> None:
    serve_cnbeta(feed_site)
    sources = load_sources(write_sources(tmp_path / "s.toml", feed_site, CNBETA, RDF))
    report, log = await harvest(
        runner_for(tmp_path / "out"), plan(sources), tmp_path / "out", signal.SIGTERM
    )
    cnbeta, rdf = report.sources
    assert cnbeta.interrupted and not cnbeta.failed
    assert cnbeta.reason == "SIGTERM before it was done"
    assert (rdf.interrupted, rdf.reason) == (True, "not run: interrupted")
    assert report.exit_status == 128 + signal.SIGTERM
    assert sum("received SIGTERM: stopping" in line for line in log) == 1
    # The feed was never asked for: its crawl did not start.
    assert not any(request.path.startswith("/feeds/") for request, _ in feed_site.log)
