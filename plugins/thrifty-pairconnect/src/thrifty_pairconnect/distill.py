"""Distilling a PairConnect draft from a verifier's logits (soft-target KL), and its CLI command.

The teacher is any :class:`thrifty.protocols.Verifier`, driven through its protocol only:
``start`` with the first two tokens of each window caches the first, and one ``score`` of the
rest returns the teacher's logits at every later position. So the same code distils from the
SmolLM2 verifier on a GPU and from the toy verifier in the tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from thrifty.errors import ConfigError

from .draft import save_draft
from .lm import PairConnectLM
from .training import lr_at, random_windows


def teacher_logits(verifier, windows) -> torch.Tensor:
    """float32 [B, L−1, V]: the teacher's next-token logits after windows[:, 1:]."""
    batch, length = windows.shape
    verifier.start([row[:2] for row in windows.tolist()])
    tokens = windows[:, 1:].to(verifier.device)
    lengths = torch.full((batch,), length - 1, dtype=torch.long, device=verifier.device)
    return verifier.score(tokens, lengths).float()


def soft_kl(student_logits, teacher_logits, temperature: float = 1.0):
    """KL(teacher ‖ student) per position at ``temperature``, mean over positions (× T²)."""
    t = temperature
    log_q = nn.functional.log_softmax(student_logits.float() / t, -1)
    log_p = nn.functional.log_softmax(teacher_logits.float() / t, -1)
    kl = nn.functional.kl_div(log_q.flatten(0, -2), log_p.flatten(0, -2), log_target=True,
                              reduction="batchmean")
    return kl * t * t


@torch.no_grad()
def evaluate(verifier, student: PairConnectLM, stream, *, batches: int = 4, batch: int = 8,
             seq_len: int = 64, seed: int = 1) -> dict:
    """Held-out KL and top-1 agreement (the greedy acceptance rate of a one-token draft)."""
    g = torch.Generator().manual_seed(seed)
    device = next(student.parameters()).device
    kl = agree = 0.0
    for _ in range(batches):
        x = random_windows(stream, batch, seq_len, g)
        t = teacher_logits(verifier, x).to(device)
        s = student(x.to(device))[:, 1:]
        kl += soft_kl(s, t).item()
        agree += (s.argmax(-1) == t.argmax(-1)).float().mean().item()
    return {"kl": kl / batches, "agreement": agree / batches}


def distill(verifier, student: PairConnectLM, stream, *, steps: int, batch: int = 8,
            seq_len: int = 64, lr: float = 3e-3, temperature: float = 1.0, seed: int = 0,
            max_seconds: float = 0.0, log: Callable[[int, float], None] | None = None) -> dict:
    """Train ``student`` to match the verifier's next-token distributions on ``stream``, for
    ``steps`` or until ``max_seconds`` (0: no limit) have passed, whichever comes first."""
    if len(stream) <= seq_len + 1:
        raise ConfigError(f"the corpus has {len(stream)} tokens; distillation windows need more "
                          f"than {seq_len + 1}: give more text or a smaller --seq-len")
    g = torch.Generator().manual_seed(seed)
    device = next(student.parameters()).device
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    student.train()
    begin, ema = time.perf_counter(), None
    done = 0
    for step in range(steps):
        elapsed = time.perf_counter() - begin
        if max_seconds and elapsed > max_seconds:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, max(steps // 20, 1),
                                elapsed / max_seconds if max_seconds else 0.0)
        x = random_windows(stream, batch, seq_len, g)
        with torch.no_grad():
            t = teacher_logits(verifier, x).to(device)
        loss = soft_kl(student(x.to(device))[:, 1:], t, temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        done = step + 1
        if log is not None and (step % 25 == 0 or step == steps - 1):
            log(step, ema)
    student.eval()
    return {"train_kl": ema, "steps": done, "seconds": time.perf_counter() - begin}


def corpus_texts(sources: Sequence[str], split: str, max_bytes: int) -> list[str]:
    """Texts of named corpora (``shakespeare``, ``stdlib``) or of text files, ``split`` part."""
    from . import corpora

    texts: list[str] = []
    for source in sources:
        if source in corpora.CORPORA:
            texts += corpora.load(source).texts(split, max_bytes)
        elif split == "train":
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"--corpus {source!r} is neither a corpus "
                                  f"({', '.join(corpora.CORPORA)}) nor a text file")
            texts.append(path.read_text(encoding="utf-8", errors="replace")[:max_bytes or None])
    return texts


def token_stream(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids += tokenizer.encode(text, add_special_tokens=False)
    return torch.tensor(ids, dtype=torch.long)


# -- the CLI command ---------------------------------------------------------------------------
def _verifier_options(args) -> dict:
    import tomllib

    options = {"model": args.model}
    for item in args.verifier_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--verifier-option {item!r} must look like KEY=VALUE")
        try:
            options[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            options[key] = value
    return options


def run(args) -> int:
    import json

    import thrifty

    pipe = thrifty.pipeline(verifier=(args.verifier, _verifier_options(args)))
    verifier = pipe.verifier
    sources = args.corpus or ["shakespeare", "stdlib"]
    train = token_stream(verifier.tokenizer, corpus_texts(sources, "train", args.max_bytes))
    held_texts = corpus_texts(sources, "heldout", args.max_bytes // 4)
    held = token_stream(verifier.tokenizer, held_texts) if held_texts else train
    torch.manual_seed(args.seed)
    student = PairConnectLM(verifier.vocab_size, args.dim, table_size=args.table_size,
                            window=args.window, buckets=args.buckets, hashes=args.hashes,
                            hidden=args.hidden, depth=args.depth).to(args.device)

    def log(step, kl):
        print(f"step {step:5d}/{args.steps}  KL {kl:.4f}", flush=True)

    before = evaluate(verifier, student, held, seq_len=args.seq_len)
    result = distill(verifier, student, train, steps=args.steps, batch=args.batch,
                     seq_len=args.seq_len, lr=args.lr, temperature=args.temperature,
                     seed=args.seed, max_seconds=args.max_seconds,
                     log=None if args.json else log)
    after = evaluate(verifier, student, held, seq_len=args.seq_len)
    size = save_draft(student, args.out, tokenizer=verifier.tokenizer, verifier=verifier.name,
                      corpus=sources, steps=result["steps"], heldout=after)
    out = {"out": args.out, "bytes": size, "train_tokens": len(train),
           "heldout_before": before, "heldout_after": after, **result}
    print(json.dumps(out, indent=2) if args.json else
          f"wrote {args.out} ({size / 1e6:.2f} MB fp16); held-out KL {before['kl']:.3f} -> "
          f"{after['kl']:.3f}, top-1 agreement {before['agreement']:.3f} -> "
          f"{after['agreement']:.3f} in {result['seconds']:.0f} s")
    return 0
