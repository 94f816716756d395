"""Kill a tuning run mid-trial: SIGTERM restores every knob in the run's own handler; after
SIGKILL, ``thrifty hw restore`` restores every knob from the recovery file.

The run is a child process that loops over trial configurations, applying knobs through a
HardwareContext to a fake Linux CPU tree, a fake Jetson Orin tree and FakeNVML backed by a JSON
state file (so the child, and later the restore, see the same fake GPU).
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from thrifty.cli import main

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from thrifty_nvml.fake import FakeNVML
    sys.modules["pynvml"] = FakeNVML({nvml_state!r})

    import thrifty.hw.plugin, thrifty_cpu.plugin, thrifty_jetson.plugin, thrifty_nvml.plugin
    from thrifty.hw import HardwareContext
    from thrifty.testing import fresh_registry

    reg = fresh_registry(load_entry_points=False, plugins={{
        "cpu": thrifty_cpu.plugin, "jetson": thrifty_jetson.plugin, "nvml": thrifty_nvml.plugin}})
    cpu, orin = {cpu_root!r}, {orin_root!r}
    with HardwareContext({recovery!r}, reg) as hw:
        knobs = {{
            "governor": hw.knob("cpu.governor", sysfs_root=cpu),
            "cpu": hw.knob("cpu.freq", sysfs_root=cpu),
            "gpu": hw.knob("jetson.gpu-freq", sysfs_root=orin),
            "emc": hw.knob("jetson.emc", sysfs_root=orin),
            "clocks": hw.knob("nvml.gpu-locked-clocks"),
            "app": hw.knob("nvml.app-clocks"),
            "power": hw.knob("nvml.power-limit"),
        }}
        for trial in range(1000):
            for key, knob in knobs.items():
                domain = knob.domain()
                hw.apply(knob, domain[trial % len(domain)])
            Path({marker!r}).write_text(str(trial))
            time.sleep(0.05)                       # the workload of the trial
""")


@pytest.fixture
def run(fake_hw, kill_when, tmp_path):
    paths = {"nvml_state": str(fake_hw.nvml_state), "cpu_root": str(fake_hw.cpu),
             "orin_root": str(fake_hw.orin), "recovery": str(fake_hw.recovery),
             "marker": str(tmp_path / "trial")}
    before = fake_hw.state()

    def start_and_kill(signum: int) -> tuple[int, dict]:
        marker = Path(paths["marker"])
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(**paths)])
        code = kill_when(child, lambda: marker.exists() and marker.read_text() not in ("", "0"),
                         signum)
        return code, paths

    return start_and_kill, before, fake_hw.state


def test_sigterm_mid_trial_restores_every_knob(run):
    start_and_kill, before, now = run
    code, paths = start_and_kill(signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert now() == before
    assert not Path(paths["recovery"]).exists()


def test_sigkill_mid_trial_then_thrifty_hw_restore(run, monkeypatch, capsys):
    from thrifty_nvml.fake import FakeNVML
    from thrifty.testing import fresh_registry
    import thrifty.hw.plugin
    import thrifty_cpu.plugin
    import thrifty_jetson.plugin
    import thrifty_nvml.plugin

    start_and_kill, before, now = run
    code, paths = start_and_kill(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert now() != before                         # killed with knobs changed
    saved = json.loads(Path(paths["recovery"]).read_text())["knobs"]
    assert len(saved) == 7

    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(paths["nvml_state"]))
    monkeypatch.setattr(importlib.import_module("thrifty.registry"), "_default", fresh_registry(
        load_entry_points=False, plugins={"hw": thrifty.hw.plugin, "cpu": thrifty_cpu.plugin,
                                          "jetson": thrifty_jetson.plugin,
                                          "nvml": thrifty_nvml.plugin}))
    assert main(["hw", "restore", "--recovery-file", paths["recovery"]]) == 0
    assert "restored 7 knob(s)" in capsys.readouterr().out
    assert now() == before
    assert not Path(paths["recovery"]).exists()
