"""One benchmark of the harvester: a synthetic cnBeta-shaped site on loopback, crawled as a
user crawls it (subprocesses), plus the durable-write ceiling and the dedup cost.

Usage: ``python bench/run.py [--articles N] [--feeds N] [--entries M] [--rounds N] [--large]
[--large-sizes 10000,100000] [--smoke] [--output PATH]``. ``--large`` adds a full crawl of a
fresh site of each large size (its peak RSS), ``reindex`` of the largest archive and the dedup
cost at 1M keys.
Prints one table and writes bench/results.json (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CSRF = "Q3RfS2VfVG9rZW4-Mx8yU0BhVE0+aW4="
PER_PAGE = 50
FIRST_SID = 1_200_000
TEXT = (
    "对于上述消息，阿里和腾讯均表示暂不回应。从现状看，得益于微信小程序，很多中小微商家"
    "逐渐成长为另外一个生机勃勃的电商系统。国产操作系统发布新版本，性能提升明显。"
)

# --- 1. the synthetic site --------------------------------------------------------------


def _inputtime(i: int) -> str:
    # Distinct times, one minute and one second apart, going back from 2021-07-17 22:35:32.
    base = time.mktime((2021, 7, 17, 22, 35, 32, 0, 0, -1))
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(base - i * 61))


def article_page(i: int) -> str:
    sid = FIRST_SID + i
    title = f"合成测试文章第{i}篇：阿里腾讯已悄然握手 {sid}"
    stamp = _inputtime(i)
    day, clock = stamp.split(" ")
    y, m, d = day.split("-")
    paragraphs = []
    size = 8000 + (i * 7919) % 12000  # 8-20 KB of text
    n = 0
    while sum(len(p.encode()) for p in paragraphs) < size:
        paragraphs.append(f"<p>{TEXT}（第{i}篇第{n}段）</p>")
        n += 1
    for k in range(1 + i % 5):  # 1-5 lazy images
        at = (k + 1) * len(paragraphs) // 6
        paragraphs.insert(
            at,
            f'<p><img src="//static.cnbetacdn.com/grey.gif" '
            f'data-original="https://static.cnbetacdn.com/article/{sid}/{k}.jpg"></p>',
        )
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="csrf-token" content="{CSRF}"><title>{title}_cnBeta.COM</title></head>'
        '<body><div class="cnbeta-article-wrapper"><div class="cnbeta-article">'
        f'<header class="title"><h1>{title}</h1><div class="meta">'
        f"<span>{y}年{m}月{d}日 {clock[:5]}</span>"
        '<span class="source">稿源：<span>cnBeta</span></span></div></header>'
        '<div class="cnbeta-article-body"><div class="article-summary">'
        f"<p><strong>摘要：第{i}篇的摘要。</strong></p></div>"
        '<div class="article-content" id="artibody">' + "\n".join(paragraphs) + "</div>"
        "</div></div></div></body></html>\n"
    )


def json_entry(i: int) -> dict[str, Any]:
    sid = FIRST_SID + i
    stamp = _inputtime(i)
    return {
        "sid": str(sid), "catid": "8", "topic": "9", "aid": "bench",
        "title": f"合成测试文章第{i}篇：阿里腾讯已悄然握手 {sid}",
        "hometext": f"<p>第{i}篇</p>", "comments": "0", "counter": "1024",
        "inputtime": stamp, "updatetime": stamp,
        "thumb": f"https://static.cnbetacdn.com/thumb/{sid}.jpg_100x100.jpg",
        "source": "cnBeta.COM@https://www.cnbeta.com.tw",
        "url_show": f"//www.cnbeta.com.tw/articles/tech/{sid}.htm",
        "related": [], "label": {"name": "互联网", "class": "label-1"},
    }  # fmt: skip


def build_site(folder: Path, articles: int) -> int:
    """Writes the site into folder; returns how many JSON pages it has."""
    (folder / "articles" / "tech").mkdir(parents=True)
    (folder / "more").mkdir()
    (folder / "index.html").write_text(
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="csrf-param" content="_csrf"><meta name="csrf-token" content="{CSRF}">'
        '</head><body><div class="items-area" data-type="all"></div></body></html>',
        encoding="utf-8",
    )
    pages = max(1, -(-articles // PER_PAGE))
    for page in range(1, pages + 2):  # the last one is empty: the list ends
        rows = [json_entry(i) for i in range((page - 1) * PER_PAGE, min(page * PER_PAGE, articles))]
        body = {"state": "success", "message": "", "result": {"list": rows}}
        (folder / "more" / f"{page}.json").write_text(json.dumps(body, ensure_ascii=False))
    for i in range(articles):
        path = folder / "articles" / "tech" / f"{FIRST_SID + i}.htm"
        path.write_text(article_page(i), encoding="utf-8")
    return pages


# --- 2. the server (a separate process) ---------------------------------------------------

SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

root = Path(sys.argv[1])
files = {}
for path in root.rglob("*"):
    if path.is_file():
        files["/" + path.relative_to(root).as_posix()] = path.read_bytes()
EMPTY = files.get("/more/empty.json", b'{"state":"success","message":"","result":{"list":[]}}')

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        parts = urlsplit(self.path)
        kind = "text/html; charset=utf-8"
        if parts.path == "/":
            body = files.get("/index.html")
        elif parts.path == "/home/more":
            page = parse_qs(parts.query).get("page", ["1"])[0]
            body = files.get(f"/more/{page}.json", EMPTY)
            kind = "application/json; charset=UTF-8"
        else:
            body = files.get(parts.path)
            if parts.path.endswith(".xml"):
                kind = "application/rss+xml; charset=utf-8"
        if body is None:
            body, status = b"not found", 404
        else:
            status = 200
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""

NGINX = """worker_processes 2; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};
fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
types {{ text/html htm html; application/json json; application/rss+xml xml; }}
server {{ listen 127.0.0.1:{port}; root {root}; keepalive_requests 100000;
location = / {{ try_files /index.html =404; }}
location /home/more {{ default_type application/json; try_files /more/$arg_page.json
/more/empty.json; }} }} }}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, tmp: Path, port: int) -> tuple[subprocess.Popen[bytes], str, str]:
    """A server of root in its own process: nginx when installed, else Python's."""
    empty = '{"state":"success","message":"","result":{"list":[]}}'
    (root / "more" / "empty.json").write_text(empty)
    nginx = shutil.which("nginx")
    if nginx:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX.format(tmp=tmp, port=port, root=root))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)])
        kind = "nginx"
    else:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(root), str(port)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        kind = "python ThreadingHTTPServer (HTTP/1.1, in memory)"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", kind


# --- 2b. the feeds: RSS 2.0 files, 2-10 KB of HTML an entry ---------------------------------


def feed_document(f: int, entries: int, base: str) -> bytes:
    items = []
    for e in range(entries):
        n = f * entries + e
        size = 2000 + (n * 7919) % 8000  # 2-10 KB
        body, k = [], 0
        while sum(len(p.encode()) for p in body) < size:
            body.append(f'<p>{TEXT} <a href="/r/{n}/{k}">链接</a> Release notes {k}.</p>')
            k += 1
        body.insert(1, f'<p><img src="https://img.example.com/{n}.jpg" alt=""></p>')
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0800", time.gmtime(1626500000 - n * 97))
        items.append(
            f"<item><title>订阅源{f}的第{e}条：国产系统发布新版本 {n}</title>"
            f'<link>{base}/posts/{f}/{e}.html</link><guid isPermaLink="false">bench-{n}</guid>'
            f"<pubDate>{stamp}</pubDate><category>科技</category>"
            f"<description><![CDATA[{''.join(body)}]]></description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>订阅源 {f}</title><link>{base}/</link><description>bench</description>"
        + "".join(items)
        + "</channel></rss>\n"
    ).encode()


def build_feeds(folder: Path, feeds: int, entries: int, base: str) -> Path:
    """Writes folder/feeds/N.xml and a sources file naming them; returns the sources file."""
    (folder / "feeds").mkdir(parents=True, exist_ok=True)
    tables = []
    for f in range(feeds):
        (folder / "feeds" / f"{f}.xml").write_bytes(feed_document(f, entries, base))
        tables.append(
            f'[[source]]\nname = "feed{f}"\nurl = "{base}/feeds/{f}.xml"\n'
            f'categories = ["科技", "订阅源{f}", "最新"]\nauthor = "订阅源{f}"\n'
        )
    sources = folder.parent / "feeds.toml"
    sources.write_text("\n".join(tables), encoding="utf-8")
    return sources


def feedparser_rate(folder: Path) -> float:
    """Entries per second of feedparser alone over the feed files, as the spider calls it."""
    from bench_feeds import entries_per_second

    from crawler.extract.feedparser_speedup import install_speedups

    install_speedups()  # the same feedparser speed-up as the crawl

    documents = [path.read_bytes() for path in sorted((folder / "feeds").glob("*.xml"))]
    return entries_per_second(documents, rounds=1, own_cleaning=False)


STOCK_FEEDPARSER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from bench_feeds import entries_per_second
documents = [path.read_bytes() for path in sorted(Path(sys.argv[1]).glob("*.xml"))]
print(entries_per_second(documents, rounds=1, own_cleaning=False))
"""


def stock_feedparser_rate(folder: Path) -> float:
    """:func:`feedparser_rate` of feedparser as installed, without this project's speed-up
    (crawler/extract/feedparser_speedup.py): in a process that never imports ``crawler``."""
    bench = Path(__file__).resolve().parent
    command = [sys.executable, "-c", STOCK_FEEDPARSER, str(folder / "feeds"), str(bench)]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


# --- 3. crawls as subprocesses ----------------------------------------------------------

FAST = (
    "-s", "DOWNLOAD_DELAY=0", "-s", "AUTOTHROTTLE_ENABLED=False",
    "-s", "CONCURRENT_REQUESTS=32", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=32",
    "-s", "LOG_LEVEL=WARNING", "-s", "ROBOTSTXT_OBEY=False", "-s", "RETRY_BACKOFF_BASE=0",
)  # fmt: skip


CPU_SECONDS: dict[Path, float] = {}  # log path -> CPU seconds of that crawl (with its workers)

# Runs each measured command and reports its wait4() figures. Linux carries a parent's peak
# RSS into a child it forks (exec records the forked copy's high-water mark), so a crawl
# started by this process after it held a 1M-key state would report this process's peak, not
# its own: commands are started by this small process, itself started before anything large.
SPAWNER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    began = time.perf_counter()
    with open(job["log"], "wb") as out:
        proc = subprocess.Popen(job["cmd"], cwd=job["cwd"], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    print(json.dumps({
        "seconds": time.perf_counter() - began, "rss_kib": usage.ru_maxrss,
        "rc": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime,
    }), flush=True)
"""
_spawner: subprocess.Popen[str] | None = None


def start_spawner() -> None:
    """Start the process that runs measured commands (at start-up, while this one is small)."""
    global _spawner
    _spawner = subprocess.Popen(
        [sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def timed(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """Seconds, peak RSS (MiB) and exit status of a child process."""
    if _spawner is None:
        start_spawner()
    assert _spawner is not None and _spawner.stdin is not None and _spawner.stdout is not None
    _spawner.stdin.write(json.dumps({"cmd": cmd, "log": str(log), "cwd": str(ROOT)}) + "\n")
    _spawner.stdin.flush()
    done = json.loads(_spawner.stdout.readline())
    # User + system time of the crawl and the children it waited for (the cleaning worker):
    # what the crawl costs, less sensitive than wall time to what else the machine runs.
    CPU_SECONDS[log] = done["cpu"]
    return done["seconds"], done["rss_kib"] / 1024, done["rc"]


def crawl(spider: str, output: Path, log: Path, *args: str) -> tuple[float, float, int]:
    cmd = [sys.executable, "-m", "scrapy", "crawl", spider, *FAST]
    return timed([*cmd, "-s", f"OUTPUT_DIR={output}", *args], log)


def posts(output: Path) -> int:
    return len(list(output.glob("*/*/*.md")))


# --- 4. durable writes and dedup -----------------------------------------------------------


def durable_writes(folder: Path, count: int = 2000, size: int = 12 * 1024) -> float:
    """Files per second: write + fsync + close + rename, as the archive stores a post."""
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    began = time.perf_counter()
    for i in range(count):
        tmp = folder / f".{i}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, folder / f"{i}.md")
    return count / (time.perf_counter() - began)


def file_create_cost(folder: Path, count: int = 2000, size: int = 12 * 1024) -> float:
    """Microseconds of kernel CPU per new 12 KB file (create, write, close; no fsync) in a
    fresh ``folder``. ext4 without a journal (the bench machine's root file system) does not
    reuse an inode freed in the last 1-6 minutes: each new file's allocation walks past every
    such inode of its block group (``recently_deleted``, 67% of the kernel time in perf), so
    right after thousands of files were deleted (an earlier run's archive) a new file costs
    400-800 us instead of 20. Every post is a new file: the figure tells how much of a
    crawl's time that took, whatever the code."""
    folder.mkdir(parents=True)
    data = os.urandom(size)
    before = os.times().system
    for i in range(count):
        fd = os.open(folder / f"{i}.md", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    return (os.times().system - before) / count * 1e6


def dedup_cost(folder: Path, size: int, ops: int = 2000) -> float:
    """Microseconds per knows + remember of a new story, with size keys already stored."""
    from crawler.archive.state import KEY_VERSION, ArchiveState

    folder.mkdir(parents=True)
    state = ArchiveState(folder)
    rows = [
        (kind, f"{kind}-{i:012d}", f"2021/07/{i}.md") for i in range(size // 2)
        for kind in ("title", "url")
    ]  # fmt: skip
    state.replace_story_keys(rows, KEY_VERSION)
    began = time.perf_counter()
    for i in range(ops):
        title, url = f"title-new-{i}", f"url-new-{i}"
        if state.knows(title_key=title, url_key=url) is None:
            state.remember(f"new/{i}.md", title, url)
    elapsed = time.perf_counter() - began
    state.close()
    return elapsed / ops * 1e6


# --- 5. large runs: memory as the archive grows, reindex -----------------------------------


def large_runs(table: Table, tmp: Path, sizes: list[int]) -> None:
    """A full cnbeta crawl of a fresh site of each size (peak RSS must not grow with it),
    then ``reindex`` of the largest archive."""
    out = tmp
    for size in sizes:
        home = tmp / f"large-{size}"
        home.mkdir()
        pages = build_site(home / "site", size)
        server, base, _kind = start_server(home / "site", home, free_port())
        try:
            out = home / "out"
            seconds, rss, rc = crawl(
                "cnbeta", out, home / "crawl.log", "-a", f"base_url={base}", "-a", f"pages={pages}"
            )
        finally:
            server.terminate()
            server.wait()
        table.add(f"large_{size}_crawl_s", seconds, "s", f"exit {rc}, {posts(out)} of {size}")
        table.add(f"large_{size}_peak_rss", rss, "MiB")
        shutil.rmtree(home / "site")
    seconds, rss, rc = timed(
        [sys.executable, "-m", "crawler", "reindex", str(out)], tmp / "reindex.log"
    )
    table.add("reindex_s", seconds, "s", f"exit {rc}, {posts(out)} posts")
    table.add("reindex_peak_rss", rss, "MiB")


# --- the table ------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, Any, str, str]] = []

    def add(self, name: str, value: Any, unit: str = "", note: str = "") -> None:
        if isinstance(value, float):
            value = round(value, 3 if value < 10 else 1)
        self.rows.append((name, value, unit, note))
        print(f"  {name}: {value} {unit} {note}", file=sys.stderr, flush=True)

    def print(self) -> None:
        head = ("name", "value", "unit", "note")
        cells = [head, *[(n, str(v), u, t) for n, v, u, t in self.rows]]
        widths = [max(len(row[c]) for row in cells) for c in range(3)]
        for row in cells:
            print("  ".join(str(c).ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3])

    def json(self) -> dict[str, Any]:
        return {n: {"value": v, "unit": u, "note": t} for n, v, u, t in self.rows}


def site_crawls(table: Table, tmp: Path, site_args: tuple[str, ...], n: int, rounds: int) -> None:
    """``rounds`` pairs of crawls of the site, without pipelines then full (each full crawl
    into a fresh archive): the median of the pairs' ratios, as the machine's speed drifts;
    then the re-run over the first archive."""
    pairs = []
    for r in range(rounds):
        t0, _, rc0 = crawl(
            "cnbeta", tmp / f"out0-{r}", tmp / f"nopipe{r}.log", "-s", "ITEM_PIPELINES={}",
            *site_args,
        )  # fmt: skip
        t1, rss1, rc1 = crawl("cnbeta", tmp / f"out-{r}", tmp / f"full{r}.log", *site_args)
        cpu0, cpu1 = CPU_SECONDS[tmp / f"nopipe{r}.log"], CPU_SECONDS[tmp / f"full{r}.log"]
        pairs.append((t0 / t1, t0, t1, rss1, rc0, rc1, cpu0, cpu1, posts(tmp / f"out-{r}")))
    ratio, t0, t1, _, rc0, rc1, cpu0, cpu1, _ = sorted(pairs)[len(pairs) // 2]
    spread = f"{min(p[0] for p in pairs):.3f}-{max(p[0] for p in pairs):.3f}"
    table.add("crawl_nopipe_s", t0, "s", f"exit {rc0}; the median pair of {rounds}")
    table.add("crawl_nopipe_rate", n / t0, "articles/s")
    table.add("crawl_nopipe_cpu_ms", cpu0 / n * 1000, "ms/article")
    table.add("crawl_full_s", t1, "s", f"exit {rc1}")
    table.add("crawl_full_rate", n / t1, "articles/s")
    table.add("crawl_full_cpu_ms", cpu1 / n * 1000, "ms/article")
    table.add("crawl_full_written", min(p[-1] for p in pairs), "posts", f"of {n}, fewest")
    table.add("crawl_ratio", ratio, "x", f"speed full / no-pipeline, median ({spread})")
    table.add("crawl_full_peak_rss", max(p[3] for p in pairs), "MiB")
    out = tmp / "out-0"
    before = posts(out)
    t2, rss2, rc2 = crawl("cnbeta", out, tmp / "rerun.log", *site_args)
    table.add("rerun_s", t2, "s", f"exit {rc2}")
    table.add("rerun_written", posts(out) - before, "posts", "new posts")
    table.add("rerun_speedup", pairs[0][2] / t2, "x", "full / re-run time")
    table.add("rerun_peak_rss", rss2, "MiB")


def feeds_crawls(
    table: Table, tmp: Path, site: Path, sources: Path, entries: int, rounds: int
) -> None:
    """feedparser alone (with the speed-up, and as installed) and the feeds crawl (each into
    a fresh archive), best of ``rounds`` each, as the issue's side-by-side measured them."""
    rate = max(feedparser_rate(site) for _ in range(rounds))
    table.add("feedparser_rate", rate, "entries/s", f"{entries} entries, parse alone, best")
    stock = max(stock_feedparser_rate(site) for _ in range(rounds))
    table.add("feedparser_stock_rate", stock, "entries/s", "as installed, no speed-up, best")
    runs = []
    for r in range(rounds):
        out = tmp / f"feeds-out-{r}"
        t3, rss3, rc3 = crawl("feeds", out, tmp / f"feeds{r}.log", "-a", f"sources={sources}")
        runs.append((t3, rss3, rc3, posts(out)))
    t3, _, rc3, _ = min(runs)
    table.add("feeds_crawl_s", t3, "s", f"exit {rc3}; best of {rounds}")
    table.add("feeds_written", min(run[3] for run in runs), "posts", f"of {entries}, fewest")
    table.add("feeds_rate", entries / t3, "entries/s")
    table.add("feeds_ratio", entries / t3 / rate, "x", "crawl / feedparser alone")
    table.add("feeds_ratio_stock", entries / t3 / stock, "x", "crawl / stock feedparser")
    table.add("feeds_peak_rss", max(run[1] for run in runs), "MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument(
        "--large", action="store_true", help="crawls of 10k and 100k articles, reindex, 1M keys"
    )
    parser.add_argument("--large-sizes", default="10000,100000", help="articles per large run")
    parser.add_argument("--dedup-max", action="store_true", help="add the 1M-key dedup size")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a test)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="site crawl pairs (median) and feeds runs (best)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.articles, args.feeds, args.entries = 60, 3, 10
        args.large_sizes = "30"
        args.rounds = 1
    sizes = [1000] if args.smoke else [1000, 100_000]
    creates = 200 if args.smoke else 2000
    if args.large or args.dedup_max:
        sizes.append(1_000_000)
    start_spawner()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="bench-", dir=ROOT / "bench") as name:
        tmp = Path(name)
        site = tmp / "site"
        pages = build_site(site, args.articles)
        port = free_port()
        sources = build_feeds(site, args.feeds, args.entries, f"http://127.0.0.1:{port}")
        server, base, kind = start_server(site, tmp, port)
        try:
            table.add("server", "nginx" if kind == "nginx" else "python", "", kind)
            site_args = ("-a", f"base_url={base}", "-a", f"pages={pages}")
            n = args.articles
            create = file_create_cost(tmp / "create-before", creates)
            table.add("file_create_us_before", create, "us/file", "kernel CPU, before the crawls")
            site_crawls(table, tmp, site_args, n, args.rounds)
            feeds_crawls(table, tmp, site, sources, args.feeds * args.entries, args.rounds)
            create = file_create_cost(tmp / "create-after", creates)
            table.add("file_create_us_after", create, "us/file", "kernel CPU, after the crawls")
        finally:
            server.terminate()
            server.wait()
        ceiling = max(durable_writes(tmp / f"fsync-{r}") for r in range(args.rounds))
        table.add("durable_write_ceiling", ceiling, "files/s", f"12 KB, best of {args.rounds}")
        from stages import pipelines_rate, stage_times

        stage_n = min(args.articles, 1000)
        for stage, micros in stage_times(stage_n, tmp / "stages").items():
            table.add(f"stage_{stage}_us", micros, "us/article", f"{stage_n} articles, one thread")
        rate = max(pipelines_rate(stage_n, tmp / f"pipelines-{r}") for r in range(args.rounds))
        table.add("pipelines_rate", rate, "articles/s", "normalize+dedup+write, 32 in flight, best")
        table.add("pipelines_vs_ceiling", rate / ceiling, "x", "of the durable-write ceiling")
        costs = {}
        for size in sizes:
            costs[size] = dedup_cost(tmp / f"dedup-{size}", size)
            table.add(f"dedup_us_{size}", costs[size], "us/op", f"{size} keys stored")
        if 1_000_000 in costs:
            table.add("dedup_ratio_1m_1k", costs[1_000_000] / costs[1000], "x")
        if args.large or args.smoke:
            large_runs(table, tmp, [int(size) for size in args.large_sizes.split(",")])
    table.print()
    args.output.write_text(json.dumps(table.json(), ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
