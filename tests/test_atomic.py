"""Atomic replacement of a file: the old file or the new one, never half, no litter."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents._atomic import write_atomically, write_bytes_atomically, write_text_atomically


def test_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    write_text_atomically(path, '{"new": true}')
    assert path.read_text() == '{"new": true}'
    assert list(tmp_path.iterdir()) == [path]


def test_creates_the_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "blob.bin"
    write_bytes_atomically(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


def test_a_writer_failing_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_bytes(b"previous")

    def half_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [path]


def test_the_writer_gets_a_sibling_with_the_same_suffix(tmp_path: Path) -> None:
    """SB3 appends ``.zip`` to a path without that suffix; the temporary keeps it."""
    seen: list[Path] = []

    def record(temporary: Path) -> None:
        seen.append(temporary)
        temporary.write_text("saved")

    write_atomically(tmp_path / "model.zip", record)
    assert seen[0].parent == tmp_path
    assert seen[0].suffix == ".zip"
    assert seen[0].name != "model.zip"
    assert (tmp_path / "model.zip").read_text() == "saved"
