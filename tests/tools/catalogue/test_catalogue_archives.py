"""Archives and folders are unpacked safely: absolute paths, ``..``, symlinks leading out
(directly or through another link), hard links, and oversized archives are refused and leave
nothing installed; links that stay inside are kept."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from catalogue_helpers import catalogue, entry, index, listing, skill, tar_members

from promptline.tools.catalogue import ArchiveLimits, UnsafeArchiveError
from promptline.tools.switches import SWITCHES_FILE, Switches

SKILL = ("file", "SKILL.md", "---\nname: evil\n---\nHello.\n")


def install(tmp_path: Path, archive_name: str, **limits: int) -> Path:
    """Index ``source/<archive_name>`` as the skill ``evil`` and install it; the home."""
    source = tmp_path / "source"
    index(source, [entry(source, "evil", "skill", "1.0", archive_name)])
    home = tmp_path / "home"
    cat = catalogue(home, main={"path": source})
    if limits:
        cat.limits = ArchiveLimits(**limits)
    cat.install("evil")
    return home


def refused(tmp_path: Path, archive_name: str, message: str, **limits: int) -> None:
    with pytest.raises(UnsafeArchiveError) as error:
        install(tmp_path, archive_name, **limits)
    assert message in error.value.message
    assert "nothing was installed" in error.value.message
    home = tmp_path / "home"
    assert listing(home / "skills") == []
    assert not (home / "installed.json").exists()
    assert Switches(home / SWITCHES_FILE).all("skills") == {}
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("file", "../pwned", "x"), "climbs out with '..'"),
        (("file", "sub/../../pwned", "x"), "climbs out with '..'"),
        (("file", "/tmp/pwned-absolute", "x"), "is an absolute path"),
        (("symlink", "escape", "../../pwned"), "is a symlink to '../../pwned', outside"),
        (("symlink", "root", "/etc"), "is a symlink to '/etc', outside"),
        (("hardlink", "hard", "/etc/passwd"), "is a hard link"),
    ],
)
def test_a_tar_member_leaving_the_folder_is_refused(
    tmp_path: Path, member: tuple[str, str, str], message: str
) -> None:
    tar_members(tmp_path / "source" / "evil.tar.gz", [SKILL, member])

    refused(tmp_path, "evil.tar.gz", message)


def test_a_symlink_leading_out_through_another_link_is_refused(tmp_path: Path) -> None:
    # "here" -> "." stays inside; "up" -> "here/.." looks inside but really is the parent.
    tar_members(
        tmp_path / "source" / "evil.tar.gz",
        [SKILL, ("symlink", "here", "."), ("symlink", "up", "here/..")],
    )

    with pytest.raises(UnsafeArchiveError) as error:
        install(tmp_path, "evil.tar.gz")

    assert "'up' is a symlink to 'here/..', outside the entry" in error.value.message
    assert listing(tmp_path / "home" / "skills") == []


def test_a_member_written_through_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    tar_members(
        tmp_path / "source" / "evil.tar.gz",
        [SKILL, ("symlink", "dir", "sub"), ("dir", "sub", ""), ("file", "dir/x", "x")],
    )

    with pytest.raises(UnsafeArchiveError) as error:
        install(tmp_path, "evil.tar.gz")

    assert "'dir' is given twice" in error.value.message


def test_a_zip_with_dot_dot_or_a_symlink_out_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    with zipfile.ZipFile(source / "evil.zip", "w") as zf:
        zf.writestr("SKILL.md", "---\nname: evil\n---\n")
        zf.writestr("../pwned", "x")
    refused(tmp_path, "evil.zip", "climbs out with '..'")

    with zipfile.ZipFile(source / "evil.zip", "w") as zf:
        zf.writestr("SKILL.md", "---\nname: evil\n---\n")
        link = zipfile.ZipInfo("link")
        link.external_attr = (0o120777 << 16) | 0x20
        zf.writestr(link, "../../pwned")
    refused(tmp_path, "evil.zip", "is a symlink to '../../pwned'")


def test_oversized_archives_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "source" / "evil.tar.gz"
    tar_members(archive, [SKILL, ("file", "noise.bin", os.urandom(5000))])
    refused(tmp_path, "evil.tar.gz", "more than the 1000 allowed", max_archive_bytes=1000)

    # Compresses to almost nothing: caught by the bytes written, not by the archive's size.
    tar_members(archive, [SKILL, ("file", "zeros.bin", bytes(200_000))])
    refused(
        tmp_path, "evil.tar.gz", "unpacks to more than 100000 bytes", max_unpacked_bytes=100_000
    )
    refused(tmp_path, "evil.tar.gz", "holds more than 1 files", max_files=1)


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    tar_members(
        tmp_path / "source" / "good.tar.gz",
        [SKILL, ("file", "docs/guide.md", "guide"), ("symlink", "README.md", "docs/guide.md")],
    )

    home = install(tmp_path, "good.tar.gz")

    installed = home / "skills" / "evil"
    assert os.readlink(installed / "README.md") == "docs/guide.md"
    assert (installed / "README.md").read_text() == "guide"


def test_a_folder_entry_with_a_symlink_out_is_refused(tmp_path: Path) -> None:
    folder = skill(tmp_path / "source" / "evil", "evil")
    (folder / "secrets").symlink_to(tmp_path / "outside-secrets")

    refused(tmp_path, "evil", "is a symlink to")
