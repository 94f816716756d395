"""Locality-sensitive hash families, vectorised in torch.

Each family draws ``n_hashes`` independent hash functions from a seed and maps a batch of
vectors ``x [n, dim]`` to integer codes ``[n, n_hashes]`` in ``[0, code_range)``. Tables combine K
codes into one bucket id (:func:`bucket_ids`). Two vectors collide on one hash with probability
``p`` that grows with their similarity; SLIDE's amplification turns that into a retrieval
probability ``1 - (1 - p**K)**L`` (:func:`retrieval_probability`).

* :class:`SimHash` - signed random projections; ``p = 1 - angle/pi`` (cosine similarity).
* :class:`WTA` - winner-take-all: the argmax position among ``window`` random coordinates;
  rank-order similarity, good for dense activations.
* :class:`DensifiedWTA` - WTA over disjoint bins of random permutations, where a bin whose
  window is all zero borrows the code of another bin (Chen & Shrivastava 2018), so sparse
  vectors still get informative codes. SLIDE's choice for Amazon-670K.
* :class:`MinHash` - min-wise hashing of the support (non-zero coordinates), keeping
  ``bits`` low bits; ``p = J + (1 - J) / 2**bits`` for Jaccard similarity ``J``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

_CHUNK_ELEMENTS = 1 << 24  # bound the [rows, hashes, window] intermediates to ~64 MB of floats
_MERSENNE = (1 << 31) - 1


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(int(seed))


def _chunks(n: int, per_row: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_row))
    for start in range(0, n, step):
        yield start, min(n, start + step)


class SimHash:
    """Signed random projections: code = 1 if ``<x, r> >= 0``, one Gaussian ``r`` per hash."""

    name = "simhash"

    def __init__(self, dim: int, n_hashes: int, seed: int = 0) -> None:
        import torch

        self.dim, self.n_hashes, self.code_range = dim, n_hashes, 2
        self.planes = torch.randn(dim, n_hashes, generator=_generator(seed))

    def codes(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        return (x.float() @ self.planes >= 0).to(torch.uint8)  # bits: one byte, not eight

    @staticmethod
    def collision_probability(cosine: float) -> float:
        """Probability that two vectors with this cosine similarity share one SimHash bit."""
        return 1.0 - math.acos(max(-1.0, min(1.0, cosine))) / math.pi

    def background_probability(self) -> float:
        return 0.5


class WTA:
    """Winner-take-all: each hash looks at ``window`` random coordinates and returns the
    position of the largest. Depends only on the rank order of the coordinates."""

    name = "wta"

    def __init__(self, dim: int, n_hashes: int, seed: int = 0, window: int = 8) -> None:
        import torch

        if window > dim:
            window = dim
        g = _generator(seed)
        self.dim, self.n_hashes, self.window, self.code_range = dim, n_hashes, window, window
        # n_hashes random permutations at once, the first `window` coordinates of each
        self.index = torch.rand(n_hashes, dim, generator=g).argsort(1)[:, :window]

    def codes(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        out = torch.empty(x.shape[0], self.n_hashes, dtype=torch.long)
        flat = self.index.reshape(-1)
        for a, b in _chunks(x.shape[0], flat.numel()):
            out[a:b] = x[a:b, flat].view(b - a, self.n_hashes, self.window).argmax(-1)
        return out

    def background_probability(self) -> float:
        return 1.0 / self.window


class DensifiedWTA:
    """WTA over the disjoint bins of random permutations with densification: a bin whose window
    holds only zeros takes the code of the bin that a seeded probe sequence points to."""

    name = "dwta"
    _PROBES = 16

    def __init__(self, dim: int, n_hashes: int, seed: int = 0, window: int = 8) -> None:
        import torch

        window = min(window, dim)
        g = _generator(seed)
        bins_per_perm = dim // window
        n_perms = math.ceil(n_hashes / bins_per_perm)
        perms = torch.rand(n_perms, dim, generator=g).argsort(1)[:, : bins_per_perm * window]
        self.dim, self.n_hashes, self.window, self.code_range = dim, n_hashes, window, window
        self.index = perms.reshape(-1, window)[:n_hashes]  # [n_hashes, window]
        # probe t of empty bin i borrows bin probe[t, i] (a fixed pseudo-random sequence)
        self.probe = torch.randint(0, n_hashes, (self._PROBES, n_hashes), generator=g)

    def codes(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        out = torch.empty(x.shape[0], self.n_hashes, dtype=torch.long)
        flat = self.index.reshape(-1)
        for a, b in _chunks(x.shape[0], flat.numel()):
            win = x[a:b, flat].view(b - a, self.n_hashes, self.window)
            best, code = win.max(-1)
            empty = best == 0
            if bool(empty.any()):
                code, empty = code.clone(), empty.clone()
                for t in range(self._PROBES):
                    donor_code, donor_empty = code[:, self.probe[t]], empty[:, self.probe[t]]
                    fill = empty & ~donor_empty
                    code[fill] = donor_code[fill]
                    empty &= ~fill
                    if not bool(empty.any()):
                        break
            out[a:b] = code
        return out

    def background_probability(self) -> float:
        return 1.0 / self.window


class MinHash:
    """Min-wise hashing of the set of non-zero coordinates, ``bits`` low bits kept per hash."""

    name = "minhash"

    def __init__(self, dim: int, n_hashes: int, seed: int = 0, bits: int = 2) -> None:
        import torch

        g = _generator(seed)
        a = torch.randint(1, _MERSENNE, (n_hashes, 1), generator=g)
        b = torch.randint(0, _MERSENNE, (n_hashes, 1), generator=g)
        coords = torch.arange(dim).unsqueeze(0)
        self.dim, self.n_hashes, self.bits, self.code_range = dim, n_hashes, bits, 1 << bits
        self.values = ((a * coords + b) % _MERSENNE).T.contiguous()  # [dim, n_hashes]

    def codes(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        out = torch.empty(x.shape[0], self.n_hashes, dtype=torch.long)
        big = torch.iinfo(torch.long).max
        for a, b in _chunks(x.shape[0], self.dim * self.n_hashes):
            rows, cols = (x[a:b] != 0).nonzero(as_tuple=True)
            mins = torch.full((b - a, self.n_hashes), big, dtype=torch.long)
            mins.scatter_reduce_(0, rows.unsqueeze(1).expand(-1, self.n_hashes),
                                 self.values[cols], "amin")
            out[a:b] = mins & (self.code_range - 1)
        return out

    def collision_probability(self, jaccard: float) -> float:
        """Probability that two sets with this Jaccard similarity share one kept code."""
        return jaccard + (1.0 - jaccard) / self.code_range

    def background_probability(self) -> float:
        return 1.0 / self.code_range


FAMILIES = {cls.name: cls for cls in (SimHash, WTA, DensifiedWTA, MinHash)}


def make_family(name: str, dim: int, n_hashes: int, seed: int, **params):
    """Build the hash family called ``name`` (``simhash``, ``wta``, ``dwta``, ``minhash``)."""
    from thrifty.errors import ConfigError

    if name not in FAMILIES:
        raise ConfigError(f"unknown hash family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name](dim, n_hashes, seed, **params)


def bucket_ids(codes: "torch.Tensor", k: int, code_range: int, n_buckets: int) -> "torch.Tensor":
    """Combine ``codes [n, K*L]`` into ``[n, L]`` bucket ids in ``[0, n_buckets)``.

    When ``code_range**K`` fits, the K codes are the digits of the id (no extra collisions);
    otherwise they are mixed by a multiply-xor hash and folded, which adds a collision
    probability of about ``1/n_buckets`` per table.
    """
    import torch

    n = codes.shape[0]
    digits = codes.view(n, -1, k)
    if code_range ** k <= n_buckets:
        # a small matrix product in floating point, exact while ids stay below 2**24
        # (float32), else 2**53 (float64)
        dtype = torch.float32 if code_range ** k <= 1 << 24 else torch.float64
        weights = float(code_range) ** torch.arange(k - 1, -1, -1, dtype=dtype)
        return (digits.to(dtype) @ weights).long()
    digits = digits.long()
    h = torch.zeros(n, digits.shape[1], dtype=torch.long)
    for i in range(k):
        h = ((h * 0x01000193) ^ digits[..., i]) & 0xFFFFFFFF
    h = (h * 0x9E3779B1) & 0xFFFFFFFF
    return (h >> 8) % n_buckets


def retrieval_probability(p: float, k: int, l: int) -> float:
    """Chance that an item colliding with probability ``p`` per hash shares a bucket with the
    query in at least one of ``l`` tables of ``k`` concatenated hashes."""
    return 1.0 - (1.0 - p ** k) ** l
