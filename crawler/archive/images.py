"""Image files of the archive, ``OUTPUT_DIR/images/<2 hex>/<sha256>.<ext>``, and posts
rewritten in place (``images --backfill``).

Images are named by the SHA-256 of their bytes: the same picture is stored once, whatever
URL it came from, and a file already there is never written again (it is ``reused``). Writes
go through crawler/archive/files.py: a hidden temporary file, fsync, a link into place, no
symlink ever followed below the archive folder. The walks of posts (``YYYY/MM/*.md``) never
enter ``images/``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath
from typing import IO, Any

from crawler.archive.files import (
    SymlinkRefused,
    open_file,
    open_folder,
    replace_in,
    resolve_inside,
    write_atomically,
)
from crawler.post.images import IMAGES_FOLDER, image_name


class ImageStore:
    """Stores image bytes under ``images/`` of an archive (nothing at all when
    ``read_only``: a dry run). Shaped as a Scrapy files store (``persist_file``,
    ``stat_file``) for :class:`~crawler.pipelines.images.ArchiveImagesPipeline`."""

    def __init__(self, output_dir: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.read_only = read_only

    @staticmethod
    def name_of(data: bytes, extension: str) -> str:
        """``<2 hex>/<sha256>.<ext>``, the image's name under ``images/``."""
        return image_name(hashlib.sha256(data).hexdigest(), extension)

    def exists(self, name: str) -> bool:
        """Whether ``images/<name>`` is in the archive as a regular file (a symlink there:
        :class:`SymlinkRefused`)."""
        *folders, file_name = PurePosixPath(IMAGES_FOLDER, name).parts
        try:
            folder = open_folder(self.output_dir, folders)
        except FileNotFoundError:
            return False
        try:
            info = os.stat(file_name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return False
        finally:
            os.close(folder)
        if stat.S_ISLNK(info.st_mode):
            raise SymlinkRefused(self.output_dir / IMAGES_FOLDER / name)
        return stat.S_ISREG(info.st_mode)

    def persist_file(
        self, path: str, buf: IO[bytes], info: Any = None, meta: Any = None, headers: Any = None
    ) -> bool:
        """Write ``buf`` as ``images/<path>``; False when it was there already (or in a
        dry run, where nothing is written)."""
        if self.read_only:
            return False
        root = self.output_dir.resolve()
        target = resolve_inside(root, f"{IMAGES_FOLDER}/{path}")
        return write_atomically(target, buf.read(), root=root)

    def stat_file(self, path: str, info: Any = None) -> dict[str, Any]:
        """Nothing is known before the bytes are: a name is a hash of the content."""
        return {}


def replace_post(output_dir: Path, relpath: str, data: bytes) -> None:
    """Replace the existing post ``relpath`` with ``data`` atomically (a hidden temporary
    file of an unpredictable name, fsync, rename over it). The post must be there as a
    regular file: a symlink is refused (:class:`SymlinkRefused`), a missing post is
    FileNotFoundError; no symlink below ``output_dir`` is followed."""
    *folders, name = PurePosixPath(relpath).parts
    resolve_inside(output_dir, relpath)  # refuses "..", absolute paths
    shown = output_dir / relpath
    folder = open_folder(output_dir, folders)
    try:
        os.close(open_file(name, os.O_RDONLY, dir_fd=folder, shown_as=shown))  # it is a file
        replace_in(folder, name, data, shown)
    finally:
        os.close(folder)
