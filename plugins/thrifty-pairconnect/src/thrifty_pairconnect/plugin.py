"""thrifty hook implementations of the PairConnect plugin. Light: torch loads in the factories."""

from __future__ import annotations

from thrifty import CommandSpec, DraftModelSpec, Option, SparseLayerSpec, hookimpl


def _layer(in_features: int, out_features: int, **options):
    from .layer import PairConnect

    return PairConnect(in_features, out_features, **options)


LAYER_OPTIONS = {
    "table_size": Option(int, 1 << 16, "rows of the hashed pair table"),
    "window": Option(int, 16, "earlier positions paired with each token"),
    "buckets": Option(int, 8, "distance buckets (exact near, log-spaced far)"),
    "hashes": Option(int, 1, "hash functions per pair (rows summed per pair)"),
    "hash_seed": Option(int, 0, "seed of the universal hash coefficients"),
    "weighting": Option(str, "distance", "sum pairs plainly or with learned per-distance weights",
                        choices=("sum", "distance")),
    "hidden": Option(int, 0, "MLP hidden width (0: 4 x out_features)"),
    "depth": Option(int, 2, "residual MLP blocks after the pair sum"),
}


@hookimpl
def thrifty_sparse_layers():
    return [SparseLayerSpec(
        name="pairconnect", factory=_layer, options=LAYER_OPTIONS,
        description="hashed (token i, token j, distance bucket) pair embeddings over a window, "
                    "summed by EmbeddingBag, then an MLP; in_features = vocabulary size")]


def _draft(verifier, weights: str, device: str = "auto"):
    from .draft import PairConnectDraft, load_draft

    where = verifier.device if device == "auto" else device
    model = load_draft(weights, tokenizer=verifier.tokenizer, vocab_size=verifier.vocab_size,
                       device=where)
    return PairConnectDraft(model, name="pairconnect", device=where)


def _onnx_draft(verifier, model: str, threads: int = 0):
    from .onnx_step import make_draft

    return make_draft(verifier, model, threads)


@hookimpl
def thrifty_draft_models():
    return [
        DraftModelSpec(
            name="pairconnect", factory=_draft,
            options={"weights": Option(str, help="fp16 safetensors file written by "
                                                 "`thrifty distill-pairconnect --out`"),
                     "device": Option(str, "auto", "device to run on (auto: the verifier's)")},
            description="PairConnect LM distilled from the verifier: W hashed pair lookups + "
                        "MLP per drafted token, state = last W tokens"),
        DraftModelSpec(
            name="pairconnect-onnx", factory=_onnx_draft,
            options={"model": Option(str, help="a graph written by `thrifty "
                                               "export-pairconnect-onnx` (.onnx), or the "
                                               ".safetensors weights (exported in memory when "
                                               "the draft is built)"),
                     "threads": Option(int, 0, "onnxruntime intra-op threads (0: one per core)")},
            description="the PairConnect draft's one-token step run by ONNX Runtime on the CPU "
                        "(extra `onnx`: onnx, onnxruntime)"),
    ]


def _configure_distill(p) -> None:
    """Arguments of `thrifty distill-pairconnect`: here, so building the CLI needs no torch."""
    p.add_argument("--verifier", default="hf", help="verifier plugin (default: hf)")
    p.add_argument("--model", default="smollm2-135m", help="verifier model")
    p.add_argument("--verifier-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra verifier option (repeatable; values parsed as TOML)")
    p.add_argument("--corpus", action="append", default=[],
                   help="shakespeare, stdlib or a text file (repeatable; default: both corpora)")
    p.add_argument("--max-bytes", type=int, default=4_000_000, help="text read per corpus")
    p.add_argument("--out", required=True, help="where to write the fp16 safetensors draft")
    p.add_argument("--device", default="cpu", help="device of the student (cpu, cuda)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="stop after this long (0: no limit); the learning rate anneals by time")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--table-size", type=int, default=1 << 16)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--hashes", type=int, default=1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _run_distill(args):
    from .distill import run

    return run(args)


def _configure_export(p) -> None:
    p.add_argument("--weights", required=True,
                   help="PairConnect draft weights written by `thrifty distill-pairconnect`")
    p.add_argument("--out", required=True, help="where to write the .onnx graph")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip comparing ONNX Runtime's logits with PyTorch's")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _run_export(args):
    from .onnx_step import export_command

    return export_command(args)


@hookimpl
def thrifty_commands():
    return [
        CommandSpec(name="distill-pairconnect", configure=_configure_distill, run=_run_distill,
                    description="distil a PairConnect draft from a verifier's logits (KL)"),
        CommandSpec(name="export-pairconnect-onnx", configure=_configure_export,
                    run=_run_export, description="export a PairConnect draft's one-token step "
                    "to ONNX (the `pairconnect-onnx` draft runs it)"),
    ]
