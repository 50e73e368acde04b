"""The project deployed to a real Scrapyd: the egg ``scrapyd-deploy --build-egg`` makes, uploaded
with ``addversion.json``; ``schedule.json`` crawls (cnbeta and feeds) of the bundled demo site on
127.0.0.1, watched with ``listjobs.json`` until they finish, their posts in ``OUTPUT_DIR``.

Every request of the scheduled crawls goes to the demo server: the demo's guard
(crawler/demo/guard.py) refuses any other with an ERROR line, which fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import frontmatter
from support import PROJECT_ROOT, background_job

import crawler.settings as project_settings
from crawler.cli.demo import CONTENT_GUARD, GUARD
from crawler.demo.server import DemoServer

BIN = Path(sys.executable).parent
VERSION = "r1"
# Hang guards, not timing assertions: the whole job takes a few seconds.
START_DEADLINE = 30.0
CRAWL_DEADLINE = 60.0
# What scrapyd-deploy packs: the project as a checkout has it (copied, so that the build's
# setup.py, build/ and *.egg-info never touch the working tree).
PROJECT_FILES = ("scrapy.cfg", "pyproject.toml", "setup.py", "README.md")


@dataclass
class Job:
    spider: str
    output: Path
    state: str = "pending"  # as listjobs.json last said
    log: str = ""

    def posts(self) -> dict[str, frontmatter.Post]:
        return {
            path.relative_to(self.output).as_posix(): frontmatter.load(path)
            for path in sorted(self.output.glob("*/*/*.md"))
        }


@dataclass
class Deployment:
    egg: list[str]  # the names in the egg
    entry_points: str  # its EGG-INFO/entry_points.txt
    built: subprocess.CompletedProcess[str]  # scrapyd-deploy --build-egg
    addversion: dict[str, Any]
    spiders: dict[str, Any]  # listspiders.json
    jobs: dict[str, Job] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)  # paths the demo server answered
    seconds: float = 0.0
    egg_path: Path | None = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(base: str, endpoint: str, data: Any = None, timeout: float = 10.0) -> dict[str, Any]:
    """One Scrapyd API call: GET, or POST of ``data`` (a list of pairs, repeats allowed)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(f"{base}/{endpoint}", data=body, timeout=timeout) as answer:
        return json.loads(answer.read())


def upload(base: str, egg: Path) -> dict[str, Any]:
    """addversion.json with the egg as multipart/form-data, as scrapyd-deploy sends it."""
    boundary = "technews-harvester-egg"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("project", "crawler"), ("version", VERSION))
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="egg"; filename="project.egg"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + egg.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base}/addversion.json",
        data=b"".join(parts),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def scrapyd_conf(home: Path, port: int) -> Path:
    conf = home / "scrapyd.conf"
    conf.write_text(
        "[scrapyd]\n"
        "bind_address = 127.0.0.1\n"
        f"http_port = {port}\n"
        "poll_interval = 0.1\n"
        "max_proc = 1\n"
        f"eggs_dir = {home / 'eggs'}\n"
        f"logs_dir = {home / 'logs'}\n"
        f"dbs_dir = {home / 'dbs'}\n"
        f"items_dir = {home / 'items'}\n",
        encoding="utf-8",
    )
    return conf


def start_scrapyd(home: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCRAPY_")}
    # The crawls import the project from the uploaded egg, as on a Scrapyd host that does not
    # have it installed: this environment has it installed (editable), which a job would
    # otherwise import first (Scrapyd appends the egg to sys.path).
    env["PYTHONPATH"] = str(home / "eggs" / "crawler" / f"{VERSION}.egg")
    # Scrapyd reads ~/.scrapyd.conf after ./scrapyd.conf: a developer's own would win.
    env["HOME"] = str(home)
    return subprocess.Popen(
        [str(BIN / "scrapyd"), "--pidfile=", "--logfile", str(home / "scrapyd.log")],
        cwd=home, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_until_up(base: str, process: subprocess.Popen[bytes], home: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            if call(base, "daemonstatus.json", timeout=2)["status"] == "ok":
                return
        except OSError:
            pass
        log = home / "scrapyd.log"
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"scrapyd did not answer (exit status {process.poll()}):\n"
                + (log.read_text(encoding="utf-8") if log.is_file() else "")
            )
        time.sleep(0.05)


def build_egg(home: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    source = home / "project"
    source.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(PROJECT_ROOT / name, source / name)
    shutil.copytree(
        PROJECT_ROOT / "crawler", source / "crawler",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )  # fmt: skip
    egg = home / "crawler.egg"
    built = subprocess.run(
        [str(BIN / "scrapyd-deploy"), "--build-egg", str(egg)],
        cwd=source, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return egg, built


def demo_settings(origin: str, output: Path) -> list[tuple[str, str]]:
    """``setting=NAME=VALUE`` pairs: fast, and every request held to the demo server."""
    middlewares = {**project_settings.DOWNLOADER_MIDDLEWARES, GUARD: 10, CONTENT_GUARD: None}
    settings = {
        "OUTPUT_DIR": str(output),
        "DEMO_SERVER": origin,
        "DOWNLOADER_MIDDLEWARES": json.dumps(middlewares),
        "ALLOW_PRIVATE_ADDRESSES": "True",
        "RSSHUB_BASE": origin,
        "DOWNLOAD_DELAY": "0",
        "AUTOTHROTTLE_ENABLED": "False",
        "RETRY_BACKOFF_BASE": "0",
    }
    return [("setting", f"{name}={value}") for name, value in settings.items()]


def spider_arguments(spider: str, origin: str) -> list[tuple[str, str]]:
    if spider == "cnbeta":
        return [("base_url", f"{origin}/www.cnbeta.com.tw")]
    return [
        ("url", f"{origin}/www.theverge.com/rss/index.xml"),
        ("categories", "Tech,The Verge,All"),
        ("author", "The Verge"),
    ]


def wait_for_jobs(base: str, jobs: dict[str, Job]) -> None:
    deadline = time.monotonic() + CRAWL_DEADLINE
    while True:
        listed = call(base, "listjobs.json?project=crawler")
        for state in ("pending", "running", "finished"):
            for entry in listed[state]:
                if entry["id"] in jobs:
                    jobs[entry["id"]].state = state
        if all(job.state == "finished" for job in jobs.values()):
            return
        if time.monotonic() > deadline:
            return  # the test reports the state each job was left in
        time.sleep(0.1)


@background_job
def deployment(home: Path) -> Deployment:
    """Scrapyd started, the egg built and uploaded, a cnbeta and a feeds crawl scheduled and
    waited for; Scrapyd stopped."""
    started = time.monotonic()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scrapyd_conf(home, port)  # read from the folder Scrapyd starts in
    process = start_scrapyd(home)
    try:
        egg, built = build_egg(home)  # while Scrapyd starts
        wait_until_up(base, process, home)
        assert built.returncode == 0, built.stdout + built.stderr
        with zipfile.ZipFile(egg) as packed:
            names = packed.namelist()
            entry_points = packed.read("EGG-INFO/entry_points.txt").decode()
        result = Deployment(names, entry_points, built, upload(base, egg), {}, egg_path=egg)
        result.spiders = call(base, "listspiders.json?project=crawler")
        with DemoServer() as site:
            for spider in ("cnbeta", "feeds"):
                output = home / f"out-{spider}"
                answer = call(base, "schedule.json", [
                    ("project", "crawler"), ("spider", spider),
                    *demo_settings(site.origin, output), *spider_arguments(spider, site.origin),
                ])  # fmt: skip
                assert answer["status"] == "ok", answer
                result.jobs[answer["jobid"]] = Job(spider, output)
            wait_for_jobs(base, result.jobs)
            result.served = [served.path for served in site.requests()]
        for job_id, job in result.jobs.items():
            log = home / "logs" / "crawler" / job.spider / f"{job_id}.log"
            job.log = log.read_text(encoding="utf-8") if log.is_file() else ""
        result.seconds = time.monotonic() - started
        return result
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_egg_holds_the_package_data_and_the_settings_entry_point(
    deployment: Deployment,
) -> None:
    names = set(deployment.egg)
    for data in (
        "crawler/sources.toml",
        "crawler/post/post.schema.json",
        "crawler/demo/sources.toml",
        "crawler/demo/site/robots.txt",
        "crawler/demo/site/www.cnbeta.com.tw/index.html",
    ):
        assert data in names
    assert "crawler/settings.py" in names
    # Scrapyd finds the project's settings by this entry point, or runs no crawl at all.
    assert "[scrapy]\nsettings = crawler.settings" in deployment.entry_points
    assert deployment.addversion["status"] == "ok", deployment.addversion
    assert deployment.spiders["status"] == "ok", deployment.spiders
    assert {"cnbeta", "feeds"} <= set(deployment.spiders["spiders"])


def test_scheduled_crawls_write_their_posts_into_output_dir(deployment: Deployment) -> None:
    assert len(deployment.jobs) == 2
    for job in deployment.jobs.values():
        assert job.state == "finished", f"{job.spider}: still {job.state}\n{job.log}"
        assert job.log, f"{job.spider}: no job log"
        assert "'finish_reason': 'finished'" in job.log, job.log
        assert "] ERROR:" not in job.log and "Traceback" not in job.log, job.log
        assert "demo/refused_offsite" not in job.log
        posts = job.posts()
        assert posts, f"{job.spider}: no post in {job.output}\n{job.log}"
        for post in posts.values():
            assert post["title"] and post["date"] and post.content
    by_spider = {job.spider: job for job in deployment.jobs.values()}
    assert any(post["author"] == "cnBeta" for post in by_spider["cnbeta"].posts().values())
    assert all(post["author"] == "The Verge" for post in by_spider["feeds"].posts().values())
    # Both crawls asked the demo server (and, by the guard, nothing else).
    assert any(path.startswith("/www.cnbeta.com.tw/") for path in deployment.served)
    assert "/www.theverge.com/rss/index.xml" in deployment.served


def test_the_bundled_sources_load_from_inside_the_egg(deployment: Deployment) -> None:
    # `scrapy crawl feeds` with no -a sources= under Scrapyd: crawler/sources.toml is in a zip.
    code = "import crawler.sources as s; print(s.__file__); print(len(s.load_sources()))"
    assert deployment.egg_path is not None
    env = {**os.environ, "PYTHONPATH": str(deployment.egg_path)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=deployment.egg_path.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    where, count = done.stdout.split()
    assert ".egg" in where
    assert int(count) >= 10
