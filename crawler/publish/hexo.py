"""``export --hexo SITE_DIR``: the archive's posts (and images) copied into a Hexo site.

Posts go to ``SITE_DIR/source/_posts/YYYY/MM/<name>.md`` (the archive's own layout), the
archive's ``images/`` folder to ``SITE_DIR/source/images/``. What the export put into the site
is listed with each file's SHA-256 in ``SITE_DIR/.technews-harvester.json`` (the manifest,
outside ``source/`` so that Hexo never reads it). That list is what makes a run idempotent and
keeps the site's own files safe:

- a file the manifest does not list is the site's own and is never touched (a name the archive
  also uses is a conflict: reported, exit status 1), unless it already holds exactly the
  archive's bytes (a run killed before it saved the manifest): then it is adopted;
- a listed file still as the export wrote it follows the archive: replaced when the archive's
  copy changed, removed when the archive no longer has it;
- a listed file edited in the site is kept as it is (reported, not a failure).

Files are copied, never linked: an edit in the site cannot reach the archive, and the site
works when the archive is elsewhere. Nothing below ``SITE_DIR`` is followed through a symlink
(crawler/archive/files.py); writes are atomic.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from crawler.archive.files import (
    SymlinkRefused,
    open_file,
    open_folder,
    post_entries,
    read_post,
    replace_in,
    unlink_in,
)

MANIFEST = ".technews-harvester.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
TIMEZONE_LINE = re.compile(r"^timezone:[ \t]*([^#\r\n]*)", re.MULTILINE)
POSTS = ("source", "_posts")
IMAGES = ("source", "images")
IMAGES_FOLDER = "images"  # in the archive (IMAGES_URL_PREFIX points at /images/)


@dataclass
class Outcome:
    """What one export did, for the summary line and the exit status."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("new", "updated", "unchanged", "removed"), 0)
    )
    kept: list[str] = field(default_factory=list)  # edited in the site: left alone
    failures: list[str] = field(default_factory=list)  # one reason each


def export_command(archive: Path, args: argparse.Namespace) -> int:
    """Export ``archive`` into the site ``args.hexo``; 0 done, 1 something failed (a reason
    on stderr for each); a folder that is not a Hexo site is a usage error."""
    from crawler.cli.main import UsageFailure

    site = Path(args.hexo).expanduser().resolve()
    problem = site_problem(site)
    if problem:
        raise UsageFailure(f"--hexo {args.hexo}: {problem}")
    zone = configured_timezone(site)
    if zone:
        print(
            f"warning: {site / '_config.yml'} sets timezone: {zone}: Hexo moves every post's"
            " GMT date by the difference to the zone it runs in; leave it empty (README)",
            file=sys.stderr,
        )
    outcome = export_to_site(archive, site)
    for path in outcome.kept:
        print(f"kept {path}: edited in the site since it was exported", file=sys.stderr)
    for reason in outcome.failures:
        print(f"error: {reason}", file=sys.stderr)
    counts = ", ".join(f"{number} {what}" for what, number in outcome.counts.items())
    print(f"hexo: {counts}, {len(outcome.kept)} kept, {len(outcome.failures)} failed -> {site}")
    return 1 if outcome.failures else 0


def site_problem(site: Path) -> str | None:
    """Why ``site`` is not a Hexo site to export into, or None."""
    if not site.is_dir():
        return "not a directory"
    config = site / "_config.yml"
    if config.is_symlink():
        return "_config.yml is a symlink"
    if not config.is_file():
        return "not a Hexo site (no _config.yml)"
    for depth in range(1, len(POSTS) + 1):
        if site.joinpath(*POSTS[:depth]).is_symlink():
            return f"{'/'.join(POSTS[:depth])} is a symlink"
    return None


def configured_timezone(site: Path) -> str:
    """The ``timezone:`` of the site's ``_config.yml`` ('' when empty or absent), read as
    a line (not as YAML: a warning needs no parser), never through a symlink."""
    fd = open_file(site / "_config.yml", os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(MAX_CONFIG_BYTES).decode("utf-8", errors="replace")
    match = TIMEZONE_LINE.search(text)
    return match.group(1).strip().strip("'\"").strip() if match else ""


def export_to_site(archive: Path, site: Path) -> Outcome:
    """Bring the site's copy of the archive up to date (see the module's doc)."""
    outcome = Outcome()
    try:
        manifest = load_manifest(site)
    except (OSError, ValueError) as error:
        outcome.failures.append(f"{site / MANIFEST}: {error}")
        return outcome
    wanted: dict[str, tuple[tuple[str, ...], Path, str]] = {}
    for relpath, problem in post_entries(archive):
        if problem:
            outcome.failures.append(f"{archive / relpath}: {problem} in the archive, not exported")
        else:
            wanted[f"posts/{relpath}"] = (POSTS, archive, relpath)
    for relpath, problem in image_entries(archive):
        if problem:
            shown = archive / IMAGES_FOLDER / relpath  # "" for the folder itself
            outcome.failures.append(f"{shown}: {problem} in the archive, not exported")
        else:
            wanted[f"images/{relpath}"] = (IMAGES, archive / IMAGES_FOLDER, relpath)
    for key, (place, root, relpath) in sorted(wanted.items()):
        try:
            _export_one(site, place, relpath, read_post(root, relpath), manifest, key, outcome)
        except OSError as error:
            outcome.failures.append(f"{site.joinpath(*place, relpath)}: {_reason(error)}")
    for key in sorted(set(manifest) - set(wanted)):
        place = POSTS if key.startswith("posts/") else IMAGES
        relpath = key.split("/", 1)[1]
        try:
            _remove_one(site, place, relpath, manifest, key, outcome)
        except OSError as error:
            outcome.failures.append(f"{site.joinpath(*place, relpath)}: {_reason(error)}")
    try:
        save_manifest(site, manifest)
    except OSError as error:
        outcome.failures.append(f"{site / MANIFEST}: {_reason(error)}")
    return outcome


def _export_one(
    site: Path,
    place: tuple[str, ...],
    relpath: str,
    data: bytes,
    manifest: dict[str, str],
    key: str,
    outcome: Outcome,
) -> None:
    *folders, name = PurePosixPath(relpath).parts
    shown = site.joinpath(*place, relpath)
    digest = hashlib.sha256(data).hexdigest()
    folder = open_folder(site, (*place, *folders), create=True)
    try:
        there = _digest_of(folder, name, shown)
        if there is None:
            replace_in(folder, name, data, shown)
            outcome.counts["new"] += 1
        elif there == digest:
            outcome.counts["unchanged"] += 1  # also adopts a copy a killed run left unlisted
        elif key not in manifest:
            outcome.failures.append(f"{shown}: the site's own file has this name, left alone")
            return
        elif there != manifest[key]:
            outcome.kept.append(str(shown))
            return
        else:
            replace_in(folder, name, data, shown)
            outcome.counts["updated"] += 1
    finally:
        os.close(folder)
    manifest[key] = digest


def _remove_one(
    site: Path,
    place: tuple[str, ...],
    relpath: str,
    manifest: dict[str, str],
    key: str,
    outcome: Outcome,
) -> None:
    *folders, name = PurePosixPath(relpath).parts
    shown = site.joinpath(*place, relpath)
    try:
        folder = open_folder(site, (*place, *folders))
    except FileNotFoundError:
        del manifest[key]
        return
    try:
        there = _digest_of(folder, name, shown)
        if there is not None and there != manifest[key]:
            outcome.kept.append(str(shown))  # edited in the site: the site's own now
        elif there is not None:
            unlink_in(folder, name)
            os.fsync(folder)
            outcome.counts["removed"] += 1
    finally:
        os.close(folder)
    del manifest[key]


def image_entries(archive: Path) -> Iterator[tuple[str, str | None]]:
    """Every file below ``archive/images/`` (hidden names left out) as ``(relpath,
    problem)``, nothing followed through a symlink; a symlink is listed with its problem."""
    top = archive / IMAGES_FOLDER
    if top.is_symlink():
        yield "", "a symlinked folder"
        return
    if not top.is_dir():
        return
    pending = [top]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                relpath = Path(entry.path).relative_to(top).as_posix()
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    yield relpath, "a symlink"
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield relpath, None
                else:
                    yield relpath, "not a regular file"


def load_manifest(site: Path) -> dict[str, str]:
    """The manifest's ``{"posts/…" or "images/…": sha256}``; empty when there is none."""
    try:
        fd = open_file(site / MANIFEST, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ValueError("the manifest is larger than 64 MiB")
    try:
        files = json.loads(raw.decode("utf-8"))["files"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"not a manifest this program wrote ({error})") from None
    if not isinstance(files, dict) or not all(
        isinstance(key, str)
        and isinstance(value, str)
        and key.startswith(("posts/", "images/"))
        and _is_inside(key.split("/", 1)[1])
        for key, value in files.items()
    ):
        raise ValueError("not a manifest this program wrote (bad file list)")
    return files


def save_manifest(site: Path, manifest: dict[str, str]) -> None:
    data = json.dumps({"version": 1, "files": dict(sorted(manifest.items()))}, indent=1)
    folder = open_folder(site)
    try:
        replace_in(folder, MANIFEST, data.encode("utf-8") + b"\n", site / MANIFEST)
    finally:
        os.close(folder)


def _is_inside(relpath: str) -> bool:
    parts = PurePosixPath(relpath).parts
    return bool(parts) and not relpath.startswith("/") and ".." not in parts and "." not in parts


def _digest_of(folder: int, name: str, shown: Path) -> str | None:
    """The SHA-256 of the file ``name`` in ``folder``, None when there is none; a symlink or
    a non-file there is an error (:class:`SymlinkRefused`, OSError)."""
    try:
        fd = open_file(name, os.O_RDONLY, dir_fd=folder, shown_as=shown)
    except FileNotFoundError:
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(error: OSError) -> str:
    if isinstance(error, SymlinkRefused):
        return "a symlink, refused"
    if error.errno == errno.ENOSPC:
        return "no space left on the device"
    return error.strerror or str(error)
