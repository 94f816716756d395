"""Lossless speculative decoding: sampling transform, acceptance rule, engine, policies."""

from .acceptance import accept
from .engine import Generation, SpeculativeDecoder
from .metrics import Metrics
from .policy import FixedLookahead, LookaheadPolicy
from .sampling import Sampling, sample, warp

__all__ = ["FixedLookahead", "Generation", "LookaheadPolicy", "Metrics", "Sampling",
           "SpeculativeDecoder", "accept", "sample", "warp"]
