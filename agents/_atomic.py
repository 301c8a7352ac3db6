"""Replacing a file atomically: readers see the old file or the new one, never half of either.

Every file the project rewrites in place (``coordinator.json``, an agent's ``final.json``,
``report.html``, a checkpoint's manifest, files and policy library) goes through here. The new
content is written to a temporary file in the same directory (``os.replace`` is atomic only
within one file system), flushed and fsynced, renamed over the target, and the directory is
fsynced so the rename itself survives a power cut. If writing fails, the temporary file is
removed and the previous file is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically", "write_bytes_atomically", "write_text_atomically"]


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Replace ``path`` with what ``write`` writes to the temporary path it is given.

    For writers that take a path rather than bytes (SB3's ``model.save``, ``torch.save``).
    The temporary file keeps ``path``'s suffix, so a writer that adds a missing one (SB3 adds
    ``.zip``) writes where it is told. If ``write`` raises, ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        _fsync_file(temporary)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``."""

    def write(temporary: Path) -> None:
        temporary.write_bytes(data)

    write_atomically(path, write)


def write_text_atomically(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text``."""
    write_bytes_atomically(path, text.encode(encoding))


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; some platforms cannot open a directory, and need not."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
