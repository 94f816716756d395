"""Protocols (structural types) that the objects built by registered factories follow."""

from .hardware import EnergyMeter, Knob
from .optim import Optimizer
from .sparse import Sampler, SparseLayer
from .speculative import (DraftModel, FeatureDraft, Proposal, Tokenizer, TreeProposal, Verifier,
                          grows_trees, keeps_greedy_chains, keeps_greedy_trees, reads_features,
                          scores_trees)

__all__ = ["DraftModel", "EnergyMeter", "FeatureDraft", "Knob", "Optimizer", "Proposal", "Sampler",
           "SparseLayer", "Tokenizer", "TreeProposal", "Verifier", "grows_trees",
           "keeps_greedy_chains", "keeps_greedy_trees", "reads_features", "scores_trees"]
