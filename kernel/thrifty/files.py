"""Reading the files a user hands thrifty, and the folders it reads and writes in.

Every read names the file (and the line where there is one) in a :class:`ConfigError`, so that
a wrong encoding, a list where an object belongs or a folder where a file belongs never reaches
the user as a traceback. Writes go through :mod:`thrifty.atomic`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


# -- folders ---------------------------------------------------------------------------------
def ensure_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` (and its parents) or say why not: a file in the way, no permission.
    ``what`` names the folder's role in the message (``"THRIFTY_CACHE"``, ``"the --log file"``)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what}: {folder} (or a folder above it) is a file, not a folder; "
                          f"move the file or choose another folder") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot create folder {folder} ({exc.strerror}); choose a "
                          f"folder you can write to") from None
    if not folder.is_dir():
        raise ConfigError(f"{what}: {folder} is not a folder; choose another path")
    return folder


def user_folder(env: str, default: Path) -> Path:
    """The folder an environment variable names (``~`` expanded), else ``default``; refused
    when it, or a folder above it, is a file. Not created here: readers only look in it."""
    raw = os.environ.get(env)
    folder = Path(raw).expanduser() if raw else default
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        source = f"{env}={raw}" if raw else f"the default folder for ${env}"
        raise ConfigError(f"{source}: {existing} is a file, not a folder; set {env} to a "
                          f"folder (or move the file)")
    return folder


def cache_dir() -> Path:
    """Where thrifty keeps what it makes once and reuses (converted models, exported graphs):
    ``$THRIFTY_CACHE``, default ``~/.cache/thrifty``."""
    return user_folder("THRIFTY_CACHE", Path.home() / ".cache" / "thrifty")


def state_dir() -> Path:
    """Where thrifty keeps state that must survive a crash (hardware recovery files):
    ``$THRIFTY_STATE_DIR``, default ``$XDG_STATE_HOME/thrifty`` or ``~/.local/state/thrifty``."""
    xdg = os.environ.get("XDG_STATE_HOME")
    default = Path(xdg) / "thrifty" if xdg else Path.home() / ".local" / "state" / "thrifty"
    return user_folder("THRIFTY_STATE_DIR", default)


def check_writable(path: str | Path, what: str) -> Path:
    """Check, before any work runs, that a file can later be written at ``path``: its folder
    exists (it is not created: a typo in a folder name should fail, not grow a tree) and is
    writable, and ``path`` is not a folder. Long runs call this first so that an output path
    error never throws away the work."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    if not folder.is_dir():
        kind = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{what} {path}: folder {folder} {kind}; create it first or choose "
                          f"another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{what} {path}: folder {folder} is not writable; choose another path")
    return path


# -- reading ---------------------------------------------------------------------------------
def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (a byte-order mark is dropped). A missing file, a folder or
    another encoding is a ConfigError naming the file, the byte offset and the fix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"cannot read {what} {path}: it does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder; give a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} {path}:{line} is not UTF-8 (byte {raw[exc.start]:#04x} at "
                          f"offset {exc.start}); save it as UTF-8 (e.g. `iconv -t UTF-8`)") from None


def read_json(path: str | Path, what: str = "JSON file", expect: type = dict) -> Any:
    """The JSON value in ``path``; it must be an ``expect`` (dict or list). Syntax errors name
    the line and column; NaN and Infinity (which JSON does not have) are refused."""
    text = read_text(path, what)

    def refuse(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path}:{exc.lineno}:{exc.colno} is not valid JSON "
                          f"({exc.msg})") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON ({exc})") from None
    if not isinstance(data, expect):
        raise ConfigError(f"{what} {path} holds a JSON {json_type(data)}, expected a JSON "
                          f"{json_type(expect())}")
    return data


def read_toml(path: str | Path, what: str = "TOML file") -> dict:
    """The table in ``path``; syntax errors name the line."""
    return parse_toml(read_text(path, what), f"{what} {path}")


def parse_toml(text: str, where: str = "TOML text") -> dict:
    """The table in TOML ``text``; a syntax error names ``where`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__
