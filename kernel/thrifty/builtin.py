"""Built-in commands, registered through the same entry-point path as any plugin:
``plugins`` and ``generate``."""

from __future__ import annotations

import json
import sys

from .hookspecs import hookimpl
from .records import CommandSpec


def _configure_plugins(p) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list")


def _run_plugins(args) -> int:
    from .cli import print_table
    from .registry import registry

    infos = registry().plugins()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    rows = [{"name": i.name, "distribution": i.distribution, "version": i.version,
             "status": i.status,
             "provides": "; ".join([*(f"{f}: {', '.join(n)}" for f, n in i.provides.items()),
                                    *([i.error] if i.error else [])])} for i in infos]
    print_table(rows, ["name", "distribution", "version", "status", "provides"], False)
    return 0


def _configure_generate(p) -> None:
    p.add_argument("prompt", nargs="*", help="prompt text (repeat for a batch)")
    p.add_argument("--config", help="TOML pipeline file with a [speculative] table")
    p.add_argument("--verifier", metavar="NAME[,KEY=VALUE]",
                   help="registered verifier (default: the one of highest priority; `thrifty "
                        "plugins` lists them), KEY=VALUE sets any option it declares, e.g. "
                        "hf-fast,compile=true")
    p.add_argument("--model", help="the verifier's model (default: the verifier's own)")
    p.add_argument("--draft", action="append", default=[], metavar="NAME[:VALUE][,KEY=VALUE]",
                   help="draft by registered name; VALUE is its first required option (the "
                        "model of hf, the weights of pairconnect), KEY=VALUE sets any option it "
                        "declares, e.g. ngram,max_ngram=4 (repeatable; the first is used)")
    p.add_argument("--prompts-file", help="file with one prompt per line")
    p.add_argument("--lookahead", default=None, metavar="GAMMA|DEPTHxBRANCH[:NODES]",
                   help="tokens drafted per step (γ), or a token tree such as 4x2:8 (depth 4, "
                        "up to 2 children a node, 8 nodes)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows decoded at once; each takes the next prompt as soon as its output "
                        "is done (default: all prompts in one batch)")
    p.add_argument("--no-draft", action="store_true", help="target-only decoding")
    p.add_argument("--json", action="store_true", help="print texts and metrics as JSON")


def pipeline_from_args(args):
    """The pipeline that ``generate``-style flags (or ``--config``) describe, and the checked
    ``[generate]`` and ``[sampling]`` tables of the config (empty without one)."""
    from .errors import ConfigError
    from .pipeline import from_config, load_config, pipeline, run_settings
    from .refs import plugin_ref
    from .registry import registry
    from .speculative.tree import parse_lookahead

    if args.config:
        config = load_config(args.config)
        tables = run_settings(config, args.config)
        try:
            pipe = from_config(config)
        except ConfigError as exc:
            raise type(exc)(f"{args.config}: {exc}") from None
        return pipe, tables["generate"], tables["sampling"]
    lookahead = 4 if args.lookahead is None else parse_lookahead(args.lookahead, "--lookahead")
    reg = registry()
    verifier, options = plugin_ref(args.verifier or reg.preferred("verifiers"), "verifiers", reg)
    if args.model is not None:
        options["model"] = args.model
    pipe = pipeline((verifier, options), [plugin_ref(d, "draft_models", reg) for d in args.draft],
                    lookahead=lookahead)
    return pipe, {}, {}


def _run_generate(args) -> int:
    from .errors import ConfigError
    from .files import read_text
    from .speculative import Sampling

    pipe, gen_cfg, sampling_cfg = pipeline_from_args(args)
    prompts = list(args.prompt)
    if args.prompts_file:
        text = read_text(args.prompts_file, "--prompts-file")
        prompts += [ln for ln in text.splitlines() if ln.strip()]
    prompts += gen_cfg.get("prompts", [])
    if not prompts:
        raise ConfigError("give at least one prompt (positional, --prompts-file or "
                          "[generate] prompts = [...] in --config)")
    sampling = Sampling(temperature=sampling_cfg.get("temperature", args.temperature),
                        top_k=sampling_cfg.get("top_k", args.top_k),
                        top_p=sampling_cfg.get("top_p", args.top_p))
    decoder = pipe.decoder(None if args.no_draft else 0)
    out = decoder.generate(prompts, max_new_tokens=gen_cfg.get("max_new_tokens",
                                                               args.max_new_tokens),
                           sampling=sampling, stop=gen_cfg.get("stop", args.stop),
                           seed=args.seed,
                           batch_size=gen_cfg.get("batch_size", args.batch_size))
    warning = decoder.draft and out.metrics.collapse_warning(decoder.draft.name)
    if args.json:
        print(json.dumps({"texts": out.texts, "finish_reasons": out.finish_reasons,
                          "metrics": out.metrics.as_dict(),
                          "warnings": [warning] if warning else []}, indent=2))
        return 0
    for prompt, text in zip(prompts, out.texts):
        print(f"--- {prompt!r}\n{text}")
    m = out.metrics
    print(f"\n{m.new_tokens} tokens in {m.total_ms / 1000:.2f} s ({m.tokens_per_second:.1f} "
          f"tok/s), {m.target_passes} target passes, TAR {m.tar:.2f}; draft {m.draft_ms:.0f} ms, "
          f"verify {m.verify_ms:.0f} ms, other {m.other_ms:.0f} ms")
    if warning:
        print(warning, file=sys.stderr)
    return 0


@hookimpl
def thrifty_commands():
    return [
        CommandSpec(name="plugins", configure=_configure_plugins, run=_run_plugins,
                    description="list installed plugins and what each provides"),
        CommandSpec(name="generate", configure=_configure_generate, run=_run_generate,
                    description="generate text with (speculative) decoding"),
    ]
