"""Registers the ``thrifty distill`` and ``thrifty audit`` commands (heavy imports deferred)."""

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


@hookimpl
def thrifty_commands():
    return [
        CommandSpec(name="distill", configure=_configure_distill, run=_run_distill,
                    description="distil a draft model for a verifier (KL on the verifier's "
                                "soft targets)"),
        CommandSpec(name="audit", configure=_configure_audit, run=_run_audit,
                    description="check that every bf16 divergence from target-only greedy "
                                "output is a near-tie in the verifier's logits"),
    ]
