"""``thrifty distill``: make a draft for a verifier by distillation on its own soft targets.

The draft (see :mod:`thrifty_hf.drafts`) starts from layers selected from the verifier (same
width) or freshly initialised ones (any width, with projections to the shared embedding), and
learns to match the verifier's next-token distribution: the loss is KL(p_verifier || q_draft) at
every position. Acceptance in speculative decoding is exactly the overlap of those two
distributions, so this is the objective that matters, not perplexity.

Corpus: Python standard-library source (the interpreter's own, so it is always there offline;
files whose path hashes to 0 mod 10 are held out for evaluation and benchmarks), the text files
of a folder (``--files``, split the same way; ``bench/draft_corpus.py`` builds one of several
languages and prose) and the verifier's own sampled answers to built-in chat-style prompts
(code and prose requests).

A feature draft (``--features``) also learns the verifier's final hidden state: it is fed the
verifier's features (shifted by one token, as at decoding time) and trained on KL plus a
smooth-L1 loss between its predicted features and the verifier's. With ``--unroll 2`` a second
pass feeds the draft its own predicted features, as it is fed from its second proposal on.
"""

from __future__ import annotations

import hashlib
import math
import os
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


def held_out(rel: str) -> bool:
    """Whether the file at relative path ``rel`` is held out (1 in 10, by a hash of the path):
    a file stays on its side of the split whatever else its folder holds."""
    return int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 10 == 0


def stdlib_files(split: str = "train") -> list[Path]:
    """Python standard-library sources; ``split`` is ``"train"`` or ``"heldout"`` (1 in 10)."""
    root = Path(sysconfig.get_paths()["stdlib"])

    def skipped(rel: str) -> bool:
        return "site-packages" in rel or "/test" in rel or rel.startswith("test")

    out = []
    # a pruned walk: the installed packages under site-packages are most of the tree
    for folder, dirs, files in os.walk(root):
        here = Path(folder).relative_to(root).as_posix()
        dirs[:] = [d for d in dirs if not skipped(d if here == "." else f"{here}/{d}")]
        for name in files:
            rel = name if here == "." else f"{here}/{name}"
            if not name.endswith(".py") or skipped(rel):
                continue
            if held_out(rel) == (split == "heldout"):
                out.append(root / rel)
    return sorted(out)


MANIFEST = "SOURCES.json"
"""A corpus folder's description of its sources (``bench/draft_corpus.py`` writes one at the
top): not training text."""


def folder_files(root: Path, split: str = "train") -> list[Path]:
    """Every file under ``root`` but its top-level :data:`MANIFEST`, sorted by relative path,
    split as :func:`stdlib_files` splits: ``split`` is ``"train"`` or ``"heldout"``."""
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return [root / rel for rel in rels
            if rel != MANIFEST and held_out(rel) == (split == "heldout")]


def code_tokens(tokenizer, split: str, limit: int) -> list[int]:
    """Up to ``limit`` tokens of standard-library code (files joined by blank lines)."""
    return read_tokens(tokenizer, stdlib_files(split), limit)


def files_tokens(tokenizer, root: Path, split: str, limit: int) -> list[int]:
    """Up to ``limit`` tokens of the files under ``root`` (``--files``), in path order."""
    return read_tokens(tokenizer, folder_files(root, split), limit)


def read_tokens(tokenizer, paths, limit: int) -> list[int]:
    """Up to ``limit`` tokens of ``paths`` read as UTF-8 and joined by blank lines; a file that
    does not decode is skipped."""
    ids: list[int] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        ids += tokenizer.encode(text + "\n\n", add_special_tokens=False)
        if len(ids) >= limit:
            break
    return ids[:limit]


FOLLOW_UPS = ["Can you say that more simply?", "Why is that so?", "Give me a concrete example.",
              "What is the most important point here?", "Can you make it shorter?",
              "Tell me more about the second part.", "Is there another way to do it?",
              "Thanks! What should I look at next?"]
"""The follow-up requests of multi-turn self-generation (``--chat-turns``), one a turn."""


def self_generated(model, tokenizer, prompts, *, new_tokens: int, batch: int, temperature: float,
                   seed: int, turns: int = 1, progress: bool = True) -> list[list[int]]:
    """The verifier's own conversations (chat template applied), every token of each, its
    answers sampled at ``temperature`` (top-p 0.95) or, at 0, greedy: a prompt answered, then
    ``turns - 1`` follow-up requests (:data:`FOLLOW_UPS`, by prompt and turn) answered in turn,
    so that the draft also learns replies that read earlier turns (a served chat model answers
    whole conversations, not one request)."""
    import torch

    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    chats = [[{"role": "user", "content": p}] for p in prompts]
    for turn in range(turns):
        if turn:
            for i, chat in enumerate(chats):
                chat.append({"role": "user",
                             "content": FOLLOW_UPS[(i + turn - 1) % len(FOLLOW_UPS)]})
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                 for c in chats]
        out = _answered(model, tokenizer, texts, new_tokens, batch, temperature,
                        f"self-generate, turn {turn + 1} of {turns}" if turns > 1
                        else "self-generate", progress)
        if turn + 1 < turns:  # the next turn's conversation reads this answer
            for chat, (ids, start) in zip(chats, out):
                chat.append({"role": "assistant",
                             "content": tokenizer.decode(ids[start:], skip_special_tokens=True)})
    return [ids for ids, _ in out]


def _answered(model, tokenizer, texts, new_tokens: int, batch: int, temperature: float,
              desc: str, progress: bool) -> list[tuple[list[int], int]]:
    """Each text's tokens and the verifier's answer to it (sampled, or greedy at temperature
    0), up to its end of turn, as (ids, where the answer starts)."""
    import torch
    from tqdm.auto import tqdm

    how = (dict(do_sample=True, temperature=temperature, top_p=0.95) if temperature > 0
           else dict(do_sample=False))
    out = []
    for i in tqdm(range(0, len(texts), batch), desc=desc, disable=not progress):
        enc = tokenizer(texts[i: i + batch], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, **how, max_new_tokens=new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        for row, mask in zip(gen, enc["attention_mask"]):
            ids = row[int((mask == 0).sum()):].tolist()
            start = int(mask.sum())
            eos = tokenizer.eos_token_id
            if eos in ids[start:]:
                ids = ids[: ids.index(eos, start) + 1]
            out.append((ids, start))
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

    from .drafts import soft_cap

    with torch.no_grad(), autocast:
        feats = verifier.base_model(input_ids=ids, use_cache=False).last_hidden_state
        return feats, soft_cap(verifier.config, verifier.get_output_embeddings()(feats))


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


def init_draft(verifier, *, depth: int, width: int, init: str, layers=None, seed: int = 0,
               intermediate_size: int | None = None, kv_heads: int | None = None,
               features: bool = False):
    """A draft of ``depth`` of the verifier family's layers at ``width``: verifier layers copied
    key for key with everything else of its base model but the embedding (``init="select"``:
    the final norm, and whatever the family keeps outside its layers), or fresh ones
    (``"fresh"``). Fresh layers at the verifier's width take its final norm; at another width,
    the projections start as an isometry, so the untrained draft already carries the
    embedding through to the verifier's head."""
    import torch

    from .drafts import (attach_embedding, check_family, draft_config, layer_list,
                         new_draft, select_layers)

    vcfg = verifier.config
    check_family(vcfg)
    n = vcfg.num_hidden_layers
    if init not in ("select", "fresh"):
        raise ConfigError(f"--init must be 'select' or 'fresh'; got {init!r}")
    if init == "select" and width != vcfg.hidden_size:
        raise ConfigError(f"--init select copies verifier layers, so --width must be the "
                          f"verifier's ({vcfg.hidden_size}); use --init fresh for {width}")
    if layers is not None and init == "fresh":
        raise ConfigError("--layers names the verifier layers --init select copies; drop it "
                          "with --init fresh")
    layers = list(layers or select_layers(n, depth))
    if len(layers) != depth or not all(0 <= i < n for i in layers):
        raise ConfigError(f"--layers must name {depth} layers in 0...{n - 1}; got {layers}")
    cfg = draft_config(vcfg, width=width, depth=depth, intermediate_size=intermediate_size,
                       num_kv_heads=kv_heads, features=features, layers=layers)
    torch.manual_seed(seed)
    draft = new_draft(cfg).float()
    base = verifier.base_model
    list_name, _ = layer_list(base)
    skip = {name + "." for name, m in base.named_modules() if m is base.get_input_embeddings()}
    source = {k: v.detach().float().cpu() for k, v in base.state_dict().items()
              if not any(k.startswith(p) for p in skip)}
    state = {}
    for key, value in source.items():
        if not key.startswith(list_name + "."):
            state[key] = value  # the final norm and the like
        elif init == "select":
            index, rest = key[len(list_name) + 1:].split(".", 1)
            for dst, src in enumerate(layers):
                if src == int(index):
                    state[f"{list_name}.{dst}.{rest}"] = value
    own = draft.model.state_dict()
    if width != vcfg.hidden_size:
        state = {}
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise ConfigError(f"verifier weights {wrong[:4]} do not fit a {vcfg.model_type} draft "
                          f"of {depth} layers; report this with the verifier's config.json")
    with torch.no_grad():
        draft.model.load_state_dict(state, strict=False)
        embed = vcfg.hidden_size
        if width != embed:
            q, _ = torch.linalg.qr(torch.randn(max(width, embed), min(width, embed)))
            iso = q if width > embed else q.T  # [width, embed]
            if draft.proj_in is not None:
                draft.proj_in.weight.copy_(iso)
            draft.proj_out.weight.copy_(iso.T)
    attach_embedding(draft, verifier)
    return draft, layers if init == "select" else []


def distill(args) -> Path:
    """Run one distillation as the ``thrifty distill`` arguments describe; returns the folder."""
    import torch
    from tqdm.auto import tqdm

    from .drafts import check_family, save_draft
    from .models import load_verifier
    from .ranking import rank, save_ranking

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.teacher_dtype]
    verifier, tokenizer = load_verifier(args.verifier, device, tdtype)
    check_family(verifier.config)  # before the corpus, which can take minutes to build
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
        architecture = {"family": verifier.config.model_type, "depth": args.depth,
                        "width": width, "init": args.init,
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
    save_ranking(out, *rank(train, vcfg.vocab_size),
                 {"corpus": corpus["describe"], "tokens": int(train.numel())})
    print(f"saved {out}: {training['steps']} steps in {seconds:.0f} s, held-out KL "
          f"{stats['heldout_kl']:.3f}, top-1 agreement {stats['heldout_top1']:.3f}, expected "
          f"TAR {stats['expected_tar']:.2f} at lookahead {LOOKAHEAD}")
    if "warning" in stats:
        print(f"warning: {stats['warning']}", file=sys.stderr)
    return out


LOOKAHEAD = 4
"""The lookahead at which ``distill`` reports a draft's expected TAR."""

COLLAPSED_TAR = 1.1
"""An expected TAR below this is a collapsed draft: almost every proposal is rejected, so
speculative decoding with it costs the draft's time and saves nothing."""


def expected_tar(agreement: float, gamma: int = LOOKAHEAD, later: float | None = None) -> float:
    """Tokens per verifier step of greedy speculative decoding with lookahead ``gamma`` when
    the first proposal is accepted with probability ``agreement`` (the held-out top-1
    agreement) and each later one with ``later`` (default: the same; a feature draft's later
    proposals read its own predicted features): 1 + a + a b + ... + a b^(gamma - 1)."""
    later = agreement if later is None else later
    return 1 + sum(agreement * later ** i for i in range(gamma))


def collapse_warning(stats: dict) -> str | None:
    """The report of a draft whose acceptance collapsed (expected TAR near 1), or None."""
    tar = stats["expected_tar"]
    if tar >= COLLAPSED_TAR:
        return None
    return (f"the draft's acceptance collapsed: top-1 agreement {stats['heldout_top1']:.3f} "
            f"with the verifier on held-out text, expected TAR {tar:.2f} at lookahead "
            f"{LOOKAHEAD} (1.0 = every proposal rejected), so speculative decoding with it is "
            f"slower than the verifier alone. Train longer (--steps), start from verifier "
            f"layers (--init select) or use more layers (--depth)")


def resume_draft(name: str, verifier):
    """A shipped or saved draft (zoo name or folder) to train further, in float32, with its
    manifest: its architecture is kept, and its training is recorded under the new one's."""
    import torch

    from .drafts import load_draft, shared_names
    from .zoo import resolve

    where = resolve(name)
    if where.kind != "draft":
        raise ConfigError(f"--resume takes a thrifty draft (a zoo draft name or a folder "
                          f"`thrifty distill` wrote); {name!r} is a full Hugging Face model")
    draft = load_draft(where.path, verifier, device="cpu", dtype=torch.float32)
    shared = shared_names(draft)
    for key, param in draft.named_parameters():
        param.requires_grad_(key not in shared)
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
    out["expected_tar"] = round(expected_tar(agree[0] / max(total, 1),
                                             later=out.get("heldout_top1_own")), 4)
    warning = collapse_warning(out)
    if warning:
        out["warning"] = warning
    return out


def save_corpus(data: dict, path: Path) -> None:
    """Write a corpus as safetensors (the token tensors) with its description in the file's
    metadata: no pickle, so a cache file handed over cannot run code. Atomic: a temporary
    file renamed into place."""
    import json
    import os

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    save_file({"train": data["train"].contiguous(), "heldout": data["heldout"].contiguous()},
              str(tmp), metadata={"thrifty_corpus": json.dumps(
                  {"seq_len": data["seq_len"], "describe": data["describe"]})})
    os.replace(tmp, path)


def load_corpus(path: Path) -> dict:
    """A corpus :func:`save_corpus` wrote; a :class:`ConfigError` naming the file for anything
    else (an old pickled cache included: it is never unpickled)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["thrifty_corpus"])
            data = {"train": f.get_tensor("train"), "heldout": f.get_tensor("heldout"),
                    "seq_len": int(meta["seq_len"]), "describe": dict(meta["describe"])}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--corpus-cache {path} is not a corpus cache thrifty distill wrote "
                          f"(safetensors with a thrifty_corpus description): {exc}. Delete it "
                          f"or point --corpus-cache at a new file") from exc
    if data["train"].dim() != 2 or data["train"].shape[1] != data["seq_len"]:
        raise ConfigError(f"--corpus-cache {path} holds sequences of shape "
                          f"{tuple(data['train'].shape)}, not [N, {data['seq_len']}]; delete it")
    return data


CORPORA = ("code", "files", "chat")
"""The kinds of training text ``--corpus`` names."""


def corpus_kinds(args) -> set[str]:
    """The kinds ``--corpus`` names, checked with the options they need."""
    kinds = set(args.corpus.split(","))
    unknown = kinds - set(CORPORA)
    if unknown:
        raise ConfigError(f"--corpus takes a comma-separated list of {', '.join(CORPORA)} "
                          f"(e.g. code,chat); got {sorted(unknown)}")
    if ("files" in kinds) != bool(args.files):
        raise ConfigError("--corpus files and --files DIR go together: --files names the "
                          "folder of text files that --corpus files trains on (bench/"
                          "draft_corpus.py builds one); pass both or neither")
    root = Path(args.files) if args.files else None
    if root and not (root.is_dir() and any(p.is_file() for p in root.rglob("*"))):
        raise ConfigError(f"--files {root} is not a folder with files in it; build one with "
                          f"bench/draft_corpus.py --out {root}, or drop 'files' from --corpus")
    if args.chat_prompts and "chat" not in kinds:
        raise ConfigError("--chat-prompts names the requests of --corpus chat; add chat to "
                          "--corpus or drop --chat-prompts")
    chat_requests(args)  # a bad file is refused before the verifier loads
    return kinds


def chat_requests(args) -> list[str]:
    """The requests the verifier answers for ``--corpus chat``: the lines of ``--chat-prompts``
    (the prompts a draft will serve, say), else the built-in :func:`chat_prompts`."""
    if not args.chat_prompts:
        return chat_prompts()
    path = Path(args.chat_prompts)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--chat-prompts {path} is not a readable UTF-8 text file: "
                          f"{exc}") from exc
    requests = [line for line in lines if line]
    if len(requests) < 2:
        raise ConfigError(f"--chat-prompts {path} has {len(requests)} request(s); it needs one "
                          f"a line and at least 2 (the first tenth, and at least one, is held out)")
    return requests


def build_corpus(args, verifier, tokenizer) -> dict:
    """Training and held-out sequences, cached in ``--corpus-cache`` when given."""
    cache = Path(args.corpus_cache) if args.corpus_cache else None
    if cache is not None and cache.is_file():
        # a cache is never rebuilt over: it may hold hours of self-generated answers
        data = load_corpus(cache)
        if data["seq_len"] != args.seq_len:
            raise ConfigError(f"--corpus-cache {cache} holds sequences of {data['seq_len']} "
                              f"tokens, not --seq-len {args.seq_len}; pass --seq-len "
                              f"{data['seq_len']} to train on it, or a new --corpus-cache file "
                              f"to build a corpus of {args.seq_len}-token sequences")
        return data
    kinds = corpus_kinds(args)
    if "chat" in kinds and args.self_generate and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"verifier {args.verifier!r} has no chat template, so it cannot answer "
                          f"the chat prompts of --corpus chat; pass --corpus code (or "
                          f"--self-generate 0), or save a chat template with its tokenizer")
    train, held, describe = [], [], {}
    if "code" in kinds:
        train += code_tokens(tokenizer, "train", args.code_tokens)
        held += code_tokens(tokenizer, "heldout", 16 * args.seq_len)
        describe["code_tokens"] = len(train)
    if "files" in kinds:
        files_train = files_tokens(tokenizer, Path(args.files), "train", args.files_tokens)
        train += files_train
        held += files_tokens(tokenizer, Path(args.files), "heldout", 16 * args.seq_len)
        describe["files_tokens"] = len(files_train)
    if "chat" in kinds and args.self_generate:
        base = chat_requests(args)
        prompts = (base * math.ceil(args.self_generate / len(base)))[: args.self_generate]
        seqs = self_generated(verifier, tokenizer, prompts, new_tokens=args.gen_tokens,
                              batch=args.gen_batch, temperature=args.gen_temperature,
                              turns=args.chat_turns,
                              seed=args.seed, progress=not args.quiet)
        # hold out a tenth of the prompts with every answer made for them (more answers
        # than prompts repeat the prompts, and a held-out prompt must not be trained on)
        cut = max(1, min(len(seqs), len(base)) // 10)
        heldout = [i % len(base) < cut for i in range(len(seqs))]
        chat_train = [t for s, h in zip(seqs, heldout) if not h for t in s]
        train += chat_train
        held += [t for s, h in zip(seqs, heldout) if h for t in s]
        describe["chat_tokens"] = len(chat_train)
        describe["chat_sequences"] = len(seqs)
        describe["chat_temperature"] = args.gen_temperature
        if args.chat_turns > 1:
            describe["chat_turns"] = args.chat_turns
        if args.chat_prompts:
            describe["chat_prompts"] = f"{Path(args.chat_prompts).name}: {len(base)} requests"
    data = {"seq_len": args.seq_len, "describe": describe,
            "train": chunks(train, args.seq_len),
            "heldout": chunks(held, args.seq_len)}
    if cache is not None:
        save_corpus(data, cache)
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
    p.add_argument("--corpus", default="code,chat",
                   help="comma-separated kinds of training text: code (the Python standard "
                        "library), files (the text files under --files) and chat (the "
                        "verifier's answers to chat requests: built-in or --chat-prompts)")
    p.add_argument("--code-tokens", type=int, default=2_000_000)
    p.add_argument("--files", default=None, metavar="DIR",
                   help="folder of text files for --corpus files, read in path order, 1 file "
                        "in 10 held out (bench/draft_corpus.py builds one)")
    p.add_argument("--files-tokens", type=int, default=12_000_000,
                   help="most training tokens --corpus files takes, from the first files in "
                        "path order")
    p.add_argument("--self-generate", type=int, default=800,
                   help="chat-style prompts the verifier answers to make training text")
    p.add_argument("--chat-prompts", default=None, metavar="FILE",
                   help="the requests --corpus chat answers, one a line (default: built-in "
                        "requests on 25 topics)")
    p.add_argument("--chat-turns", type=int, default=1,
                   help="turns of each self-generated conversation: after the first answer, "
                        "built-in follow-up requests answered in turn")
    p.add_argument("--gen-tokens", type=int, default=256, help="most tokens of each answer")
    p.add_argument("--gen-batch", type=int, default=200)
    p.add_argument("--gen-temperature", type=float, default=0.8,
                   help="temperature of the verifier's self-generated answers (top-p 0.95); 0: "
                        "its greedy answers, the text greedy decoding serves (one answer a "
                        "request: more --self-generate than requests repeats them)")
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
    if args.chat_turns < 1 or args.gen_tokens < 1:
        raise ConfigError("--chat-turns and --gen-tokens must be >= 1")
    if not args.gen_temperature >= 0:  # NaN too
        raise ConfigError(f"--gen-temperature must be >= 0 (0: the verifier's greedy answers); "
                          f"got {args.gen_temperature}")
    corpus_kinds(args)  # before the verifier loads
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
