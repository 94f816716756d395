"""``thrifty train --distributed``: the training loop of model-parallel SLIDE under torchrun.

Checkpoints are sharded: rank r of R writes ``<checkpoint>/rank{r}-of-{R}/step-{n}.safetensors``
(its shard, its tables, the replicated layer, the optimiser state, the position and the run's
settings; :mod:`thrifty_lsh.checkpoint`) and keeps the last two. On (re)start the ranks agree
on the newest step that all of them hold intact (all-reduces of the minimum), so a rank killed
mid-write or a damaged shard costs at most one checkpoint interval, and the
batch order - a function of seed and epoch - resumes exactly after the last step taken: no
sample lost, none counted twice. torchrun's elastic mode (``--max-restarts``) restarts the group.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import attrs
import torch

from thrifty.atomic import fsync_folder
from thrifty.errors import ConfigError, ModelFormatError

from .. import checkpoint, resume
from ..train import finite_loss, restore
from .sharded import ShardedNet
from .wire import Link, Wire

_STEP = re.compile(r"^step-(\d+)\.safetensors$")


def init(backend: str = "gloo") -> tuple[int, int]:
    """Join the process group torchrun describes (or run alone without one)."""
    import torch.distributed as dist
    # torch.distributed.nn.functional binds ``group.WORLD`` as default arguments when it is first
    # imported, which torch does lazily (the first optimiser pulls in torch._dynamo). Imported
    # after the group exists, it would keep the group - and its gloo worker threads - alive past
    # destroy_process_group into interpreter shutdown (see :func:`leave`); imported now, its
    # defaults are None.
    import torch.distributed.nn.functional  # noqa: F401

    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        # torchrun's restarted workers can reuse the agent's store, where the previous attempt's
        # keys (the dead ranks' addresses) still sit: a restarted rank would then dial a dead
        # peer ("connection refused"). Namespacing the store by attempt avoids reading them.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        if attempt == "0":
            dist.init_process_group(backend)
        else:
            store, rank, world = next(dist.rendezvous("env://"))
            dist.init_process_group(backend, rank=rank, world_size=world,
                                    store=dist.PrefixStore(f"thrifty/attempt-{attempt}", store))
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


class DistributedTrainer:
    def __init__(self, cfg, n_features: int, n_labels: int, wire: Wire, rank: int,
                 settings: dict) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.wire, self.rank, self.settings = cfg, wire, rank, settings
        self.net = ShardedNet(n_features, n_labels, cfg.hidden, wire, rank, seed=cfg.seed,
                              lr=cfg.lr, **cfg.slide)
        self.epoch = self.batch = self.step_count = 0
        self.history: list[dict] = []
        self.changes: list[str] = []
        self.step_bytes: list[int] = []

    def _dir(self) -> Path:
        return Path(self.cfg.checkpoint) / f"rank{self.rank}-of-{self.wire.world}"

    @staticmethod
    def _steps(d: Path) -> list[int]:
        """Step numbers of the checkpoints in ``d``, oldest first."""
        found = (_STEP.match(p.name) for p in d.glob("step-*.safetensors"))
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, finished: bool = False) -> None:
        out = self.net.output
        state = {"net": self.net.state_dict(),
                 "optimizers": [o.state_dict() for o in self.net.optimizers],
                 "position": {"epoch": self.epoch, "batch": self.batch, "step": self.step_count,
                              "seconds": 0.0},
                 "history": self.history, "rng": torch.get_rng_state(), "run": self.settings,
                 "finished": finished,
                 "slide": {"samples_seen": out.samples_seen, **out.sampler.state()}}
        d = self._dir()
        checkpoint.save(d / f"step-{self.step_count}.safetensors", state)
        for old in self._steps(d)[:-2]:
            (d / f"step-{old}.safetensors").unlink()
        fsync_folder(d)

    def load(self, allow: frozenset[str] = frozenset(), overwrite: bool = False) -> bool:
        """Resume from the newest step that every rank holds intact (a rank whose newest
        shard is corrupt or missing makes all ranks take an older common one), after the same
        checks as a single-process run (:meth:`thrifty_lsh.train.Trainer.load`)."""
        folder = Path(self.cfg.checkpoint)
        checkpoint.check_storable(self.net.output.sampler.state())  # before training
        if overwrite:
            if self.rank == 0:
                resume.clear(folder)
            self.wire.all_min(0)  # no rank saves before the folder is clear
            return False
        resume.refuse_foreign(folder, self.wire.world)
        d = self._dir()
        intact = {}
        for step in reversed(self._steps(d)):
            try:
                intact[step] = checkpoint.load(d / f"step-{step}.safetensors")
            except ModelFormatError as exc:
                print(f"rank {self.rank}: passing over a damaged checkpoint: {exc}",
                      file=sys.stderr)
        step = resume.agreed_step(intact, self.wire.all_min)
        if step < 0:
            return False
        pos, self.changes = restore(intact[step], d / f"step-{step}.safetensors", self.net,
                                    self.net.optimizers, self.settings, self.cfg, allow)
        self.epoch, self.batch, self.step_count = pos["epoch"], pos["batch"], pos["step"]
        self.history = pos["history"]
        return True

    def evaluate(self, test) -> dict:
        from ..train import evaluate

        return evaluate(self.net.predict, test, self.cfg.eval_points)

    def run(self, train, test, fail_at: int | None = None, log=None) -> list[dict]:
        cfg = self.cfg
        per_epoch = -(-len(train) // cfg.batch_size)
        while self.epoch < cfg.epochs:
            for batch in train.batches(cfg.batch_size, seed=cfg.seed * 1000 + self.epoch,
                                       start=self.batch):
                before = self.wire.sent
                t0 = time.perf_counter()
                loss = finite_loss(self.net.step(batch), self.step_count + 1, cfg)
                seconds = time.perf_counter() - t0
                self.step_bytes.append(self.wire.sent - before)
                self.batch += 1
                self.step_count += 1
                if fail_at is not None and self.step_count == fail_at:
                    os._exit(17)  # simulate a crash (tests); torchrun restarts the group
                last = self.batch == per_epoch and self.epoch + 1 == cfg.epochs
                if self.step_count % cfg.eval_every == 0 or last:
                    self.history.append({"step": self.step_count, "loss": loss,
                                         "step_seconds": seconds,
                                         "bytes_sent": self.step_bytes[-1], **self.evaluate(test)})
                    if log:
                        log(self.history[-1])
                if cfg.checkpoint and (self.step_count % cfg.checkpoint_every == 0 or last):
                    self.save(finished=last)
            self.epoch, self.batch = self.epoch + 1, 0
        return self.history


def run_distributed(cfg, backend: str = "gloo", as_json: bool = False,
                    link: Link | None = None, allow: frozenset[str] = frozenset(),
                    overwrite: bool = False) -> int:
    if cfg.layer != "slide":
        raise ConfigError(f"--distributed shards the SLIDE layer; --layer {cfg.layer} cannot "
                          f"be trained distributed (leave --layer at slide)")
    rank, world = init(backend)
    try:
        _train(cfg, rank, world, backend, as_json, link, allow, overwrite)
    except BaseException:
        leave(together=False)
        raise
    leave(together=True)
    return 0


def _train(cfg, rank: int, world: int, backend: str, as_json: bool, link: Link | None,
           allow: frozenset[str], overwrite: bool) -> None:
    """The run on this rank; :func:`run_distributed` holds the process group around it."""
    from ..train import check_model_size, load_data, run_settings

    settings = run_settings(cfg, world)
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu"
    wire = Wire(link, device=device)
    train, test = load_data(cfg)
    check_model_size(train.header.n_features, train.header.n_labels, cfg.hidden, cfg.train,
                     world)
    trainer = DistributedTrainer(cfg, train.header.n_features, train.header.n_labels, wire,
                                 rank, settings)
    if cfg.checkpoint and trainer.load(allow, overwrite) and rank == 0:
        for change in trainer.changes:
            print(change, file=sys.stderr)
        print(f"resumed at step {trainer.step_count} (epoch {trainer.epoch}, batch "
              f"{trainer.batch}) on {world} ranks", file=sys.stderr)
    fail_at = int(os.environ.get("THRIFTY_FAIL_AT_STEP", 0) or 0)
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0 or rank != world - 1:
        fail_at = 0  # the test hook kills the last rank once, in the first attempt only
    log = (lambda h: print(f"step {h['step']}: loss {h['loss']:.4f} P@1 {h['p1']:.4f} "
                           f"P@5 {h['p5']:.4f} sent {h['bytes_sent']} B", file=sys.stderr)
           ) if rank == 0 else None
    history = trainer.run(train, test, fail_at=fail_at or None, log=log)
    if rank == 0 and as_json:
        steps = max(1, len(trainer.step_bytes))
        print(json.dumps({"world": world, "history": history,
                          "bytes_per_step": sum(trainer.step_bytes) / steps,
                          "link": None if link is None else attrs.asdict(link),
                          "link_delay_s": wire.delayed_s, "bytes_sent": wire.sent,
                          "rounds": wire.rounds},
                         indent=2, allow_nan=False))


def leave(together: bool) -> None:
    """Destroy the process group while the interpreter is still whole, on every way out.

    A gloo worker thread frees each finished collective's tensors, which needs the GIL; if the
    group survives into interpreter shutdown, a thread doing that late (a loaded machine) is
    ended by Python mid-destructor and the process aborts after a finished run ("terminate
    called without an active exception"). Destroying the group joins those threads first.
    ``together`` (the run finished on every rank) first waits at a barrier, so no rank closes
    its connections while a peer is still in the last collective; after an error a peer may
    never arrive, so the group is destroyed without it.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()
