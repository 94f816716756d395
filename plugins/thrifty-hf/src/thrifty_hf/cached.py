"""A Hugging Face causal LM behind a KV cache with ragged appends and per-row rollback.

Speculative decoding appends a different number of tokens to every row of a batch and then
takes back a different number in every row. A KV cache is one dense tensor per layer, so rows
cannot have different physical lengths. :class:`CachedLM` therefore keeps a validity mask over
the cache's columns (slots):

* an append writes ``k`` new columns for every row; row b's first ``lengths[b]`` are real, the
  rest are *holes*;
* a rollback turns a row's trailing real slots into holes;
* holes are masked out of attention by a 4D additive mask that this class builds itself, and a
  token's position id is the number of real tokens before it in its row, so a row with holes
  computes exactly what it would compute without them;
* columns that are holes in every row at the end of the cache are physically cropped
  (``DynamicCache.crop``), so the cache does not grow needlessly.

Token trees (:meth:`CachedLM.score_tree`) need nothing more: a node's position id is the real
tokens before the tree plus its depth, and among the new columns it sees its ancestors and
itself. Keeping a root-to-node path (:meth:`CachedLM.keep_path`) marks the path's columns real
and the others holes: the path's columns are in ascending order (a parent's column is before
its child's) and each sits one position after the last, so they are exactly the row's next
tokens, with the keys and values a chain of those tokens would have cached.

Sliding-window layers: the 4D mask below is full causal attention, which equals windowed
attention as long as no row holds more tokens than the window. The cache is therefore a plain
full cache (a sliding cache drops old slots, which rollback needs), and every append checks that
no row outgrows the smallest window; a run that would is refused (``hf-fast`` has windowed
attention), never computed differently.

Why a 4D mask: transformers (5.x) returns a 4D ``attention_mask`` as-is to every attention
implementation (eager adds it; SDPA passes it on) and skips its own causal-mask and
packed-sequence logic, which would misread position ids that skip over holes. The mask is
additive, in the model's dtype, with ``torch.finfo(dtype).min`` rather than ``-inf``: a query
that sees only holes (a padding column of a row with no tokens yet) then gets a uniform softmax
instead of NaN, and a NaN there would poison real rows through ``0 * NaN`` in later layers.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import torch

from thrifty.errors import ConfigError, ModelFormatError


class CachedLM:
    """Incremental scoring with a ragged, rollback-able KV cache over an HF causal LM.

    ``model`` is any module with the causal-LM forward of transformers:
    ``model(input_ids, attention_mask, position_ids, <cache>, use_cache)`` returning ``.logits``
    and ``.<cache>``, where ``<cache>`` is :func:`cache_name`.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self._trim_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.window = sliding_window(model)
        self.reset(0)

    # -- state -----------------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        """Forget everything; prepare an empty cache for ``batch`` rows."""
        self._cache = None
        self._valid = torch.zeros(batch, 0, dtype=torch.bool, device=self.device)
        self._counts = torch.zeros(batch, dtype=torch.long, device=self.device)
        self._before = self._counts
        self._tree = None  # the columns of a scored tree that keep_path has still to settle

    @property
    def counts(self) -> torch.Tensor:
        """LongTensor [B]: how many tokens of each row the cache holds."""
        return self._counts

    @property
    def slots(self) -> int:
        """Physical length of the cache (real slots plus holes)."""
        return self._valid.shape[1]

    def _new_cache(self):
        from transformers import DynamicCache

        # without the config every layer is a full layer, sliding ones included (see the module
        # docstring); sliding_window has refused layers that are not key/value layers
        return DynamicCache()

    def _check_window(self, counts: torch.Tensor) -> None:
        """Refuse rows of more tokens than the smallest sliding window (see the module
        docstring): full attention would differ from the model's from there on."""
        if self.window and counts.numel() and int(counts.max()) > self.window:
            raise ConfigError(
                f"{type(self.model).__name__} has sliding-window layers (window "
                f"{self.window} tokens) and a row would hold {int(counts.max())} tokens: the 'hf' "
                f"path attends to the whole row, which matches the model only inside the window. "
                f"Use 'hf-fast' (windowed attention), or shorter prompts and outputs (prompt + "
                f"output + lookahead <= {self.window})")

    # -- the Verifier-shaped contract ------------------------------------------------------------
    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        """Reset for a new batch and cache ``prompt[:-1]`` of every row (the last token of a
        prompt is fed by the first :meth:`score`, which predicts the first new token)."""
        self.reset(len(prompts))
        self._check_window(torch.tensor([len(p) for p in prompts]))
        self._cache = self._new_cache()
        prefix = [list(p[:-1]) for p in prompts]
        if any(prefix):
            tokens, lengths = pad(prefix, self.device)
            self.append(tokens, lengths, logits=1)

    def score(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Append the first ``lengths[b]`` tokens of row b; return float32 logits [B, k, V]."""
        return self.append(tokens, lengths)

    def keep(self, lengths: torch.Tensor) -> None:
        """Keep only the first ``lengths[b]`` tokens of the last append in row b."""
        if self._tree is not None:
            raise ConfigError("the last call scored a token tree: keep a path of it with "
                              "keep_path, not a prefix of its columns with keep")
        self.truncate(self._before + lengths.to(self.device))

    @torch.no_grad()
    def score_tree(self, tokens: torch.Tensor, parents: torch.Tensor,
                   lengths: torch.Tensor) -> torch.Tensor:
        """Append one token tree per row (the Verifier protocol's ``score_tree``: column 0 the
        root, ``parents`` the column of each node's parent, -1 for the root) and return float32
        logits [B, K, V]; node j sits at position (real tokens before) + (its depth) and sees
        the real prefix, its ancestors and itself. Until :meth:`keep_path`, every real node
        counts as cached."""
        from thrifty.speculative.tree import ancestors

        tokens, parents, lengths = (t.to(self.device) for t in (tokens, parents, lengths))
        seen = ancestors(parents)  # [B, K, K]
        depth = seen.sum(-1) - 1
        real = torch.arange(tokens.shape[1], device=self.device)[None, :] < lengths[:, None]
        # node j sees depth + 1 tokens of its own: the window bounds the deepest real node
        self._check_window(self._counts + torch.where(real, depth + 1, 0).amax(1))
        logits = self._append(tokens, lengths, seen, self._counts[:, None] + depth)
        self._tree = tokens.shape[1]
        return logits

    def keep_path(self, path: torch.Tensor, lengths: torch.Tensor) -> None:
        """Keep the columns ``path[b, :lengths[b]]`` of the last tree (root first, each the
        parent of the next) as row b's next tokens and turn its other columns into holes."""
        if self._tree is None:
            raise ConfigError("keep_path keeps a path of the last scored token tree; the last "
                              "call scored none")
        k, self._tree = self._tree, None
        path, lengths = path.to(self.device), lengths.to(self.device)
        on = torch.arange(path.shape[1], device=self.device)[None, :] < lengths[:, None]
        kept = ((path[:, :, None] == torch.arange(k, device=self.device)) & on[:, :, None]).any(1)
        self._valid = torch.cat([self._valid[:, :-k], kept], 1)
        self._counts = self._before + lengths
        self._crop()

    # -- the two primitives ----------------------------------------------------------------------
    @torch.no_grad()
    def append(self, tokens: torch.Tensor, lengths: torch.Tensor,
               logits: int | None = None) -> torch.Tensor:
        """Feed ``tokens`` [B, k]; row b's first ``lengths[b]`` are real, the rest padding.

        Returns float32 logits [B, k, V] (``logits[b, i]`` predicts the token after
        ``tokens[b, i]``), or only the last ``logits`` columns when given. Logits of padding
        columns are finite and meaningless.
        """
        tokens = tokens.to(self.device)
        lengths = lengths.to(self.device)
        batch, k = tokens.shape
        if k == 0:
            return torch.zeros(batch, 0, self.model.config.vocab_size, device=self.device)
        self._check_window(self._counts + lengths)
        col = torch.arange(k, device=self.device)
        causal = col[None, None, :] <= col[None, :, None]
        return self._append(tokens, lengths, causal, self._counts[:, None] + col, logits)

    def _append(self, tokens, lengths, among, positions, logits: int | None = None):
        """The forward of :meth:`append` and :meth:`score_tree`: ``tokens`` [B, k] at
        ``positions``, each new column seeing the real prefix and the real new columns that
        ``among`` [B, k, k] allows."""
        self._tree = None
        new = torch.arange(tokens.shape[1], device=self.device)[None, :] < lengths[:, None]
        valid = torch.cat([self._valid, new], dim=1)
        kwargs = {}
        if logits is not None and self._trim_logits:
            kwargs["logits_to_keep"] = logits
        out = self.model(
            input_ids=tokens,
            attention_mask=attention_mask(valid, among, self.dtype),
            position_ids=positions,
            use_cache=True,
            **{cache_name(): self._cache},
            **kwargs,
        )
        self._cache = getattr(out, cache_name())
        self._valid = valid
        self._before = self._counts
        self._counts = self._counts + lengths
        result = out.logits if logits is None else out.logits[:, -logits:]
        return result.float()

    def truncate(self, counts: torch.Tensor) -> None:
        """Keep only the first ``counts[b]`` tokens of row b (never more than it has)."""
        counts = torch.minimum(counts.to(self.device), self._counts)
        rank = self._valid.long().cumsum(dim=1)  # 1-based index of each real slot in its row
        self._valid = self._valid & (rank <= counts[:, None])
        self._counts = counts
        self._before = torch.minimum(self._before, counts)
        self._tree = None
        self._crop()

    def _crop(self) -> None:
        """Remove the columns that are holes in every row at the end of the cache."""
        used = self._valid.any(dim=0).nonzero()
        length = int(used[-1]) + 1 if len(used) else 0
        if length < self.slots:
            self._cache.crop(length - self.slots)  # negative: remove that many trailing slots
            self._valid = self._valid[:, :length]


def sliding_window(model: Any) -> int | None:
    """The smallest sliding window of ``model``'s layers (None: no sliding-window layer), as
    transformers' own cache lays the layers out.

    Raises :class:`ModelFormatError` for a model the adapter cannot run exactly: an
    encoder-decoder, or layers whose cache is not one key/value slot per token (recurrent or
    linear-attention state, as in Mamba, Jamba or Qwen3-Next), which cannot be rolled back per
    row or masked by slot."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    config, name = model.config, type(model).__name__
    if getattr(config, "is_encoder_decoder", False):
        raise ModelFormatError(f"{name} is an encoder-decoder model; thrifty decodes with "
                               f"decoder-only causal LMs (docs/models.md lists the families)")
    layers = DynamicCache(config=config).layers
    other = sorted({type(layer).__name__ for layer in layers}
                   - {DynamicLayer.__name__, DynamicSlidingWindowLayer.__name__})
    if other:
        raise ModelFormatError(
            f"{name} has layers whose cache is not a key/value slot per token ({', '.join(other)}"
            f"): the 'hf' path rolls rows back and masks holes slot by slot, which such state "
            f"does not allow. Use a transformer decoder (docs/models.md lists the families)")
    windows = [int(layer.sliding_window) for layer in layers
               if isinstance(layer, DynamicSlidingWindowLayer)]
    return min(windows, default=None)


@functools.cache
def cache_name() -> str:
    """The keyword under which transformers' forwards take and return the KV cache: ``cache``
    where transformers has it (``past_key_values`` is deprecated there, removed in 5.40),
    ``past_key_values`` in the releases before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def attention_mask(valid: torch.Tensor, among: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [B, 1, k, S]: the last ``k`` of the ``S`` slots are the new queries.

    Query i (slot S - k + i) may see every real slot before the new block and the real new
    slots j that ``among[b, i, j]`` (bool [B or 1, k, k]) allows: those up to itself for a
    chain, its ancestors and itself for a tree.
    """
    batch, slots = valid.shape
    k = among.shape[-1]
    past = valid[:, None, : slots - k].expand(batch, k, slots - k)
    allowed = torch.cat([past, among & valid[:, None, slots - k:]], 2)  # [B, k, S]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=valid.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def pad(rows: Sequence[Sequence[int]], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ragged token lists into (LongTensor [B, max len], lengths [B])."""
    width = max((len(r) for r in rows), default=0)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        tokens[b, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    return tokens.to(device), lengths.to(device)
