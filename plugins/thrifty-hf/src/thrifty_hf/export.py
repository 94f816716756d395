"""``thrifty export-draft``: a thrifty draft as a complete Hugging Face checkpoint.

A thrifty draft stores only its own layers and borrows its verifier's embedding and LM head
(:mod:`thrifty_hf.drafts`), which no other engine knows how to do. The export writes the draft
as the stock causal-LM class of its layers' family (the verifier's: ``LlamaForCausalLM`` for
the shipped SmolLM2 drafts):
config, safetensors weights with the embedding and LM head in them, the verifier's tokenizer
files and generation config. ``AutoModelForCausalLM.from_pretrained`` loads it without thrifty,
and vLLM's ``draft_model`` method and transformers' ``assistant_model=`` take it as it is.

A draft narrower or wider than its verifier has ``proj_in`` [W x E] after the embedding and
``proj_out`` [E x W] before the head. Both are linear maps next to a linear map, so they fold
away: an embedding row e becomes ``e @ proj_in^T`` (embedding' = E proj_inᵀ, [V x W]) and the
head h becomes ``h @ proj_out`` ([V x W]). The stock model then computes the same logits as the
thrifty draft, up to float rounding, which a probe checks before anything is written.

A feature draft (EAGLE-style) also reads the verifier's hidden state, which a stock causal LM
cannot be given, and no engine's EAGLE loader computes what thrifty's feature draft computes
(see :data:`EAGLE_DIFFERENCES`): it is refused rather than written as a file that loads and then
proposes garbage.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

from thrifty.atomic import replace_folder
from thrifty.errors import ConfigError, IncompatibleModelsError, ModelFormatError
from thrifty.records import EngineSettings

EAGLE_DIFFERENCES = (
    "layer 0 of vLLM's and SGLang's EAGLE drafts has no input norm (thrifty's normalises "
    "fc's output)",
    "their drafts hand the last layer's residual sum to the LM head with no final norm "
    "(thrifty's applies one)",
    "their fc has the verifier's width on both sides (thrifty's may widen or narrow and "
    "project back with proj_out)",
)
"""Where thrifty's feature draft and the EAGLE drafts vLLM (``method: "eagle"``,
``llama_eagle.py``) and SGLang (``llama_eagle.py``) load compute different functions. Both
engines hand the draft the verifier's last hidden state after the final norm and combine it as
``fc(cat(embed, hidden))``, as thrifty does; the differences are the norms, which are not linear
and cannot be folded into weights."""


def is_thrifty_draft(model: str) -> Path | None:
    """The folder of ``model`` when it names a thrifty draft (zoo name or folder), else None.
    Reads no weights and prepares no zoo model."""
    from .zoo import DRAFT_MANIFEST, shipped_drafts

    shipped = shipped_drafts()
    if model in shipped:
        return shipped[model]
    path = Path(model).expanduser()
    return path if (path / DRAFT_MANIFEST).is_file() else None


def is_feature_draft(folder: Path) -> bool:
    from .drafts import CONFIG

    return bool(json.loads((folder / CONFIG).read_text()).get("thrifty_features", False))


def refuse_feature_draft(name: str) -> None:
    raise IncompatibleModelsError(
        f"draft {name!r} is a feature draft: it reads the verifier's hidden states, which a "
        f"stock causal LM is never given, and the EAGLE drafts vLLM and SGLang load compute a "
        f"different function ({'; '.join(EAGLE_DIFFERENCES)}). Export a token draft instead "
        f"(one distilled without --features); docs/interop.md says more")


def default_out(model: str) -> str:
    """Where ``thrifty select`` tells the user to export ``model``: ``<name>-hf``."""
    return f"{Path(model).name}-hf"


def engine_settings(options) -> EngineSettings | None:
    """The ``hf`` draft in vLLM and transformers (the record's ``export``): a thrifty draft
    after ``thrifty export-draft``, a Hugging Face folder as it is; None for a feature draft."""
    from .zoo import ZOO

    model = options["model"]
    folder = is_thrifty_draft(model)
    prepare = ""
    if folder is not None:
        if is_feature_draft(folder):
            return None
        where = default_out(model)
        prepare = f"thrifty export-draft {model} --out {where}"
    else:
        where = str(ZOO[model].folder()) if model in ZOO else model
    # transformers reads an assistant's lookahead from the assistant's own generation config;
    # a constant schedule and no confidence cut-off make it propose γ tokens every step, as
    # the lookahead thrifty chose assumes
    return EngineSettings(
        vllm={"method": "draft_model", "model": where},
        transformers={"assistant_model": where},
        assistant={"num_assistant_tokens_schedule": "constant",
                   "assistant_confidence_threshold": 0.0},
        transformers_gamma="num_assistant_tokens", prepare=prepare)


def stock_model(draft):
    """The token draft as its family's stock causal LM (float32 on the CPU), projections folded
    into the embedding and LM head; checked against the draft on a probe before it is returned.

    At the verifier's width this is :func:`thrifty_hf.drafts.standalone`. Otherwise the stock
    model is the family's at width W, its embedding the draft's embedded-and-projected vocabulary
    (divided by the stock embedding's own ``embed_scale`` where the family scales inside the
    embedding module, as Gemma 3 does) and its head ``head @ proj_out``.
    """
    import torch

    from .drafts import _unchosen, standalone

    if draft.fc is not None:
        refuse_feature_draft(getattr(draft.config, "name_or_path", "") or "this draft")
    if draft.proj_in is None and draft.proj_out is None:
        return _checked(standalone(draft), draft)
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(draft.config)
    for key in ("thrifty_embed_size", "thrifty_features"):
        delattr(cfg, key)
    cfg.architectures, cfg.tie_word_embeddings = None, False
    _unchosen(cfg)
    stock = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    f32 = {k: v.detach().to("cpu", torch.float32) for k, v in draft.model.state_dict().items()}
    emb = stock.get_input_embeddings()
    key = next(n for n, m in stock.base_model.named_modules() if m is emb) + ".weight"
    with torch.no_grad():
        vocab = torch.arange(draft.config.vocab_size)
        rows = draft.get_input_embeddings()(vocab.to(draft.lm_head.weight.device)).cpu().float()
        rows = torch.nn.functional.linear(rows, draft.proj_in.weight.cpu().float())
        f32[key] = rows / getattr(emb, "embed_scale", 1.0)
        stock.base_model.load_state_dict(f32)
        head = draft.lm_head.weight.detach().cpu().float()
        if draft.proj_out is not None:
            head = head @ draft.proj_out.weight.detach().cpu().float()
        stock.get_output_embeddings().weight.copy_(head)
    return _checked(stock.eval(), draft)


def _checked(stock, draft):
    """``stock`` if its logits are the draft's (float32, as :func:`export_draft` loads it) on a
    probe of the vocabulary's ids, else a ModelFormatError: an export never computes something
    the draft does not."""
    import torch

    v = draft.config.vocab_size
    ids = (torch.arange(24) * 7919 % v)[None]
    dev = draft.lm_head.weight.device
    with torch.no_grad():
        want = draft(input_ids=ids.to(dev)).logits.float().cpu()
        got = stock(input_ids=ids).logits
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())):
        raise ModelFormatError(
            f"the {type(stock).__name__} written for this draft computes other logits than the "
            f"draft (largest difference {float((got - want).abs().max()):.3g}); the family "
            f"{draft.config.model_type!r} keeps something export-draft does not fold. Run the "
            f"draft through thrifty (plugin 'hf' or 'hf-fast')")
    return stock


def export_draft(model: str, out, *, verifier: str | None = None, dtype: str = "float32") -> Path:
    """Write the draft ``model`` (zoo name or thrifty draft folder) to ``out`` as a complete
    Hugging Face checkpoint. ``verifier``: the verifier whose embedding, tokenizer and
    generation config go in (default: the one the draft was distilled for). Written to a
    temporary folder beside ``out`` and renamed into place, so ``out`` is whole or absent."""
    import torch
    from transformers import GenerationConfig

    from .drafts import load_draft, read_manifest
    from .models import load_verifier

    folder = is_thrifty_draft(model)
    if folder is None:
        raise ConfigError(f"{model!r} is not a thrifty draft (a zoo draft name or a folder with "
                          f"thrifty.json); a Hugging Face folder is a checkpoint already")
    if is_feature_draft(folder):
        refuse_feature_draft(model)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"--dtype must be float32, bfloat16 or float16; got {dtype!r}")
    out = Path(out).expanduser()
    if out.exists():
        raise ConfigError(f"{out} exists; export-draft writes a new folder (remove it or pick "
                          f"another --out)")
    vname = verifier or read_manifest(folder)["verifier"]["name"]
    vmodel, tokenizer = load_verifier(vname, torch.device("cpu"), torch.float32)
    draft = load_draft(folder, vmodel, device="cpu", dtype=torch.float32)
    stock = stock_model(draft).to(getattr(torch, dtype))
    try:
        generation = GenerationConfig.from_pretrained(vmodel.name_or_path)
    except OSError:
        generation = GenerationConfig.from_model_config(vmodel.config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the checkpoint is an ordinary folder
    try:
        stock.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        generation.save_pretrained(tmp)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def configure(p) -> None:
    p.add_argument("draft", help="thrifty draft: zoo name (smollm2-draft-l1) or folder")
    p.add_argument("--out", required=True, help="folder to write (must not exist)")
    p.add_argument("--verifier", help="verifier model whose embedding, tokenizer and generation "
                                      "config go in (default: the one in the draft's "
                                      "thrifty.json)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="weights' dtype in the checkpoint (default: float32)")


def run(args) -> int:
    out = export_draft(args.draft, args.out, verifier=args.verifier, dtype=args.dtype)
    print(f"wrote {out}: a Hugging Face checkpoint (AutoModelForCausalLM.from_pretrained, "
          f"vLLM draft_model, transformers assistant_model=)")
    return 0
