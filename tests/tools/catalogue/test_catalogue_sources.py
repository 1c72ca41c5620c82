"""Catalogue sources: folders and git repositories, their index files (format, every field,
errors naming the file), search across sources with the newest version shown, ``name@version``,
and the tree checksum publishers compute."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from catalogue_helpers import catalogue, entry, git, index, package, skill, write

from promptline.core.errors import FormatVersionError, NotFoundError
from promptline.tools.catalogue import CatalogueIndexError, read_index, tree_checksum
from promptline.tools.catalogue.index import version_key


@pytest.fixture
def source_a(tmp_path: Path) -> Path:
    root = tmp_path / "source-a"
    skill(root / "skills" / "pdf-forms", "pdf-forms")
    package(root / "packages" / "weather-1.0", "weather", "1.0")
    package(root / "packages" / "weather-1.10", "weather", "1.10")
    package(root / "packages" / "weather-1.9", "weather", "1.9")
    index(
        root,
        [
            entry(root, "pdf-forms", "skill", "2.0", "skills/pdf-forms", tags=["pdf", "forms"]),
            entry(root, "weather", "tools", "1.0", "packages/weather-1.0", tags=["forecast"]),
            entry(root, "weather", "tools", "1.10", "packages/weather-1.10", tags=["forecast"]),
            entry(root, "weather", "tools", "1.9", "packages/weather-1.9", tags=["forecast"]),
        ],
    )
    return root


@pytest.fixture
def source_b(tmp_path: Path) -> Path:
    root = tmp_path / "source-b"
    skill(root / "csv-clean", "csv-clean")
    index(
        root,
        [
            entry(
                root,
                "csv-clean",
                "skill",
                "0.3",
                "csv-clean",
                description="Tidy CSV files before analysis.",
            )
        ],
    )
    return root


def test_search_matches_words_over_name_description_and_tags_across_sources(
    tmp_path: Path, source_a: Path, source_b: Path
) -> None:
    cat = catalogue(tmp_path / "home", a={"path": source_a}, b={"path": source_b})

    def names(*words: str) -> list[str]:
        hits, problems = cat.search(words)
        assert problems == []
        return [h.entry.name for h in hits]

    assert names() == ["csv-clean", "pdf-forms", "weather"]
    assert names("forms") == ["pdf-forms"]
    assert names("FORECAST") == ["weather"]
    assert names("csv", "analysis") == ["csv-clean"]
    assert names("csv", "weather") == []


def test_the_newest_version_is_shown_and_name_at_version_selects_another(
    tmp_path: Path, source_a: Path
) -> None:
    cat = catalogue(tmp_path / "home", a={"path": source_a})

    (hit,) = cat.search(["weather"])[0]

    assert hit.entry.version == "1.10"
    assert hit.versions == ("1.10", "1.9", "1.0")
    assert cat.find("weather").version == "1.10"
    assert cat.find("weather@1.9").location == source_a / "packages" / "weather-1.9"
    with pytest.raises(NotFoundError) as missing:
        cat.find("weather@3.0")
    assert missing.value.hint == "versions offered: 1.10, 1.9, 1.0"
    with pytest.raises(NotFoundError) as unknown:
        cat.find("wether")
    assert unknown.value.hint == "did you mean weather?"


def test_versions_compare_as_numbers_and_pre_releases_come_first() -> None:
    ordered = ["0.9", "1.0rc1", "1.0", "1.0.1", "1.9", "1.10", "2"]

    assert sorted(reversed(ordered), key=version_key) == ordered


def test_a_broken_index_is_an_error_naming_the_file_and_other_sources_stay_searchable(
    tmp_path: Path, source_b: Path
) -> None:
    broken = tmp_path / "broken"
    write(broken / "promptline-index.yaml", "format: 1\nentries:\n  - name: [oops\n")
    cat = catalogue(tmp_path / "home", broken={"path": broken}, b={"path": source_b})

    hits, problems = cat.search()

    assert [h.entry.name for h in hits] == ["csv-clean"]
    assert [p.source for p in problems] == ["broken"]
    assert str(broken / "promptline-index.yaml") in problems[0].message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "plugin"}, "kind must be skill or tools, got 'plugin'"),
        ({"sha256": "abc"}, "sha256 must be 64 hex digits"),
        ({"version": 1.1}, "version must be a string"),
        ({"path": "../elsewhere"}, "path '../elsewhere' must be relative, inside the source"),
        ({"path": "/etc"}, "must be relative"),
        ({"name": "a.b"}, "name 'a.b' is not valid"),
        ({"homepage": "x"}, "unknown field homepage"),
        ({"sha256": None}, "sha256 is required"),
    ],
)
def test_an_invalid_entry_names_the_file_the_entry_and_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    root = tmp_path / "src"
    skill(root / "s", "s")
    raw = entry(root, "s", "skill", "1", "s")
    raw.update(change)
    path = index(root, [raw])

    with pytest.raises(CatalogueIndexError) as error:
        read_index(path, source="src")

    assert error.value.message.startswith(f"{path}: entries[0]")
    assert message in error.value.message


def test_a_newer_index_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = write(tmp_path / "promptline-index.yaml", "format: 2\nentries: []\n")

    with pytest.raises(FormatVersionError) as error:
        read_index(path, source="x")

    assert error.value.hint == "upgrade PromptLine"


def test_the_tree_checksum_hashes_sorted_paths_sizes_and_bytes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "b.txt", "bee\n")
    write(root / "a" / "z.txt", "zed\n")
    write(root / "__pycache__" / "x.pyc", "ignored")
    (root / "empty").mkdir()
    (root / "link").symlink_to("b.txt")
    by_hand = hashlib.sha256()
    by_hand.update(b"Fa/z.txt\0" + (4).to_bytes(8, "big") + b"zed\n")
    by_hand.update(b"Fb.txt\0" + (4).to_bytes(8, "big") + b"bee\n")
    by_hand.update(b"Llink\0b.txt\0")

    assert tree_checksum(root) == by_hand.hexdigest()


def test_a_git_source_is_cloned_at_its_ref_and_refreshed_on_demand(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    skill(repo / "skills" / "git-skill", "git-skill")
    index(repo, [entry(repo, "git-skill", "skill", "1.0", "skills/git-skill")])
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "first")
    git(repo, "tag", "v1")
    home = tmp_path / "home"
    pinned = catalogue(home, pinned={"git": str(repo), "ref": "v1"})
    following = catalogue(home, main={"git": str(repo), "ref": "main"})

    assert [h.entry.spec for h in following.search()[0]] == ["git-skill@1.0"]

    write(repo / "skills" / "git-skill" / "SKILL.md", "---\nname: git-skill\n---\nBetter.\n")
    index(repo, [entry(repo, "git-skill", "skill", "1.1", "skills/git-skill")])
    git(repo, "commit", "--quiet", "-am", "second")

    assert [h.entry.spec for h in following.search()[0]] == ["git-skill@1.0"]  # cached
    assert [h.entry.spec for h in following.search(refresh=True)[0]] == ["git-skill@1.1"]
    assert [h.entry.spec for h in pinned.search()[0]] == ["git-skill@1.0"]
    report = pinned.install("git-skill")
    assert report.installed[0].source == "pinned"
    assert (home / "skills" / "git-skill" / "SKILL.md").read_text().endswith("Do the thing.\n")


def test_a_git_source_that_cannot_be_cloned_is_a_problem_of_that_source_only(
    tmp_path: Path, source_b: Path
) -> None:
    cat = catalogue(
        tmp_path / "home", gone={"git": str(tmp_path / "no-such-repo")}, b={"path": source_b}
    )

    hits, problems = cat.search()

    assert [h.entry.name for h in hits] == ["csv-clean"]
    assert problems[0].source == "gone"
    assert problems[0].message.startswith("git clone failed for the catalogue source 'gone'")


def test_no_sources_configured_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as error:
        catalogue(tmp_path / "home").search()

    assert error.value.message == "no catalogue sources are configured"
