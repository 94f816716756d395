"""Durable, atomic file writes: a reader, a crash or a power cut sees the old file or the new
one, never half of one.

The data goes to a temporary file in the target's folder, is flushed and fsynced, renamed over
the target, and then the folder itself is fsynced - without that last step a power cut can
forget the rename although the data reached the disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` (``str`` is written as UTF-8), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_json_atomically(path: str | os.PathLike, data: Any) -> None:
    """:func:`write_atomically` of ``data`` as indented JSON."""
    write_atomically(path, json.dumps(data, indent=2))


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make renames and deletions in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that cannot sync a folder
        pass
    finally:
        os.close(fd)
