"""Registers the ``thrifty distill``, ``thrifty audit`` and ``thrifty export-draft`` commands
(heavy imports deferred)."""

from __future__ import annotations

from thrifty import hookimpl


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


def _configure_export(p) -> None:
    from .export import configure

    configure(p)


def _run_export(args) -> int:
    from .export import run

    return run(args)


@hookimpl
def thrifty_commands(cli) -> None:
    cli.add("distill", "distil a draft model for a verifier (KL on the verifier's soft targets)",
            _configure_distill, _run_distill)
    cli.add("audit", "check that every bf16 divergence from target-only greedy output is a "
            "near-tie in the verifier's logits", _configure_audit, _run_audit)
    cli.add("export-draft", "write a thrifty draft as a complete Hugging Face checkpoint "
            "(embedding and LM head included) for vLLM and transformers",
            _configure_export, _run_export)
