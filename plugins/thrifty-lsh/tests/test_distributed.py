"""Distributed SLIDE under torchrun (gloo, loopback, tiny shapes)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from thrifty_lsh import checkpoint

ARGS = ["--distributed", "--train", "synthetic:300x500", "--n-train", "192", "--n-test", "32",
        "--hidden", "16", "--batch-size", "32", "--epochs", "2", "--eval-every", "3",
        "--eval-points", "32", "--hashes-per-table", "4", "--tables", "4", "--budget", "48",
        "--bucket-size", "1000", "--json"]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(n, *extra, env=None, extra_args=()):
    cmd = [TORCHRUN, "--nproc-per-node", str(n), "--rdzv-backend", "c10d", "--rdzv-endpoint",
           f"127.0.0.1:{_port()}", *extra,
           "-m", "thrifty.cli", "train", *ARGS, *extra_args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _train(n, *extra, env=None, extra_args=()):
    out = _launch(n, *extra, env=env, extra_args=extra_args)
    assert out.returncode == 0, out.stderr[-3000:]
    return {**json.loads(out.stdout[out.stdout.index("{"):]), "stderr": out.stderr}


@pytest.fixture(scope="module")
def runs():
    return {n: _train(n) for n in (1, 2, 4)}


def test_result_does_not_depend_on_the_number_of_ranks(runs):
    base = runs[1]["history"]
    assert len(base) == 4
    for n in (2, 4):
        for a, b in zip(base, runs[n]["history"]):
            assert a["step"] == b["step"]
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)  # float order only
            assert a["p1"] == b["p1"] and a["p5"] == b["p5"]
    assert runs[1]["bytes_per_step"] == 0
    # per step: candidate keys, log-sum-exps, hidden gradient, loss parts - never the layer
    wide_layer_bytes = 500 * 16 * 4
    assert 0 < runs[2]["bytes_per_step"] < wide_layer_bytes


def test_killed_rank_resumes_without_losing_or_repeating_samples(tmp_path, runs):
    whole = runs[2]
    ck = ["--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "2"]
    ARGS.extend(ck)
    try:
        # rank 1 dies after step 5 (checkpoints at 2 and 4); torchrun's elastic agent restarts
        # the group once and the run resumes from the step-4 checkpoint
        resumed = _train(2, "--max-restarts", "1", env={"THRIFTY_FAIL_AT_STEP": "5"})
    finally:
        del ARGS[-len(ck):]
    assert "exitcode: 17" in resumed["stderr"]  # the first attempt did crash
    assert "resumed at step 4 (epoch 0, batch 4) on 2 ranks" in resumed["stderr"]
    shards = sorted((tmp_path / "ck").glob("rank*-of-2"))
    assert len(shards) == 2 and all(len(list(d.glob("step-*"))) <= 2 for d in shards)
    # the restarted run replays steps 5.. from the step-4 checkpoint: same history as unbroken
    tail = [h for h in whole["history"] if h["step"] > 4]
    assert [h["step"] for h in resumed["history"] if h["step"] > 4] == [h["step"] for h in tail]
    for a, b in zip(tail, [h for h in resumed["history"] if h["step"] > 4]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["p1"] == b["p1"]
    state = checkpoint.load(shards[0] / "step-12.safetensors")
    assert state["position"]["step"] == 12  # 2 epochs x 6 batches, each taken once
    assert state["run"]["world size"] == 2 and state["finished"]


def test_resume_passes_over_a_damaged_newest_shard(tmp_path, runs):
    ck = ["--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "2"]
    crashed = _launch(2, env={"THRIFTY_FAIL_AT_STEP": "5"}, extra_args=ck)
    assert crashed.returncode != 0  # rank 1 died after step 5; checkpoints at 2 and 4
    newest = tmp_path / "ck" / "rank1-of-2" / "step-4.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # torn write of rank 1's newest shard
    resumed = _train(2, extra_args=ck)
    assert f"passing over a damaged checkpoint: {newest}" in resumed["stderr"]
    assert "resumed at step 2 (epoch 0, batch 2) on 2 ranks" in resumed["stderr"]
    whole = [h for h in runs[2]["history"] if h["step"] > 2]
    again = [h for h in resumed["history"] if h["step"] > 2]
    assert [h["step"] for h in again] == [h["step"] for h in whole]
    for a, b in zip(whole, again):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["p1"] == b["p1"]


def test_slow_link_flag_delays_every_collective():
    run = _train(2, extra_args=["--link-rate", "2e6", "--link-latency", "0.002"])
    assert run["link"] == {"rate_bits": 2e6, "latency_s": 0.002}
    assert run["bytes_sent"] > 0 and run["rounds"] > 0
    assert run["link_delay_s"] == pytest.approx(run["bytes_sent"] * 8 / 2e6
                                                + run["rounds"] * 0.002, rel=1e-6)


def test_the_process_group_does_not_outlive_the_run(tmp_path):
    """Gloo's worker threads must be joined before interpreter shutdown, where one freeing a
    collective's tensors aborted finished runs at times ("terminate called without an active
    exception"); torch's lazily imported torch.distributed.nn.functional used to pin the group
    past destroy_process_group in its default arguments."""
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        import sys, weakref
        import torch.distributed as dist
        from thrifty.cli import main
        from thrifty_lsh.distributed import run

        init, groups = run.init, []
        def spy(backend):
            joined = init(backend)
            groups.append(weakref.ref(dist.group.WORLD))
            return joined
        run.init = spy
        assert main(sys.argv[1:]) == 0
        assert groups and groups[0]() is None, "the process group outlived the run"
    """))
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_port()), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(probe), "train", *ARGS], capture_output=True,
                         text=True, timeout=240, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("flags, problem", [
    (["--link-rate", "1e8"], "add --distributed"),
    (["--distributed", "--link-latency", "0.01"], "needs --link-rate"),
    (["--distributed", "--link-rate", "0"], "must be > 0"),
])
def test_slow_link_flags_are_validated(flags, problem, capsys):
    from thrifty.cli import main

    assert main(["train", "--train", "synthetic:300x500", *flags]) != 0
    assert problem in capsys.readouterr().err
