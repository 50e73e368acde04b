"""Post files on disk: where a post goes, and how it gets there without ever being half-written.

Posts live in ``OUTPUT_DIR/YYYY/MM/`` (docs/FORMAT.md); every other file the project keeps in
the archive is hidden.

The archive folder may hold planted symlinks (SECURITY.md): below the archive folder itself,
nothing is ever opened, created or written through a symlink. Folders are walked one component
at a time with ``O_NOFOLLOW`` descriptors, files are opened with ``O_NOFOLLOW`` and temporary
files are created with unpredictable names and ``O_EXCL``. A refused symlink is an
:class:`SymlinkRefused` (an OSError with errno ``ELOOP``), never a silent skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import re
import secrets
import stat
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

MAX_NAME_BYTES = 120
POST_MODE = 0o644  # posts and the index are for publishing (before the umask)
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted at an archive file's name fails at once instead of hanging.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class SymlinkRefused(OSError):
    """An archive file or folder that is a symlink: refused (errno ELOOP)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            errno.ELOOP, "refusing to use a symlink inside the archive", os.fspath(path)
        )


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
    """The absolute path of ``relpath`` in the archive; refuses anything that would leave it.

    Only the archive folder itself is resolved: what lies below it is checked by name here
    (no ``..``, no absolute path) and, when written, component by component without following
    a symlink (:func:`write_atomically` with ``root``).
    """
    _parts(relpath)
    return _real(output_dir) / relpath


def _real(folder: Path) -> Path:
    """``folder`` with its symlinks resolved; a symlink loop is left for the open that
    follows to refuse (ELOOP), where ``Path.resolve`` raises RuntimeError on Python 3.11."""
    return Path(os.path.realpath(folder))


def _parts(relpath: str | PurePosixPath) -> tuple[str, ...]:
    path = PurePosixPath(relpath)
    parts = path.parts
    if path.is_absolute() or not parts or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"refusing to write outside the archive: {str(relpath)!r}")
    return parts


def open_folder(root: Path, parts: Sequence[str] = (), *, create: bool = False) -> int:
    """A descriptor of the folder ``root/parts…``, each part opened without following a
    symlink (and created first when ``create``); the caller closes it.

    ``root`` (the archive folder, the operator's choice) may itself be reached through a
    symlink. Raises :class:`SymlinkRefused` for a symlinked part.
    """
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _FOLDER_FLAGS)
    try:
        for depth, part in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, _FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                # Linux says ENOTDIR for O_DIRECTORY|O_NOFOLLOW on a symlink, others ELOOP.
                if error.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(part, fd):
                    raise SymlinkRefused(root.joinpath(*parts[: depth + 1])) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(
    name: str | os.PathLike[str],
    flags: int,
    mode: int = 0o600,
    *,
    dir_fd: int | None = None,
    shown_as: str | os.PathLike[str] | None = None,
) -> int:
    """``os.open`` of an archive file that refuses a symlink (:class:`SymlinkRefused`) and
    anything but a regular file (a folder, a FIFO: OSError). ``shown_as`` names it in errors
    when ``name`` is relative to ``dir_fd``."""
    shown = shown_as if shown_as is not None else name
    try:
        fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SymlinkRefused(shown) from None
        raise
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            code = errno.EISDIR if kind == stat.S_IFDIR else errno.EINVAL
            raise OSError(code, "not a regular file", os.fspath(shown))
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomically(target: Path, data: bytes, *, root: Path | None = None) -> bool:
    """Write ``data`` to ``target`` through a hidden temporary file, fsync and link into place.

    Never replaces an existing post: returns False (and writes nothing) when ``target`` is
    already there as a regular file; a symlink there is refused (:class:`SymlinkRefused`),
    anything else is an OSError. The folders from ``root`` (default: the target's folder) down
    to the target are created as needed and never followed through a symlink. The temporary
    file has an unpredictable name (``.<name>.<random>.tmp``) and is created with ``O_EXCL``;
    a crash leaves at most such a file, never a half-written post. The folder is fsynced
    after the link (:func:`write_posts` does that once for a batch of posts instead).
    """
    root = target.parent if root is None else root
    parts = target.parent.relative_to(root).parts
    folder = open_folder(root, parts, create=True)
    try:
        return _write_new(folder, target.name, data, target, sync_folder=True)
    finally:
        os.close(folder)


def write_posts(
    root: Path, posts: Sequence[tuple[str, bytes]], *, group_commit: bool = False
) -> list[bool | Exception]:
    """Each ``(relpath, data)`` inside ``root`` written as :func:`write_atomically` writes it
    (True: written, False: already there), then each folder that got a new file fsynced once.
    A post whose write or folder fsync failed gets its error (OSError, or ValueError for a
    path that would leave the archive) in its place instead.

    Each folder of the batch is walked and opened once (never through a symlink), its posts
    written by :data:`WRITE_THREADS` threads at once (each file fsynced before it is linked,
    as always), then the folder fsynced. A relpath repeated in the batch is written after the
    others, so that two threads never race for one name.

    ``group_commit`` (where :func:`can_sync_file_system`): the batch's temporary files are
    all written first, then made durable together by one ``syncfs(2)``, then linked into
    place (:func:`_write_group`); a post is still never linked before its bytes are on disk.
    """
    results: list[bool | Exception] = [False] * len(posts)
    folders: dict[tuple[str, ...], list[tuple[int, str]]] = {}  # folder parts -> (position, name)
    repeats: list[tuple[int, str]] = []
    seen: set[str] = set()
    for position, (relpath, _data) in enumerate(posts):
        try:
            *parts, name = _parts(relpath)
        except ValueError as error:
            results[position] = error
            continue
        if relpath in seen:
            repeats.append((position, relpath))
        else:
            seen.add(relpath)
            folders.setdefault(tuple(parts), []).append((position, name))
    root = _real(root)
    if group_commit and can_sync_file_system():
        _write_group(root, folders, posts, results)
    else:
        for parts, named in folders.items():
            _write_in_folder(root, parts, named, posts, results)
    for position, relpath in repeats:  # already written above: found there (False), or fails
        try:
            results[position] = write_atomically(
                resolve_inside(root, relpath), posts[position][1], root=root
            )
        except OSError as error:
            results[position] = error
    return results


def _write_in_folder(
    root: Path,
    parts: tuple[str, ...],
    named: list[tuple[int, str]],
    posts: Sequence[tuple[str, bytes]],
    results: list[bool | Exception],
) -> None:
    """The posts ``named`` (position in ``posts``, file name) written into ``root/parts``."""
    shown = root.joinpath(*parts)
    try:
        folder = open_folder(root, parts, create=True)
    except OSError as error:
        for position, _name in named:
            results[position] = error
        return
    try:

        def write(job: tuple[int, str]) -> None:
            position, name = job
            try:
                results[position] = _write_new(
                    folder, name, posts[position][1], shown / name, sync_folder=False
                )
            except OSError as error:  # this post's, handed back to its caller
                results[position] = error

        if len(named) > 1:
            list(_write_pool().map(write, named))  # list(): waits, and raises a bug's error
        else:
            write(named[0])
        _sync_folder_of(folder, [position for position, _name in named], results)
    finally:
        os.close(folder)


def _sync_folder_of(folder: int, positions: list[int], results: list[bool | Exception]) -> None:
    """``folder`` fsynced when one of the posts at ``positions`` was linked into it; when the
    fsync fails, each of those linked posts gets the error (its link may not survive a crash)."""
    if not any(results[position] is True for position in positions):
        return
    try:
        os.fsync(folder)
    except OSError as error:
        for position in positions:
            if results[position] is True:
                results[position] = error


# Concurrent fsyncs on one file system share its journal commits (ext4's jbd2, XFS's log).
# On this project's 2-core ext4 test machine, 4,000 8 KB posts in batches of 32 (one folder
# walk each): 1 thread 2,300 files/s, 2 threads 3,300/s, 4 threads 3,800/s, 8 threads 4,000/s
# at more system CPU a file (contention for the GIL between the syscalls).
WRITE_THREADS = 4
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _write_pool() -> ThreadPoolExecutor:
    """This process's writing threads (made again in a forked child, which has none)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(WRITE_THREADS, "post-write"))
        return _pool[1]


def _write_new(folder: int, name: str, data: bytes, shown: Path, *, sync_folder: bool) -> bool:
    if _existing(folder, name, shown):
        return False
    temporary = _write_temporary(folder, name, data, shown, fsync=True)
    try:
        if not _link_into_place(folder, temporary, name, shown):
            return False
    finally:
        unlink_in(folder, temporary)
    if sync_folder:
        os.fsync(folder)
    return True


def _write_temporary(folder: int, name: str, data: bytes, shown: Path, *, fsync: bool) -> str:
    """``data`` in a new temporary file beside ``name`` (fsynced when ``fsync``); its name.
    A failed write leaves no temporary file."""
    temporary, fd = _create_temporary(folder, name, shown)
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        unlink_in(folder, temporary)
        raise
    return temporary


def _link_into_place(folder: int, temporary: str, name: str, shown: Path) -> bool:
    """The durable ``temporary`` given the post's ``name`` (the caller unlinks the temporary
    name); False when a post is there already."""
    try:
        # A link never replaces what is there (a post, a symlink planted meanwhile).
        os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        _existing(folder, name, shown)
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        # A file system without hard links: checked, then renamed (the archive lock keeps
        # other writers out).
        if _existing(folder, name, shown):
            return False
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    return True


@dataclass
class _StagedFolder:
    """One folder of a group commit: its descriptor and its posts written to temporary files
    (position in the batch, post name, temporary name)."""

    fd: int
    shown: Path
    staged: list[tuple[int, str, str]] = field(default_factory=list)


def _write_group(
    root: Path,
    folders: dict[tuple[str, ...], list[tuple[int, str]]],
    posts: Sequence[tuple[str, bytes]],
    results: list[bool | Exception],
) -> None:
    """A batch made durable at once: every new post written to its temporary file, one
    ``syncfs(2)`` of the archive's file system (one journal commit and one flush of the
    disk's cache for the batch, where a file's fsync costs both for every file), then each
    linked into place and each folder fsynced. A failed syncfs fails every post it covered
    (nothing linked, the temporary files removed): they are written again next run."""
    opened: list[_StagedFolder] = []
    try:
        for parts, named in folders.items():
            shown = root.joinpath(*parts)
            try:
                opened.append(_StagedFolder(open_folder(root, parts, create=True), shown))
            except OSError as error:
                for position, _name in named:
                    results[position] = error
                continue
            folder = opened[-1]
            for position, name in named:
                try:
                    if not _existing(folder.fd, name, shown / name):
                        temporary = _write_temporary(
                            folder.fd, name, posts[position][1], shown / name, fsync=False
                        )
                        folder.staged.append((position, name, temporary))
                except OSError as error:
                    results[position] = error
        if not any(folder.staged for folder in opened):
            return
        try:
            sync_file_system(opened[0].fd)
        except OSError as error:
            for folder in opened:
                for position, _name, _temporary in folder.staged:
                    results[position] = error
            return
        for folder in opened:
            _link_staged(folder, results)
    finally:
        for folder in opened:
            for _position, _name, temporary in folder.staged:
                unlink_in(folder.fd, temporary)
            os.close(folder.fd)


def _link_staged(folder: _StagedFolder, results: list[bool | Exception]) -> None:
    """``folder``'s durable temporary files linked into place, then the folder fsynced."""
    for position, name, temporary in folder.staged:
        try:
            results[position] = _link_into_place(folder.fd, temporary, name, folder.shown / name)
        except OSError as error:
            results[position] = error
    _sync_folder_of(folder.fd, [position for position, _name, _temp in folder.staged], results)


# syncfs(2) reports a write-back error of the file system only since Linux 5.8: before, it
# returned 0 whatever happened, so group commits are used only where it can fail.
SYNCFS_REPORTS_ERRORS = (5, 8)


def syncfs_of(system: str, release: str) -> Callable[[int], int] | None:
    """libc's ``syncfs`` on ``system`` (``sys.platform``) at kernel ``release``, or None
    where there is none or it cannot report an error."""
    if not system.startswith("linux"):
        return None
    version = tuple(int(part) for part in re.findall(r"\d+", release)[:2])
    if version < SYNCFS_REPORTS_ERRORS:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    return syncfs_of(sys.platform, platform.release())


def can_sync_file_system() -> bool:
    """Whether :func:`sync_file_system` is there (Linux 5.8 or later, with syncfs)."""
    return _syncfs() is not None


def sync_file_system(fd: int) -> None:
    """``syncfs(2)`` of the file system ``fd`` is on: every file written there so far is on
    disk when it returns (data and metadata, the disk's cache flushed). OSError on failure."""
    call = _syncfs()
    if call is None:
        raise OSError(errno.ENOSYS, "syncfs(2) is not available here")
    if call(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"syncfs: {os.strerror(code)}")


def replace_in(folder: int, name: str, data: bytes | Iterable[bytes], shown: Path) -> None:
    """``data`` as ``name`` in ``folder`` (a descriptor), replacing what is there: a hidden
    temporary file of an unpredictable name (``O_EXCL``), fsynced, renamed over ``name``
    (rename replaces a symlink planted there, never follows it), then the folder fsynced. A
    crash leaves the old file or the new one, never a half-written one. Callers check what
    they replace. ``data`` may be chunks (a whole index, written as it is produced)."""
    temporary, fd = _create_temporary(folder, name, shown)
    try:
        try:
            for chunk in [data] if isinstance(data, bytes) else data:
                _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    finally:
        unlink_in(folder, temporary)
    os.fsync(folder)


def _existing(folder: int, name: str, shown: Path) -> bool:
    """Whether a post ``name`` is there; a symlink or a non-file there is an error."""
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise SymlinkRefused(shown)
    if not stat.S_ISREG(info.st_mode):
        code = errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EEXIST
        raise OSError(code, "not a regular file", os.fspath(shown))
    return True


def _create_temporary(folder: int, name: str, shown: Path) -> tuple[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for _attempt in range(100):
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return temporary, open_file(
                temporary, flags, POST_MODE, dir_fd=folder, shown_as=shown.with_name(temporary)
            )
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.fspath(shown))


def unlink_in(folder: int, name: str) -> None:
    """Remove ``name`` from the folder ``folder`` (a descriptor), if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; a short write (disk full, file size limit) is retried, and the
    retry raises the error (ENOSPC, EFBIG)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_post(output_dir: Path, relpath: str) -> bytes:
    """The bytes of the post ``relpath``, read without following any symlink below
    ``output_dir``."""
    *folders, name = _parts(relpath)
    folder = open_folder(output_dir, folders)
    try:
        fd = open_file(name, os.O_RDONLY, dir_fd=folder, shown_as=output_dir / relpath)
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def append_line(path: Path, line: bytes) -> None:
    """Append one line in a single O_APPEND write, so lines of concurrent writers never mix.

    The line starts on a line of its own: when the file's last line was cut short (a crash or
    a full disk mid-append), a newline is written first, so the broken line does not swallow
    this one. ``path`` is never opened through a symlink (:class:`SymlinkRefused`); a new
    file is created with mode 0o644 (less the umask).
    """
    fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, POST_MODE)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        _write_all(fd, line)
    finally:
        os.close(fd)


def _is_symlink(name: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def post_entries(output_dir: Path) -> list[tuple[str, str | None]]:
    """What sits where posts go (``YYYY/MM/*.md``, hidden names left out), sorted, as
    ``(relpath, problem)``: ``problem`` is None for a regular file, else what is wrong with
    it (``a symlink``, ``a folder``, ``not a regular file``); a symlinked ``YYYY`` or ``MM``
    folder is one entry ``("YYYY/MM", "a symlinked folder")``, not followed."""
    found: list[tuple[str, str | None]] = []
    for year in _entries(output_dir, _is_year):
        if year.is_symlink():
            found.append((year.name, "a symlinked folder"))
            continue
        if not year.is_dir(follow_symlinks=False):
            continue
        for month in _entries(Path(year.path), _is_month):
            relmonth = f"{year.name}/{month.name}"
            if month.is_symlink():
                found.append((relmonth, "a symlinked folder"))
                continue
            if not month.is_dir(follow_symlinks=False):
                continue
            for post in _entries(Path(month.path), _is_post_name):
                found.append((f"{relmonth}/{post.name}", _problem(post)))
    return sorted(found)


def month_posts(output_dir: Path, month: str) -> list[str]:
    """The regular post files of one ``YYYY/MM`` folder, as relpaths (sorted); none when
    the folder is missing. Its folders are opened without following a symlink
    (:class:`SymlinkRefused`)."""
    try:
        fd = open_folder(output_dir, _parts(month))
    except FileNotFoundError:
        return []
    try:
        with os.scandir(fd) as entries:
            names = [entry.name for entry in entries
                     if _is_post_name(entry.name) and _problem(entry) is None]  # fmt: skip
    finally:
        os.close(fd)
    return sorted(f"{month}/{name}" for name in names)


def _entries(folder: Path, wanted: Callable[[str], bool]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if wanted(entry.name)]
    except FileNotFoundError:
        return []


def _is_year(name: str) -> bool:
    return len(name) == 4 and name.isascii() and name.isdigit()


def _is_month(name: str) -> bool:
    return len(name) == 2 and name.isascii() and name.isdigit()


def _is_post_name(name: str) -> bool:
    return name.endswith(".md") and not name.startswith(".")


def _problem(entry: os.DirEntry[str]) -> str | None:
    if entry.is_symlink():
        return "a symlink"
    if entry.is_dir(follow_symlinks=False):
        return "a folder"
    if not entry.is_file(follow_symlinks=False):
        return "not a regular file"
    return None
