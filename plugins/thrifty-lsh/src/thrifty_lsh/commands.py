"""``thrifty train``: train a sparse extreme classifier from a TOML file and/or flags."""

from __future__ import annotations

import json
import sys

_FLAGS = {  # flag -> (TrainConfig field, type)
    "train": str, "test": str, "n_train": int, "n_test": int, "layer": str, "hidden": int,
    "epochs": int, "batch_size": int, "lr": float, "seed": int, "eval_every": int,
    "eval_points": int, "checkpoint": str, "checkpoint_every": int,
}
_SLIDE_FLAGS = {"family": str, "k": int, "l": int, "bucket_size": int, "budget": int,
                "inference": str, "rebuild": str, "refill_every": int, "rebuild_every": int}
_FLAG_NAMES = {"k": "hashes-per-table", "l": "tables"}  # "--l" would clash with torchrun's
_HELP = {"layer": "the output layer: a registered sparse layer (slide, dense, or a plugin's; "
                  "`thrifty plugins` lists them)",
         "family": "SLIDE's sampler: a registered sampler (simhash, wta, dwta, minhash, or a "
                   "plugin's)"}


def _checked(name: str, parse: type):
    """An argparse type: ``parse`` the text, then apply the field's rule (:data:`RULES`), so
    that ``--eval-every 0`` or ``--lr nan`` fail before anything loads."""
    import argparse

    from .config import RULES

    def convert(text: str):
        value = parse(text)
        problem = RULES[name](value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
        return value

    convert.__name__ = {int: "integer", float: "number"}.get(parse, parse.__name__)
    return convert


def configure(p) -> None:
    p.add_argument("--config", help="TOML file with a [train] table (and [train.slide])")
    for name, typ in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=_checked(name, typ),
                       default=None, help=_HELP.get(name, f"overrides [train] {name}"))
    for name, typ in _SLIDE_FLAGS.items():
        flag = _FLAG_NAMES.get(name, name.replace("_", "-"))
        p.add_argument("--" + flag, dest="slide_" + name, type=typ,
                       default=None, help=_HELP.get(name, f"overrides [train.slide] {name}"))
    p.add_argument("--allow-change", action="append", metavar="SETTING[,SETTING]",
                   help="resume a checkpoint although these settings differ from it (lr, "
                        "epochs, eval_points); any other difference is refused")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in the --checkpoint folder, removing the checkpoints "
                        "it holds (a finished run or another run's)")
    p.add_argument("--distributed", action="store_true",
                   help="model-parallel SLIDE under torchrun (see docs/distributed.md)")
    p.add_argument("--backend", default="gloo", help="torch.distributed backend (gloo, nccl)")
    p.add_argument("--link-rate", type=float, default=None, metavar="BITS_PER_S",
                   help="with --distributed: delay every collective as a link of this rate "
                        "would (e.g. 100e6), to reproduce a slow interconnect on one machine")
    p.add_argument("--link-latency", type=float, default=0.0, metavar="SECONDS",
                   help="with --link-rate: added delay per message round (default 0)")
    p.add_argument("--json", action="store_true", help="print the evaluation history as JSON")


def config_from_args(args):
    from thrifty.pipeline import load_config

    from thrifty.errors import ConfigError

    from .config import TrainConfig

    raw = load_config(args.config).get("train", {}) if args.config else {}
    if not isinstance(raw, dict) or not isinstance(raw.get("slide", {}), dict):
        raise ConfigError(f"{args.config}: [train] and [train.slide] must be tables")
    raw = {**raw, "slide": dict(raw.get("slide", {}))}
    for name in _FLAGS:
        if getattr(args, name) is not None:
            raw[name] = getattr(args, name)
    for name in _SLIDE_FLAGS:
        if getattr(args, "slide_" + name) is not None:
            raw["slide"][name] = getattr(args, "slide_" + name)
    return TrainConfig.from_dict(raw)


def link_from_args(args):
    """The slow link asked for by ``--link-rate``/``--link-latency``, or None."""
    from thrifty.errors import ConfigError

    if args.link_rate is None:
        if args.link_latency:
            raise ConfigError("--link-latency needs --link-rate (the link's bits per second)")
        return None
    if not args.distributed:
        raise ConfigError("--link-rate delays the collectives of a distributed run; add "
                          "--distributed and launch with torchrun")
    if args.link_rate <= 0 or args.link_latency < 0:
        raise ConfigError(f"--link-rate must be > 0 bits/s and --link-latency >= 0 s; got "
                          f"{args.link_rate:g} and {args.link_latency:g}")
    from .distributed.wire import Link

    return Link(args.link_rate, args.link_latency)


def run(args) -> int:
    from pathlib import Path

    from thrifty.errors import ConfigError

    from .resume import parse_allow, prepare_folder

    cfg = config_from_args(args)
    link = link_from_args(args)
    allow = parse_allow(args.allow_change)
    if (allow or args.overwrite) and not cfg.checkpoint:
        raise ConfigError("--allow-change and --overwrite act on the run in a --checkpoint "
                          "folder; add --checkpoint DIR")
    if cfg.checkpoint:
        prepare_folder(Path(cfg.checkpoint))  # before the data loads, not at the first save
    if args.distributed:
        from .distributed.run import run_distributed

        return run_distributed(cfg, args.backend, as_json=args.json, link=link, allow=allow,
                               overwrite=args.overwrite)
    from .train import Trainer, check_model_size, load_data, run_settings

    settings = run_settings(cfg)  # checks the layer and its options before the data loads
    train, test = load_data(cfg)
    check_model_size(train.header.n_features, train.header.n_labels, cfg.hidden, cfg.train)
    trainer = Trainer(cfg, train.header.n_features, train.header.n_labels, settings)
    if cfg.checkpoint and trainer.load(cfg.checkpoint, allow, args.overwrite):
        for change in trainer.changes:
            print(change, file=sys.stderr)
        print(f"resumed from {cfg.checkpoint}: epoch {trainer.epoch}, batch {trainer.batch}",
              file=sys.stderr)
    per_epoch = -(-len(train) // cfg.batch_size)
    bar = _progress(per_epoch * cfg.epochs, trainer.step_count)
    seen = [len(trainer.history)]

    def progress(t, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", epoch=t.epoch)
        if len(t.history) > seen[0]:
            seen[0] = len(t.history)
            h = t.history[-1]
            bar.write(f"step {h['step']}: loss {h['loss']:.3f}  P@1 {h['p1']:.4f}  "
                      f"P@5 {h['p5']:.4f}  ({h['seconds']:.1f} s training)", file=sys.stderr)

    try:
        history = trainer.run(train, test, progress)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(history, indent=2, allow_nan=False))
    return 0


def _progress(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        class _Plain:
            def update(self, n): pass
            def set_postfix(self, **kw): pass
            def write(self, s, file=None): print(s, file=sys.stderr)
            def close(self): pass
        return _Plain()
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr)
