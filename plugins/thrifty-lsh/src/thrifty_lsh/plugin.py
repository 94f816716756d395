"""thrifty-lsh's hooks: four LSH samplers, the SLIDE and dense output layers and ``thrifty train``.

Nothing heavy is imported here: torch loads when a factory is called.
"""

from __future__ import annotations

from thrifty import hookimpl
from thrifty.records import CommandSpec, Option, SamplerSpec, SparseLayerSpec

_TABLE_OPTIONS = {
    "k": Option(int, 6, "hashes per table (bucket id = K concatenated codes)"),
    "l": Option(int, 32, "number of tables"),
    "bucket_size": Option(int, 128, "most neurons a bucket keeps (lowest priority wins)"),
    "n_buckets": Option(int, 1 << 15, "most buckets per table (ids are folded beyond)"),
    "seed": Option(int, 0, "seed of the hash functions"),
}
_WINDOW = {"window": Option(int, 8, "coordinates compared by each WTA hash")}


def _sampler_factory(family: str):
    def factory(dim: int, **options):
        from .sampler import LSHSampler

        return LSHSampler(dim, family, **options)

    factory.__name__ = f"{family}_sampler"
    return factory


def _slide_factory(in_features: int, out_features: int, **options):
    from .slide import SlideLayer

    return SlideLayer(in_features, out_features, **options)


def _dense_factory(in_features: int, out_features: int, **options):
    from .model import DenseOutput

    return DenseOutput(in_features, out_features, **options)


@hookimpl
def thrifty_samplers():
    return [
        SamplerSpec(name="simhash", factory=_sampler_factory("simhash"),
                    description="signed random projections (cosine similarity)",
                    options=_TABLE_OPTIONS),
        SamplerSpec(name="wta", factory=_sampler_factory("wta"),
                    description="winner-take-all hashing (rank order of dense vectors)",
                    options={**_TABLE_OPTIONS, **_WINDOW}),
        SamplerSpec(name="dwta", factory=_sampler_factory("dwta"),
                    description="densified winner-take-all (sparse vectors; SLIDE's default)",
                    options={**_TABLE_OPTIONS, **_WINDOW}),
        SamplerSpec(name="minhash", factory=_sampler_factory("minhash"),
                    description="min-wise hashing of the non-zero support (Jaccard similarity)",
                    options={**_TABLE_OPTIONS,
                             "bits": Option(int, 2, "low bits kept of each min-hash")}),
    ]


@hookimpl
def thrifty_sparse_layers():
    return [SparseLayerSpec(
        name="dense", factory=_dense_factory,
        description="the baseline output layer: every neuron computed, full softmax",
        options={"seed": Option(int, 0, "seed of the weights")},
    ), SparseLayerSpec(
        name="slide", factory=_slide_factory,
        description="SLIDE output layer: LSH-retrieved neurons + true labels, sampled softmax",
        options={
            "family": Option(str, "simhash", "the sampler: any name registered through "
                             "thrifty_samplers (simhash, wta, dwta, minhash, ...)"),
            "k": Option(int, 8, "hashes per table (given to samplers that declare k)"),
            "l": Option(int, 16, "tables (given to samplers that declare l)"),
            "bucket_size": Option(int, 128, "bucket capacity"),
            "n_buckets": Option(int, 1 << 15, "most buckets per table"),
            "budget": Option(int, 4096, "most retrieved neurons per training batch"),
            "query_budget": Option(int, 256, "candidates per input for LSH inference"),
            "inference": Option(str, "dense", "dense or lsh top-k", choices=("dense", "lsh")),
            "rebuild": Option(str, "fixed", "fixed schedule or drift-triggered",
                              choices=("fixed", "drift")),
            "refill_every": Option(int, 6400, "samples between refills (fixed)"),
            "rebuild_every": Option(int, 128_000, "samples between new hash functions (fixed)"),
            "drift_check_every": Option(int, 2048, "samples between drift checks (drift)"),
            "drift_threshold": Option(float, 0.5, "refill when top-10 recall falls below"),
            "sampler_options": Option(dict, {}, "the sampler's own options (window, bits, ...)"),
            "seed": Option(int, 0, "seed of weights and hash functions"),
        })]


@hookimpl
def thrifty_commands():
    from . import commands

    return [CommandSpec(name="train", configure=commands.configure, run=commands.run,
                        description="train a sparse extreme classifier (SLIDE, dense or a "
                                    "plugin's output layer)")]
