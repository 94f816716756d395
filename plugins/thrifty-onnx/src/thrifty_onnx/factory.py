"""The ``onnx`` draft's factory and the ``export-onnx`` command: resolve, export, load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thrifty.cli import print_record
from thrifty.errors import ConfigError, ModelNotFoundError

from .draft import OnnxDraft
from .session import SessionSettings
from .sources import build_part, label, load_torch_draft


def make_draft(verifier: Any, model: str, source: str = "hf", providers: str = "auto",
               intra_op_threads: int = 0, inter_op_threads: int = 0, optimization: str = "all",
               spin: bool = False, opset: int = 17) -> OnnxDraft:
    """An :class:`OnnxDraft` from an .onnx file, or from a draft ``source`` loads (exported
    once, then read from the cache)."""
    from .export import cached_export

    settings = SessionSettings(providers, intra_op_threads, inter_op_threads, optimization, spin)
    path = Path(model).expanduser()
    if path.suffix == ".onnx" or path.is_file():
        if not path.is_file():
            raise ModelNotFoundError(f"no ONNX graph at {path}; make one with "
                                     f"`thrifty export-onnx DRAFT -o {path}`")
        graph = path
    else:
        module = load_torch_draft(verifier, model, source)
        graph = cached_export(module, verifier=verifier, source=label(model), opset=opset)
    return OnnxDraft(graph, verifier, settings, name=f"onnx:{label(model)}")


def export_command(args) -> int:
    """``thrifty export-onnx``: export, check, optionally compare with PyTorch, report."""
    from .export import cached_export, export_draft, export_error

    if args.opset < 14:
        raise ConfigError(f"--opset {args.opset} is too old for attention graphs; use 14 or newer "
                          f"(default 17)")
    verifier = build_part("verifiers", args.verifier, model=args.verifier_model)
    module = load_torch_draft(verifier, args.model, args.source)
    name = label(args.model)
    if args.output:
        path = Path(args.output)
        export_draft(module, path, verifier=verifier, source=name, opset=args.opset)
    else:
        path = cached_export(module, verifier=verifier, source=name, opset=args.opset)
    result = {"path": str(path), "megabytes": round(path.stat().st_size / 2**20, 1),
              "draft": name, "verifier": verifier.name, "opset": args.opset}
    if not args.no_verify:
        result["max_abs_logit_error"] = export_error(module, path)
    print_record(result, args.json)
    return 0
