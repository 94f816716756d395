"""Training an extreme classifier: configuration, the loop, evaluation, checkpoints, resume.

The position in training is (epoch, batch); the batch order of an epoch depends only on the seed
and the epoch, so a run resumed from a checkpoint sees exactly the batches it had not seen - no
sample lost, none counted twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import attrs
import numpy as np
import torch

from thrifty.errors import ConfigError

from .data import XCData
from .model import XCNet, build_net, make_optimizers


@attrs.define
class TrainConfig:
    """Everything a run needs; ``thrifty train`` fills it from a TOML file and flags."""

    train: str = "synthetic:amazon-670k"
    """an Extreme Classification Repository file, ``synthetic:<preset>`` or
    ``synthetic:<features>x<labels>`` (a small synthetic task of that shape)"""
    test: str | None = None
    n_train: int | None = 20_000
    """points to use (synthetic: to generate) - None for all"""
    n_test: int | None = 2_000
    layer: str = attrs.field(default="slide",
                             validator=attrs.validators.in_(("slide", "dense")))
    hidden: int = 128
    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 50
    """steps between evaluations (P@1, P@5 on up to ``eval_points`` test points)"""
    eval_points: int = 1000
    checkpoint: str | None = None
    """directory for checkpoints; resumes from it when it holds one"""
    checkpoint_every: int = 100
    slide: dict = attrs.field(factory=dict)
    """options of the SLIDE layer (family, k, l, bucket_size, budget, inference, rebuild, ...)"""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown [train] key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad [train] configuration: {exc}") from exc


def load_data(cfg: TrainConfig) -> tuple[XCData, XCData]:
    """Train and test sets named by the configuration."""
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
    return load(cfg.train, cfg.n_train), load(cfg.test, cfg.n_test)


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


class Trainer:
    """The training state (network, optimisers, position, history) and the loop."""

    def __init__(self, cfg: TrainConfig, n_features: int, n_labels: int) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.net: XCNet = build_net(n_features, n_labels, cfg.hidden, cfg.layer, cfg.seed,
                                    **(cfg.slide if cfg.layer == "slide" else {}))
        self.optimizers = make_optimizers(self.net, cfg.lr)
        self.epoch = self.batch = self.step_count = 0
        self.train_seconds = 0.0
        self.history: list[dict] = []

    def step(self, batch) -> float:
        self.net.train()
        loss = self.net.loss(batch)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        self.step_count += 1
        return float(loss.detach())

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
                    self.save(cfg.checkpoint)
                if stop_after_steps is not None and self.step_count >= stop_after_steps:
                    return self.history
            self.epoch, self.batch = self.epoch + 1, 0
        return self.history

    # -- checkpoints ----------------------------------------------------------------------
    def state(self) -> dict:
        out = {"net": self.net.state_dict(), "optimizers": [o.state_dict() for o in
                                                          self.optimizers],
               "epoch": self.epoch, "batch": self.batch, "step": self.step_count,
               "seconds": self.train_seconds, "history": self.history}
        layer = self.net.output
        if hasattr(layer, "sampler"):
            out["slide"] = {"samples_seen": layer.samples_seen, **layer.sampler.state()}
        return out

    def save(self, directory: str, name: str = "checkpoint.pt") -> Path:
        """Write atomically (temp file, then rename): a kill mid-write keeps the last one."""
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        return path

    def load(self, directory: str, name: str = "checkpoint.pt") -> bool:
        """Resume from a checkpoint if the directory holds one. The hash tables are restored
        as saved - they were built from older weights than the saved ones, and rebuilding them
        from the current weights would change which neurons the next steps compute."""
        path = Path(directory) / name
        if not path.exists():
            return False
        state = torch.load(path, weights_only=False)
        self.net.load_state_dict(state["net"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        self.epoch, self.batch, self.step_count = state["epoch"], state["batch"], state["step"]
        self.train_seconds, self.history = state["seconds"], state["history"]
        if "slide" in state:
            layer = self.net.output
            layer.samples_seen = state["slide"].pop("samples_seen")
            layer.sampler.load_state(state["slide"])
        return True
