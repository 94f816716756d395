"""``thrifty distill``: make a draft for a verifier by distillation on its own soft targets.

The draft (see :mod:`thrifty_hf.drafts`) starts from layers selected from the verifier (same
width) or freshly initialised ones (any width, with projections to the shared embedding), and
learns to match the verifier's next-token distribution: the loss is KL(p_verifier || q_draft) at
every position. Acceptance in speculative decoding is exactly the overlap of those two
distributions, so this is the objective that matters, not perplexity.

Corpus: Python standard-library source (the interpreter's own, so it is always there offline;
files whose path hashes to 0 mod 10 are held out for evaluation and benchmarks) and the
verifier's own sampled answers to built-in chat-style prompts (code and prose requests).

A feature draft (``--features``) also learns the verifier's final hidden state: it is fed the
verifier's features (shifted by one token, as at decoding time) and trained on KL plus a
smooth-L1 loss between its predicted features and the verifier's. With ``--unroll 2`` a second
pass feeds the draft its own predicted features, as it is fed from its second proposal on.
"""

from __future__ import annotations

import hashlib
import math
import shlex
import sys
import sysconfig
import time
from pathlib import Path

from thrifty.errors import ConfigError

TOPICS = ["binary search", "a linked list", "JSON parsing", "the water cycle", "photosynthesis",
          "a trip to the mountains", "unit testing", "recursion", "the French revolution",
          "black holes", "a sorting algorithm", "healthy breakfast", "time management",
          "a haunted lighthouse", "HTTP caching", "the history of tea", "regular expressions",
          "a robot learning to paint", "climate change", "prime numbers", "a dragon and a knight",
          "decorators in Python", "the stock market", "volcanoes", "a friendly letter"]
TASKS = ["Explain {} to a beginner.", "Write a short story about {}.",
         "Write a Python function related to {} and explain it.", "Give five facts about {}.",
         "Write a poem about {}.", "What are common mistakes with {}?",
         "Summarise the key ideas of {} in a paragraph.", "Write a dialogue about {}."]


def chat_prompts() -> list[str]:
    """The built-in chat-style requests (code and prose), in a fixed order."""
    return [t.format(topic) for topic in TOPICS for t in TASKS]


def stdlib_files(split: str = "train") -> list[Path]:
    """Python standard-library sources; ``split`` is ``"train"`` or ``"heldout"`` (1 in 10)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "site-packages" in rel or "/test" in rel or rel.startswith("test"):
            continue
        held = int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 10 == 0
        if held == (split == "heldout"):
            out.append(path)
    return out


def code_tokens(tokenizer, split: str, limit: int) -> list[int]:
    """Up to ``limit`` tokens of standard-library code (files joined by blank lines)."""
    ids: list[int] = []
    for path in stdlib_files(split):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        ids += tokenizer.encode(text + "\n\n", add_special_tokens=False)
        if len(ids) >= limit:
            break
    return ids[:limit]


def self_generated(model, tokenizer, prompts, *, new_tokens: int, batch: int, temperature: float,
                   seed: int, progress: bool = True) -> list[list[int]]:
    """The verifier's own sampled answers (chat template applied), prompt and answer tokens."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    for i in tqdm(range(0, len(texts), batch), desc="self-generate", disable=not progress):
        enc = tokenizer(texts[i: i + batch], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=0.95,
                                 max_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id)
        for row, mask in zip(gen, enc["attention_mask"]):
            ids = row[int((mask == 0).sum()):].tolist()
            eos = tokenizer.eos_token_id
            if eos in ids[int(mask.sum()):]:
                ids = ids[: ids.index(eos, int(mask.sum())) + 1]
            out.append(ids)
    return out


def chunks(stream: list[int], length: int):
    """Non-overlapping windows of ``length`` tokens (a LongTensor [N, length])."""
    import torch

    n = len(stream) // length
    if n == 0:
        raise ConfigError(f"corpus has {len(stream)} tokens, fewer than one sequence of "
                          f"{length}; lower --seq-len or add data")
    return torch.tensor(stream[: n * length], dtype=torch.long).view(n, length)


def kl_loss(teacher_logits, student_logits):
    """Mean over positions of KL(softmax(teacher) || softmax(student)), in float32."""
    import torch.nn.functional as F

    t = F.log_softmax(teacher_logits.float(), -1)
    s = F.log_softmax(student_logits.float(), -1)
    return F.kl_div(s.flatten(0, -2), t.flatten(0, -2), log_target=True, reduction="batchmean")


def teacher(verifier, ids, autocast):
    """The verifier's final hidden states [B, T, E] and logits [B, T, V] (no gradients)."""
    import torch

    with torch.no_grad(), autocast:
        feats = verifier.model(input_ids=ids, use_cache=False).last_hidden_state
        return feats, verifier.lm_head(feats)


def student(draft, ids, feats, autocast, unroll: int = 1):
    """The draft's (predicted features, logits) per pass. A token-only draft has one pass; a
    feature draft's first pass reads the verifier's features of the previous tokens, and each
    later pass reads the draft's own predictions from the pass before (detached)."""
    import torch

    if draft.fc is None:
        with autocast:
            return [(None, draft(input_ids=ids).logits)]
    passes, given = [], feats
    for _ in range(unroll):
        shifted = torch.cat([torch.zeros_like(given[:, :1]), given[:, :-1]], 1)
        with autocast:
            h, _ = draft.hidden(ids, shifted, use_cache=False)
            passes.append((h, draft.lm_head(h)))
        given = h.detach()
    return passes


def step_loss(draft, verifier, ids, autocast, unroll: int = 1):
    """Mean over passes of KL(verifier || draft), plus smooth L1 to the verifier's features."""
    import torch.nn.functional as F

    feats, logits = teacher(verifier, ids, autocast)
    passes = student(draft, ids, feats, autocast, unroll)
    total = 0.0
    for h, out in passes:
        total = total + kl_loss(logits, out)
        if h is not None:
            total = total + F.smooth_l1_loss(h.float(), feats.float())
    return total / len(passes)


def select_layers(n_verifier: int, depth: int) -> list[int]:
    """``depth`` verifier layers spread evenly, first and last included."""
    if depth == 1:
        return [0]
    return [round(i * (n_verifier - 1) / (depth - 1)) for i in range(depth)]


def init_draft(verifier, *, depth: int, width: int, init: str, layers=None, seed: int = 0,
               intermediate_size: int | None = None, kv_heads: int | None = None,
               features: bool = False):
    """A draft of ``depth`` layers at ``width``: verifier layers copied (``init="select"``) or
    fresh ones whose projections start as an isometry, so the untrained draft already passes the
    embedding through to the verifier's final norm and head."""
    import torch

    from .drafts import attach_embedding, draft_config, new_draft

    vcfg = verifier.config
    cfg = draft_config(vcfg, width=width, depth=depth, intermediate_size=intermediate_size,
                       num_kv_heads=kv_heads, features=features)
    torch.manual_seed(seed)
    draft = new_draft(cfg).float()
    g = verifier.model.norm.weight.detach().float().cpu()
    with torch.no_grad():
        if init == "select":
            if width != vcfg.hidden_size:
                raise ConfigError(f"--init select copies verifier layers, so --width must be the "
                                  f"verifier's ({vcfg.hidden_size}); use --init fresh for {width}")
            layers = layers or select_layers(vcfg.num_hidden_layers, depth)
            if len(layers) != depth or not all(0 <= i < vcfg.num_hidden_layers for i in layers):
                raise ConfigError(f"--layers must name {depth} layers in 0..."
                                  f"{vcfg.num_hidden_layers - 1}; got {layers}")
            for dst, src in zip(draft.model.layers, layers):
                state = {k: v.float().cpu() for k, v in
                         verifier.model.layers[src].state_dict().items()}
                dst.load_state_dict(state)
            draft.model.norm.weight.copy_(g)
        elif init == "fresh":
            layers = []
            embed = vcfg.hidden_size
            if width == embed or features:
                draft.model.norm.weight.copy_(g)
            if width != embed:
                q, _ = torch.linalg.qr(torch.randn(max(width, embed), min(width, embed)))
                iso = q if width > embed else q.T  # [width, embed]
                if draft.proj_in is not None:
                    draft.proj_in.weight.copy_(iso)
                draft.proj_out.weight.copy_(g[:, None] * iso.T)
                draft.model.norm.weight.fill_(math.sqrt(embed / width) if width > embed else 1.0)
        else:
            raise ConfigError(f"--init must be 'select' or 'fresh'; got {init!r}")
    attach_embedding(draft, verifier)
    return draft, list(layers)


def distill(args) -> Path:
    """Run one distillation as the ``thrifty distill`` arguments describe; returns the folder."""
    import torch
    from tqdm.auto import tqdm

    from .drafts import save_draft
    from .models import load_verifier

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.teacher_dtype]
    verifier, tokenizer = load_verifier(args.verifier, device, tdtype)
    vname = args.verifier
    verifier.requires_grad_(False)
    corpus = build_corpus(args, verifier, tokenizer)
    train, held = corpus["train"], corpus["heldout"]
    if args.resume:
        draft, before = resume_draft(args.resume, verifier)
        architecture = before["architecture"]
        if args.unroll > 1 and draft.fc is None:
            raise ConfigError(f"--unroll above 1 needs a feature draft; {args.resume!r} reads "
                              f"tokens only")
    else:
        width = args.width or verifier.config.hidden_size
        draft, layers = init_draft(verifier, depth=args.depth, width=width, init=args.init,
                                   layers=args.layers, seed=args.seed,
                                   intermediate_size=args.intermediate_size or None,
                                   kv_heads=args.kv_heads or None, features=args.features)
        architecture = {"depth": args.depth, "width": width, "init": args.init,
                        "features": args.features, "verifier_layers": layers,
                        "embed_size": verifier.config.hidden_size}
        before = None
    draft.to(device)
    params = [p for n, p in draft.named_parameters() if p.requires_grad]
    lr = args.lr or (3e-4 if args.init == "select" or args.resume else 1e-3)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    warm = max(1, min(100, args.steps // 20))
    gen = torch.Generator().manual_seed(args.seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    bar = tqdm(range(args.steps), desc=f"distill {Path(args.out).name}", disable=args.quiet)
    begin, losses, step = time.perf_counter(), [], 0
    draft.train()
    for step in bar:
        idx = torch.randint(0, train.shape[0], (args.batch,), generator=gen)
        ids = train[idx].to(device, non_blocking=True)
        loss = step_loss(draft, verifier, ids, autocast, args.unroll)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in opt.param_groups:
            group["lr"] = lr * lr_scale(step, time.perf_counter() - begin, args.steps,
                                        args.max_seconds, warm)
        opt.step()
        if step % 20 == 0:
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if args.max_seconds and time.perf_counter() - begin > args.max_seconds:
            break
    seconds = time.perf_counter() - begin
    draft.eval()
    stats = evaluate(draft, verifier, held, device, autocast)
    training = {"steps": step + 1, "seconds": round(seconds, 1), "batch": args.batch,
                "seq_len": args.seq_len, "tokens": (step + 1) * args.batch * args.seq_len,
                "lr": lr, "unroll": args.unroll,
                "final_loss": round(sum(losses[-5:]) / max(len(losses[-5:]), 1), 4),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "torch": torch.__version__, "corpus": corpus["describe"], **stats}
    if before is not None:
        training["resumed_from"] = {"draft": args.resume, "command": before["command"],
                                    "training": before["training"]}
    vcfg = verifier.config
    out = save_draft(
        draft, args.out,
        verifier={"name": vname, "vocab_size": vcfg.vocab_size, "hidden_size": vcfg.hidden_size,
                  "num_hidden_layers": vcfg.num_hidden_layers},
        architecture=architecture, command=args.command_line, training=training)
    print(f"saved {out}: {training['steps']} steps in {seconds:.0f} s, held-out KL "
          f"{stats['heldout_kl']:.3f}, top-1 agreement {stats['heldout_top1']:.3f}")
    return out


def resume_draft(name: str, verifier):
    """A shipped or saved draft (zoo name or folder) to train further, in float32, with its
    manifest: its architecture is kept, and its training is recorded under the new one's."""
    import torch

    from .drafts import SHARED_KEYS, load_draft
    from .zoo import resolve

    where = resolve(name)
    if where.kind != "draft":
        raise ConfigError(f"--resume takes a thrifty draft (a zoo draft name or a folder "
                          f"`thrifty distill` wrote); {name!r} is a full Hugging Face model")
    draft = load_draft(where.path, verifier, device="cpu", dtype=torch.float32)
    for key, param in draft.named_parameters():
        param.requires_grad_(key not in SHARED_KEYS)
    return draft, draft.thrifty_manifest


def lr_scale(step: int, elapsed: float, steps: int, seconds: float, warm: int) -> float:
    """Learning-rate factor: linear warm-up over ``warm`` steps, then a cosine to zero over
    whichever budget ends first, ``steps`` or ``seconds`` (0: no time budget). Decaying by time
    too means a run cut short by ``--max-seconds`` still ends annealed, not at its peak rate."""
    done = step / steps
    if seconds:
        done = max(done, elapsed / seconds)
    return min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


def evaluate(draft, verifier, held, device, autocast, batches: int = 8) -> dict:
    """Held-out KL and top-1 agreement (the greedy acceptance proxy) with the verifier; for a
    feature draft also the agreement when it reads its own predicted features
    (``heldout_top1_own``: its second and later proposals)."""
    import torch

    unroll = 1 if draft.fc is None else 2
    kls, agree, total = [], [0] * unroll, 0
    with torch.no_grad():
        for ids in held[: batches * 8].split(8):
            ids = ids.to(device)
            feats, t = teacher(verifier, ids, autocast)
            passes = student(draft, ids, feats, autocast, unroll)
            kls.append(float(kl_loss(t, passes[0][1])))
            for i, (_, s) in enumerate(passes):
                agree[i] += int((t.argmax(-1) == s.argmax(-1)).sum())
            total += ids.numel()
    out = {"heldout_kl": round(sum(kls) / max(len(kls), 1), 4),
           "heldout_top1": round(agree[0] / max(total, 1), 4)}
    if unroll > 1:
        out["heldout_top1_own"] = round(agree[1] / max(total, 1), 4)
    return out


def build_corpus(args, verifier, tokenizer) -> dict:
    """Training and held-out sequences, cached in ``--corpus-cache`` when given."""
    import torch

    cache = Path(args.corpus_cache) if args.corpus_cache else None
    if cache is not None and cache.is_file():
        data = torch.load(cache)
        if data["seq_len"] == args.seq_len:
            return data
    kinds = set(args.corpus.split(","))
    unknown = kinds - {"code", "chat"}
    if unknown:
        raise ConfigError(f"--corpus takes 'code', 'chat' or 'code,chat'; got {sorted(unknown)}")
    train, held, describe = [], [], {}
    if "code" in kinds:
        train += code_tokens(tokenizer, "train", args.code_tokens)
        held += code_tokens(tokenizer, "heldout", 16 * args.seq_len)
        describe["code_tokens"] = len(train)
    if "chat" in kinds and args.self_generate:
        base = chat_prompts()
        prompts = (base * math.ceil(args.self_generate / len(base)))[: args.self_generate]
        seqs = self_generated(verifier, tokenizer, prompts, new_tokens=args.gen_tokens,
                              batch=args.gen_batch, temperature=args.gen_temperature,
                              seed=args.seed, progress=not args.quiet)
        # hold out a tenth of the prompts with every answer sampled for them (more answers
        # than prompts repeat the prompts, and a held-out prompt must not be trained on)
        cut = max(1, min(len(seqs), len(base)) // 10)
        heldout = [i % len(base) < cut for i in range(len(seqs))]
        chat_train = [t for s, h in zip(seqs, heldout) if not h for t in s]
        train += chat_train
        held += [t for s, h in zip(seqs, heldout) if h for t in s]
        describe["chat_tokens"] = len(chat_train)
        describe["chat_sequences"] = len(seqs)
    data = {"seq_len": args.seq_len, "describe": describe,
            "train": chunks(train, args.seq_len),
            "heldout": chunks(held, args.seq_len)}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, cache)
    return data


ARCHITECTURE = {"depth": 2, "width": 0, "intermediate_size": 0, "kv_heads": 0, "init": "select",
                "features": False, "layers": None}
"""The options that shape a new draft, with their defaults; ``--resume`` keeps the resumed
draft's shape instead, so it refuses any of them set."""


def configure(p) -> None:
    p.add_argument("--verifier", default="smollm2-135m", help="verifier zoo name or HF folder")
    p.add_argument("--out", required=True, help="folder to write the draft to")
    p.add_argument("--depth", type=int, default=ARCHITECTURE["depth"],
                   help="number of draft layers")
    p.add_argument("--width", type=int, default=ARCHITECTURE["width"],
                   help="draft width (default: the verifier's)")
    p.add_argument("--intermediate-size", type=int, default=ARCHITECTURE["intermediate_size"],
                   help="MLP size (default: the verifier's ratio to width)")
    p.add_argument("--kv-heads", type=int, default=ARCHITECTURE["kv_heads"],
                   help="key/value heads (default: the verifier's grouping)")
    p.add_argument("--init", choices=["select", "fresh"], default=ARCHITECTURE["init"],
                   help="copy verifier layers (select) or start from random ones (fresh)")
    p.add_argument("--features", action="store_true",
                   help="a feature draft: it also reads the verifier's final hidden states "
                        "(EAGLE-style; runs with the hf-fast verifier and draft)")
    p.add_argument("--unroll", type=int, default=1,
                   help="feature drafts: training passes, each later one fed the draft's own "
                        "predicted features (2 matches how it decodes from its 2nd proposal)")
    p.add_argument("--layers", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="verifier layers to copy with --init select (default: evenly spread)")
    p.add_argument("--resume", default=None, metavar="DRAFT",
                   help="train an existing draft further (zoo name or folder); its architecture "
                        "is kept, so --depth, --width, --init, --features and their kin must "
                        "stay unset")
    p.add_argument("--corpus", default="code,chat", help="'code', 'chat' or 'code,chat'")
    p.add_argument("--code-tokens", type=int, default=2_000_000)
    p.add_argument("--self-generate", type=int, default=800,
                   help="chat-style prompts the verifier answers to make training text")
    p.add_argument("--gen-tokens", type=int, default=256)
    p.add_argument("--gen-batch", type=int, default=200)
    p.add_argument("--gen-temperature", type=float, default=0.8)
    p.add_argument("--corpus-cache", default=None, help="file to keep the tokenised corpus in")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop early after this long")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.0,
                   help="peak learning rate (default: 3e-4 with --init select or --resume, "
                        "1e-3 for fresh layers)")
    p.add_argument("--teacher-dtype", choices=["bfloat16", "float32"], default="bfloat16")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.depth < 1:
        raise ConfigError("--depth must be >= 1")
    if args.steps < 1 or args.batch < 1 or args.seq_len < 2:
        raise ConfigError("--steps and --batch must be >= 1 and --seq-len >= 2")
    if args.resume and any(getattr(args, k) != v for k, v in ARCHITECTURE.items()):
        raise ConfigError("--resume keeps the draft's own architecture; drop --depth, --width, "
                          "--intermediate-size, --kv-heads, --init, --features and --layers")
    if args.unroll < 1 or (args.unroll > 1 and not (args.features or args.resume)):
        raise ConfigError("--unroll must be >= 1, and above 1 only with --features (a token-only "
                          "draft has no predicted features to feed back)")
    args.command_line = "thrifty distill " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "distill" else getattr(args, "command_line", "")
    distill(args)
    return 0
