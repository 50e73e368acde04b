"""``python -m crawler export --hexo SITE_DIR`` (crawler/publish/hexo.py), in-process: what
it copies where, idempotence, the site's own files, planted symlinks, a broken manifest.
tests/test_hexo_site.py runs the command line and the real Hexo over its result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import FIXTURES, PROJECT_ROOT, background_job

from crawler.cli.main import main
from crawler.publish.hexo import MANIFEST

GOLDEN = (FIXTURES / "golden" / "cnbeta-2021-07-17.md").read_bytes()
FIRST = "2021/07/2021-07-17-first-00000001.md"
SECOND = "2022/01/2022-01-01-second-00000002.md"
IMAGE = "ab/abcdef.png"


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "archive")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site")


def make_archive(folder: Path) -> Path:
    for relpath, data in ((FIRST, GOLDEN), (SECOND, GOLDEN.replace(b"cnBeta", b"other"))):
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / relpath).write_bytes(data)
    (folder / ".index.jsonl").write_text("{}\n", encoding="utf-8")  # hidden: not exported
    (folder / "images" / "ab").mkdir(parents=True)
    (folder / "images" / IMAGE).write_bytes(b"\x89PNG image")
    return folder


def make_site(folder: Path) -> Path:
    (folder / "source" / "_posts").mkdir(parents=True)
    (folder / "_config.yml").write_text("title: mine\n", encoding="utf-8")
    (folder / "source" / "_posts" / "hello.md").write_text("---\ntitle: mine\n---\n")
    return folder


def export(archive: Path, site: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["export", str(archive), "--hexo", str(site)])
    out, err = capsys.readouterr()
    return status, out, err


def posts(site: Path) -> Path:
    return site / "source" / "_posts"


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file below ``folder``: inode, modification time and bytes."""
    return {
        path.relative_to(folder).as_posix(): (path.stat().st_ino, path.stat().st_mtime_ns,
                                              path.read_bytes())
        for path in sorted(folder.rglob("*")) if path.is_file()
    }  # fmt: skip


def test_posts_and_images_are_copied_and_listed(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = export(archive, site, capsys)
    assert (status, err) == (0, "")
    assert out.startswith("hexo: 3 new, 0 updated, 0 unchanged, 0 removed, 0 kept, 0 failed")
    assert (posts(site) / FIRST).read_bytes() == GOLDEN
    assert not (posts(site) / FIRST).is_symlink()
    assert (site / "source" / "images" / IMAGE).read_bytes() == b"\x89PNG image"
    assert not (posts(site) / ".index.jsonl").exists()
    listed = json.loads((site / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert sorted(listed) == [f"images/{IMAGE}", f"posts/{FIRST}", f"posts/{SECOND}"]
    assert (posts(site) / "hello.md").read_text() == "---\ntitle: mine\n---\n"
    assert not [p for p in site.rglob("*.tmp")]


def test_a_second_run_changes_nothing(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export(archive, site, capsys)
    before = snapshot(site)
    status, out, _err = export(archive, site, capsys)
    assert status == 0
    assert out.startswith("hexo: 0 new, 0 updated, 3 unchanged, 0 removed")
    after = snapshot(site)
    del before[MANIFEST], after[MANIFEST]  # rewritten, with the same content
    assert after == before


def test_the_site_follows_the_archive_but_keeps_its_own_edits(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export(archive, site, capsys)
    (posts(site) / SECOND).write_bytes(b"edited by the site's owner")
    (archive / FIRST).write_bytes(GOLDEN + b" ")  # repaired in the archive
    (archive / SECOND).unlink()
    (archive / "images" / IMAGE).unlink()
    status, out, err = export(archive, site, capsys)
    assert status == 0
    assert out.startswith("hexo: 0 new, 1 updated, 0 unchanged, 1 removed, 1 kept, 0 failed")
    assert err == f"kept {posts(site) / SECOND}: edited in the site since it was exported\n"
    assert (posts(site) / FIRST).read_bytes() == GOLDEN + b" "
    assert (posts(site) / SECOND).read_bytes() == b"edited by the site's owner"
    assert not (site / "source" / "images" / IMAGE).exists()
    listed = json.loads((site / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert sorted(listed) == [f"posts/{FIRST}"]  # the edited post is the site's own now


def test_the_sites_own_file_of_the_same_name_is_a_failure_left_alone(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (posts(site) / FIRST).parent.mkdir(parents=True)
    (posts(site) / FIRST).write_bytes(b"the site's own")
    (posts(site) / SECOND).parent.mkdir(parents=True)
    (posts(site) / SECOND).write_bytes((archive / SECOND).read_bytes())  # a killed run's copy
    status, out, err = export(archive, site, capsys)
    assert status == 1
    assert err == f"error: {posts(site) / FIRST}: the site's own file has this name, left alone\n"
    assert out.startswith("hexo: 1 new, 0 updated, 1 unchanged, 0 removed, 0 kept, 1 failed")
    assert (posts(site) / FIRST).read_bytes() == b"the site's own"
    listed = json.loads((site / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert f"posts/{FIRST}" not in listed and f"posts/{SECOND}" in listed  # adopted


def symlinked(relpath: str) -> Callable[[Path], None]:
    """Move ``site/relpath`` away and put a symlink to it in its place."""

    def prepare(site: Path) -> None:
        (site / relpath).rename(site / "elsewhere")
        (site / relpath).symlink_to(site / "elsewhere")

    return prepare


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda site: (site / "_config.yml").unlink(), "not a Hexo site (no _config.yml)"),
        (lambda site: shutil.rmtree(site), "not a directory"),
        (symlinked("_config.yml"), "_config.yml is a symlink"),
        (symlinked("source"), "source is a symlink"),
        (symlinked("source/_posts"), "source/_posts is a symlink"),
    ],
)
def test_not_a_site_or_a_symlinked_posts_folder_is_a_usage_error(
    archive: Path,
    site: Path,
    capsys: pytest.CaptureFixture[str],
    prepare: Callable[[Path], None],
    message: str,
) -> None:
    prepare(site)
    before = snapshot(site.parent)
    status, out, err = export(archive, site, capsys)
    assert (status, out) == (2, "")
    assert err == f"error: --hexo {site}: {message}\n"
    assert snapshot(site.parent) == before


def test_symlinks_planted_below_the_posts_folder_are_refused(
    archive: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (posts(site) / "2021").symlink_to(outside)  # a folder
    (site / "source" / "images").symlink_to(outside)
    status, _out, err = export(archive, site, capsys)
    assert status == 1
    assert f"error: {posts(site) / FIRST}: a symlink, refused" in err.splitlines()
    assert f"error: {site / 'source' / 'images' / IMAGE}: a symlink, refused" in err.splitlines()
    assert list(outside.iterdir()) == []
    assert (posts(site) / SECOND).read_bytes() != b""  # the others are exported


def test_a_symlink_at_a_posts_name_is_refused(
    archive: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (posts(site) / FIRST).parent.mkdir(parents=True)
    (posts(site) / FIRST).symlink_to(victim)
    status, _out, err = export(archive, site, capsys)
    assert status == 1
    assert f"error: {posts(site) / FIRST}: a symlink, refused\n" in err
    assert victim.read_text() == "precious" and (posts(site) / FIRST).is_symlink()


def test_symlinks_in_the_archive_are_not_exported(
    archive: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret")
    (archive / "2021" / "07" / "2021-07-18-planted-00000003.md").symlink_to(secret)
    (archive / "images" / "planted.png").symlink_to(secret)
    status, _out, err = export(archive, site, capsys)
    assert status == 1
    assert err.splitlines() == [
        f"error: {archive / '2021/07/2021-07-18-planted-00000003.md'}: a symlink in the archive,"
        " not exported",
        f"error: {archive / 'images/planted.png'}: a symlink in the archive, not exported",
    ]
    assert "secret" not in {p.read_text(errors="replace") for p in site.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "manifest",
    [b"not json", b'{"files": []}', b'{"files": {"posts/../../etc/passwd": "x"}}', b"\xff"],
)
def test_a_broken_manifest_stops_the_export(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str], manifest: bytes
) -> None:
    (site / MANIFEST).write_bytes(manifest)
    status, _out, err = export(archive, site, capsys)
    assert status == 1
    assert err.startswith(f"error: {site / MANIFEST}: not a manifest this program wrote")
    assert len(err.splitlines()) == 1
    assert not (posts(site) / "2021").exists()
    assert (site / MANIFEST).read_bytes() == manifest


def test_a_fifo_at_a_posts_name_is_refused_without_hanging(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (posts(site) / FIRST).parent.mkdir(parents=True)
    os.mkfifo(posts(site) / FIRST)
    status, _out, err = export(archive, site, capsys)
    assert status == 1
    assert f"error: {posts(site) / FIRST}: not a regular file" in err


# RLIMIT_FSIZE below a post's size: a write fails with EFBIG, as on a full disk (Python
# ignores SIGXFSZ). In a process of its own: the limit would hit every thread of this one.
FULL_DISK = """
import resource, runpy, sys
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), hard))
sys.argv = ["python -m crawler", *sys.argv[2:]]
runpy.run_module("crawler", run_name="__main__")
"""


@dataclass
class FullDisk:
    done: subprocess.CompletedProcess[str]
    archive: Path
    site: Path


@background_job
def full_disk_export(home: Path) -> FullDisk:
    """``export --hexo`` with room for the small files (an image, the manifest), not a post."""
    archive, site = make_archive(home / "archive"), make_site(home / "site")
    command = [sys.executable, "-c", FULL_DISK, str(len(GOLDEN) // 2),
               "export", str(archive), "--hexo", str(site)]  # fmt: skip
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    return FullDisk(done, archive, site)


def test_a_full_disk_is_a_failure_with_its_reason_and_no_half_written_file(
    full_disk_export: FullDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    done, archive, site = full_disk_export.done, full_disk_export.archive, full_disk_export.site
    assert done.returncode == 1, done.stderr
    assert f"error: {posts(site) / FIRST}: File too large" in done.stderr.splitlines()
    assert not (posts(site) / FIRST).exists() and not list(site.rglob("*.tmp"))
    assert (site / "source" / "images" / IMAGE).exists()  # small: written
    listed = json.loads((site / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert sorted(listed) == [f"images/{IMAGE}"]
    status, out, _err = export(archive, site, capsys)  # room again: the rest follows
    assert status == 0 and out.startswith("hexo: 2 new, 0 updated, 1 unchanged")


def test_removed_posts_leave_the_site_unless_edited_there(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export(archive, site, capsys)
    shutil.rmtree(posts(site) / "2022")  # removed by the site's owner
    (posts(site) / FIRST).write_bytes(b"edited")
    (archive / FIRST).unlink()
    (archive / SECOND).unlink()
    status, out, err = export(archive, site, capsys)
    assert status == 0
    assert out.startswith("hexo: 0 new, 0 updated, 1 unchanged, 0 removed, 1 kept, 0 failed")
    assert err == f"kept {posts(site) / FIRST}: edited in the site since it was exported\n"
    assert (posts(site) / FIRST).read_bytes() == b"edited"
    listed = json.loads((site / MANIFEST).read_text(encoding="utf-8"))["files"]
    assert sorted(listed) == [f"images/{IMAGE}"]


def test_a_symlinked_images_folder_in_the_archive_is_not_followed(
    archive: Path, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(archive / "images")
    (archive / "images").symlink_to(FIXTURES)
    status, _out, err = export(archive, site, capsys)
    assert status == 1
    assert err == f"error: {archive / 'images'}: a symlinked folder in the archive, not exported\n"
    assert not (site / "source" / "images").exists()


@pytest.mark.parametrize(
    ("line", "zone"),
    [
        ("timezone: Asia/Shanghai", "Asia/Shanghai"),
        ("timezone: 'UTC' # the machine's", "UTC"),
        ("timezone: ''", ""),
        ("timezone:", ""),
        ("  timezone: Asia/Tokyo  # a theme's, not the site's", ""),
        ("# timezone: Asia/Tokyo", ""),
    ],
)
def test_a_sites_timezone_is_warned_about(
    archive: Path, site: Path, capsys: pytest.CaptureFixture[str], line: str, zone: str
) -> None:
    (site / "_config.yml").write_text(f"title: mine\n{line}\nurl: x\n", encoding="utf-8")
    status, _out, err = export(archive, site, capsys)
    assert status == 0
    warning = (
        f"warning: {site / '_config.yml'} sets timezone: {zone}: Hexo moves every post's GMT"
        " date by the difference to the zone it runs in; leave it empty (README)\n"
    )
    assert err == (warning if zone else "")
