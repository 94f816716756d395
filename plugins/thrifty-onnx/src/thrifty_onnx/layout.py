"""The contract between an exported draft graph and the runtime that drives it.

A thrifty draft graph has explicit key/value caches, so that the runtime owns the cache and can
roll it back per row:

* inputs ``input_ids`` [batch, seq] int64, ``attention_mask`` [batch, past + seq] int64 (1 = a
  real token, 0 = a slot to ignore: right padding of a ragged step, or a rolled-back proposal),
  ``position_ids`` [batch, seq] int64, ``logits_index`` [n] int64 (the columns of this step
  whose logits are wanted: a prefill needs one per row, not one per token, and the LM head is
  most of a small draft's work), and per layer i ``past_key.i`` / ``past_value.i``
  [batch, kv_heads, past, head_dim];
* outputs ``logits`` [batch, n, vocab] and ``present_key.i`` / ``present_value.i``
  [batch, kv_heads, past + seq, head_dim] (the past with the new slots appended);
* ``metadata_props`` saying what the draft is for: vocabulary size, tokenizer identity and
  fingerprint, the verifier it was made for, and the versions that wrote it.

Everything here checks a graph against that contract and names what is wrong and the fix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import attrs

from thrifty.errors import IncompatibleModelsError, ModelFormatError, ModelNotFoundError

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS_INDEX = "logits_index"
LOGITS = "logits"
FORMAT = "thrifty-kv-draft/1"
STEP_INPUTS = 4
"""How many inputs come before the caches: ids, mask, positions, logits index."""
"""Value of the ``thrifty.format`` metadata key; bumped when the contract changes."""

META = "thrifty."
"""Prefix of every metadata key the exporter writes."""

_FIX = "export the draft with `thrifty export-onnx` (see docs/onnx.md)"


def past_names(layer: int) -> tuple[str, str]:
    return f"past_key.{layer}", f"past_value.{layer}"


def present_names(layer: int) -> tuple[str, str]:
    return f"present_key.{layer}", f"present_value.{layer}"


def input_names(num_layers: int) -> list[str]:
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, LOGITS_INDEX] + [
        n for i in range(num_layers) for n in past_names(i)]


def output_names(num_layers: int) -> list[str]:
    return [LOGITS] + [n for i in range(num_layers) for n in present_names(i)]


@attrs.frozen
class GraphLayout:
    """What the runtime needs to know about a checked draft graph."""

    source: str
    num_layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    cache_dtype: str
    opset: int
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=dict)


def tokenizer_fingerprint(tokenizer: Any, vocab_size: int) -> str:
    """A short hash of what a tokenizer maps ids to, so that a draft exported for one tokenizer
    is refused with another even when the vocabulary sizes agree.

    Uses ``get_vocab()`` where the tokenizer has it (Hugging Face tokenizers), else the text of
    every single-id decode up to ``vocab_size`` (any :class:`thrifty.protocols.Tokenizer`).
    """
    if hasattr(tokenizer, "get_vocab"):
        items = sorted(tokenizer.get_vocab().items())
    else:
        items = [tokenizer.decode([i]) for i in range(vocab_size)]
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()[:16]


def _dims(value_info) -> list[int | str]:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
            for d in value_info.type.tensor_type.shape.dim]


def load_layout(path) -> GraphLayout:
    """Read and check the graph file at ``path`` (its weights are parsed, then dropped)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"no ONNX graph at {path}; {_FIX}") from exc
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, onnx its own
        raise ModelFormatError(f"{path} is not a readable ONNX model ({type(exc).__name__}: "
                               f"{exc}); the file may be truncated: {_FIX}") from exc
    return read_layout(model, str(path))


def read_layout(model, source: str) -> GraphLayout:
    """Check an ``onnx.ModelProto`` against the contract; raise ModelFormatError naming every
    missing or misnamed input or output and the fix."""
    import onnx

    inputs = {v.name: v for v in model.graph.input}
    outputs = {v.name: v for v in model.graph.output}
    layers = 0
    while past_names(layers)[0] in inputs:
        layers += 1
    if layers == 0:
        raise ModelFormatError(
            f"ONNX graph {source} has no KV-cache input past_key.0 (its inputs: "
            f"{sorted(inputs)}); a thrifty draft graph takes {input_names(1)[:STEP_INPUTS]} plus "
            f"past_key.i/past_value.i per layer; {_FIX}")
    want_in, want_out = input_names(layers), output_names(layers)
    missing_in = [n for n in want_in if n not in inputs]
    extra_in = sorted(set(inputs) - set(want_in))
    missing_out = [n for n in want_out if n not in outputs]
    if missing_in or extra_in or missing_out:
        parts = []
        if missing_in:
            parts.append(f"missing input(s) {missing_in}")
        if extra_in:
            parts.append(f"unexpected input(s) {extra_in}")
        if missing_out:
            parts.append(f"missing output(s) {missing_out}")
        raise ModelFormatError(
            f"ONNX graph {source} does not follow the thrifty draft layout: "
            f"{'; '.join(parts)}. Expected inputs {want_in} and outputs {want_out[:1]} plus "
            f"present_key.i/present_value.i; {_FIX}")

    key = _dims(inputs[past_names(0)[0]])
    if len(key) != 4 or not all(isinstance(d, int) and d > 0 for d in (key[1], key[3])):
        raise ModelFormatError(
            f"ONNX graph {source}: past_key.0 must be [batch, kv_heads, past, head_dim] with "
            f"fixed kv_heads and head_dim; it is {key}; {_FIX}")
    elem = inputs[past_names(0)[0]].type.tensor_type.elem_type
    cache_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem).name

    metadata = {p.key: p.value for p in model.metadata_props}
    logits = _dims(outputs[LOGITS])
    graph_vocab = logits[-1] if len(logits) == 3 and isinstance(logits[-1], int) else None
    meta_vocab = metadata.get(META + "vocab_size")
    if meta_vocab is not None and graph_vocab is not None and int(meta_vocab) != graph_vocab:
        raise ModelFormatError(
            f"ONNX graph {source}: its metadata says a vocabulary of {meta_vocab} tokens but its "
            f"logits have {graph_vocab}; the file was edited or mis-exported; {_FIX}")
    vocab = graph_vocab if graph_vocab is not None else meta_vocab
    if vocab is None:
        raise ModelFormatError(
            f"ONNX graph {source}: cannot tell its vocabulary size (logits shape {logits}, no "
            f"{META}vocab_size metadata); {_FIX}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphLayout(source=source, num_layers=layers, kv_heads=key[1], head_dim=key[3],
                       vocab_size=int(vocab), cache_dtype=cache_dtype, opset=opset,
                       metadata=metadata)


def check_compatible(layout: GraphLayout, verifier: Any) -> None:
    """Refuse a graph whose vocabulary or tokenizer differs from the verifier's."""
    if layout.vocab_size != verifier.vocab_size:
        raise IncompatibleModelsError(
            f"ONNX draft {layout.source} has a vocabulary of {layout.vocab_size} tokens but "
            f"verifier {verifier.name!r} has {verifier.vocab_size}; a draft must share the "
            f"verifier's tokenizer: export a draft made for this verifier "
            f"(`thrifty export-onnx DRAFT --verifier ...`)")
    want = layout.metadata.get(META + "tokenizer_sha256")
    if want and want != tokenizer_fingerprint(verifier.tokenizer, verifier.vocab_size):
        raise IncompatibleModelsError(
            f"ONNX draft {layout.source} was exported for tokenizer "
            f"{layout.metadata.get(META + 'tokenizer', '?')!r} (fingerprint {want}), which maps "
            f"token ids differently from verifier {verifier.name!r}'s tokenizer; export a draft "
            f"made for this verifier (`thrifty export-onnx DRAFT --verifier ...`)")
