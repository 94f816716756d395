"""Lossless speculative decoding: sampling transform, acceptance rule, engine, policies."""

from .acceptance import accept
from .engine import Generation, SpeculativeDecoder
from .metrics import Metrics
from .policy import FixedLookahead, LookaheadPolicy
from .sampling import Sampling, sample, warp
from .schedule import BatchLookahead

__all__ = ["BatchLookahead", "FixedLookahead", "Generation", "LookaheadPolicy", "Metrics", "Sampling",
           "SpeculativeDecoder", "accept", "sample", "warp"]
