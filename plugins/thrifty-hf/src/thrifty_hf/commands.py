"""Registers the ``thrifty distill``, ``thrifty audit``, ``thrifty demo`` and
``thrifty export-draft`` commands (heavy imports deferred)."""

from __future__ import annotations

from thrifty import CommandSpec, hookimpl


def _configure_distill(p) -> None:
    from .distill import configure

    configure(p)


def _run_distill(args) -> int:
    from .distill import run

    return run(args)


def _configure_audit(p) -> None:
    from .audit import configure

    configure(p)


def _run_audit(args) -> int:
    from .audit import run

    return run(args)


def _configure_demo(p) -> None:
    from .demo import configure

    configure(p)


def _run_demo(args) -> int:
    from .demo import run

    return run(args)


def _configure_export(p) -> None:
    from .export import configure

    configure(p)


def _run_export(args) -> int:
    from .export import run

    return run(args)


@hookimpl
def thrifty_commands():
    return [
        CommandSpec(name="demo", configure=_configure_demo, run=_run_demo,
                    description="speculative decoding of SmolLM2-135M with the n-gram draft vs "
                                "target-only, measured interleaved"),
        CommandSpec(name="distill", configure=_configure_distill, run=_run_distill,
                    description="distil a draft model for a verifier (KL on the verifier's "
                                "soft targets)"),
        CommandSpec(name="audit", configure=_configure_audit, run=_run_audit,
                    description="check that every bf16 divergence from target-only greedy "
                                "output is a near-tie in the verifier's logits"),
        CommandSpec(name="export-draft", configure=_configure_export, run=_run_export,
                    description="write a thrifty draft as a complete Hugging Face checkpoint "
                                "(embedding and LM head included) for vLLM and transformers"),
    ]
