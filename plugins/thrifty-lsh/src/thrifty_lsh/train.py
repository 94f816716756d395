"""Training an extreme classifier: data, the loop, evaluation, checkpoints, resume (the
configuration, :class:`TrainConfig`, lives in :mod:`thrifty_lsh.config`).

The position in training is (epoch, batch); the batch order of an epoch depends only on the seed
and the epoch, so a run resumed from a checkpoint sees exactly the batches it had not seen - no
sample lost, none counted twice.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from thrifty.errors import ConfigError, DatasetFormatError, ModelFormatError

from . import checkpoint, resume
from .config import TrainConfig
from .data import XCData
from .model import XCNet, build_net, make_optimizers


def load_data(cfg: TrainConfig) -> tuple[XCData, XCData]:
    """Train and test sets named by the configuration. The test set's ids are checked against
    the train set's ranges (the network has no row for a feature or label beyond them), and
    neither set may be empty."""
    from .data import load
    from .synthetic import generate, preset

    if cfg.train.startswith("synthetic:"):
        name = cfg.train.split(":", 1)[1]
        features, x, labels = name.partition("x")
        if x and features.isdigit() and labels.isdigit():
            common = dict(n_features=int(features), n_labels=int(labels), labels_per_point=3,
                          features_per_point=20, structure_seed=cfg.seed)
            return (generate(cfg.n_train or 1000, seed=cfg.seed * 2 + 1, **common),
                    generate(cfg.n_test or 200, seed=cfg.seed * 2 + 2, **common))
        return preset(name, cfg.n_train, cfg.n_test, seed=cfg.seed)
    if not cfg.test:
        raise ConfigError("a train file needs a test file too: set test = '...' (or --test)")
    train = load(cfg.train, cfg.n_train)
    test = load(cfg.test, cfg.n_test, train.header, f"the train file {cfg.train}'s")
    for data, path in ((train, cfg.train), (test, cfg.test)):
        if len(data) == 0:
            raise DatasetFormatError(f"{path} holds no points; a run needs at least one train "
                                     f"and one test point")
    return train, test


def check_model_size(n_features: int, n_labels: int, hidden: int, source: str,
                     world: int = 1) -> None:
    """Refuse, before allocating, a network that cannot fit this machine's memory - what a
    damaged header (``1000000000 features``) would otherwise ask for."""
    weights = (n_features * hidden + hidden + -(-n_labels // world) * (hidden + 1)) * 4
    need = 3 * weights  # weights and the optimiser's two moments
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no sysconf
        return
    if need > have:
        raise ConfigError(
            f"{source}: {n_features} features and {n_labels} labels with hidden {hidden} make a "
            f"network of {need / 2**30:.1f} GiB (weights and optimiser moments), more than this "
            f"machine's {have / 2**30:.1f} GiB; check the data file's header or lower --hidden")


def precision_at(pred: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Mean share of the top-``k`` predictions that are true labels (P@k)."""
    hit = (pred[:, :k].unsqueeze(-1) == labels.unsqueeze(1)).any(-1)
    return float(hit.float().sum(1).div(k).mean())


def evaluate(predict: Callable, data: XCData, points: int, batch_size: int = 512) -> dict:
    """P@1 and P@5 of ``predict(batch) -> [n, 5]`` on the first ``points`` points."""
    n = min(points, len(data))
    p1 = p5 = 0.0
    for a in range(0, n, batch_size):
        batch = data.batch(np.arange(a, min(n, a + batch_size)))
        pred = predict(batch)
        p1 += precision_at(pred, batch.labels, 1) * len(batch)
        p5 += precision_at(pred, batch.labels, 5) * len(batch)
    return {"p1": p1 / n, "p5": p5 / n}


def run_settings(cfg: TrainConfig, world: int = 1) -> dict:
    """What a checkpoint of this run records and a resumed run must match (:mod:`.resume`):
    the data's identity, the network's shape, the output layer's resolved options, the
    optimisation settings and the world size. Evaluation and checkpoint cadence may change."""
    from .model import layer_options

    options = layer_options(cfg.layer, cfg.slide, cfg.seed)
    return {"train data": resume.data_identity(cfg.train),
            "test data": resume.data_identity(cfg.test), "n_train": cfg.n_train,
            "n_test": cfg.n_test, "layer": cfg.layer, "hidden": cfg.hidden,
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
            "eval_points": cfg.eval_points, "world size": world,
            **{f"{cfg.layer}.{k}": v for k, v in sorted(options.items())}}


def finite_loss(loss: float, step: int, cfg: TrainConfig) -> float:
    """``loss``, or a refusal: a NaN or infinite loss means the run diverged, and every step
    after it (and every P@k) would be meaningless."""
    if not math.isfinite(loss):
        raise ConfigError(f"the loss became {loss} at step {step}: training diverged; lower the "
                          f"learning rate (--lr, now {cfg.lr:g}) or scale the feature values "
                          f"down")
    return loss


class Trainer:
    """The training state (network, optimisers, position, history) and the loop.

    ``settings`` (default :func:`run_settings` of ``cfg``) go into every checkpoint."""

    def __init__(self, cfg: TrainConfig, n_features: int, n_labels: int,
                 settings: dict | None = None) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.settings = run_settings(cfg) if settings is None else settings
        self.net: XCNet = build_net(n_features, n_labels, cfg.hidden, cfg.layer, cfg.seed,
                                    **cfg.slide)
        self.optimizers = make_optimizers(self.net, cfg.lr)
        self.epoch = self.batch = self.step_count = 0
        self.train_seconds = 0.0
        self.history: list[dict] = []
        self.changes: list[str] = []
        """what a resumed run changed (``--allow-change``), one line each"""

    def step(self, batch) -> float:
        self.net.train()
        loss = self.net.loss(batch)
        value = finite_loss(float(loss.detach()), self.step_count + 1, self.cfg)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        self.step_count += 1
        return value

    def evaluate(self, test: XCData) -> dict:
        self.net.eval()
        return evaluate(self.net.predict, test, self.cfg.eval_points)

    def run(self, train: XCData, test: XCData, progress: Callable | None = None,
            stop_after_steps: int | None = None) -> list[dict]:
        cfg = self.cfg
        per_epoch = -(-len(train) // cfg.batch_size)
        while self.epoch < cfg.epochs:
            for batch in train.batches(cfg.batch_size, seed=cfg.seed * 1000 + self.epoch,
                                       start=self.batch):
                t0 = time.perf_counter()
                loss = self.step(batch)
                self.train_seconds += time.perf_counter() - t0
                self.batch += 1
                last = self.batch == per_epoch and self.epoch + 1 == cfg.epochs
                if self.step_count % cfg.eval_every == 0 or last:
                    self.history.append({"step": self.step_count, "epoch": self.epoch,
                                         "seconds": self.train_seconds, "loss": loss,
                                         **self.evaluate(test)})
                if progress:
                    progress(self, loss)
                if cfg.checkpoint and (self.step_count % cfg.checkpoint_every == 0 or last):
                    self.save(cfg.checkpoint, finished=last)
                if stop_after_steps is not None and self.step_count >= stop_after_steps:
                    return self.history
            self.epoch, self.batch = self.epoch + 1, 0
        return self.history

    # -- checkpoints ----------------------------------------------------------------------
    def state(self, finished: bool = False) -> dict:
        out = {"net": self.net.state_dict(),
               "optimizers": [o.state_dict() for o in self.optimizers],
               "position": {"epoch": self.epoch, "batch": self.batch, "step": self.step_count,
                            "seconds": self.train_seconds},
               "history": self.history, "rng": torch.get_rng_state(), "run": self.settings,
               "finished": finished}
        layer = self.net.output
        if hasattr(layer, "sampler"):
            out["slide"] = {"samples_seen": layer.samples_seen, **layer.sampler.state()}
        return out

    def save(self, directory: str, finished: bool = False) -> Path:
        """Write ``<directory>/checkpoint.safetensors`` atomically and durably: a kill
        mid-write keeps the previous checkpoint."""
        path = Path(directory) / resume.SINGLE
        checkpoint.save(path, self.state(finished))
        return path

    def load(self, directory: str, allow: frozenset[str] = frozenset(),
             overwrite: bool = False) -> bool:
        """Resume the run that ``directory`` holds, if any (True when resumed).

        The folder must be writable; the checkpoint must record this run's settings (those
        in ``allow`` may differ: :attr:`changes` says how) and must not be finished;
        ``overwrite`` starts a new run instead, removing the folder's checkpoints. The hash
        tables are restored as saved - they were built from older weights than the saved
        ones, and rebuilding them from the current weights would change which neurons the
        next steps compute."""
        folder = Path(directory)
        resume.prepare_folder(folder)
        checkpoint.check_storable(self.state())  # refused before training, not at a save
        if overwrite:
            resume.clear(folder)
            return False
        resume.refuse_foreign(folder, None)
        path = folder / resume.SINGLE
        if not path.exists():
            return False
        pos, self.changes = restore(checkpoint.load(path), path, self.net, self.optimizers,
                                    self.settings, self.cfg, allow)
        self.epoch, self.batch, self.step_count = pos["epoch"], pos["batch"], pos["step"]
        self.train_seconds, self.history = pos["seconds"], pos["history"]
        return True


def restore(state: dict, path: Path, net, optimizers: list, settings: dict, cfg: TrainConfig,
            allow: frozenset[str]) -> tuple[dict, list[str]]:
    """Check that ``state`` (read from ``path``) continues this run, then load it into ``net``
    and ``optimizers`` (with ``cfg``'s learning rate) and the RNG. Returns the saved position
    (with ``history``) and the accepted changes."""
    try:
        changes = resume.check_resumable(state, settings, cfg.epochs, allow, path)
        net.load_state_dict(state["net"])
        for opt, saved in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
            for group in opt.param_groups:
                group["lr"] = cfg.lr
        torch.set_rng_state(state["rng"])
        if "slide" in state:
            layer = net.output
            layer.samples_seen = state["slide"].pop("samples_seen")
            layer.sampler.load_state(state["slide"])
        return {**state["position"], "history": state["history"]}, changes
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise ModelFormatError(f"{path} does not fit this run ({type(exc).__name__}: {exc}); "
                               f"start a new run there with --overwrite") from None
