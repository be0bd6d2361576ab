"""Atomic folder replacement shared by the Triton export and the batch commit."""

from __future__ import annotations

from pathlib import Path

from include.files import replace_dir


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in path.iterdir()}


def test_the_staged_folder_takes_the_targets_place_and_nothing_old_is_left(tmp_path):
    target = _folder(tmp_path / "root" / "2", {"old.txt": "old", "shared.txt": "v1"})
    sibling = _folder(tmp_path / "root" / "1", {"keep.txt": "kept"})
    staged = _folder(tmp_path / "root" / ".2.staged", {"shared.txt": "v2", "new.txt": "new"})

    replace_dir(staged, target)

    assert _contents(target) == {"shared.txt": "v2", "new.txt": "new"}
    assert _contents(sibling) == {"keep.txt": "kept"}
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["1", "2"]  # no staged or .old folder left


def test_a_missing_target_is_created(tmp_path):
    staged = _folder(tmp_path / ".staged", {"a.txt": "a"})
    replace_dir(staged, tmp_path / "target")
    assert _contents(tmp_path / "target") == {"a.txt": "a"}
    assert not staged.exists()


def test_nothing_staged_removes_the_target(tmp_path):
    target = _folder(tmp_path / "date=2026-11-30", {"part.parquet": "rows"})
    replace_dir(tmp_path / ".never-staged", target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
