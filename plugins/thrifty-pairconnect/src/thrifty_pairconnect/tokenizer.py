"""A small byte-level BPE tokenizer, trained here on the training splits (never downloaded).

Byte-level means every text encodes (no unknown token) and decodes back exactly. The merges are
learned by the ``tokenizers`` library's BPE trainer, deterministically for a given text.
"""

from __future__ import annotations

from typing import Sequence


class BPETokenizer:
    """encode/decode over a trained ``tokenizers.Tokenizer`` (follows thrifty's Tokenizer)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 1024) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.inner.get_vocab_size()

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.inner.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.inner.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.inner.decode(list(ids))
