"""Files replaced whole: the new contents under the old name, the mode asked for, nothing left
behind when the write fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.storage.files import write_atomically


def test_the_file_is_replaced_whole_private_unless_another_mode_is_asked_for(
    tmp_path: Path,
) -> None:
    target = tmp_path / "deep" / "er" / "secret.txt"

    write_atomically(target, b"first")
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "deep").stat().st_mode & 0o777 == 0o700
    assert target.parent.stat().st_mode & 0o777 == 0o700

    write_atomically(target, b"second", mode=0o644)
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "kept.json"
    write_atomically(target, b"old")

    with pytest.raises(TypeError):
        write_atomically(target, "not bytes")  # type: ignore[arg-type]

    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]
