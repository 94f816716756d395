"""The PairConnect draft's one-token step as an ONNX graph, and a draft running it on onnxruntime.

Graph contract (``thrifty.format`` = :data:`FORMAT`):

* inputs ``tokens`` int64 [batch, 1] (the pending token of each row) and ``past`` int64
  [batch, W] (the W tokens before it, newest first, −1 where there is none);
* outputs ``logits`` float32 [batch, V] (of the token after ``tokens``) and ``next_past`` int64
  [batch, W] (``tokens`` pushed onto ``past``);
* ``metadata_props``: the format, vocabulary size, window, the model's config and, when known,
  the fingerprint of the tokenizer it was distilled for (checked against the verifier's).

The state is W token ids, so the graph is stateless and tiny to drive: the draft logic around it
(start, sampling, the rollback gather) is :class:`.draft.WindowDraft`, shared with the PyTorch
draft. The export uses the TorchScript exporter (``dynamo=False``) at opset 17, as thrifty-onnx
does. :meth:`PairConnect.step_ids` hashes with ``addcmul``, which that exporter lowers through
float — int64 hash products reach 2^50 and would lose bits — so the graph computes the same ids
with int64 Mul/Add/Mod (:func:`graph_ids`); the rest is :meth:`PairConnect.step_features`.

onnx and onnxruntime are imported inside the functions that need them (extra ``onnx``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

from thrifty.cli import print_record
from thrifty.errors import (ConfigError, IncompatibleModelsError, ModelFormatError,
                            ModelNotFoundError, NotSupportedError)
from thrifty.atomic import write_atomically

from .hashing import PRIME

FORMAT = "thrifty-pairconnect-step/1"
"""Value of the ``thrifty.format`` metadata key; bumped when the contract changes."""
META = "thrifty."
TOKENS, PAST, LOGITS, NEXT_PAST = "tokens", "past", "logits", "next_past"
DEFAULT_OPSET = 17
_FIX = "export one with `thrifty export-pairconnect-onnx --weights W.safetensors --out G.onnx`"


class OnnxUnavailableError(NotSupportedError):
    """onnx or onnxruntime, which the ONNX PairConnect draft needs, is not installed."""


class NotPairConnectGraphError(ModelFormatError):
    """A file is not an ONNX graph of a PairConnect step written by :func:`export_step`."""


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxUnavailableError(
            f"the ONNX PairConnect draft needs {module}: pip install 'thrifty-pairconnect[onnx]' "
            f"(or use the PyTorch draft `pairconnect`)") from None


def graph_ids(layer, tokens, past):
    """:meth:`PairConnect.step_ids` in ops that export exactly: int64 Mul, Add, Mod, Where."""
    import torch

    ids = layer.distance_term + past[..., None] * layer.previous_mul \
        + tokens[..., None] * layer.current_mul
    ids = torch.remainder(torch.remainder(ids, PRIME), layer.table_size)
    return torch.where(past[..., None] < 0, layer.table_size, ids)


def _step_graph(model):
    """The module that is exported: (tokens [B, 1], past [B, W]) → (logits [B, V], next past)."""
    import torch

    class StepGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens, past):
            layer = self.model.layer
            features = layer.step_features(tokens, graph_ids(layer, tokens, past))
            return self.model.head(features)[:, 0].float(), torch.cat([tokens, past[:, :-1]], 1)

    return StepGraph().eval()


def export_step(model, out: str | os.PathLike | None = None, *, fingerprint=None,
                opset: int = DEFAULT_OPSET) -> bytes:
    """The ONNX graph of ``model``'s (a :class:`PairConnectLM`, moved to fp32 on CPU in place)
    one-token step, with a dynamic batch; also written to ``out`` when given.

    ``fingerprint``: the tokenizer fingerprint (:func:`.draft.tokenizer_fingerprint`) the
    weights were distilled for, stored so that a runtime can refuse another tokenizer.
    """
    onnx = _require("onnx")
    import torch

    import thrifty

    from . import __version__

    model = model.to(device="cpu", dtype=torch.float32).eval()
    window = model.layer.window
    args = (torch.zeros(2, 1, dtype=torch.long), torch.full((2, window), -1, dtype=torch.long))
    axes = {name: {0: "batch"} for name in (TOKENS, PAST, LOGITS, NEXT_PAST)}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(_step_graph(model), args, buffer, input_names=[TOKENS, PAST],
                          output_names=[LOGITS, NEXT_PAST], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue())
    metadata = {"format": FORMAT, "vocab_size": str(model.vocab_size), "window": str(window),
                "config": json.dumps(model.config()), "thrifty_version": thrifty.__version__,
                "thrifty_pairconnect_version": __version__, "torch_version": torch.__version__}
    if fingerprint is not None:
        metadata["tokenizer_fingerprint"] = json.dumps(list(fingerprint))
    del graph.metadata_props[:]
    for key, value in metadata.items():
        graph.metadata_props.add(key=META + key, value=value)
    onnx.checker.check_model(graph, full_check=True)
    data = graph.SerializeToString()
    if out is not None:
        write_atomically(out, data)
    return data


class OnnxStep:
    """An onnxruntime session (CPU) of a graph :func:`export_step` wrote, as a torch step.

    ``graph``: the .onnx path or its bytes. ``threads``: intra-op threads (0: onnxruntime's
    default, one per core). Idle threads do not spin, so that they leave the cores to the
    verifier that runs between two draft steps (as the ``onnx`` draft does).
    """

    def __init__(self, graph: str | os.PathLike | bytes, threads: int = 0) -> None:
        ort = _require("onnxruntime")
        if threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: one per core); got {threads}")
        where = "the given graph bytes" if isinstance(graph, bytes) else str(graph)
        if not isinstance(graph, bytes):
            path = Path(graph).expanduser()
            if not path.is_file():
                raise ModelNotFoundError(f"no ONNX graph at {path}; {_FIX}")
            graph = str(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(graph, options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise NotPairConnectGraphError(
                f"{where} is not an ONNX graph onnxruntime {ort.__version__} can load "
                f"({str(exc).strip().splitlines()[-1][:300]}); {_FIX}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        names = ([i.name for i in self.session.get_inputs()],
                 [o.name for o in self.session.get_outputs()])
        if meta.get(META + "format") != FORMAT or names != ([TOKENS, PAST], [LOGITS, NEXT_PAST]):
            raise NotPairConnectGraphError(
                f"{where} is not a PairConnect step graph (format "
                f"{meta.get(META + 'format')!r}, inputs {names[0]}, outputs {names[1]}; "
                f"expected {FORMAT!r}, [tokens, past] -> [logits, next_past]); {_FIX}")
        self.vocab_size = int(meta[META + "vocab_size"])
        self.window = int(meta[META + "window"])
        fingerprint = meta.get(META + "tokenizer_fingerprint")
        self.fingerprint = json.loads(fingerprint) if fingerprint else None

    def __call__(self, tokens, past):
        """(logits [B, 1, V], next past [B, W]) as CPU torch tensors."""
        import numpy as np
        import torch

        logits, nxt = self.session.run(None, {
            TOKENS: np.ascontiguousarray(tokens.cpu().numpy(), dtype=np.int64),
            PAST: np.ascontiguousarray(past.cpu().numpy(), dtype=np.int64)})
        return torch.from_numpy(logits)[:, None], torch.from_numpy(nxt)

    def check_fits(self, verifier) -> None:
        """Refuse a verifier with another vocabulary or (where both are known) tokenizer."""
        from .draft import tokenizer_fingerprint

        if self.vocab_size != verifier.vocab_size:
            raise IncompatibleModelsError(
                f"the PairConnect ONNX graph has a vocabulary of {self.vocab_size} tokens but "
                f"the verifier has {verifier.vocab_size}; export a draft distilled for it")
        tokenizer = getattr(verifier, "tokenizer", None)
        if self.fingerprint is not None and tokenizer is not None and \
                self.fingerprint != tokenizer_fingerprint(tokenizer):
            raise IncompatibleModelsError(
                "the PairConnect ONNX graph was distilled for a different tokenizer than the "
                "verifier's (their token ids differ); export a draft distilled for it")


def onnx_draft(graph: str | os.PathLike | bytes, threads: int = 0, verifier=None,
               name: str = "pairconnect-onnx"):
    """A :class:`.draft.WindowDraft` over an exported step graph run by onnxruntime (CPU),
    checked against ``verifier`` when given."""
    from .draft import WindowDraft

    step = OnnxStep(graph, threads)
    if verifier is not None:
        step.check_fits(verifier)
    return WindowDraft(step, step.window, step.vocab_size, name, "cpu")


def make_draft(verifier, model: str, threads: int = 0):
    """The registered ``pairconnect-onnx`` draft: ``model`` is a graph :func:`export_step` wrote
    or the .safetensors weights of :func:`.draft.save_draft` (exported in memory, in about a
    second: no file to keep in step with the weights)."""
    path = Path(model).expanduser()
    if path.suffix == ".safetensors":
        from .draft import load_draft

        lm = load_draft(path, tokenizer=getattr(verifier, "tokenizer", None),
                        vocab_size=verifier.vocab_size)  # checks the fit itself
        return onnx_draft(export_step(lm), threads)
    return onnx_draft(path, threads, verifier)


def export_command(args) -> int:
    """``thrifty export-pairconnect-onnx``: export the weights' step graph, compare, report."""
    from .draft import load_draft, stored_fingerprint

    model = load_draft(args.weights)
    export_step(model, args.out, fingerprint=stored_fingerprint(args.weights), opset=args.opset)
    out = Path(args.out)
    result = {"path": str(out), "megabytes": round(out.stat().st_size / 2**20, 2),
              "weights": str(args.weights), "window": model.layer.window,
              "vocab_size": model.vocab_size, "opset": args.opset}
    if not args.no_verify:
        result["max_abs_logit_error"] = export_error(model, out)
    print_record(result, args.json)
    return 0


def export_error(model, graph: str | os.PathLike | bytes, batch: int = 5, seed: int = 0) -> float:
    """Largest |ONNX Runtime − PyTorch| logit of one step on random tokens and pasts (some −1);
    raises ModelFormatError if the graph's next past differs from the model's."""
    import torch

    step = OnnxStep(graph)
    g = torch.Generator().manual_seed(seed)
    window, vocab = model.layer.window, model.vocab_size
    tokens = torch.randint(0, vocab, (batch, 1), generator=g)
    past = torch.randint(0, vocab, (batch, window), generator=g)
    near_start = (torch.arange(window) >= window // 2) & (torch.rand(batch, 1, generator=g) < .5)
    past = past.masked_fill(near_start, -1)  # some rows have fewer than W tokens before them
    with torch.no_grad():
        want, want_past = model.step(tokens, past)
    got, got_past = step(tokens, past)
    if not torch.equal(got_past, want_past):
        raise ModelFormatError("the ONNX graph's next past differs from the model's; re-export")
    return float((got - want.float()).abs().max())
