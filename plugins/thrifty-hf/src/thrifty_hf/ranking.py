"""A draft's token ranking: its vocabulary ordered by frequency in a corpus, so that the fast
path's draft can score only the tokens text mostly uses.

Why: a draft shares its verifier's LM head, which for SmolLM2-135M is a 49,152 x 576 matrix
(28 M parameters, almost seven times the one-layer feature draft's own). On a GPU each draft step
multiplies by all of it, writes 49,152 float32 logits a row and reduces them (an argmax; an
EAGLE-2 tree's softmax and top-k over branch x vocabulary), a large share of a step that is
otherwise one small layer. Text uses few of those tokens: scoring only the ``n`` most frequent
(a reduced draft vocabulary, as FR-Spec, Zhao et al. 2025, and EAGLE-3 do) cuts that work by
V / n. Verification is untouched, so output stays exactly the verifier's; a token outside the
``n`` is one the draft can no longer propose, which costs acceptance only where the verifier
picks it.

File: ``ranking.safetensors`` in the draft folder, beside its weights: ``tokens`` (int32 [V],
every token id once, the most frequent first, ties by id) and ``counts`` (int32 [V], their
counts), with the corpus it counted described in the metadata (``thrifty_ranking``).
``thrifty distill`` writes it from the corpus the draft trained on; ``thrifty rank-tokens``
writes it for a draft from any corpus cache ``thrifty distill --corpus-cache`` built.
"""

from __future__ import annotations

import json
from pathlib import Path

from thrifty.errors import ConfigError, ModelFormatError

RANKING = "ranking.safetensors"


def rank(train, vocab_size: int):
    """(token ids most frequent first, their counts) of the token tensor ``train``; a token
    the corpus never holds ranks after every one it does, by id."""
    import torch

    flat = train.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= vocab_size):
        raise ConfigError(f"the corpus holds token ids outside the vocabulary of {vocab_size} "
                          f"(range {int(flat.min())}..{int(flat.max())}); it was tokenised for "
                          f"another model: rebuild it with this draft's verifier")
    counts = torch.bincount(flat, minlength=vocab_size)
    # a stable sort of the negated counts: equal counts keep id order
    order = torch.sort(-counts, stable=True).indices
    return order, counts[order]


def coverage(tokens, heldout, sizes) -> dict[int, float]:
    """For each N of ``sizes``, the share of the tokens in ``heldout`` that are among the first
    N of the ranking ``tokens``: how often a draft restricted to them could still propose the
    token that text holds."""
    import torch

    place = torch.empty(len(tokens), dtype=torch.long)
    place[tokens.long()] = torch.arange(len(tokens))
    ranks = place[heldout.reshape(-1).long()]
    return {n: float((ranks < n).float().mean()) for n in sizes}


SIZES = (4096, 8192, 12288, 16384, 24576, 32768)
"""The sizes ``thrifty rank-tokens`` reports the held-out coverage of."""


def save_ranking(directory, tokens, counts, describe: dict) -> Path:
    """Write ``directory``/:data:`RANKING` (atomically): the ranking ``tokens`` and ``counts``
    that :func:`rank` made of the corpus ``describe`` describes."""
    from safetensors.torch import save_file

    from thrifty.atomic import atomic_path

    path = Path(directory) / RANKING
    with atomic_path(path) as tmp:
        save_file({"tokens": tokens.int().contiguous(), "counts": counts.int().contiguous()},
                  str(tmp),
                  metadata={"thrifty_ranking": json.dumps(describe, sort_keys=True)})
    return path


def proposable(directory, vocab_size: int, n: int):
    """The ``n`` most frequent token ids of the draft in ``directory`` (a LongTensor, most
    frequent first), checked against its vocabulary; a clear error for a draft without a
    ranking, a damaged one, or ``n`` outside 1..V."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not 1 <= n <= vocab_size:
        raise ConfigError(f"vocab={n}: a draft proposes from 1 to {vocab_size} tokens (its "
                          f"vocabulary), or 0 for every token")
    path = Path(directory) / RANKING
    if not path.is_file():
        raise ConfigError(f"vocab={n} needs the draft's token ranking, {path}, which this draft "
                          f"lacks; write it with `thrifty rank-tokens --draft {directory} "
                          f"--corpus-cache FILE`, or pass vocab=0 (every token)")
    try:
        ranking = load_file(str(path))
        tokens = ranking["tokens"]
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path} is not a token ranking ({exc}); rewrite it with "
                               f"`thrifty rank-tokens`") from exc
    if tokens.shape != (vocab_size,) or tokens.dtype.is_floating_point or \
            not tokens.long().sort().values.equal(torch.arange(vocab_size)):
        raise ModelFormatError(f"{path} does not rank the {vocab_size} tokens of this draft's "
                               f"vocabulary once each; rewrite it with `thrifty rank-tokens`")
    return tokens[:n].long()


def proposable_for(model: str, vocab_size: int, n: int):
    """What the ``hf-fast`` draft's ``vocab=n`` option takes for draft ``model`` (a zoo name or
    folder): None for 0 (every token), else :func:`proposable` of its folder; a Hugging Face
    model has no ranking, which is a clear error."""
    from .zoo import resolve

    if not n:
        return None
    where = resolve(model)
    if where.kind != "draft":
        raise ConfigError(f"vocab={n} needs a thrifty draft's token ranking; {model!r} is a "
                          f"Hugging Face model: pass vocab=0")
    return proposable(where.path, vocab_size, n)


def configure(p) -> None:
    p.add_argument("--draft", required=True, help="the thrifty draft folder to rank tokens for")
    p.add_argument("--corpus-cache", required=True,
                   help="a corpus cache `thrifty distill --corpus-cache` built (its training "
                        "sequences are counted)")


def run(args) -> int:
    from .distill import load_corpus
    from .drafts import read_config, read_manifest

    directory = Path(args.draft)
    read_manifest(directory)  # a thrifty draft, or a clear error
    vocab_size = int(read_config(directory).vocab_size)
    cache = Path(args.corpus_cache)
    if not cache.is_file():
        raise ConfigError(f"--corpus-cache {cache} does not exist; build one with `thrifty "
                          f"distill --corpus-cache {cache} ...`")
    corpus = load_corpus(cache)
    tokens, counts = rank(corpus["train"], vocab_size)
    path = save_ranking(directory, tokens, counts,
                        {"corpus": corpus["describe"], "corpus_cache": cache.name,
                         "tokens": int(corpus["train"].numel())})
    print(f"wrote {path}: {corpus['train'].numel()} tokens of {cache.name} counted")
    shares = coverage(tokens, corpus["heldout"], [n for n in SIZES if n < vocab_size])
    print(f"share of the corpus's {corpus['heldout'].numel()} held-out tokens among the N most "
          f"frequent: " + ", ".join(f"N={n}: {share:.2%}" for n, share in shares.items()))
    return 0
