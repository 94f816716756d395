"""Protocols of the two speculative-decoding families: verifiers and draft models.

Tensors are torch tensors; the core imports torch only inside the engine, so these protocols
name them ``Tensor`` in prose only.

Token bookkeeping is the engine's: for each row it keeps the committed tokens (prompt plus
output). A model adapter keeps a KV cache that covers a prefix of each row's committed tokens and
is told exactly what to append and what to keep. Rows are ragged: every call carries a
``lengths`` tensor saying how many of the ``k`` columns of each row are real; the rest is
padding the adapter must ignore (mask out) and must not keep.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import attrs


@runtime_checkable
class Tokenizer(Protocol):
    """What the engine needs of a tokenizer (a Hugging Face tokenizer satisfies it)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


@runtime_checkable
class Verifier(Protocol):
    """The target model. Its greedy output is what speculative decoding must reproduce.

    Life cycle for one batch: ``start(prompts)`` caches all but the last token of each prompt;
    then each step calls ``score(tokens, lengths)`` with the row's last committed token followed
    by the draft's proposals, and ``keep(n)`` to retain only the first ``n[b]`` of the tokens just
    scored in row ``b`` (the rest are rolled back).
    """

    name: str
    vocab_size: int
    eos_token_ids: frozenset[int]
    tokenizer: Tokenizer
    device: Any  # torch.device

    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        """Reset the cache for a new batch and prefill ``prompt[:-1]`` of every row."""

    def score(self, tokens: Any, lengths: Any) -> Any:
        """Append ``tokens`` (LongTensor [B, k]; row b's first ``lengths[b]`` are real) and
        return float32 logits [B, k, V]: ``logits[b, i]`` predicts the token after
        ``tokens[b, i]``. Padding columns return unspecified (finite) values."""

    def keep(self, lengths: Any) -> None:
        """Keep only the first ``lengths[b]`` tokens of the last ``score`` call in row b."""

    # Optional: a verifier that can feed a FeatureDraft also has ``features``, the final hidden
    # states (its LM head's input) of the last ``start`` ([B, P, E] for the cached prompt
    # prefixes), ``admit`` ([1, P, E]) or ``score`` ([B, k, E]); valid until the next call.
    #
    # Optional, for continuous batching: ``admit(row, prompt)`` resets row ``row`` alone to a
    # new prompt (caches ``prompt[:-1]`` there, as ``start`` does for every row) and leaves the
    # other rows as they are. The engine calls it between steps, once the row's output is done.
    #
    # Optional: ``max_context``, the most tokens a row may hold (the model's position limit, a
    # static cache's size); the engine refuses a run whose prompt + max_new_tokens + lookahead
    # would pass it, before decoding. Drafts may have it too.
    #
    # Optional, for token trees (:func:`scores_trees`): ``score_tree(tokens, parents, lengths)``
    # appends the nodes of one tree per row and returns float32 logits [B, K, V], as ``score``
    # does for a chain. ``tokens`` [B, K]: column 0 is the row's pending token (the root), the
    # other columns its draft's tree nodes in topological order; ``parents`` [B, K]: the
    # column of each node's parent (-1 for the root, < the node's own column otherwise);
    # ``lengths`` [B]: real columns, root included (padding columns may hang anywhere and
    # return unspecified finite values). Node j sits at position (cached tokens + its depth)
    # and attends to the cached prefix and to its ancestors and itself only, so ``logits[b, j]``
    # predicts the token after the path root..j. ``keep_path(path, lengths)`` then keeps in
    # row b the scored columns ``path[b, :lengths[b]]`` (root first, each the parent of the
    # next), in that order, as the row's next cached tokens, and rolls back every other node.
    #
    # Optional, for greedy decoding (:func:`keeps_greedy_chains`, :func:`keeps_greedy_trees`):
    # ``keep_greedy_chain(tokens, lengths)`` is ``score``, then
    # :func:`~thrifty.speculative.accept` with ``greedy=True`` on its logits (the proposals
    # ``tokens[:, 1:]``, ``lengths - 1`` of them real), then ``keep(accepted + 1)``, in one
    # call, returning (accepted, next_tokens); ``keep_greedy_tree(tokens, parents, lengths,
    # shape)`` is ``score_tree``, then :func:`~thrifty.speculative.accept_tree` with
    # ``greedy=True``, then ``keep_path`` of the path it finds, returning (path, kept,
    # next_tokens). The logits are left unread: a verifier that runs the three as one captured
    # graph spares the host the dozens of small launches of the walk and the keeping, which
    # would otherwise leave the GPU waiting for the host at every step.


@attrs.frozen
class Proposal:
    """What a draft proposes for one step.

    ``tokens``: LongTensor [B, γ]; row b's first ``lengths[b]`` are real proposals.
    ``q``: float32 probabilities [B, γ, V] that each proposal was *sampled from*, after the same
    temperature/top-k/top-p as the verifier's p; ``None`` for a deterministic draft, whose q is a
    point mass on the proposed token (the n-gram draft, or any draft under greedy decoding).
    """

    tokens: Any
    lengths: Any
    q: Any = None


@attrs.frozen
class TreeProposal:
    """What a draft proposes for one step as a token tree per row (SpecInfer, EAGLE-2).

    Node 0 of a row is its pending token (the root; not part of the proposal); nodes 1..N are
    proposed tokens in topological order, so that column j of ``tokens`` is node j + 1.

    ``tokens``: LongTensor [B, N]; row b's first ``lengths[b]`` nodes are real.
    ``parents``: LongTensor [B, N], the parent node of each node, in 0..j for column j
    (0 = the root). Siblings are tried in column order; a node has at most the
    :class:`~thrifty.speculative.TreeShape`'s ``branch`` children that are tried.
    ``q``: float32 [B, N, V], the distribution each node was *sampled from* (siblings drawn
    independently, each from its own q), after the same transform as the verifier's p; ``None``
    when every node is a deterministic candidate (a point mass: top-k children, n-gram
    continuations, any draft under greedy decoding).
    """

    tokens: Any
    parents: Any
    lengths: Any
    q: Any = None


@runtime_checkable
class DraftModel(Protocol):
    """A draft: cheaply proposes the next tokens, which the verifier then checks in one pass.

    ``vocab_size`` is None for drafts that only copy tokens they have seen (the n-gram draft).
    """

    name: str
    vocab_size: int | None

    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        """Reset for a new batch of prompts (whole prompts, last token included)."""

    def propose(self, gamma: int, sampling: Any, generator: Any) -> Proposal:
        """Propose up to ``gamma`` tokens per row, continuing each row's committed tokens.

        ``sampling`` is a :class:`thrifty.speculative.Sampling`; under greedy sampling the draft
        proposes its argmax. ``generator`` is the ``torch.Generator`` to sample with.
        """

    def commit(self, accepted: Any, next_tokens: Any) -> None:
        """Row b accepted its first ``accepted[b]`` proposals, then ``next_tokens[b]`` (the
        verifier's correction or bonus token) was appended. Roll caches back accordingly."""

    # Optional, for continuous batching: ``admit(row, prompt)`` resets row ``row`` alone to a
    # new prompt (whole prompt, as ``start``); a feature draft is first ``observe``d the
    # verifier's features of that row's prefill.
    #
    # Optional, for token trees (:func:`grows_trees`): ``propose_tree(shape, sampling,
    # generator)`` returns a :class:`TreeProposal` of at most ``shape.nodes`` nodes per row, no
    # deeper than ``shape.depth``, at most ``shape.branch`` children a node;
    # ``commit_path(path, lengths, next_tokens)`` says that row b kept the nodes
    # ``path[b, :lengths[b]]`` of its last tree (node indices: 0 = the root, then root to
    # leaf) and then ``next_tokens[b]``, as ``commit`` does for a chain. A feature draft is
    # ``observe``d the verifier's features of every tree column ([B, K, E]) before it.


@runtime_checkable
class FeatureDraft(DraftModel, Protocol):
    """A draft that also reads the verifier's final hidden states (EAGLE-style).

    The engine calls ``observe(verifier.features)`` after the verifier's ``start`` or ``admit``
    (before the draft's) and after every ``score`` (before the draft's ``commit``), so the draft
    sees the verifier's feature of every token the verifier has processed.
    """

    def observe(self, features: Any) -> None:
        """The verifier's ``features`` of its last ``start`` or ``score``."""


def reads_features(draft: Any) -> bool:
    """Whether ``draft`` is a :class:`FeatureDraft`. Looked up as an attribute rather than by
    ``isinstance``: since Python 3.12 protocol checks read attributes statically, so a proxy
    that forwards attributes (a timing wrapper, say) would not pass for the draft it wraps."""
    return callable(getattr(draft, "observe", None))


def scores_trees(verifier: Any) -> bool:
    """Whether ``verifier`` can score token trees (``score_tree`` and ``keep_path``)."""
    return all(callable(getattr(verifier, m, None)) for m in ("score_tree", "keep_path"))


def keeps_greedy_chains(verifier: Any) -> bool:
    """Whether ``verifier`` can score a chain and keep what greedy acceptance keeps in one
    call (``keep_greedy_chain``)."""
    return callable(getattr(verifier, "keep_greedy_chain", None))


def keeps_greedy_trees(verifier: Any) -> bool:
    """Whether ``verifier`` can score a token tree and keep its greedy path in one call
    (``keep_greedy_tree``)."""
    return callable(getattr(verifier, "keep_greedy_tree", None))


def grows_trees(draft: Any) -> bool:
    """Whether ``draft`` can propose token trees (``propose_tree`` and ``commit_path``)."""
    return all(callable(getattr(draft, m, None)) for m in ("propose_tree", "commit_path"))
