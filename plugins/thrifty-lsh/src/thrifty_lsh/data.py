"""The Extreme Classification Repository format: read (streaming), write, batch.

```
num_points num_features num_labels
l1,l2,... f:v f:v ...          labels comma-separated, then 0-based feature:value pairs
 f:v f:v ...                    a point without labels starts with a space
```

:func:`read_points` streams a file line by line, so files larger than memory can be read;
:func:`load` collects them into CSR arrays (:class:`XCData`) for shuffled epochs. Every malformed
line raises :class:`~thrifty.errors.DatasetFormatError` naming the file, the line number and
its content; nothing is skipped silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import attrs
import numpy as np

from thrifty.errors import DatasetFormatError


@attrs.frozen
class Header:
    n_points: int
    n_features: int
    n_labels: int


@attrs.frozen
class Point:
    labels: list[int]
    features: list[int]
    values: list[float]


MAX_COUNT = 2**31 - 1
"""Largest point, feature or label count a header may claim (ids are stored as int64 and
address rows of weight matrices; no real data set comes near)."""
_FLOAT32_MAX = 3.4028234663852886e38


def _fail(path, number: int, line: str, why: str) -> DatasetFormatError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return DatasetFormatError(f"{path}:{number}: {why}: {shown!r}")


def parse_header(line: str, path="<data>") -> Header:
    parts = line.split()
    try:
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError
        n_points, n_features, n_labels = (int(p) for p in parts)
    except ValueError:
        raise _fail(path, 1, line.rstrip("\n"), "the header must be three non-negative "
                    "integers 'num_points num_features num_labels'") from None
    if max(n_points, n_features, n_labels) > MAX_COUNT:
        raise _fail(path, 1, line.rstrip("\n"), f"a count above {MAX_COUNT} is not a real "
                    "data set's (a damaged header?)")
    return Header(n_points, n_features, n_labels)


def _index(token: str) -> int:
    if not (token.isascii() and token.isdigit()):
        raise ValueError(token)
    return int(token)


def _value(token: str) -> float:
    """A finite float32 feature value (``nan``, ``inf`` and 1e39 would make the loss NaN)."""
    if "_" in token:
        raise ValueError(token)
    v = float(token)
    if not abs(v) <= _FLOAT32_MAX:
        raise OverflowError(token)
    return v


def parse_line(line: str, header: Header, number: int = 0, path="<data>",
               limits: Header | None = None, origin: str = "the header's") -> Point:
    """One data line; labels and feature ids are checked against the ranges of ``limits``
    (default: the file's own ``header``; a test file is checked against the train file's,
    whose ``origin`` the messages name)."""
    limits = limits or header
    text = line.rstrip("\n").rstrip("\r")
    if not text.strip():
        raise _fail(path, number, text, "empty line (a point without labels or features "
                    "still needs its line; did the file end early?)")
    head, _, rest = text.partition(" ")
    tokens = rest.split()
    labels: list[int] = []
    if head:
        if ":" in head:
            raise _fail(path, number, text, "the line starts with a feature; a point without "
                        "labels must start with a space")
        try:
            labels = [_index(t) for t in head.split(",")]
        except ValueError:
            raise _fail(path, number, text, "labels must be comma-separated non-negative "
                        "integers") from None
        bad = [lab for lab in labels if lab >= limits.n_labels]
        if bad:
            raise _fail(path, number, text, f"label {bad[0]} outside 0..{limits.n_labels - 1} "
                        f"({origin} num_labels)")
        if len(set(labels)) < len(labels):
            twice = next(lab for lab in labels if labels.count(lab) > 1)
            raise _fail(path, number, text, f"label {twice} appears twice on the line")
    features, values = [], []
    for tok in tokens:
        f, sep, v = tok.partition(":")
        try:
            if not sep:
                raise ValueError
            fi, fv = _index(f), _value(v)
        except ValueError:
            raise _fail(path, number, text, f"feature {tok!r} is not 'index:value' (a "
                        "non-negative integer and a finite number)") from None
        except OverflowError:
            raise _fail(path, number, text, f"feature value {v!r} is not a finite float32 "
                        f"number (|value| <= {_FLOAT32_MAX:.4g})") from None
        if fi >= limits.n_features:
            raise _fail(path, number, text, f"feature index {fi} outside "
                        f"0..{limits.n_features - 1} ({origin} num_features; ids are 0-based)")
        features.append(fi)
        values.append(fv)
    return Point(labels, features, values)


def _decode(path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, number, raw.decode("utf-8", "replace").rstrip("\n"),
                    f"not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                    "data files are UTF-8") from None


def read_points(path, limits: Header | None = None,
                origin: str = "the header's") -> tuple[Header, Iterator[Point]]:
    """The header and a lazy iterator over the points of a file (constant memory). Ids are
    checked against ``limits`` (default: this file's header) - see :func:`parse_line`."""
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DatasetFormatError(f"cannot open data file {path}: {exc}") from exc
    first = _decode(path, 1, fh.readline())
    if not first:
        fh.close()
        raise DatasetFormatError(f"{path}: empty file; expected a header "
                                 "'num_points num_features num_labels'")
    header = parse_header(first, path)

    def points() -> Iterator[Point]:
        with fh:
            count = 0
            for number, raw in enumerate(fh, start=2):
                line = _decode(path, number, raw)
                if count == header.n_points:
                    if line.strip():
                        raise _fail(path, number, line.rstrip("\n"), f"more points than the "
                                    f"header's {header.n_points}")
                    continue
                if not line.endswith("\n") and count + 1 < header.n_points:
                    raise _fail(path, number, line, "file ends in the middle of a line "
                                "(truncated?)")
                yield parse_line(line, header, number, path, limits, origin)
                count += 1
            if count < header.n_points:
                raise DatasetFormatError(
                    f"{path}: the header promises {header.n_points} points but the file ends "
                    f"after {count} (truncated? re-download it or fix the header)")

    return header, points()


@attrs.define
class XCData:
    """Points in CSR form: features of point ``i`` are ``indices[indptr[i]:indptr[i+1]]``."""

    header: Header
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    label_ptr: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def batch(self, rows: np.ndarray):
        """The points ``rows`` as a :class:`~thrifty_lsh.model.Batch` of torch tensors."""
        import torch

        from .model import Batch

        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lens = ends - starts
        take = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        lstart, lend = self.label_ptr[rows], self.label_ptr[rows + 1]
        width = max(1, int((lend - lstart).max(initial=0)))
        labels = np.full((len(rows), width), -1, dtype=np.int64)
        for i, (a, b) in enumerate(zip(lstart, lend)):
            labels[i, : b - a] = self.labels[a:b]
        return Batch(torch.from_numpy(self.indices[take].astype(np.int64)),
                     torch.from_numpy(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)),
                     torch.from_numpy(self.values[take].astype(np.float32)),
                     torch.from_numpy(labels))

    def batches(self, batch_size: int, seed: int | None = None, start: int = 0):
        """Batches of one epoch (shuffled by ``seed`` if given), from batch number ``start``:
        the order depends only on the seed, so a resumed run sees exactly the batches left."""
        order = np.arange(len(self))
        if seed is not None:
            order = np.random.default_rng(seed).permutation(len(self))
        for first in range(start * batch_size, len(self), batch_size):
            yield self.batch(order[first:first + batch_size])


def load(path, limit: int | None = None, limits: Header | None = None,
         origin: str = "the header's") -> XCData:
    """Read a file (or its first ``limit`` points) into CSR arrays; ``limits`` and ``origin``
    as in :func:`read_points`."""
    header, points = read_points(path, limits, origin)
    indptr, indices, values, label_ptr, labels = [0], [], [], [0], []
    for i, p in enumerate(points):
        if limit is not None and i >= limit:
            break
        indices.extend(p.features)
        values.extend(p.values)
        labels.extend(p.labels)
        indptr.append(len(indices))
        label_ptr.append(len(labels))
    return XCData(header, np.asarray(indptr, np.int64), np.asarray(indices, np.int64),
                  np.asarray(values, np.float32), np.asarray(label_ptr, np.int64),
                  np.asarray(labels, np.int64))


def write(path, data: XCData) -> None:
    """Write CSR arrays in the repository's format (labels first; a space when none)."""
    h = data.header
    with Path(path).open("w", encoding="utf-8") as fh:
        fh.write(f"{len(data)} {h.n_features} {h.n_labels}\n")
        for i in range(len(data)):
            labs = ",".join(map(str, data.labels[data.label_ptr[i]:data.label_ptr[i + 1]]))
            a, b = data.indptr[i], data.indptr[i + 1]
            feats = " ".join(f"{f}:{v:.6g}" for f, v in zip(data.indices[a:b], data.values[a:b]))
            fh.write(f"{labs} {feats}\n")
