"""Durable, atomic file writes: a reader, a crash or a power cut sees the old file or the new
one, never half of one.

The data goes to a temporary file in the target's folder, is flushed and fsynced, renamed over
the target, and then the folder itself is fsynced - without that last step a power cut can
forget the rename although the data reached the disk. Every output thrifty writes (profiles,
plots, recovery files, checkpoints, exported graphs, draft weights) goes through this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError
from .files import ensure_folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name
    (``torch.save``, ``safetensors.save_file``, ``onnx.save``, ``savefig``); when the block ends
    without an exception the file is fsynced and renamed over ``path``, then the folder is
    fsynced. On an exception the temporary file is removed and ``path`` is untouched.

    ``suffix`` ends the temporary (hidden) name: pass the extension for writers that pick a
    format by it (``savefig``).

    >>> with atomic_path("out/model.safetensors") as tmp:             # doctest: +SKIP
    ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    folder = ensure_folder(path.parent, f"the folder of {path.name}")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes the file private (0600); the finished file gets the mode a plain open()
    # would have given it, so that outputs stay readable to whoever could read them before
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(folder)


def _umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` (``str`` is written as UTF-8), creating its folder."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json_atomically(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    """:func:`write_atomically` of ``data`` as JSON. NaN and infinities are refused: they are
    not JSON, and a reader of the file would choke on them."""
    try:
        text = json.dumps(data, indent=indent, allow_nan=False)
    except ValueError as exc:
        raise ConfigError(f"cannot write {path}: {exc} (a value is NaN or infinite)") from None
    write_atomically(path, text + "\n")


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make renames and deletions in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open a folder (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that cannot sync a folder
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_folder(finished: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the folder ``finished`` (written beside ``target``, in the same file system) in place
    of ``target``: its files and the folder are fsynced first, an old ``target`` is removed,
    the rename is made and the parent fsynced. After a crash ``target`` is the old folder,
    absent, or the whole new one — never a half-written one (a model cache, an exported
    checkpoint)."""
    finished, target = Path(finished), Path(target)
    for path in finished.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    fsync_folder(finished)
    if target.exists():
        shutil.rmtree(target)
    os.replace(finished, target)
    fsync_folder(target.parent)
