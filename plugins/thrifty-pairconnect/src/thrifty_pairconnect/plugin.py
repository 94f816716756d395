"""thrifty hook implementations of the PairConnect plugin. Light: torch loads in the factories."""

from __future__ import annotations

from thrifty import Option, SparseLayerSpec, hookimpl


def _layer(in_features: int, out_features: int, **options):
    from .layer import PairConnect

    return PairConnect(in_features, out_features, **options)


LAYER_OPTIONS = {
    "table_size": Option(int, 1 << 16, "rows of the hashed pair table"),
    "window": Option(int, 16, "earlier positions paired with each token"),
    "buckets": Option(int, 8, "distance buckets (exact near, log-spaced far)"),
    "hashes": Option(int, 1, "hash functions per pair (rows summed per pair)"),
    "hash_seed": Option(int, 0, "seed of the universal hash coefficients"),
    "weighting": Option(str, "distance", "sum pairs plainly or with learned per-distance weights",
                        choices=("sum", "distance")),
    "hidden": Option(int, 0, "MLP hidden width (0: 4 x out_features)"),
    "depth": Option(int, 2, "residual MLP blocks after the pair sum"),
}


@hookimpl
def thrifty_sparse_layers():
    return [SparseLayerSpec(
        name="pairconnect", factory=_layer, options=LAYER_OPTIONS,
        description="hashed (token i, token j, distance bucket) pair embeddings over a window, "
                    "summed by EmbeddingBag, then an MLP; in_features = vocabulary size")]
