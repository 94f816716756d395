"""Synthetic extreme-classification data: power-law label frequencies, learnable structure.

Label frequencies follow Zipf's law (the label of popularity rank ``r`` is drawn with
probability proportional to ``(r + 1) ** -alpha``), as in real tagging and product data. Each
label owns a *signature*: ``signature`` feature ids fixed by a hash of the label. A point draws
its labels, keeps each signature feature of each label with probability ``keep``, adds
``noise`` random features, and L2-normalises the values - so the labels are recoverable from the
features, but not trivially. Presets copy the shapes of two real data sets.
"""

from __future__ import annotations

import attrs
import numpy as np

from .data import Header, XCData


@attrs.frozen
class Shape:
    n_features: int
    n_labels: int
    n_train: int
    n_test: int
    labels_per_point: float
    features_per_point: float


PRESETS = {
    "amazon-670k": Shape(135_909, 670_091, 490_449, 153_025, 5.45, 75.7),
    "delicious-200k": Shape(782_585, 205_443, 196_606, 100_095, 75.5, 301.2),
}


def label_signature(labels: np.ndarray, size: int, n_features: int, seed: int) -> np.ndarray:
    """``[len(labels), size]`` feature ids of each label's signature (a fixed hash)."""
    lab = labels.astype(np.uint64)[:, None]
    j = np.arange(size, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        h = (lab * np.uint64(0x9E3779B97F4A7C15) + j * np.uint64(0xBF58476D1CE4E5B9)
             + np.uint64(seed) * np.uint64(0x94D049BB133111EB))
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xD6E8FEB86B9D32D3)
        h ^= h >> np.uint64(29)
    return (h % np.uint64(n_features)).astype(np.int64)


def generate(n_points: int, n_features: int, n_labels: int, labels_per_point: float = 5.0,
             features_per_point: float = 75.0, alpha: float = 1.0, keep: float = 0.7,
             seed: int = 0, structure_seed: int = 0) -> XCData:
    """``n_points`` points. ``seed`` draws the points; ``structure_seed`` fixes which labels are
    popular and their signatures, so train and test sets made with different ``seed`` share
    one underlying task."""
    rng = np.random.default_rng(seed)
    structure = np.random.default_rng(structure_seed)
    popularity = structure.permutation(n_labels)  # label id of each popularity rank
    cdf = np.cumsum((np.arange(1, n_labels + 1, dtype=np.float64)) ** -alpha)
    cdf /= cdf[-1]
    n_lab = 1 + rng.poisson(max(labels_per_point - 1.0, 0.0), n_points)
    ranks = np.minimum(np.searchsorted(cdf, rng.random(n_lab.sum())), n_labels - 1)
    labels = popularity[ranks]
    # about `keep * signature` features per label, the rest of the budget noise
    signature = max(1, int(round(0.8 * features_per_point / labels_per_point / keep)))
    sig = label_signature(labels, signature, n_features, structure_seed)
    kept = rng.random(sig.shape) < keep
    n_noise = rng.poisson(max(features_per_point - labels_per_point * signature * keep, 1.0),
                          n_points)
    point_of_label = np.repeat(np.arange(n_points), n_lab)
    feat_point = np.concatenate([np.repeat(point_of_label, signature)[kept.ravel()],
                                 np.repeat(np.arange(n_points), n_noise)])
    feat_id = np.concatenate([sig.ravel()[kept.ravel()],
                              rng.integers(0, n_features, n_noise.sum())])
    # one entry per (point, feature): duplicates add up, like term counts
    key = np.unique(feat_point * n_features + feat_id, return_counts=True)
    point, feat, count = key[0] // n_features, key[0] % n_features, key[1].astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(point, minlength=n_points))])
    norms = np.sqrt(np.add.reduceat(count ** 2, indptr[:-1])) if len(count) else count
    values = count / np.repeat(norms, np.diff(indptr))
    label_ptr = np.concatenate([[0], np.cumsum(n_lab)])
    # labels of a point sorted and unique, as in the repository's files
    labels_sorted, label_ptr = _unique_rows(labels, label_ptr)
    return XCData(Header(n_points, n_features, n_labels), indptr.astype(np.int64),
                  feat.astype(np.int64), values.astype(np.float32), label_ptr, labels_sorted)


def _unique_rows(values: np.ndarray, ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    row = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    width = int(values.max(initial=0)) + 1
    key = np.unique(row * width + values)
    counts = np.bincount(key // width, minlength=len(ptr) - 1)
    return (key % width).astype(np.int64), np.concatenate([[0], np.cumsum(counts)])


def preset(name: str, n_train: int | None = None, n_test: int | None = None,
           seed: int = 0) -> tuple[XCData, XCData]:
    """Train and test sets of a preset's shape (``amazon-670k``, ``delicious-200k``), with
    fewer points if asked: same features, labels and per-point statistics."""
    from thrifty.errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {name!r}; choose one of {sorted(PRESETS)}")
    s = PRESETS[name]
    common = dict(n_features=s.n_features, n_labels=s.n_labels,
                  labels_per_point=s.labels_per_point, features_per_point=s.features_per_point,
                  structure_seed=seed)
    return (generate(n_train or s.n_train, seed=seed * 2 + 1, **common),
            generate(n_test or s.n_test, seed=seed * 2 + 2, **common))
