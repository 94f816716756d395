"""Registers the ``thrifty distill``, ``thrifty rank-tokens``, ``thrifty audit``,
``thrifty demo`` and ``thrifty export-draft`` commands (heavy imports deferred)."""

from __future__ import annotations

from importlib import import_module

from thrifty import CommandSpec, hookimpl


def _lazy(name: str, module: str, description: str) -> CommandSpec:
    """The command ``name`` whose ``configure``/``run`` live in ``module``, imported only when
    the command is used: the modules import torch and transformers, which ``thrifty plugins``
    and ``thrifty --help`` must not pay for."""

    def configure(p) -> None:
        import_module(f"{__package__}.{module}").configure(p)

    def run(args) -> int:
        return import_module(f"{__package__}.{module}").run(args)

    return CommandSpec(name=name, configure=configure, run=run, description=description)


@hookimpl
def thrifty_commands():
    return [
        _lazy("demo", "demo", "speculative decoding of SmolLM2-135M with the n-gram draft vs "
                              "target-only, measured interleaved"),
        _lazy("distill", "distill", "distil a draft model for a verifier (KL on the verifier's "
                                    "soft targets)"),
        _lazy("rank-tokens", "ranking", "rank a draft's vocabulary by frequency in a corpus "
                                        "cache, so that its fast path may propose only the "
                                        "most frequent tokens (vocab=N)"),
        _lazy("audit", "audit", "check that every bf16 divergence from target-only greedy "
                                "output is a near-tie in the verifier's logits"),
        _lazy("export-draft", "export", "write a thrifty draft as a complete Hugging Face "
                                        "checkpoint (embedding and LM head included) for vLLM "
                                        "and transformers"),
    ]
