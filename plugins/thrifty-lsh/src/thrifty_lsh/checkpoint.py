"""Checkpoint files: one safetensors file per checkpoint, never a pickle.

A training state is a nested structure of dicts, lists, numbers, strings and tensors (the
network, the optimisers' moments, the hash tables, the RNG state, the position, the history).
:func:`save` stores its tensors as the safetensors body and everything else as JSON in the
file's header metadata, with a digest over both, so that one atomic rename publishes a complete
checkpoint and :func:`load` tells a truncated, corrupt or foreign file from a good one. Nothing
in a checkpoint is executed: a file handed over by someone else can at worst be refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from thrifty.atomic import write_atomically
from thrifty.errors import ModelFormatError

FORMAT = "thrifty-lsh-checkpoint/1"
_TENSOR, _INT_KEYS = "$tensor", "$int_keys"


def pack(state: Any, tensors: dict[str, torch.Tensor], at: str = "") -> Any:
    """``state`` as JSON-able data; its tensors go into ``tensors`` under their path."""
    if isinstance(state, torch.Tensor):
        tensors[at] = state.detach().contiguous()
        return {_TENSOR: at}
    if isinstance(state, dict):
        if all(isinstance(k, str) for k in state):
            return {k: pack(v, tensors, f"{at}.{k}") for k, v in state.items()}
        if all(isinstance(k, int) for k in state):  # optimiser state: parameter number -> state
            return {_INT_KEYS: [[k, pack(v, tensors, f"{at}.{k}")] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return [pack(v, tensors, f"{at}.{i}") for i, v in enumerate(state)]
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"cannot store {type(state).__name__} at {at!r} in a checkpoint")


def unpack(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`pack` (raises KeyError/TypeError/ValueError on a foreign layout)."""
    if isinstance(data, dict):
        if set(data) == {_TENSOR}:
            return tensors[data[_TENSOR]]
        if set(data) == {_INT_KEYS}:
            return {int(k): unpack(v, tensors) for k, v in data[_INT_KEYS]}
        return {k: unpack(v, tensors) for k, v in data.items()}
    if isinstance(data, list):
        return [unpack(v, tensors) for v in data]
    return data


def check_storable(state: dict) -> None:
    """Refuse, before training, a state that :func:`save` could not write (e.g. a third-party
    sampler whose ``state()`` holds other objects than tensors and plain values)."""
    from thrifty.errors import ConfigError

    try:
        pack(state, {})
    except TypeError as exc:
        raise ConfigError(f"this run cannot be checkpointed: {exc}; train without "
                          f"--checkpoint") from None


def _digest(meta: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(meta.encode("utf-8"), digest_size=16)
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically and durably (see :mod:`thrifty.atomic`)."""
    from safetensors.torch import save as to_bytes

    tensors: dict[str, torch.Tensor] = {}
    meta = json.dumps(pack(state, tensors))
    blob = to_bytes(tensors, metadata={"format": FORMAT, "state": meta,
                                       "digest": _digest(meta, tensors)})
    write_atomically(path, blob)


def load(path: str | Path) -> dict:
    """The state saved in ``path``; a :class:`~thrifty.errors.ModelFormatError` naming the file
    for anything that is not an intact checkpoint of this format (pickles are never opened)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read checkpoint {path}: {exc}") from None
    try:
        return _parse(blob)
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes is a refusal
        if blob[:1] == b"\x80" or blob[:4] == b"PK\x03\x04":
            why = ("a pickle (torch.save) file; thrifty never unpickles a checkpoint, since "
                   "unpickling can run code")
        else:
            why = f"not an intact thrifty checkpoint ({exc}); it may be truncated or corrupt"
        raise ModelFormatError(f"{path} is {why}: delete it, or start a new run with "
                               f"--overwrite") from None


def _parse(blob: bytes) -> dict:
    from safetensors.torch import load as from_bytes

    if len(blob) < 8:
        raise ValueError("shorter than a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if not 0 < n <= len(blob) - 8:
        raise ValueError(f"its header claims {n} bytes of a {len(blob)}-byte file")
    meta = json.loads(blob[8:8 + n].decode("utf-8")).get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    tensors = from_bytes(blob)
    if _digest(meta["state"], tensors) != meta["digest"]:
        raise ValueError("its digest does not match its contents")
    state = unpack(json.loads(meta["state"]), tensors)
    if not isinstance(state, dict):
        raise ValueError("it holds no training state")
    return state
