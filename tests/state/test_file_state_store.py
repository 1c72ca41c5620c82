"""What only the file backend promises: files stay inside its root, writes are atomic,
damage is reported, not guessed around."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import StorageError
from promptline.state.file import FileStateStore
from promptline.state.owners import local_namespace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "inside" / "state"


@pytest.fixture
def store(root: Path) -> FileStateStore:
    return FileStateStore(root, clock=ManualClock())


def _all_files(base: Path) -> list[Path]:
    return [p for p in base.rglob("*") if p.is_file()]


async def test_hostile_keys_and_namespaces_never_escape_the_root(
    store: FileStateStore, root: Path, tmp_path: Path
) -> None:
    hostile = ["../x", "../../outside", "/etc/passwd", "..", ".", "a/../../b", "~", "$HOME"]
    for text in hostile:
        await store.set("local", text, text, namespace=text)
        await store.set("session", text, text, namespace="../" + text)
    everything = _all_files(tmp_path)
    assert everything
    assert all(root in p.parents for p in everything)
    for path in everything:
        assert all(part not in ("..", ".") for part in path.relative_to(root).parts)
    for text in hostile:
        entry = await store.get("local", text, namespace=text)
        assert entry is not None
        assert entry.value == text


async def test_long_keys_fit_in_a_file_name(store: FileStateStore, root: Path) -> None:
    key = "ключ" * 128  # 512 characters, 1024 UTF-8 bytes
    await store.set("global", key, 1)
    names = [p.name for p in _all_files(root) if p.suffix == ".json"]
    assert len(names) == 1
    assert len(names[0].encode()) <= 255
    entry = await store.get("global", key)
    assert entry is not None
    assert entry.key == key


async def test_a_write_leaves_only_the_finished_file_behind(
    store: FileStateStore, root: Path
) -> None:
    for i in range(5):
        await store.set("global", "k", {"i": i})
    files = sorted(p.name for p in _all_files(root))
    assert files == [".lock", "k.json"]
    record = orjson.loads((root / "global" / "_" / "k.json").read_bytes())
    assert record["value"] == {"i": 4}
    assert record["version"] == 5
    assert record["key"] == "k"


async def test_state_files_are_readable_by_their_owner_only(
    store: FileStateStore, root: Path
) -> None:
    await store.set("global", "k", "secret")
    await store.set("global", "k", "secret again")
    assert (root / "global" / "_" / "k.json").stat().st_mode & 0o777 == 0o600


async def test_a_leftover_temp_file_is_ignored(store: FileStateStore, root: Path) -> None:
    await store.set("global", "k", 1)
    # What a process killed between writing and renaming leaves behind.
    (root / "global" / "_" / ".tmp-abc.json").write_bytes(b"{half")
    assert [e.key for e in await store.list("global")] == ["k"]


async def test_a_damaged_file_is_a_storage_error_with_a_hint(
    store: FileStateStore, root: Path
) -> None:
    await store.set("global", "k", 1)
    (root / "global" / "_" / "k.json").write_bytes(b"{not json")
    with pytest.raises(StorageError) as caught:
        await store.get("global", "k")
    assert "damaged" in caught.value.message
    assert caught.value.hint
    with pytest.raises(StorageError):
        await store.set("global", "k", 2)


async def test_a_file_renamed_by_hand_is_not_served_as_another_key(
    store: FileStateStore, root: Path
) -> None:
    await store.set("global", "a", "value of a")
    directory = root / "global" / "_"
    os.replace(directory / "a.json", directory / "b.json")
    with pytest.raises(StorageError, match="another key"):
        await store.get("global", "b")


async def test_foreign_files_in_a_namespace_are_skipped_by_list(
    store: FileStateStore, root: Path
) -> None:
    await store.set("global", "k", 1)
    directory = root / "global" / "_"
    (directory / "README.txt").write_text("notes")
    (directory / "Upper.json").write_text("{}")
    assert [e.key for e in await store.list("global")] == ["k"]


async def test_list_removes_expired_files(root: Path) -> None:
    clock = ManualClock()
    store = FileStateStore(root, clock=clock)
    await store.set("local", "old", 1, namespace="run", ttl=1)
    await store.set("local", "keep", 2, namespace="run")
    clock.advance(2)
    assert [e.key for e in await store.list("local", namespace="run")] == ["keep"]
    names = sorted(p.name for p in (root / "local" / "_run").iterdir())
    assert names == [".lock", "keep.json"]


async def test_an_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    store = FileStateStore(blocker / "state")
    with pytest.raises(StorageError) as caught:
        await store.set("global", "k", 1)
    assert "state.file_dir" in (caught.value.hint or "")


async def test_reads_and_deletes_create_no_files(store: FileStateStore, tmp_path: Path) -> None:
    assert await store.get("session", "k", namespace="ses") is None
    assert await store.delete("session", "k", namespace="ses") is False
    assert await store.list("session", namespace="ses") == []
    assert list(_all_files(tmp_path)) == []


async def test_callers_whose_ids_join_alike_get_two_folders_of_safe_names(
    store: FileStateStore, root: Path
) -> None:
    await store.set("local", "draft", "first's", namespace=local_namespace("t1:x", "y"))
    await store.set("local", "draft", "second's", namespace=local_namespace("t1", "x:y"))
    await store.set("local", "draft", "long", namespace=local_namespace("t" * 200, "u" * 200))

    folders = sorted(p.name for p in (root / "local").iterdir())
    assert len(folders) == 3
    for name in folders:
        assert "/" not in name
        assert "\x00" not in name
        assert len(name.encode()) <= 255


async def test_a_file_written_before_ids_were_escaped_is_found_where_it_was(
    store: FileStateStore, root: Path
) -> None:
    # The layout of a caller's local value as it has always been for plain ids.
    folder = root / "local" / "_acme%3Aalice"
    folder.mkdir(parents=True)
    record = {"scope": "local", "namespace": "acme:alice", "key": "draft", "version": 3}
    (folder / "draft.json").write_bytes(
        orjson.dumps({**record, "updated_at": 0, "expires_at": None, "value": "kept"})
    )

    entry = await store.get("local", "draft", namespace=local_namespace("acme", "alice"))

    assert entry is not None
    assert (entry.value, entry.version) == ("kept", 3)
