"""Protocols (structural types) that the objects built by registered factories follow."""

from .hardware import EnergyMeter, Knob
from .optim import Optimizer
from .sparse import Sampler, SparseLayer
from .speculative import DraftModel, FeatureDraft, Proposal, Tokenizer, Verifier, reads_features

__all__ = ["DraftModel", "EnergyMeter", "FeatureDraft", "Knob", "Optimizer", "Proposal", "Sampler",
           "SparseLayer", "Tokenizer", "Verifier", "reads_features"]
