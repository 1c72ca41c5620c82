"""Private files and folders: what PromptLine makes is readable by its owner only, whatever the
umask; what it finds readable by others loses those bits; what the user made is left alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptline.storage.files import make_private, open_private, private_dir, private_file


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that lets everyone read what is made (as 022 and 002 do, and more)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_private_dir_makes_every_missing_folder_0700_whatever_the_umask(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "c"

    assert private_dir(leaf) == leaf

    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", leaf)] == [0o700] * 3
    assert private_dir(leaf) == leaf  # a second call changes nothing


def test_private_dir_leaves_a_folder_that_exists_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "project"
    shared.mkdir()
    shared.chmod(0o755)

    private_dir(shared / "inner")

    assert mode(shared) == 0o755  # the user's folder (a workspace given in the config)
    assert mode(shared / "inner") == 0o700


def test_private_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")

    with pytest.raises(NotADirectoryError, match="taken is not a folder"):
        private_dir(tmp_path / "taken")


@pytest.mark.usefixtures("open_umask")
def test_open_private_makes_a_0600_file_and_narrows_one_readable_by_others(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "logs" / "new.log"
    os.close(open_private(fresh, os.O_WRONLY | os.O_APPEND))
    assert mode(fresh) == 0o600
    assert mode(fresh.parent) == 0o700

    old = tmp_path / "old.log"
    old.write_text("kept\n")
    old.chmod(0o644)
    fd = open_private(old, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"more\n")
    os.close(fd)
    assert mode(old) == 0o600
    assert old.read_text() == "kept\nmore\n"


def test_private_file_makes_an_empty_file_and_keeps_the_owners_bits(tmp_path: Path) -> None:
    made = private_file(tmp_path / "state.db")
    assert made.read_bytes() == b""
    assert mode(made) == 0o600

    read_only = tmp_path / "frozen.db"
    read_only.write_bytes(b"data")
    read_only.chmod(0o444)
    private_file(read_only)
    assert mode(read_only) == 0o400  # others lose their bits; the owner gains none
    assert read_only.read_bytes() == b"data"


def test_make_private_narrows_files_and_folders_and_ignores_what_is_missing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "workspaces"
    folder.mkdir()
    folder.chmod(0o755)
    file = folder / "state.db-wal"
    file.write_bytes(b"")
    file.chmod(0o664)

    make_private(folder)
    make_private(file)
    make_private(tmp_path / "missing")

    assert mode(folder) == 0o700
    assert mode(file) == 0o600
    assert not (tmp_path / "missing").exists()


@pytest.mark.usefixtures("open_umask")
async def test_a_sqlite_database_its_wal_and_its_shm_are_private(tmp_path: Path) -> None:
    from sqlalchemy import text

    from promptline.storage.database import create_engine

    path = tmp_path / "home" / "state.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        made = sorted(p.name for p in path.parent.iterdir())
        assert made == ["state.db", "state.db-shm", "state.db-wal"]
        assert {p.name: mode(p) for p in path.parent.iterdir()} == dict.fromkeys(made, 0o600)
        assert mode(path.parent) == 0o700
    finally:
        await engine.dispose()


def test_a_database_file_of_an_older_version_is_narrowed_when_opened(tmp_path: Path) -> None:
    from promptline.storage.database import create_engine

    path = tmp_path / "state.db"
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o644)

    create_engine(f"sqlite:///{path}")

    assert [mode(tmp_path / n) for n in ("state.db", "state.db-wal", "state.db-shm")] == [0o600] * 3
