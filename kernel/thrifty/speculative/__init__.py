"""Lossless speculative decoding: sampling transform, acceptance rule, engine, policies."""

from .acceptance import accept
from .engine import Generation, SpeculativeDecoder
from .metrics import Metrics
from .policy import FixedLookahead, FixedTree, LookaheadPolicy
from .sampling import Sampling, sample, warp
from .schedule import BatchLookahead
from .tree import TreeShape, accept_tree

__all__ = ["BatchLookahead", "FixedLookahead", "FixedTree", "Generation", "LookaheadPolicy",
           "Metrics", "Sampling", "SpeculativeDecoder", "TreeShape", "accept", "accept_tree",
           "sample", "warp"]
