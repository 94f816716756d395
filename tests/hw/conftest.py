"""Fake hardware shared by the kill tests: a Linux cpufreq tree, a Jetson Orin tree and a FakeNVML
GPU whose settable state lives in a JSON file, so a child process that changes knobs, the test
that kills it and a later ``thrifty hw restore`` all see the same devices."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable

import attrs
import pytest


def _tree_state(*roots: Path) -> dict[str, str]:
    return {str(p): p.read_text() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file()}


@attrs.frozen
class FakeHardware:
    """Where the fake devices live, and their whole state (every file, the GPU's JSON)."""

    cpu: Path
    orin: Path
    nvml_state: Path
    recovery: Path

    def state(self) -> tuple[dict[str, str], dict]:
        return _tree_state(self.cpu, self.orin), json.loads(self.nvml_state.read_text())


@pytest.fixture
def fake_hw(tmp_path) -> FakeHardware:
    from thrifty_cpu.fake import write_cpufreq_tree
    from thrifty_jetson.fake import write_jetson_tree
    from thrifty_nvml.fake import FakeNVML

    hw = FakeHardware(cpu=write_cpufreq_tree(tmp_path / "cpu"),
                      orin=write_jetson_tree(tmp_path / "orin", "orin"),
                      nvml_state=tmp_path / "nvml.json", recovery=tmp_path / "hw-recovery.json")
    FakeNVML(hw.nvml_state)                        # the GPU in its default state
    return hw


def _kill_when(child: subprocess.Popen, ready: Callable[[], bool], signum: int,
               what: str = "the tuning run") -> int:
    """Send ``signum`` to ``child`` as soon as ``ready()`` holds; return its exit code. Fails
    if the child exits first or takes more than a minute; never leaves it running."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert child.poll() is None, f"{what} exited with {child.returncode} before it was " \
                                         f"ready to be killed"
            assert time.monotonic() < deadline, f"{what} never got ready to be killed"
            time.sleep(0.01)
        child.send_signal(signum)
        return child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture
def kill_when():
    """``kill_when(child, ready, signum)``: signal a child process once it is ready for it."""
    return _kill_when
