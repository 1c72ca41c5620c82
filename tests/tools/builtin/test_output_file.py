"""The bounded file of the workspace that keeps a command's whole output."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.tools.builtin.output_file import OUTPUT_FOLDER, OutputFile


def output_file(workspace: Path, *, limit: int, tail: int) -> OutputFile:
    return OutputFile.create(workspace, "call_1", limit=limit, tail=tail)


def test_an_output_file_under_its_limit_holds_the_output_as_it_was(tmp_path: Path) -> None:
    out = output_file(tmp_path, limit=1000, tail=100)
    for piece in ("hello ", "wörld\n"):
        out.write(piece)
    out.close()

    assert out.name == f"{OUTPUT_FOLDER}/call_1.log"
    assert (tmp_path / out.name).read_text() == "hello wörld\n"
    assert (out.total, out.cut, out.error) == (13, 0, None)


def test_an_output_file_over_its_limit_keeps_head_and_tail_and_says_what_was_cut(
    tmp_path: Path,
) -> None:
    out = output_file(tmp_path, limit=400, tail=50)
    out.write("HEAD")
    for _ in range(1000):
        out.write("x" * 100)
    out.write("TAIL")
    out.close()

    content = (tmp_path / out.name).read_bytes()
    assert len(content) <= 400
    assert content.startswith(b"HEADxxx")
    assert content.endswith(b"xxxTAIL")
    assert out.total == 100_008
    assert f"[... {out.cut} bytes cut: this file keeps the first".encode() in content
    assert out.cut == 100_008 - 190 - 50  # the head is what fits before the tail and the note


def test_an_output_file_never_cuts_inside_a_character(tmp_path: Path) -> None:
    out = output_file(tmp_path, limit=400, tail=51)
    for _ in range(200):
        out.write("é")  # two bytes each: the head and the tail limits fall inside one
    out.close()

    content = (tmp_path / out.name).read_text(encoding="utf-8")  # strict: no broken bytes
    head, note, tail = content.split("\n")
    assert set(head) == set(tail) == {"é"}
    assert "bytes cut" in note


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_output_file_that_cannot_be_written_says_why_instead_of_raising(
    tmp_path: Path,
) -> None:
    # /dev/full answers every write with "No space left on device".
    with Path("/dev/full").open("wb", buffering=0) as full:
        out = OutputFile(full, "full.log")

        out.write("lost\n")
        out.close()

    assert out.error == "No space left on device"
    assert out.total == 5
