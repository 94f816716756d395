"""Built-in draft-selection commands, registered like any plugin:

* ``thrifty profile``: measure a verifier, drafts and a workload on a device; save JSON;
* ``thrifty select``: rank (draft, γ or token tree) per batch size with the throughput model,
  optionally next to live measurements; recommend one; plot; export vLLM / transformers
  settings (chains) and thrifty's (chains and trees).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..hookspecs import hookimpl
from ..records import CommandSpec


# -- shared flags ---------------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    from ..errors import ConfigError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers such as 1,4,16; got {text!r}") \
            from None
    if not values or min(values) < 1:
        raise ConfigError(f"expected integers >= 1; got {text!r}")
    return values


def _shape(text: str) -> tuple[int, int]:
    from ..errors import ConfigError

    layers, _, width = text.lower().partition("x")
    if not (layers.isdigit() and width.isdigit()):
        raise ConfigError(f"a shape is LAYERSxWIDTH, such as 2x576; got {text!r}")
    return int(layers), int(width)


def _trees(text: str) -> list:
    """``--trees 3x2:6,4x3:10``: token-tree shapes (a ConfigError naming a bad one)."""
    from ..errors import ConfigError
    from .tree import TreeShape

    shapes = [TreeShape.parse(t.strip()) for t in text.split(",") if t.strip()]
    if not shapes:
        raise ConfigError(f"--trees takes comma-separated tree shapes DEPTHxBRANCH[:NODES], "
                          f"such as 3x2:6,4x3:10; got {text!r}")
    return shapes


def _choice(lookahead) -> str:
    """A schedule range's or prediction's choice in words: ``γ=3`` or ``tree 4x2:8``."""
    return f"tree {lookahead}" if isinstance(lookahead, str) else f"γ={lookahead}"


def _configure_models(p) -> None:
    p.add_argument("--verifier", help="registered verifier, NAME[,KEY=VALUE...] (default: the "
                                      "one of highest priority; `thrifty plugins` lists them), "
                                      "e.g. hf-fast,compile=true")
    p.add_argument("--model", help="the verifier's model (default: the verifier's own)")
    p.add_argument("--draft", action="append", default=[],
                   help="candidate draft, NAME[:VALUE][,KEY=VALUE...] (repeatable), e.g. "
                        "hf:smollm2-draft-l2, ngram,max_ngram=4 or "
                        "pairconnect:draft.safetensors; VALUE is the draft's first required "
                        "option (its model or weights), KEY=VALUE any other option")
    p.add_argument("--device", help="device for verifier and drafts (cpu, cuda); plugin default")
    p.add_argument("--dtype", help="dtype for verifier and drafts (float32, bfloat16, ...)")
    p.add_argument("--workload", default="code",
                   help="code, prose, chat, or a prompt file (default: code)")
    p.add_argument("--prompts", type=int, default=8, help="number of prompts (default: 8)")
    p.add_argument("--batch", type=_ints, default=None, help="batch sizes, e.g. 1,4,16")
    p.add_argument("--gamma-max", type=int, default=8, help="largest lookahead γ (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=32,
                   help="tokens generated per prompt (default: 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per latency (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs per latency")
    p.add_argument("--sweeps", type=int, default=3,
                   help="sweeps over every width when timing the verifier (median over sweeps; "
                        "default: 3)")
    p.add_argument("--temperature", type=float, default=None,
                   help="also measure acceptance when sampling at this temperature")
    p.add_argument("--shape", action="append", type=_shape, default=[],
                   help="also profile a random-weight decoder of LAYERSxWIDTH (repeatable)")
    p.add_argument("--trees", type=_trees, default=[],
                   help="also profile these token-tree shapes DEPTHxBRANCH[:NODES] for every "
                        "draft that grows trees, e.g. 3x2:6,4x3:10 (others: chains only)")


def _options(spec, wanted: dict) -> dict:
    """The options among ``wanted`` that a plugin's record declares, without None values."""
    return {k: v for k, v in wanted.items() if v is not None and k in spec.options}


def build_models(verifier: str, model: str | None, drafts: list, device=None, dtype=None):
    """Verifier and drafts by name through the registry: ``(verifier, {label: (draft, config)})``.
    ``verifier``: ``NAME[:VALUE][,KEY=VALUE...]`` as a ``--draft`` text (a profile keeps it
    whole, so ``select --measure`` builds the verifier with the options it was profiled with).
    ``drafts``: ``--draft`` texts, or ``(name, options)`` pairs (a profiled draft's ``config``,
    built again as it was profiled). ``config`` records how to build the draft again and, when
    it has one, its weights' path."""
    from ..pipeline import pipeline
    from ..refs import plugin_ref
    from ..registry import registry

    reg = registry()
    common = {"device": device, "dtype": dtype}
    verifier, voptions = plugin_ref(verifier, "verifiers", reg)
    voptions = {**_options(reg.get("verifiers", verifier), {**common, "model": model}),
                **voptions}
    drafts_ref = []
    for ref in drafts:
        name, options = plugin_ref(ref, "draft_models", reg) if isinstance(ref, str) else ref
        spec = reg.get("draft_models", name)
        drafts_ref.append((name, {**_options(spec, common), **options}))
    pipe = pipeline((verifier, voptions), drafts_ref)
    out = {}
    for i, part in enumerate(pipe.draft_parts):
        draft = pipe.draft(i)
        config = {"name": part.spec.name, "options": dict(part.options)}
        path = getattr(draft, "path", None)
        if path is not None:
            config["path"] = str(path)
        out[part.label] = (draft, config)
    return pipe.verifier, out


def _profile_from_args(args, say):
    from ..registry import registry
    from .profile import profile
    from .workloads import workload

    args.verifier = args.verifier or registry().preferred("verifiers")
    verifier, drafts = build_models(args.verifier, args.model, args.draft, args.device,
                                    args.dtype)
    work = workload(args.workload, n=args.prompts)
    prof = profile(verifier, drafts, work.prompts, workload=args.workload,
                   batches=args.batch or [1, 4, 16], gamma_max=args.gamma_max,
                   max_new_tokens=args.max_new_tokens, repeats=args.repeats, warmup=args.warmup,
                   temperature=args.temperature, shapes=args.shape,
                   dtype=args.dtype or "float32", sweeps=args.sweeps, trees=args.trees,
                   progress=say)
    prof.meta["verifier_config"] = {"name": args.verifier, "model": args.model,
                                    "device": args.device, "dtype": args.dtype}
    return prof, verifier, drafts, work


def _say(args):
    quiet = getattr(args, "json", False)
    return (lambda msg: None) if quiet else (lambda msg: print(f"  … {msg}", file=sys.stderr))


# -- thrifty profile ------------------------------------------------------------------------------
def _configure_profile(p) -> None:
    _configure_models(p)
    p.add_argument("-o", "--output", default="thrifty-profile.json",
                   help="where to write the profile (default: thrifty-profile.json)")


def _run_profile(args) -> int:
    from ..files import check_writable

    check_writable(args.output, "-o/--output")  # before the measurements, not after them
    prof, *_ = _profile_from_args(args, _say(args))
    prof.save(args.output)
    print(f"profile of {prof.verifier} with {len(prof.drafts)} draft(s) on {prof.workload} "
          f"({prof.device}) written to {args.output}")
    _print_tree_skips(prof)
    return 0


def _print_tree_skips(prof) -> None:
    for label, why in prof.meta.get("trees_skipped", {}).items():
        print(f"draft {label}: no token trees profiled: {why}")


# -- thrifty select -------------------------------------------------------------------------------
def _configure_select(p) -> None:
    _configure_models(p)
    p.add_argument("--profile", help="use this profile (from `thrifty profile`) instead of "
                                     "profiling now")
    p.add_argument("--measure", action="store_true",
                   help="also run each shown (draft, γ or tree) live and show measured next to "
                        "predicted")
    p.add_argument("--top", type=int, default=5, help="rows shown per batch size (default: 5)")
    p.add_argument("--hypothetical", action="append", default=[],
                   help="cost a draft that does not exist: NAME=LAYERSxWIDTH@ALPHA, e.g. "
                        "wide=2x1152@0.55 (needs a profile with --shape points)")
    p.add_argument("--sampled", action="store_true",
                   help="rank with the acceptance measured under sampling (--temperature)")
    p.add_argument("--refill", action="store_true",
                   help="rank for continuous batching (each row takes the next prompt as soon "
                        "as it is done, as `generate --batch-size` does) instead of static "
                        "batches that wait for their slowest row")
    p.add_argument("--plot", default="thrifty-select.png",
                   help="PNG of throughput vs TAR and throughput vs γ ('' to skip)")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")


def _hypothetical(text: str):
    from ..errors import ConfigError
    from .throughput import Hypothetical

    name, _, rest = text.partition("=")
    shape, _, alpha = rest.partition("@")
    try:
        layers, width = _shape(shape)
        return Hypothetical(name, layers, width, float(alpha))
    except (ValueError, ConfigError):
        raise ConfigError(f"--hypothetical is NAME=LAYERSxWIDTH@ALPHA, e.g. wide=2x1152@0.55; "
                          f"got {text!r}") from None


def _run_select(args) -> int:
    from ..files import check_writable
    from .profile import Profile, measure
    from .throughput import ThroughputModel, batched

    say = _say(args)
    if args.plot:
        check_writable(args.plot, "--plot")  # before the measurements, not after them
    verifier = drafts = work = None
    if args.profile:
        prof = Profile.load(args.profile)
    else:
        prof, verifier, drafts, work = _profile_from_args(args, say)
    model = ThroughputModel(prof, sampled=args.sampled, refill=args.refill)
    for h in args.hypothetical:
        model.add_hypothetical(_hypothetical(h))
    batches = args.batch or prof.batches
    if args.measure and verifier is None:
        vc = prof.meta.get("verifier_config", {})
        verifier, drafts = build_models(vc.get("name", args.verifier), vc.get("model"),
                                        [_ref(d.config) for d in prof.drafts.values()],
                                        vc.get("device"), vc.get("dtype"))
        drafts = dict(zip(prof.drafts, drafts.values()))
    if args.measure:
        from .workloads import workload

        work = work or workload(prof.workload, n=prof.meta.get("prompts", args.prompts))
        ids = [verifier.tokenizer.encode(p) for p in work.prompts]
        max_new = prof.meta.get("max_new_tokens", args.max_new_tokens)
    report = []
    for b in batches:
        ranked = model.rank(b)
        shown = ranked[: args.top]
        if all(p.draft is not None for p in shown):
            shown.append(next(p for p in ranked if p.draft is None))
        rows = []
        for p in shown:
            row = {**p.as_dict(), "measured": None}
            if args.measure and (p.draft is None or p.draft in drafts):
                say(f"measuring {p.draft or 'target-only'} {_choice(p.tree or p.gamma)} "
                    f"batch {b}")
                d = drafts[p.draft][0] if p.draft else None
                m = measure(verifier, d, p.lookahead, b, batched(ids, b), max_new,
                            repeats=min(args.repeats, 3), refill=args.refill)
                row["measured"] = round(m.throughput, 3)
                row["error"] = round((p.throughput - m.throughput) / m.throughput, 4)
            rows.append(row)
        best = ranked[0]
        report.append({"batch": b, "ranking": rows, "recommended": best.as_dict(),
                       "explain": best.explain(), "config": _recommended(model, best)})
    if args.plot:
        plot(model, batches, args.plot, report)
    scheduled = schedule_export(model, prof, batches)
    if args.json:
        print(json.dumps({"verifier": prof.verifier, "device": prof.device,
                          "workload": prof.workload, "batches": report, **scheduled,
                          "plot": args.plot or None}, indent=2))
        return 0
    _print_report(prof, report, args)
    _print_schedule(scheduled)
    return 0


def _recommended(model, best) -> dict[str, str]:
    """Settings for the recommended point; where it is a tree, vLLM and transformers get the
    best chain of the same draft at that batch (they run no trees)."""
    drafts = model.profile.drafts
    if best.draft not in drafts:
        return {}
    if best.tree is None:
        return export_config(drafts[best.draft].config, best.gamma)
    chain = model.best(best.batch, drafts=[best.draft], trees=False)
    return export_config(drafts[best.draft].config, chain.gamma, lookahead=best.tree)


def schedule_export(model, prof, batches) -> dict:
    """The per-batch-size schedule of the one draft that does best over ``batches`` (an engine
    runs one draft), with its vLLM, transformers and thrifty settings: ``{"schedule": {draft,
    ranges, ["chain_ranges"]}, "vllm": ..., "transformers": ..., "thrifty": ..., ["prepare"],
    ["note"], ["trees"]}``; ``{}`` for a profile of the verifier alone. Where some ranges run a
    token tree, ``chain_ranges`` is the best chain per range, which vLLM and transformers get."""
    from .schedule import gamma_schedule, has_trees, schedule_draft

    if not prof.drafts:
        return {}
    draft = schedule_draft(model, batches)
    ranges = gamma_schedule(model, draft, batches)
    sched = {"draft": draft, "ranges": [list(r) for r in ranges]}
    if not has_trees(ranges):
        return {"schedule": sched, **engine_settings(prof.drafts[draft].config, ranges)}
    chains = gamma_schedule(model, draft, batches, trees=False)
    sched["chain_ranges"] = [list(r) for r in chains]
    return {"schedule": sched,
            **engine_settings(prof.drafts[draft].config, chains, lookahead=ranges)}


def _print_schedule(scheduled: dict) -> None:
    if not scheduled:
        return
    sched = scheduled["schedule"]
    text = ", ".join(f"batch {lo}-{hi}: {_choice(g)}" for lo, hi, g in sched["ranges"])
    print(f"\nby batch size, with draft {sched['draft']}: {text}")
    for name, line in export_config_lines(scheduled).items():
        print(f"  {name}: {line}")


def _ref(config: dict) -> tuple[str, dict]:
    """A profiled draft's ``(name, options)`` for :func:`build_models`: every option it was
    profiled with, not its model alone, so that ``select --measure`` measures the draft the
    profile holds (an ``hf-fast`` draft profiled with ``graphs=false`` or ``compile=true``, an
    ``ngram`` draft with its ``max_ngram``) rather than one with default options."""
    return config["name"], dict(config.get("options", {}))


def _print_report(prof, report, args) -> None:
    from ..cli import print_table

    print(f"verifier {prof.verifier} on {prof.device}, workload {prof.workload}")
    for entry in report:
        print(f"\nbatch {entry['batch']}")
        rows = [{"draft": r["draft"] or "(target only)",
                 "lookahead": _choice(r["tree"] or r["gamma"]), "TAR": r["tar"],
                 "predicted tok/s": r["throughput"],
                 "measured tok/s": "" if r["measured"] is None else r["measured"],
                 "error": "" if r.get("error") is None else f"{100 * r['error']:+.1f}%",
                 "draft/verify/overhead": "/".join(f"{100 * r['shares'][k]:.0f}%"
                                                   for k in ("draft", "verify", "overhead"))}
                for r in entry["ranking"]]
        print_table(rows, list(rows[0]), False)
        print(f"recommended: {entry['explain']}")
        for name, text in entry["config"].items():
            print(f"  {name}: {text}")
    _print_tree_skips(prof)
    if args.plot:
        print(f"\nplot written to {args.plot}")


def _export_spec(name: str):
    """The registered draft record named ``name``, or None when no installed plugin has it
    (a profile can outlive the plugin that measured it)."""
    from ..errors import UnknownNameError
    from ..registry import registry

    try:
        return registry().draft_model(name)
    except UnknownNameError:
        return None


def engine_settings(config: dict, gamma: int | list, lookahead: str | list | None = None) -> dict:
    """Settings that run the profiled draft ``config`` in vLLM, transformers and thrifty.

    ``gamma`` is one lookahead or a schedule of ``(batch_start, batch_end, gamma)`` ranges
    (:mod:`thrifty.speculative.schedule`). What the draft is in vLLM and transformers comes from
    its plugin's record (``DraftModelSpec.export``); a draft whose record has none gets thrifty's
    settings only. transformers' assisted generation decodes one sequence at a time, so it takes
    the γ of batch 1 (no keyword arguments where target-only is fastest there).
    ``lookahead``: thrifty's own, where it runs token trees (a shape such as ``"4x2:8"``, or a
    schedule with tree ranges); vLLM's draft-model path and transformers' assisted generation
    run chains only, so they take ``gamma``, the best chain, and ``"trees"`` says so.
    """
    from .schedule import check_schedule, gamma_at

    name, options = config["name"], dict(config.get("options", {}))
    ranges = check_schedule(gamma) if isinstance(gamma, (list, tuple)) else None
    one = gamma_at(ranges, 1) if ranges else gamma
    extra = "".join(f", {k} = {json.dumps(v)}" for k, v in options.items()
                    if k not in ("device", "dtype"))
    ours = gamma if lookahead is None else lookahead
    if isinstance(ours, (list, tuple)):
        ours = [list(r) for r in check_schedule(ours)]
    out: dict = {"thrifty": {"lookahead": ours,
                             "toml": f'drafts = [{{ plugin = "{name}"{extra} }}]\n'
                                     f'lookahead = {json.dumps(ours)}'}}
    if lookahead is not None:
        out["trees"] = ("vLLM's draft-model path and transformers' assisted generation run "
                        "chains only: their settings take the best chain (per batch range); "
                        "thrifty's lookahead runs the token trees")
    spec = _export_spec(name)
    settings = None if spec is None or spec.export is None else spec.export(
        {**{k: o.default for k, o in spec.options.items() if not o.required}, **options})
    if settings is None:
        out["note"] = (f"draft {name!r} has no vLLM or transformers equivalent "
                       f"(its plugin's record exports none for it)")
        return out
    vllm = dict(settings.vllm)
    vllm["num_speculative_tokens"] = max(r[2] for r in ranges) if ranges else gamma
    if ranges:
        vllm["num_speculative_tokens_per_batch_size"] = [list(r) for r in ranges]
    out["vllm"] = vllm
    gamma_of = {settings.transformers_gamma: one}
    out["transformers"] = {} if not one else {
        **settings.transformers, "assistant_generation_config": {**settings.assistant,
                                                                 **gamma_of}} \
        if settings.assistant else {**settings.transformers, **gamma_of}
    if settings.prepare:
        out["prepare"] = settings.prepare
    return out


def export_config(config: dict, gamma: int | list,
                  lookahead: str | list | None = None) -> dict[str, str]:
    """Ready-to-paste lines for the chosen draft and lookahead in vLLM, transformers and
    thrifty (see :func:`engine_settings`)."""
    return export_config_lines(engine_settings(config, gamma, lookahead))


def export_config_lines(found: dict) -> dict[str, str]:
    """:func:`engine_settings`' answer as one line (or TOML snippet) per engine."""
    lines = {}
    if "prepare" in found:
        lines["prepare"] = found["prepare"]
    if "vllm" in found:
        if found["vllm"]["num_speculative_tokens"] > 0:
            lines["vllm"] = f"speculative_config={json.dumps(found['vllm'])}"
        else:
            lines["vllm"] = "(no speculative_config: target-only decoding is fastest)"
        kwargs = dict(found["transformers"])
        assistant = kwargs.pop("assistant_generation_config", None)
        load = ""
        if "assistant_model" in kwargs:
            folder = kwargs["assistant_model"]
            load = f"assistant = AutoModelForCausalLM.from_pretrained({folder!r}); "
            kwargs["assistant_model"] = "assistant"
        if assistant:
            load += "assistant.generation_config.update(" + ", ".join(
                f"{k}={v!r}" for k, v in assistant.items()) + "); "
        args = "".join(f", {k}={v}" if k == "assistant_model" else f", {k}={v!r}"
                       for k, v in kwargs.items())
        lines["transformers"] = f"{load}model.generate(**inputs{args})"
    else:
        lines["note"] = found["note"]
    if "trees" in found:
        lines["trees"] = found["trees"]
    lines["thrifty"] = found["thrifty"]["toml"]
    return lines


def plot(model, batches, path: str | Path, report=None) -> None:
    """Per batch size: throughput vs TAR per draft (one point per γ, a square per token tree),
    and throughput vs γ (a tree at its depth)."""
    import matplotlib

    from ..atomic import atomic_path

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {(r["draft"], r["tree"] or r["gamma"], e["batch"]): r["measured"]
                for e in report or [] for r in e["ranking"] if r.get("measured")}
    gammas = list(range(1, model.profile.gamma_max + 1))
    fig, axes = plt.subplots(len(batches), 2, figsize=(11, 3.6 * len(batches)), squeeze=False)
    for (ax_tar, ax_g), b in zip(axes, batches):
        base = model.predict(None, 0, b).throughput
        for d in model.drafts():
            preds = [model.predict(d, g, b) for g in gammas]
            line = ax_tar.plot([p.tar for p in preds], [p.throughput for p in preds], "o-",
                               label=d)[0]
            for p in preds:
                ax_tar.annotate(str(p.gamma), (p.tar, p.throughput), fontsize=7)
            ax_g.plot(gammas, [p.throughput for p in preds], "o-", color=line.get_color(),
                      label=f"{d} (model)")
            trees = [model.predict_tree(d, s, b) for s in model.trees(d)]
            for p in trees:
                ax_tar.plot(p.tar, p.throughput, "s", color=line.get_color())
                ax_tar.annotate(p.tree, (p.tar, p.throughput), fontsize=7)
                ax_g.plot(p.gamma, p.throughput, "s", color=line.get_color())
                ax_g.annotate(p.tree, (p.gamma, p.throughput), fontsize=7)
            pts = [(p.gamma, measured[key]) for p in preds + trees
                   if (key := (d, p.tree or p.gamma, b)) in measured]
            if pts:
                ax_g.plot(*zip(*pts), "x", color=line.get_color(), markersize=9,
                          label=f"{d} (measured)")
        for ax in (ax_tar, ax_g):
            ax.axhline(base, color="grey", linestyle="--", label="target only")
            ax.set_ylabel("tokens / s")
        ax_tar.set_xlabel(f"TAR (tokens per target pass), batch {b}")
        ax_g.set_xlabel(f"lookahead γ, batch {b}")
        ax_tar.legend(fontsize=7)
        ax_g.legend(fontsize=7)
    fig.suptitle(f"{model.profile.verifier} on {model.profile.device}, "
                 f"workload {model.profile.workload}")
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


@hookimpl
def thrifty_commands():
    return [
        CommandSpec(name="profile", configure=_configure_profile, run=_run_profile,
                    description="measure a verifier, drafts and a workload for the throughput "
                                "model"),
        CommandSpec(name="select", configure=_configure_select, run=_run_select,
                    description="rank (draft, γ or token tree) per batch size with the "
                                "throughput model; recommend one"),
    ]
