"""Kill a real ``thrifty tune`` run mid-trial: SIGTERM restores every knob and exits with 143;
after SIGKILL the recovery file names every knob, ``thrifty hw restore`` puts them all back, and
the trial log lets a new run warm-start.

The run is the real command line in a child process whose ``pynvml`` is FakeNVML backed by a
JSON state file: the measure backend tunes seven knobs of a fake Linux CPU tree, a fake Jetson
Orin tree and the fake GPU, reads energy from the fake GPU's energy counter (NVML meter, counter
mode) and runs a shell workload that notes each run in a file and sleeps, so the test knows
when a trial's workload is in flight.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCH = ("import sys; from thrifty_nvml.fake import FakeNVML; "
          "sys.modules['pynvml'] = FakeNVML(sys.argv[1]); "
          "from thrifty.cli import main; sys.exit(main(sys.argv[2:]))")

KNOBS = {"cpu.governor": "cpu", "cpu.freq": "cpu", "jetson.gpu-freq": "orin",
         "jetson.emc": "orin", "nvml.gpu-locked-clocks": None, "nvml.app-clocks": None,
         "nvml.power-limit": None}
"""Every knob the run tunes -> the fake sysfs tree it lives in (None: the fake GPU)."""

WORKLOAD_SECONDS = 0.3


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


class Tune:
    """The files of one tuning run and the real CLI that makes them."""

    def __init__(self, hw, tmp_path: Path) -> None:
        self.hw = hw
        self.log, self.runs, self.out = (tmp_path / "trials.jsonl", tmp_path / "runs",
                                         tmp_path / "tune.out")

    def thrifty(self, *args: str, **popen) -> subprocess.Popen:
        """``thrifty ARGS`` in a child process that sees the fake GPU."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("THRIFTY_")}
        return subprocess.Popen([sys.executable, "-c", LAUNCH, str(self.hw.nvml_state), *args],
                                env=env, **popen)

    def args(self, *extra: str) -> list[str]:
        knobs = [f"--knob={spec}" + (f":sysfs_root={getattr(self.hw, tree)}" if tree else "")
                 for spec, tree in KNOBS.items()]
        step = f"echo run >> {shlex.quote(str(self.runs))}; sleep {WORKLOAD_SECONDS}"
        return ["tune", "--backend", "measure", *knobs, "--meter", "nvml:mode=counter",
                "--workload", f"sh -c {shlex.quote(step)}", "--min-seconds", "0",
                "--optimizer", "random", "--slo", "latency<=10s", "--log", str(self.log),
                "--recovery-file", str(self.hw.recovery), *extra]

    def start(self) -> subprocess.Popen:
        with self.out.open("w") as out:
            return self.thrifty(*self.args("--trials", "1000"), stdout=out,
                                stderr=subprocess.STDOUT)

    def mid_trial(self) -> bool:
        """At least two trials logged and a later trial's workload running (the runs file is
        read before the log, so a count that lags it means that trial is not logged yet)."""
        runs = _lines(self.runs)
        return 2 <= _lines(self.log) < runs

    def logged(self) -> list[dict]:
        from thrifty.tuning.tuner import read_log

        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        assert len(read_log(self.log)) == len(entries) >= 2   # whole lines a re-run can read
        for entry in entries:                                  # each trial set every knob
            assert set(entry["config"]) == set(KNOBS)
            assert entry["metrics"]["readback"] == entry["config"]
            assert entry["metrics"]["meter"].startswith("nvml.total_energy")
            assert entry["metrics"]["energy"] > 0
        return entries


@pytest.fixture
def tune(fake_hw, tmp_path) -> Tune:
    return Tune(fake_hw, tmp_path)


def test_sigterm_mid_trial_restores_every_knob(tune, fake_hw, kill_when):
    before = fake_hw.state()
    code = kill_when(tune.start(), tune.mid_trial, signal.SIGTERM, "thrifty tune")
    output = tune.out.read_text()
    assert code == 128 + signal.SIGTERM, output
    assert fake_hw.state() == before, output
    assert not fake_hw.recovery.exists()
    entries = tune.logged()
    assert len(entries) == _lines(tune.runs) - 1       # killed inside a trial, never logged
    assert f"[{len(entries):>3}/1000]" in output       # its progress reached the last trial


def test_sigkill_mid_trial_then_hw_restore_then_warm_start(tune, fake_hw, kill_when):
    before = fake_hw.state()
    child = tune.start()
    code = kill_when(child, tune.mid_trial, signal.SIGKILL, "thrifty tune")
    assert code == -signal.SIGKILL, tune.out.read_text()
    assert fake_hw.state() != before                   # killed with knobs changed
    saved = json.loads(fake_hw.recovery.read_text())
    assert saved["pid"] == child.pid
    assert sorted(k["spec"] for k in saved["knobs"]) == sorted(KNOBS)
    entries = tune.logged()
    assert len(entries) == _lines(tune.runs) - 1

    restore = tune.thrifty("hw", "restore", "--recovery-file", str(fake_hw.recovery),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = restore.communicate(timeout=60)
    assert restore.returncode == 0, err
    assert f"restored {len(KNOBS)} knob(s)" in out
    assert fake_hw.state() == before
    assert not fake_hw.recovery.exists()

    rerun = tune.thrifty(*tune.args("--warm-start", str(tune.log), "--trials", "1", "--json",
                                    "--quiet"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    result = json.loads(out)
    assert (result["warm_started"], result["trials"]) == (len(entries), 1)
    assert tune.logged()[-1]["config"] not in [e["config"] for e in entries]  # nothing re-measured
    assert fake_hw.state() == before
    assert not fake_hw.recovery.exists()
