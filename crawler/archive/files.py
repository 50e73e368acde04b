"""Post files on disk: where a post goes, and how it gets there without ever being half-written.

Posts live in ``OUTPUT_DIR/YYYY/MM/`` (docs/FORMAT.md); every other file the project keeps in
the archive is hidden.
"""

from __future__ import annotations

import os
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

MAX_NAME_BYTES = 120


def slugify(title: str, max_bytes: int) -> str:
    """Letters, digits and marks of any script kept, every other run of characters one ``-``.

    Cut on a character boundary so that the UTF-8 form is at most ``max_bytes`` long.
    """
    pieces: list[str] = []
    for char in unicodedata.normalize("NFC", title):
        if unicodedata.category(char)[0] in "LNM":
            pieces.append(char)
        elif pieces and pieces[-1] != "-":
            pieces.append("-")
    slug = "".join(pieces).strip("-")
    encoded = slug.encode("utf-8")
    if len(encoded) > max_bytes:
        slug = encoded[:max_bytes].decode("utf-8", errors="ignore").strip("-")
    return slug


def post_relpath(title: str, published: datetime, digest: str) -> str:
    """``YYYY/MM/YYYY-MM-DD-<slug>-<digest>.md`` (UTC date), the name at most 120 bytes."""
    day = published.astimezone(UTC).date()
    prefix = f"{day.isoformat()}-"
    suffix = f"-{digest}.md"
    slug = slugify(title, MAX_NAME_BYTES - len(prefix) - len(suffix))
    name = f"{prefix}{slug}{suffix}" if slug else f"{day.isoformat()}{suffix}"
    return f"{day:%Y}/{day:%m}/{name}"


def resolve_inside(output_dir: Path, relpath: str) -> Path:
    """The absolute path of ``relpath`` in the archive; refuses anything that would leave it."""
    root = output_dir.resolve()
    target = (root / relpath).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ValueError(f"refusing to write outside the archive: {relpath!r}")
    return target


def write_atomically(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` through a hidden temporary file, fsync and rename.

    Never replaces an existing post: returns False (and writes nothing) when ``target`` is
    already there. A crash leaves at most a ``.<name>.tmp`` file, never a half-written post.
    """
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return True


def append_line(path: Path, line: bytes) -> None:
    """Append one line in a single O_APPEND write, so lines of concurrent writers never mix."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
