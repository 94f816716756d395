"""Registers the ``onnx`` draft model and the ``export-onnx`` command.

Nothing heavy is imported here: torch, onnx and onnxruntime load inside the factory and the
command, so ``thrifty plugins`` stays fast and works without them.
"""

from __future__ import annotations

from thrifty import hookimpl
from thrifty.records import REQUIRED, CommandSpec, DraftModelSpec, Option

OPTIMIZATION = ("disable", "basic", "extended", "all")
"""onnxruntime graph optimisation levels (kept here so the hook module imports nothing heavy)."""


def _draft(verifier, **options):
    from .factory import make_draft

    return make_draft(verifier, **options)


@hookimpl
def thrifty_draft_models():
    return [DraftModelSpec(
        name="onnx",
        factory=_draft,
        description="a draft run by ONNX Runtime from a graph with an explicit KV cache "
                    "(exported and cached on first use, or an .onnx file)",
        options={
            "model": Option(str, REQUIRED, "an .onnx file made by `thrifty export-onnx`, or a "
                                           "draft that the `source` plugin loads (exported to "
                                           "the cache on first use)"),
            "source": Option(str, "hf", "draft plugin that loads `model` when it is not an "
                                        ".onnx file"),
            "providers": Option(str, "auto", "execution providers in priority order, comma "
                                             "separated (cpu, cuda, tensorrt, coreml, dml, ...); "
                                             "'auto': CUDA/CoreML/DirectML when present, then "
                                             "CPU"),
            "intra_op_threads": Option(int, 0, "threads inside one operator (0: one per core)"),
            "inter_op_threads": Option(int, 0, "threads across operators (0: default)"),
            "optimization": Option(str, "all", "onnxruntime graph optimisation level",
                                   choices=OPTIMIZATION),
            "spin": Option(bool, False, "let idle onnxruntime threads busy-wait (faster draft "
                                        "steps alone, slower verifier steps between them)"),
            "opset": Option(int, 17, "ONNX opset when exporting"),
        },
    )]


def _configure_export(p) -> None:
    p.add_argument("model", help="the draft to export: a zoo name (smollm2-draft-l2), a thrifty "
                                 "draft folder or a Hugging Face model folder")
    p.add_argument("--source", default="hf", help="draft plugin that loads MODEL (default: hf)")
    p.add_argument("--verifier", default="hf", help="verifier plugin (default: hf)")
    p.add_argument("--verifier-model", default="smollm2-135m",
                   help="the verifier the draft is for (default: smollm2-135m)")
    p.add_argument("-o", "--output", help="where to write the .onnx file (default: the thrifty "
                                          "cache, where the onnx draft looks)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip comparing ONNX Runtime's logits with PyTorch's")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _run_export(args) -> int:
    from .factory import export_command

    return export_command(args)


@hookimpl
def thrifty_commands():
    return [CommandSpec(name="export-onnx", configure=_configure_export, run=_run_export,
                        description="export a draft model to an ONNX graph with an explicit KV "
                                    "cache")]
