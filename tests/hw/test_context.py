"""HardwareContext and restore_from_file with file-backed knobs in a temporary tree."""

from __future__ import annotations

import json
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from thrifty import HardwareKnobSpec, Option, hookimpl
from thrifty.cli import main
from thrifty.errors import KnobDomainError, KnobError
from thrifty.hw import HardwareContext, restore_from_file
from thrifty.hw.sysfs import FileKnob, Sysfs


def _level(sysfs_root: str, attr: str):
    return FileKnob(f"test.{attr}", "", Sysfs(sysfs_root), ["dev"], attr, lambda: [0, 1, 2, 3])


class Plugin:
    @hookimpl
    def thrifty_hardware_knobs(self):
        return [HardwareKnobSpec(name="test.level", unit="", factory=_level, options={
            "sysfs_root": Option(str), "attr": Option(str, "level")})]


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "dev").mkdir()
    for attr in ("level", "other"):
        (tmp_path / "dev" / attr).write_text("0\n")
    return tmp_path


@pytest.fixture
def reg(monkeypatch):
    """The test knob and the ``thrifty hw`` command, as the process-wide registry."""
    import importlib

    import thrifty.hw.plugin
    from thrifty.testing import fresh_registry

    registry_module = importlib.import_module("thrifty.registry")
    reg = fresh_registry(load_entry_points=False,
                         plugins={"test": Plugin(), "hw": thrifty.hw.plugin})
    monkeypatch.setattr(registry_module, "_default", reg)
    return reg


def value(tree, attr="level"):
    return int((tree / "dev" / attr).read_text())


def test_snapshot_is_saved_before_the_change_and_restored_on_exit(tree, reg, tmp_path):
    recovery = tmp_path / "state" / "recovery.json"
    with HardwareContext(recovery, reg) as hw:
        knob = hw.knob("test.level", sysfs_root=str(tree))
        assert hw.apply(knob, 2) == 2 and value(tree) == 2
        saved = json.loads(recovery.read_text())
        assert saved["pid"] == os.getpid()
        assert saved["knobs"] == [{"spec": "test.level", "options": {"sysfs_root": str(tree)},
                                   "knob": "test.level", "state": {"dev": "0"}}]
        hw.apply(knob, 3)
        assert len(json.loads(recovery.read_text())["knobs"]) == 1   # first touch only
    assert value(tree) == 0 and not recovery.exists()


def test_restore_runs_on_exception_and_in_reverse_order(tree, reg, tmp_path):
    with pytest.raises(RuntimeError, match="trial failed"):
        with HardwareContext(tmp_path / "r.json", reg) as hw:
            first = hw.knob("test.level", sysfs_root=str(tree))
            second = hw.knob("test.level", sysfs_root=str(tree))   # same file, later snapshot
            hw.apply(first, 1)
            hw.apply(second, 2)
            raise RuntimeError("trial failed")
    assert value(tree) == 0   # forward order would leave 1


def test_a_value_outside_the_domain_changes_nothing(tree, reg, tmp_path):
    with HardwareContext(tmp_path / "r.json", reg) as hw:
        knob = hw.knob("test.level", sysfs_root=str(tree))
        with pytest.raises(KnobDomainError, match=r"7 is not in the domain.*0, 1, 2, 3"):
            hw.apply(knob, 7)
        assert not (tmp_path / "r.json").exists() and value(tree) == 0


def test_a_failed_restore_stays_in_the_file_for_later(tree, reg, tmp_path):
    recovery = tmp_path / "r.json"
    hw = HardwareContext(recovery, reg)
    hw.apply(hw.knob("test.level", sysfs_root=str(tree)), 1)
    hw.apply(hw.knob("test.level", sysfs_root=str(tree), attr="other"), 3)
    (tree / "dev" / "level").rename(tree / "level.away")
    (tree / "dev" / "level").mkdir()             # writing a directory fails
    with pytest.raises(KnobError, match=r"could not restore 1 knob.*test.level"):
        hw.restore()
    assert value(tree, "other") == 0
    assert [k["knob"] for k in json.loads(recovery.read_text())["knobs"]] == ["test.level"]
    (tree / "dev" / "level").rmdir()
    (tree / "level.away").rename(tree / "dev" / "level")
    assert restore_from_file(recovery, reg) == ["test.level"]
    assert value(tree) == 0 and not recovery.exists()


def test_another_runs_recovery_file_is_never_overwritten(tree, reg, tmp_path):
    recovery = tmp_path / "r.json"
    crashed = HardwareContext(recovery, reg)
    crashed.apply(crashed.knob("test.level", sysfs_root=str(tree)), 2)    # never restored
    data = json.loads(recovery.read_text())
    recovery.write_text(json.dumps({**data, "pid": os.getppid()}))      # a live other process
    hw = HardwareContext(recovery, reg)
    with pytest.raises(KnobError, match=f"pid {os.getppid()} is changing"):
        hw.apply(hw.knob("test.level", sysfs_root=str(tree)), 1)
    with pytest.raises(KnobError, match="still running"):
        restore_from_file(recovery, reg)
    assert restore_from_file(recovery, reg, force=True) == ["test.level"]
    assert value(tree) == 0


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGTERM, SystemExit),
                                                 (signal.SIGINT, KeyboardInterrupt)])
def test_signals_restore_then_end_the_run(tree, reg, tmp_path, signum, raised):
    # the run's usual handler, whatever launched pytest (a background shell ignores SIGINT, and
    # the context rightly leaves an ignored signal alone)
    before = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    launched_with = signal.signal(signum, before)
    try:
        with pytest.raises(raised) as info:
            with HardwareContext(tmp_path / "r.json", reg) as hw:
                hw.apply(hw.knob("test.level", sysfs_root=str(tree)), 3)
                os.kill(os.getpid(), signum)
        assert value(tree) == 0 and not (tmp_path / "r.json").exists()
        assert signal.getsignal(signum) is before
        if raised is SystemExit:
            assert info.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signum, launched_with)


def test_cli_restore_list_and_read(tree, reg, tmp_path, capsys):
    recovery = tmp_path / "r.json"
    crashed = HardwareContext(recovery, reg)
    crashed.apply(crashed.knob("test.level", sysfs_root=str(tree)), 2)
    assert main(["hw", "restore", "--recovery-file", str(recovery)]) == 0
    assert "restored 1 knob(s)" in capsys.readouterr().out and value(tree) == 0
    assert main(["hw", "restore", "--recovery-file", str(recovery)]) == 0
    assert "nothing to restore" in capsys.readouterr().out
    assert main(["hw", "list", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["test.level"]
    assert main(["hw", "read", "test.level", "--sysfs-root", str(tree), "-o", "attr=other",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["value"] == 0


@pytest.mark.parametrize("content, problem", [
    ("[1, 2]", "holds a JSON list, expected a JSON object"),
    ('{"version": 1, "pid": 1, "knobs": ["test.level"]}', "knob entry 0 is a string"),
    ('{"version": 1, "knobs": [{"knob": "test.level", "state": 2}]}',
     "knob entry 0 lacks spec, options"),
    ('{"version": 1, "knobs": {"test.level": 2}}', "has knobs object, expected a list"),
    ('{"version": 2, "knobs": []}', "has version 2"),
    ('{"version": 1, "pid": 99999999999999999999, "knobs": []}', "not a process id"),
    ('{"version": 1, "knobs": [', "is not valid JSON"),
])
def test_restore_keeps_a_recovery_file_it_cannot_interpret(reg, tmp_path, capsys, content,
                                                            problem):
    recovery = tmp_path / "r.json"
    recovery.write_text(content)
    assert main(["hw", "restore", "--recovery-file", str(recovery)]) != 0
    err = capsys.readouterr().err
    assert problem in err and str(recovery) in err and "the file is kept" in err
    assert "Traceback" not in err
    assert recovery.read_text() == content


def test_restore_keeps_the_knobs_it_could_not_restore(tree, reg, tmp_path):
    recovery = tmp_path / "r.json"
    crashed = HardwareContext(recovery, reg)
    crashed.apply(crashed.knob("test.level", sysfs_root=str(tree)), 2)
    data = json.loads(recovery.read_text())
    gone = {**data["knobs"][0], "spec": "test.unregistered", "knob": "gone"}
    recovery.write_text(json.dumps({**data, "pid": None, "knobs": [gone, *data["knobs"]]}))
    with pytest.raises(KnobError, match="restored 1 knob.* but not 1: gone"):
        restore_from_file(recovery, reg)
    assert value(tree) == 0
    assert [k["knob"] for k in json.loads(recovery.read_text())["knobs"]] == ["gone"]


# -- fuzz: random and mutated recovery files ------------------------------------------------------
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_entry = st.fixed_dictionaries({}, optional={
    "knob": st.sampled_from(["test.level"]) | _json, "spec": st.sampled_from(["test.level", None])
    | _json, "options": st.just("TREE") | _json, "state": st.sampled_from(["0\n", "1\n"]) | _json})
_file = st.fixed_dictionaries({}, optional={
    "version": st.just(1) | _json, "pid": st.none() | st.integers() | _json,
    "knobs": st.lists(_entry, max_size=3) | _json})
_fuzz = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_restore(recovery, reg, tree) -> None:
    """A recovery file gives a restore of every knob (and is removed), or a KnobError and stays
    exactly as it was, or as the knobs that could not be restored."""
    before = recovery.read_bytes()
    level = tree / "dev" / "level"
    level.write_text("untouched-sentinel\n")
    try:
        restored = restore_from_file(recovery, reg, force=True)
    except KnobError as exc:
        assert str(recovery) in str(exc)
        assert recovery.exists()
        if "but not" not in str(exc):
            assert recovery.read_bytes() == before
        return
    assert not recovery.exists()
    # written back exactly when it says so
    assert (level.read_text() != "untouched-sentinel\n") == bool(restored)
    assert sorted(p.name for p in (tree / "dev").iterdir()) == ["level", "other"]


@_fuzz
@given(data=_file)
def test_fuzz_random_recovery_files_restore_or_stay(tree, reg, tmp_path, data):
    recovery = tmp_path / "fuzz.json"
    for entry in data.get("knobs", []) if isinstance(data.get("knobs"), list) else []:
        if isinstance(entry, dict) and entry.get("options") == "TREE":
            entry["options"] = {"sysfs_root": str(tree)}
    recovery.write_text(json.dumps(data))
    _check_restore(recovery, reg, tree)


@_fuzz
@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 400),
                                                         st.integers(0, 255)), max_size=3))
def test_fuzz_mutated_recovery_files_restore_or_stay(tree, reg, tmp_path, cut, flips):
    recovery = tmp_path / "fuzz.json"
    recovery.unlink(missing_ok=True)
    (tree / "dev" / "level").write_text("0\n")
    crashed = HardwareContext(recovery, reg)
    crashed.apply(crashed.knob("test.level", sysfs_root=str(tree)), 2)
    crashed._touched.clear()  # as after SIGKILL: the file alone knows the snapshot
    crashed._put_back_handlers()
    raw = bytearray(recovery.read_bytes())
    for at, byte in flips:
        raw[at % len(raw)] = byte
    recovery.write_bytes(bytes(raw[:cut] if cut < len(raw) else raw))
    _check_restore(recovery, reg, tree)
