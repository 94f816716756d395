"""Export an HF-style draft to an ONNX graph with explicit KV-cache inputs and outputs.

"HF-style" means a ``torch.nn.Module`` whose forward takes ``input_ids``, ``attention_mask``,
``position_ids``, ``past_key_values`` (a ``transformers`` Cache) and ``use_cache`` and returns an
object with ``.logits`` and ``.past_key_values``: any ``*ForCausalLM`` of transformers, and the
project's own distilled drafts. A thin wrapper turns the cache object into flat tensors, so the
graph's inputs and outputs are plain tensors with the names of :mod:`thrifty_onnx.layout`.

Sliding-window layers (Mistral, Gemma 2/3) get attention masks built here, with the window
counted in the row's real tokens rather than cache slots, so that holes in the cache (ragged
steps, rolled-back proposals) leave the graph computing what the model computes on the row's
tokens alone, however long the row grows past the window (:func:`_attention_masks`).

Exported graphs are build artefacts: :func:`cached_export` keeps them under the thrifty cache
(``$THRIFTY_CACHE/onnx``, default ``~/.cache/thrifty/onnx``), keyed by a hash of the weights
they were made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from thrifty.errors import ModelFormatError
from thrifty.atomic import atomic_path
from thrifty.files import cache_dir as thrifty_cache_dir

from . import __version__
from .layout import (ATTENTION_MASK, FORMAT, INPUT_IDS, LOGITS, LOGITS_INDEX, META,
                     POSITION_IDS, STEP_INPUTS, GraphLayout, input_names, output_names,
                     read_layout,
                     tokenizer_fingerprint)

DEFAULT_OPSET = 17
"""Opset of exported graphs: old enough for every onnxruntime since 1.14 (and its GPU/edge
builds), new enough for everything a decoder needs."""


EXPORTER_REVISION = 2
"""Part of :func:`cached_export`'s key, bumped whenever the exporter builds a graph that
computes differently from the previous revision's, so that a cached graph of the old one is
never reused. 2: sliding windows counted in tokens, not cache slots."""


def cache_dir() -> Path:
    """Where exported graphs are kept: ``$THRIFTY_CACHE/onnx`` (the thrifty cache the model zoo
    uses too), default ``~/.cache/thrifty/onnx``."""
    return thrifty_cache_dir() / "onnx"


def _flat_cache(cache: Any) -> list:
    """[k0, v0, k1, v1, ...] from a transformers Cache or a legacy tuple of (k, v) pairs."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [t for kv in cache for t in kv[:2]]


def layer_windows(model: Any) -> list[int | None]:
    """Each decoder layer's sliding window (None: full attention), as transformers' own cache
    lays out the layers of ``model``'s config (Mistral: every layer; Gemma 2/3: the local
    ones); all None for a model without a config transformers knows."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicSlidingWindowLayer

    config = getattr(model, "config", None)
    if config is None:
        return []
    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # noqa: BLE001 - not a transformers config: no windows it declares
        return []
    return [int(layer.sliding_window) if isinstance(layer, DynamicSlidingWindowLayer) else None
            for layer in layers]


def _window_plan(model: Any, num_layers: int) -> tuple[list, list[str] | None]:
    """(windows, layer types) for :func:`_attention_masks`: ``windows`` the distinct windows
    the layers use (empty: no sliding-window layer, so transformers' own masks are exact);
    ``types`` the config's ``layer_types`` when the layers differ (the model then takes one
    mask per type), else None (one mask for every layer).

    Raises :class:`ModelFormatError` for windowed layers the exporter cannot mask exactly."""
    windows = layer_windows(model)
    if not any(w is not None for w in windows):
        return [], None
    config = model.config
    family = getattr(config, "model_type", type(model).__name__)
    if len(windows) != num_layers:
        raise ModelFormatError(
            f"cannot export {type(model).__name__} (family {family!r}) to ONNX: its config lays "
            f"out {len(windows)} sliding-window/full layers but its forward caches {num_layers}, "
            f"so the exporter cannot tell which layers to window; run this draft with draft "
            f"'hf-fast' (windowed attention) instead of 'onnx'")
    if len(set(windows)) == 1:
        return windows[:1], None
    types = list(getattr(config, "layer_types", None) or [])
    by_type: dict = {}
    for kind, window in zip(types, windows):
        by_type.setdefault(kind, set()).add(window)
    if len(types) != num_layers or any(len(w) > 1 for w in by_type.values()):
        raise ModelFormatError(
            f"cannot export {type(model).__name__} (family {family!r}) to ONNX: its layers have "
            f"different sliding windows ({windows}) and its config's layer_types "
            f"({types or 'none'}) do not tell them apart by type, so the exporter cannot give "
            f"each layer its own window mask; run this draft with draft 'hf-fast' (windowed "
            f"attention) instead of 'onnx'")
    return windows, types


def _attention_masks(attention_mask, seq: int, windows: list, types: list[str] | None,
                     dtype):
    """The 4D additive masks [batch, 1, seq, total] of a step whose layers have sliding
    windows, counting *tokens*, not cache slots.

    transformers windows by slot index (a key is seen when its slot is less than ``window``
    slots before the query's), which is the model's own window only in a cache without holes.
    A thrifty draft cache has holes (right padding of a ragged step, rolled-back proposals),
    so here a key is seen when it is a real slot, not after the query, and fewer than
    ``window`` real tokens lie between them: ``0 <= count(query) - count(key) < window`` with
    ``count`` the running number of real slots (for a real key, ``count(key) <= count(query)``
    exactly when its slot is not after the query's). That is the attention the model computes
    on the row's tokens alone. Full-attention layers get the same mask without the window
    bound. The mask is additive with ``finfo.min``, not ``-inf``: a query that sees nothing (a
    padding column of an empty row) gets a uniform softmax instead of a NaN that would reach
    real rows through ``0 * NaN`` in later layers.

    Returns one tensor (every layer alike) or a ``{layer type: mask}`` dict (Gemma's local and
    global layers), the two forms transformers' decoders take as ``attention_mask`` in place
    of building their own."""
    import torch

    count = attention_mask.cumsum(1)                      # [B, T]
    ahead = count[:, -seq:, None] - count[:, None, :]     # [B, S, T]: real tokens in (key, query]
    seen = (attention_mask[:, None, :] > 0) & (ahead >= 0)
    low = torch.finfo(dtype).min

    def mask(window):
        keep = seen if window is None else seen & (ahead < window)
        return torch.zeros_like(ahead, dtype=dtype).masked_fill(~keep, low)[:, None]

    if types is None:
        return mask(windows[0])
    masks = {window: mask(window) for window in set(windows)}
    return {kind: masks[window] for kind, window in zip(types, windows)}


def _kv_wrapper(model: Any, num_layers: int):
    """A module with flat cache tensors in and out around ``model``'s HF-style forward.

    Where the forward takes ``logits_to_keep`` (transformers' causal LMs and thrifty's drafts
    do), the LM head runs only on the ``logits_index`` columns; otherwise all logits are
    computed and those columns picked. A model with sliding-window layers gets its attention
    masks from :func:`_attention_masks` (windows counted in tokens, so holes in the cache do
    not shrink them); any other model builds its own from the 2D ``attention_mask``.
    """
    import inspect

    import torch
    from transformers import DynamicCache

    trims = "logits_to_keep" in inspect.signature(model.forward).parameters
    key = cache_keyword(model)
    windows, types = _window_plan(model, num_layers)
    dtype = next(model.parameters()).dtype

    class KVCacheWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, logits_index, *past):
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1])
                                                 for i in range(num_layers)])
            extra = {"logits_to_keep": logits_index} if trims else {}
            if windows:
                attention_mask = _attention_masks(attention_mask, input_ids.shape[1], windows,
                                                  types, dtype)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids, use_cache=True, **{key: cache}, **extra)
            logits = out.logits if trims else out.logits.index_select(1, logits_index)
            return (logits.float(), *_flat_cache(_returned_cache(out)))

    return KVCacheWrapper().eval()


def cache_keyword(model: Any) -> str:
    """The keyword under which ``model``'s forward takes and returns its KV cache: ``cache``
    where its transformers has it (``past_key_values`` is deprecated there and warns),
    ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _returned_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either keyword."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


def probe(model: Any) -> tuple[int, int, int, int]:
    """(layers, kv_heads, head_dim, vocab) of an HF-style model, read off one tiny forward, so
    that nothing about its config class has to be known."""
    import torch

    ids = torch.zeros(1, 2, dtype=torch.long)
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                        position_ids=torch.arange(2)[None], use_cache=True)
        flat = _flat_cache(_returned_cache(out))
    except Exception as exc:  # noqa: BLE001 - any failure means the model is not HF-style
        raise ModelFormatError(
            f"cannot export {type(model).__name__}: its forward does not follow the HF-style "
            f"signature (input_ids, attention_mask, position_ids, past_key_values, use_cache -> "
            f".logits, .past_key_values): {type(exc).__name__}: {exc}") from exc
    key = flat[0]
    return len(flat) // 2, int(key.shape[1]), int(key.shape[3]), int(out.logits.shape[-1])


def refuse_experts(model: Any) -> None:
    """Refuse a mixture-of-experts model, naming its family: its routing is data-dependent
    (which tokens reach which expert), which the tracing exporter either cannot express
    (``histc`` in Qwen2-MoE) or would freeze to the one routing it saw while tracing."""
    config = getattr(model, "config", None)
    experts = max(int(getattr(config, key, 0) or 0)
                  for key in ("num_experts", "num_local_experts", "n_routed_experts"))
    if experts > 1:
        raise ModelFormatError(
            f"cannot export {type(model).__name__} (family {config.model_type!r}) to ONNX: its "
            f"mixture-of-experts layers route each token at run time, which an exported graph "
            f"cannot; run this draft with draft 'hf' or 'hf-fast' instead of 'onnx'")


def export_draft(model: Any, path: str | os.PathLike, *, verifier: Any = None,
                 source: str = "", opset: int = DEFAULT_OPSET) -> GraphLayout:
    """Export ``model`` (HF-style, moved to fp32 on CPU in place) to ``path``; return its layout.

    The ``verifier`` it was made for (its name, tokenizer identity and fingerprint) and
    ``source`` (what the draft is) go into the file's metadata, so that a runtime can refuse the
    graph for a verifier with another tokenizer and a person can tell what it is.
    """
    import onnx
    import torch

    import thrifty

    refuse_experts(model)
    model = model.to(device="cpu", dtype=torch.float32).eval()
    layers, kv_heads, head_dim, vocab = probe(model)
    _window_plan(model, layers)  # refuse windows it cannot place before writing anything
    batch, seq, past = 2, 3, 4
    args = (torch.zeros(batch, seq, dtype=torch.long),
            torch.ones(batch, past + seq, dtype=torch.long),
            torch.arange(past, past + seq).repeat(batch, 1),
            torch.tensor([0, seq - 1]),
            *[torch.zeros(batch, kv_heads, past, head_dim) for _ in range(2 * layers)])
    names_in, names_out = input_names(layers), output_names(layers)
    axes = {INPUT_IDS: {0: "batch", 1: "seq"}, POSITION_IDS: {0: "batch", 1: "seq"},
            ATTENTION_MASK: {0: "batch", 1: "total"}, LOGITS_INDEX: {0: "kept"},
            LOGITS: {0: "batch", 1: "kept"}}
    axes.update({n: {0: "batch", 2: "past"} for n in names_in[STEP_INPUTS:]})
    axes.update({n: {0: "batch", 2: "total"} for n in names_out[1:]})

    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # the TorchScript exporter warns about every Python branch it traces through; the
            # branches it sees (non-empty cache, 2-D mask) are the ones every later call takes
            warnings.simplefilter("ignore")
            torch.onnx.export(_kv_wrapper(model, layers), args, str(tmp), input_names=names_in,
                              output_names=names_out, dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        graph = onnx.load(str(tmp))
        metadata = {
            "format": FORMAT, "vocab_size": str(vocab), "num_layers": str(layers),
            "verifier": getattr(verifier, "name", ""), "draft": source or type(model).__name__,
            "thrifty_version": thrifty.__version__, "thrifty_onnx_version": __version__,
            "torch_version": torch.__version__,
        }
        if verifier is not None:
            tokenizer = verifier.tokenizer
            metadata["tokenizer"] = str(getattr(tokenizer, "name_or_path", "") or
                                        type(tokenizer).__name__)
            metadata["tokenizer_sha256"] = tokenizer_fingerprint(tokenizer, verifier.vocab_size)
        del graph.metadata_props[:]
        for key, value in metadata.items():
            graph.metadata_props.add(key=META + key, value=value)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))
    return read_layout(graph, str(path))


def weights_digest(model: Any) -> str:
    """sha256 of what a module computes: its class, its config and every named tensor's shape,
    dtype and bytes. Keys the graph cache by content, so re-distilled weights never reuse a
    stale graph."""
    import torch

    h = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def cached_export(model: Any, *, verifier: Any = None, source: str = "",
                  opset: int = DEFAULT_OPSET) -> Path:
    """The cached graph of ``model`` for ``verifier`` (exported on a miss):
    ``<cache>/<source>-<hash>.onnx``."""
    fingerprint = (tokenizer_fingerprint(verifier.tokenizer, verifier.vocab_size)
                   if verifier is not None else None)
    key = json.dumps({"weights": weights_digest(model), "format": FORMAT, "opset": opset,
                      "tokenizer": fingerprint, "verifier": getattr(verifier, "name", ""),
                      "thrifty_onnx": __version__, "exporter": EXPORTER_REVISION},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in (source or "draft"))
    path = cache_dir() / f"{stem}-{digest}.onnx"
    if not path.exists():
        export_draft(model, path, verifier=verifier, source=source, opset=opset)
    return path


def export_error(model: Any, path: str | os.PathLike, seed: int = 0) -> float:
    """Largest |ONNX Runtime - PyTorch| logit of the graph at ``path`` against ``model`` itself.

    The graph is driven the way the ``onnx`` draft drives it: a ragged two-row prefill (one row
    right-padded, which leaves holes in its cache), a cached step, and, for a model with
    sliding-window layers, a step that takes both rows past the largest window followed by a
    one-token step with holes inside the window. Every real token's logits are compared with
    ``model``'s plain forward over that row's real tokens alone (no cache, no holes), so a
    graph that lets holes or the window change what a token sees is caught, not matched by a
    reference that does the same."""
    import onnxruntime as ort
    import torch

    layers, kv_heads, head_dim, vocab = probe(model)
    device = next(model.parameters()).device
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    past = [torch.zeros(2, kv_heads, 0, head_dim) for _ in range(2 * layers)]
    mask = torch.zeros(2, 0, dtype=torch.long)
    steps = [(5, [5, 3]), (2, [2, 2])]
    window = max((w for w in layer_windows(model) if w is not None), default=None)
    if window is not None:
        steps += [(window + 2, [window + 2, window]), (1, [1, 1])]
    rows: list[list[int]] = [[], []]
    worst = 0.0
    for width, real in steps:
        ids = torch.randint(0, vocab, (2, width), generator=g)
        mask = torch.cat([mask, (torch.arange(width)[None] < torch.tensor(real)[:, None]).long()],
                         1)
        pos = mask[:, :-width].sum(1, keepdim=True) + torch.arange(width)[None]
        keep = torch.arange(width)
        feeds = dict(zip(input_names(layers),
                         [t.numpy() for t in (ids, mask, pos, keep, *past)]))
        got = session.run(None, feeds)
        for b, n in enumerate(real):
            rows[b] += ids[b, :n].tolist()
            row = torch.tensor([rows[b]], device=device)
            with torch.no_grad():
                ref = model(input_ids=row, attention_mask=torch.ones_like(row),
                            position_ids=torch.arange(row.shape[1], device=device)[None],
                            use_cache=False).logits[0, -n:].float().cpu()
            worst = max(worst, float(abs(got[0][b, :n] - ref.numpy()).max()))
        past = [torch.from_numpy(t) for t in got[1:]]
    return worst
