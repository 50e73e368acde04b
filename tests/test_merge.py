"""``python -m crawler merge``: worker archives merged into one, each story once, idempotently."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawler.archive.lock import EXIT_LOCKED, ArchiveLock
from crawler.archive.service import ArchiveService
from crawler.archive.state import ArchiveState
from crawler.cli.main import main
from crawler.post.format import http_date
from crawler.post.keys import story_keys

PUBLISHED = datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
DECK = "Valve announces the Steam Deck"


def store(archive: Path, title: str, url: str) -> str:
    """A post written by the archive service, as a harvest writes it; its relpath."""
    service = ArchiveService(archive, timedelta(hours=1))
    title_key, url_key = story_keys(title, PUBLISHED, url, has_own_url=True)
    data = f"\n---\ntitle: '{title}'\ndate: {http_date(PUBLISHED)}\n---\n<p>{url}</p>\n".encode()
    index = {"title": title, "date": http_date(PUBLISHED), "url": url, "source": archive.name,
             "categories": ["Tech"]}  # fmt: skip
    stored = service.store_post(
        data, published=PUBLISHED, title_key=title_key, url_key=url_key, index=index
    )
    service.close()
    assert stored.written
    return stored.relpath


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def posts_of(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.glob("*/*/*.md"))


def index_of(folder: Path) -> list[dict[str, object]]:
    lines = (folder / ".index.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def workers(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Two worker archives sharing one story by title + day and one by URL."""
    a, b = tmp_path / "worker1", tmp_path / "worker2"
    paths = {
        "deck": store(a, DECK, "https://www.theverge.com/steam-deck"),
        "only_a": store(a, "Only the first worker saw this", "https://e.com/a"),
        "renamed_a": store(a, "Old headline", "https://e.com/renamed?utm_source=x"),
        # Same title and day, another URL: the same story.
        "deck_b": store(b, DECK, "https://news.example/deck"),
        # Same URL (by its canonical form), another title: the same story.
        "renamed_b": store(b, "New headline", "HTTPS://E.COM:443/renamed"),
        "only_b": store(b, "Only the second worker saw this", "https://e.com/b"),
    }
    return a, b, paths


def test_each_story_once_names_kept_index_and_state_rebuilt(
    workers: tuple[Path, Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, paths = workers
    out = tmp_path / "out"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 posts copied" in printed and "2 duplicates skipped" in printed
    assert "0 unreadable" in printed

    expected = sorted([paths["deck"], paths["only_a"], paths["renamed_a"], paths["only_b"]])
    assert posts_of(out) == expected
    assert (out / paths["deck"]).read_bytes() == (a / paths["deck"]).read_bytes()
    assert (out / paths["only_b"]).read_bytes() == (b / paths["only_b"]).read_bytes()

    index = index_of(out)
    assert [entry["path"] for entry in index] == expected
    for entry in index:
        data = (out / str(entry["path"])).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    by_path = {entry["path"]: entry for entry in index}
    assert by_path[paths["only_b"]]["url"] == "https://e.com/b"
    assert by_path[paths["only_b"]]["source"] == "worker2"
    assert by_path[paths["renamed_a"]]["canonical_url"] == "https://e.com/renamed"

    state = ArchiveState(out)
    try:
        for title, url in [
            (DECK, "https://www.theverge.com/steam-deck"),
            ("Only the first worker saw this", "https://e.com/a"),
            ("Old headline", "https://e.com/renamed"),
            ("Only the second worker saw this", "https://e.com/b"),
        ]:
            title_key, url_key = story_keys(title, PUBLISHED, url, has_own_url=True)
            assert state.knows(title_key=title_key) == "title"
            assert state.knows(url_key=url_key) == "url"
        # The duplicates' own keys: the story is known by the other key, not these.
        assert state.knows(url_key="https://news.example/deck") is None
        assert state.post_count() == 4
    finally:
        state.close()

    # A crawl into the merged archive finds every story archived, by either key.
    service = ArchiveService(out, timedelta(hours=1))
    assert service.is_archived(DECK, PUBLISHED, None)
    assert service.is_archived("New headline", PUBLISHED, "https://e.com/renamed")
    assert service.is_archived(None, None, "https://e.com/b#comments")
    assert not service.is_archived("Something else", PUBLISHED, "https://e.com/c")
    service.close()


def test_a_second_merge_and_merging_out_again_change_nothing(
    workers: tuple[Path, Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _paths = workers
    out = tmp_path / "out"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert "0 posts copied, 6 duplicates skipped" in capsys.readouterr().out
    assert snapshot(out) == before
    # OUT among its own sources, and the other order: still nothing to do.
    assert main(["merge", str(out), str(b), str(a), "-o", str(out)]) == 0
    assert "0 posts copied" in capsys.readouterr().out
    assert snapshot(out) == before
    # Merged into another archive, OUT gives the same posts and index.
    again = tmp_path / "again"
    assert main(["merge", str(out), "-o", str(again)]) == 0
    assert posts_of(again) == posts_of(out)
    assert (again / ".index.jsonl").read_bytes() == (out / ".index.jsonl").read_bytes()


def test_a_lost_state_in_out_is_rebuilt_by_the_next_merge(
    workers: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    a, b, _paths = workers
    out = tmp_path / "out"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    (out / ".state.sqlite3").unlink()
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    service = ArchiveService(out, timedelta(hours=1))
    assert service.is_archived(None, None, "https://e.com/b")
    service.close()


def test_symlinks_in_a_source_are_not_followed_and_are_reported(
    workers: tuple[Path, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, paths = workers
    secret = tmp_path / "secret.md"
    secret.write_text(f"\n---\ntitle: 'secret'\ndate: {http_date(PUBLISHED)}\n---\nkey\n")
    planted = a / "2021" / "07" / "2021-07-17-secret-00000000.md"
    planted.symlink_to(secret)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "2020-01-01-x-00000000.md").write_bytes(secret.read_bytes())
    os.makedirs(b / "2020")
    (b / "2020" / "01").symlink_to(elsewhere, target_is_directory=True)
    (a / "images").mkdir()
    (a / "images" / "3f").mkdir()
    (a / "images" / "3f" / ("3f" + "0" * 62 + ".png")).symlink_to(secret)
    out = tmp_path / "out"

    assert main(["merge", str(a), str(b), "-o", str(out)]) == 1
    done = capsys.readouterr()
    errors = done.err.splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert any(str(planted) in line and "a symlink" in line for line in errors)
    assert any("2020/01" in line and "symlinked folder" in line for line in errors)
    assert any("images/3f" in line for line in errors)
    assert "4 posts copied" in done.out and "3 unreadable" in done.out
    assert "2020" not in os.listdir(out)
    assert not (out / "images").exists()
    assert posts_of(out) == sorted([paths["deck"], paths["only_a"], paths["renamed_a"],
                                    paths["only_b"]])  # fmt: skip
    assert all(not path.is_symlink() for path in out.rglob("*"))


def test_a_symlink_in_out_is_refused(
    workers: tuple[Path, Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _b, paths = workers
    out = tmp_path / "out"
    target = tmp_path / "target"
    target.mkdir()
    (out / "2021").mkdir(parents=True)
    (out / "2021" / "07").symlink_to(target, target_is_directory=True)
    assert main(["merge", str(a), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "symlink" in err
    assert os.listdir(target) == []  # nothing written through it
    assert paths["deck"].startswith("2021/07/")


def test_usage_errors_and_a_locked_source(
    workers: tuple[Path, Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _b, _paths = workers
    with pytest.raises(SystemExit) as missing_out:
        main(["merge", str(a)])
    assert missing_out.value.code == 2
    assert main(["merge", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with ArchiveLock(a):  # a harvest writing into the source
        assert main(["merge", str(a), "-o", str(tmp_path / "out")]) == EXIT_LOCKED
    assert not posts_of(tmp_path / "out")


def test_archived_images_are_copied_once_and_a_broken_post_is_reported(
    workers: tuple[Path, Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _paths = workers
    image = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    digest = hashlib.sha256(image).hexdigest()
    relimage = f"images/{digest[:2]}/{digest}.png"
    (a / relimage).parent.mkdir(parents=True)
    (a / relimage).write_bytes(image)
    (b / "2021" / "07" / "2021-07-17-broken-00000000.md").write_bytes(b"no front matter\n")
    out = tmp_path / "out"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 1
    done = capsys.readouterr()
    assert "1 images" in done.out and "1 unreadable" in done.out
    assert "broken" in done.err and "not a readable post" in done.err
    assert (out / relimage).read_bytes() == image
    before = snapshot(out)
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 1
    assert snapshot(out) == before
