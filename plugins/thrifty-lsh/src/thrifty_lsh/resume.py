"""When a checkpoint folder may be resumed: the run it holds must be the run asked for.

A checkpoint carries its run's settings - the identity of the data (size and digest of each
file), the shape of the network, the layer's and sampler's resolved options, batch size,
learning rate, seed, epochs and world size. Resuming with any other value would silently train
a different run (a new batch size shifts the position, so samples are skipped or repeated), so
a mismatch is refused with every differing setting named. A few settings may change on purpose
(:data:`CHANGEABLE`, with ``--allow-change``); a finished run is never continued or overwritten
without ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from thrifty.errors import ConfigError

CHANGEABLE = ("lr", "epochs", "eval_points")
"""Settings a resumed run may change with ``--allow-change``: none of them moves the position
or changes what the saved state means."""

SINGLE = "checkpoint.safetensors"
_SHARD_DIR = re.compile(r"^rank(\d+)-of-(\d+)$")
_LEGACY = ("checkpoint.pt", "rank*-of-*/step-*.pt")


def data_identity(source: str | None) -> Any:
    """What identifies a data set: a synthetic spec by its name, a file by its size and digest
    (a moved or renamed file is the same data; an edited one is not)."""
    if source is None or source.startswith("synthetic:"):
        return source
    path = Path(source)
    digest = hashlib.blake2b(digest_size=16)
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read data file {path}: {exc}") from None
    return {"bytes": path.stat().st_size, "blake2b": digest.hexdigest()}


def differences(saved: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """``(setting, saved value, current value)`` for every setting that differs."""
    return [(k, saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
            if saved.get(k) != now.get(k)]


def check_settings(saved: dict, now: dict, allow: frozenset[str] | set[str],
                   where: Path) -> list[str]:
    """Refuse to resume a different run; return a line for each change that ``allow`` admits."""
    diffs = differences(saved, now)
    refused = [d for d in diffs if d[0] not in allow]
    if refused:
        listed = "; ".join(f"{k}: {_show(a)} in the checkpoint, {_show(b)} now"
                           for k, a, b in refused)
        changeable = [k for k, _, _ in refused if k in CHANGEABLE]
        hint = (f"pass --allow-change {','.join(changeable)} to continue with the change, "
                if changeable else "")
        raise ConfigError(
            f"{where} holds a checkpoint of a different run ({listed}). Resume with the "
            f"checkpoint's settings, {hint}or start a new run there with --overwrite (or "
            f"choose another --checkpoint folder)")
    return [f"resuming with {k} changed from {_show(a)} to {_show(b)} (--allow-change)"
            for k, a, b in diffs]


def _show(value: Any) -> str:
    if isinstance(value, dict) and "blake2b" in value:
        return f"a {value['bytes']}-byte file with digest {value['blake2b'][:12]}"
    return repr(value)


def parse_allow(values: list[str] | None) -> frozenset[str]:
    """``--allow-change lr,epochs`` (repeatable) as a set, each name checked."""
    names = {n.strip() for v in values or [] for n in v.split(",") if n.strip()}
    unknown = sorted(names - set(CHANGEABLE))
    if unknown:
        raise ConfigError(f"--allow-change: {unknown} cannot change in a resumed run; "
                          f"changeable: {', '.join(CHANGEABLE)} (for any other setting start a "
                          f"new run with --overwrite)")
    return frozenset(names)


def prepare_folder(folder: Path) -> None:
    """Fail before training, not at the first save, when ``folder`` cannot hold checkpoints."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--checkpoint {folder} is a file, not a folder; point it at a folder "
                          f"(it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"--checkpoint {folder} cannot hold checkpoints ({exc.strerror or exc});"
                          f" choose a folder you can write to") from None


def shard_worlds(folder: Path) -> set[int]:
    """World sizes of the distributed runs whose shards lie in ``folder``."""
    found = set()
    for d in folder.glob("rank*-of-*"):
        m = _SHARD_DIR.match(d.name)
        if m and d.is_dir() and any(d.glob("step-*")):
            found.add(int(m.group(2)))
    return found


def refuse_foreign(folder: Path, world: int | None) -> None:
    """Refuse a folder that holds another kind of run: pickled checkpoints of an older format
    (never loaded: unpickling can run code), a distributed run of another world size, or a
    single-process run where a distributed one starts (``world`` None: single-process)."""
    legacy = [p for pattern in _LEGACY for p in sorted(folder.glob(pattern))]
    if legacy:
        raise ConfigError(
            f"{legacy[0]} is a pickled checkpoint of an older format, which thrifty never loads "
            f"(unpickling can run code); start a new run there with --overwrite or choose "
            f"another --checkpoint folder")
    others = sorted(shard_worlds(folder) - ({world} if world else set()))
    if others:
        now = f"this run has {world} ranks" if world else "this run is not distributed"
        raise ConfigError(
            f"{folder} holds a distributed run on {others[0]} ranks and {now}; resume it with "
            f"torchrun --nproc-per-node {others[0]} ... --distributed, or start a new run there "
            f"with --overwrite")
    if world and (folder / SINGLE).exists():
        raise ConfigError(f"{folder} holds a single-process run ({SINGLE}); resume it without "
                          f"--distributed, or start a new run there with --overwrite")


def clear(folder: Path) -> None:
    """Remove every checkpoint of ``folder`` (``--overwrite``), leaving other files alone."""
    for pattern in (SINGLE, *_LEGACY):
        for p in folder.glob(pattern):
            p.unlink()
    for d in folder.glob("rank*-of-*"):
        if _SHARD_DIR.match(d.name) and d.is_dir():
            shutil.rmtree(d)


def check_resumable(state: dict, settings: dict, epochs: int, allow: frozenset[str] | set[str],
                    where: Path) -> list[str]:
    """Refuse a checkpoint of another run (:func:`check_settings`) or of a finished one (unless
    ``epochs`` goes beyond it, with ``--allow-change epochs``); return the accepted changes."""
    changes = check_settings(state["run"], settings, allow, where)
    if state["position"]["epoch"] >= epochs or (state["finished"]
                                                and epochs <= state["run"]["epochs"]):
        last = state["history"][-1] if state["history"] else {}
        told = (f" ({last['step']} steps, final P@1 {last['p1']:.4f})"
                if {"step", "p1"} <= set(last) else "")
        raise ConfigError(
            f"{where} is the checkpoint of a finished run{told}; start a new run in its folder "
            f"with --overwrite,"
            f" choose another --checkpoint folder, or train it further with more --epochs and "
            f"--allow-change epochs")
    return changes


def agreed_step(steps, all_min) -> int:
    """The newest step that every rank holds intact (-1: none). Each rank passes the steps of
    its intact files and ``all_min``, an all-reduce of the minimum: the ranks lower a common
    bound until every rank holds it, one all-reduce per round."""
    steps = sorted(steps)
    bound = 1 << 62
    while True:
        mine = max((s for s in steps if s <= bound), default=-1)
        agreed = all_min(mine)
        if agreed == bound or agreed < 0:
            return agreed
        bound = agreed
