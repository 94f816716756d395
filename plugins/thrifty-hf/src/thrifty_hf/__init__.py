"""thrifty-hf: Hugging Face causal LMs as thrifty verifiers and draft models, and the model zoo.

Importing this package is cheap; the classes live in submodules that import torch:
:mod:`thrifty_hf.cached` (``CachedLM``), :mod:`thrifty_hf.models` (``HFVerifier``,
``HFDraft``), :mod:`thrifty_hf.zoo` (zoo names, download and conversion).
"""

__version__ = "0.1.0"
