"""The hook specifications: one registration hook per family, CLI commands included.

Every registration hook takes no arguments and returns an iterable of records of its family's
type (see :mod:`thrifty.records`). Selection is always by configured name, never by call order.
The text of each docstring is reproduced in ``docs/hooks/<family>.md``; ``tests/test_docs.py``
keeps signatures and docstrings in step.
"""

from __future__ import annotations

from typing import Iterable

import pluggy

from .records import (
    CommandSpec,
    DraftModelSpec,
    EnergyMeterSpec,
    HardwareKnobSpec,
    OptimizerSpec,
    SamplerSpec,
    SparseLayerSpec,
    VerifierSpec,
)

PROJECT = "thrifty"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def thrifty_draft_models() -> Iterable[DraftModelSpec]:
    """Register draft models for speculative decoding (``DraftModelSpec`` records)."""


@hookspec
def thrifty_verifiers() -> Iterable[VerifierSpec]:
    """Register verifiers: the target models whose output speculative decoding preserves."""


@hookspec
def thrifty_hardware_knobs() -> Iterable[HardwareKnobSpec]:
    """Register hardware and software knobs that a tuner may set (``HardwareKnobSpec``)."""


@hookspec
def thrifty_energy_meters() -> Iterable[EnergyMeterSpec]:
    """Register energy meters that measure joules over a window (``EnergyMeterSpec``)."""


@hookspec
def thrifty_optimizers() -> Iterable[OptimizerSpec]:
    """Register ask/tell optimizers over discrete configuration spaces (``OptimizerSpec``)."""


@hookspec
def thrifty_sparse_layers() -> Iterable[SparseLayerSpec]:
    """Register sparse layers: SLIDE output layers, PairConnect layers (``SparseLayerSpec``)."""


@hookspec
def thrifty_samplers() -> Iterable[SamplerSpec]:
    """Register locality-sensitive-hash neuron samplers (``SamplerSpec``)."""


@hookspec
def thrifty_commands() -> Iterable[CommandSpec]:
    """Register ``thrifty`` sub-commands (``CommandSpec`` records: ``configure``, ``run``)."""
