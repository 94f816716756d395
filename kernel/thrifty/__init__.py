"""thrifty: a plugin framework for doing less work in machine learning.

The core holds hook specs (:mod:`thrifty.hookspecs`), typed records (:mod:`thrifty.records`),
protocols (:mod:`thrifty.protocols`), the plugin manager and its typed facade
(:func:`thrifty.registry`), pipelines (:func:`thrifty.pipeline`) and the CLI. It imports without
torch; algorithms that need torch import it when they run.
"""

from .errors import ThriftyError
from .hookspecs import hookimpl
from . import pipeline  # the module, callable as the function of the same name
from .records import (
    REQUIRED,
    CommandSpec,
    DraftModelSpec,
    EnergyMeterSpec,
    EngineSettings,
    HardwareKnobSpec,
    Option,
    OptimizerSpec,
    SamplerSpec,
    SparseLayerSpec,
    VerifierSpec,
)
from .registry import registry

__version__ = "0.1.0"


__all__ = [
    "REQUIRED", "CommandSpec", "DraftModelSpec", "EnergyMeterSpec", "EngineSettings",
    "HardwareKnobSpec", "Option", "OptimizerSpec", "SamplerSpec", "SparseLayerSpec",
    "ThriftyError", "VerifierSpec",
    "hookimpl", "pipeline", "registry",
]
