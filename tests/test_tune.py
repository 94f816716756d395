"""``thrifty tune`` with the replay backend (log, warm start, Pareto PNG) and the measured backend
(software knobs through the hardware context, a workload command and an energy meter)."""

import json
import math
import sys

import pytest

from thrifty import EnergyMeterSpec, OptimizerSpec, hookimpl
from thrifty.cli import main
from thrifty.errors import ConfigError
from thrifty.hw import EnergyReading
from thrifty.testing import fresh_registry
from thrifty.tuning.backends import MeasuredBackend, ReplayBackend
from thrifty.tuning.synthetic import WORKLOADS, surface
from thrifty.tuning.tuner import tune


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    space, rows, slo = surface(WORKLOADS["tx2-resnet18-small"])
    path = tmp_path_factory.mktemp("surface") / "tx2.csv"
    lines = ["# knobs: " + ",".join(space.names), "# units: energy=J/query, latency=s/batch",
             ",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path, slo, rows


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_tune_logs_plots_and_warm_starts(table, tmp_path, capsys):
    path, slo, rows = table
    log, png = tmp_path / "trials.jsonl", tmp_path / "front.png"
    argv = ["tune", "--table", str(path), "--slo", f"latency<={slo}", "--optimizer", "random",
            "--trials", "8", "--seed", "1", "--json", "--quiet"]
    assert main(argv + ["--log", str(log), "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    first = _lines(log)
    assert len(first) == 8 and len({json.dumps(t["config"]) for t in first}) == 8
    feasible = [t for t in first if t["metrics"]["latency"] <= slo]
    assert [t["feasible"] for t in first] == [t["metrics"]["latency"] <= slo for t in first]
    assert out["best"]["metrics"]["energy"] == min(t["metrics"]["energy"] for t in feasible)
    assert out["pareto_front"] and png.read_bytes()[:4] == b"\x89PNG"

    log2 = tmp_path / "more.jsonl"
    assert main(argv + ["--warm-start", str(log), "--log", str(log2)]) == 0
    out2 = json.loads(capsys.readouterr().out)
    second = _lines(log2)
    assert out2["warm_started"] == 8 and len(second) == 8
    assert not {json.dumps(t["config"]) for t in first} & {json.dumps(t["config"]) for t in second}
    assert out2["best"]["metrics"]["energy"] <= out["best"]["metrics"]["energy"]


def test_replay_tables_json_repeats_and_errors(tmp_path, capsys):
    data = {"knobs": ["b"], "rows": [{"b": 1, "energy": 2.0}, {"b": 1, "energy": 4.0},
                                      {"b": 2, "energy": 1.0}]}
    (tmp_path / "t.json").write_text(json.dumps(data))
    replay = ReplayBackend.load(tmp_path / "t.json")
    assert replay.measure({"b": 1}) == {"energy": 3.0} and replay.space.size == 2
    with pytest.raises(ConfigError, match="domain"):
        replay.measure({"b": 3})
    (tmp_path / "t.csv").write_text("b,energy\n1,2.0\n")
    with pytest.raises(ConfigError, match="# knobs"):
        ReplayBackend.load(tmp_path / "t.csv")
    assert ReplayBackend.load(tmp_path / "t.csv", knobs=["b"]).measure({"b": 1})["energy"] == 2.0
    assert main(["tune", "--slo", "latency<=1"]) == 2
    assert "--table" in capsys.readouterr().err


class FakeMeter:
    """One joule per window: energy per query is then 1 / queries served."""

    name = "fake"

    def start(self):
        pass

    def stop(self):
        return EnergyReading(1.0, 0.25, "fake", 0.001, False)


class FakePlugin:
    @hookimpl
    def thrifty_energy_meters(self):
        return [EnergyMeterSpec(name="fake-meter", factory=FakeMeter)]


def test_measure_backend_through_the_cli(register_plugin, tmp_path, capsys):
    register_plugin(FakePlugin(), name="fake", entry_points=True)
    script = tmp_path / "serve.py"
    script.write_text("import json, os, sys\n"
                      "print(json.dumps({'queries': int(os.environ['THRIFTY_KNOB_BATCH_SIZE'])"
                      " * int(sys.argv[1])}))\n")
    workload = f"{sys.executable} {script} {{threads}}"
    log = tmp_path / "m.jsonl"
    code = main(["tune", "--backend", "measure", "--knob", "batch-size:values=1,2,4",
                 "--knob", "threads:values=1,2", "--meter", "fake-meter", "--workload", workload,
                 "--min-seconds", "0", "--optimizer", "grid", "--trials", "6", "--slo",
                 "latency<=10", "--log", str(log), "--recovery-file",
                 str(tmp_path / "recovery.json"), "--json", "--quiet"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"]["config"] == {"batch-size": 4, "threads": 2}
    trials = _lines(log)
    assert len(trials) == 6
    for t in trials:
        served = t["config"]["batch-size"] * t["config"]["threads"]
        assert math.isclose(t["metrics"]["energy"], 1.0 / served)
        assert t["metrics"]["readback"] == t["config"]


class RecordingContext:
    def __init__(self):
        self.applied = []

    def apply(self, knob, value):
        self.applied.append((knob.name, value))
        return knob.apply(value)


def test_failed_measurements_are_recorded_and_the_search_goes_on(thrifty_registry):
    knob = thrifty_registry.hardware_knob("batch-size").build(values=[1, 2, 4])
    ctx = RecordingContext()

    def workload(config):
        if config["batch-size"] == 2:
            raise RuntimeError("out of memory")
        return {"queries": config["batch-size"], "latency": 0.01 * config["batch-size"]}

    backend = MeasuredBackend([knob], workload, FakeMeter(), ctx, min_seconds=0)
    opt = thrifty_registry.optimizer("grid").build(backend.space, "energy", [], 0)
    result = tune(backend, opt, 3, on_error="record")
    assert ctx.applied == [("batch-size", 1), ("batch-size", 2), ("batch-size", 4)]
    failed = result.trials[1]
    assert not failed.feasible and "out of memory" in failed.metrics["error"]
    assert result.best.config == {"batch-size": 4} and result.best.metrics["latency"] == 0.04
    with pytest.raises(RuntimeError):
        tune(backend, thrifty_registry.optimizer("grid").build(backend.space), 3)


@pytest.mark.parametrize("trials", ["0", "-3"])
def test_tune_refuses_trials_below_one(table, capsys, trials):
    assert main(["tune", "--table", str(table[0]), "--trials", trials, "--quiet"]) == 2
    assert f"--trials must be an integer >= 1; got {trials}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--plot", "--log"])
def test_tune_checks_output_paths_before_any_trial(table, tmp_path, capsys, flag):
    log, bad = tmp_path / "trials.jsonl", tmp_path / "missing" / "out"
    paths = {"--log": str(log), "--plot": str(tmp_path / "front.png"), flag: str(bad)}
    argv = ["tune", "--table", str(table[0]), "--trials", "3", "--quiet"]
    assert main(argv + [a for kv in paths.items() for a in kv]) == 2
    assert f"{flag} {bad}: folder {bad.parent} does not exist" in capsys.readouterr().err
    assert not log.exists() and not (tmp_path / "front.png").exists()  # no trial ran


def test_tune_reads_a_csv_with_a_byte_order_mark(tmp_path, capsys):
    rows = "# knobs: b\nb,energy,latency\n1,2.0,1.0\n2,1.0,3.0\n"
    (tmp_path / "t.csv").write_bytes(rows.encode("utf-8-sig"))
    assert main(["tune", "--table", str(tmp_path / "t.csv"), "--slo", "latency<=2",
                 "--optimizer", "random", "--trials", "2", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["config"] == {"b": 1}


@pytest.mark.parametrize("name, content, message", [
    ("t.json", '[{"b": 1, "energy": 2.0}]', "holds a JSON list, expected a JSON object"),
    ("t.json", '{"knobs": ["b"], "rows": {"b": 1}}', "rows must be a list of objects"),
    ("t.json", '{"knobs": "b", "rows": [{"b": 1}]}', "knobs must be a list of column names"),
    ("t.csv", "# knobs: b\nb,energy\n1,nan\n", "row 1 has energy = NaN"),
    ("t.csv", "# knobs: b\nb,energy\n1\n", "fewer cells than the header"),
    ("t.csv", b"# knobs: b\nb,energy\n1,\xff\n", "t.csv:3 is not UTF-8"),
])
def test_bad_recorded_tables_name_the_file(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["tune", "--table", str(path), "--trials", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


class _Preferred:
    """An optimizer plugin that asks to be the default (priority above every installed one)."""

    @hookimpl
    def thrifty_optimizers(self):
        from thrifty.tuning.optimizers import GridSearch

        return [OptimizerSpec(name="preferred", factory=GridSearch, priority=100)]


def test_default_optimizer_is_the_record_of_highest_priority(table, register_plugin, capsys):
    argv = ["tune", "--table", str(table[0]), "--trials", "2", "--json", "--quiet"]
    installed = fresh_registry()
    assert installed.preferred("optimizers") == "cbo"  # the cbo plugin (priority 10) is installed
    assert installed.optimizer("cbo").priority > installed.optimizer("random").priority
    register_plugin(_Preferred(), name="preferred", entry_points=True)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["optimizer"] == "preferred"


def test_dotted_knob_names_reach_the_workload(tmp_path):
    from thrifty.tuning.backends import command_workload, knob_variable

    script = tmp_path / "w.py"
    script.write_text("import json, os, sys\n"
                      "print(json.dumps({'queries': 1, 'latency': 0.5, 'arg': sys.argv[1],"
                      " 'env': os.environ['THRIFTY_KNOB_ACME_FILE']}))\n")
    run = command_workload(f"{sys.executable} {script} {{acme.file}}-{{{{x}}}}")
    result = run({"acme.file": "data.bin", "batch-size": 2})
    assert result["arg"] == "data.bin-{x}" and result["env"] == "data.bin"
    assert knob_variable("acme.file") == "THRIFTY_KNOB_ACME_FILE"
    assert knob_variable("batch-size") == "THRIFTY_KNOB_BATCH_SIZE"
    with pytest.raises(ConfigError, match="'acme.fil' which is not a knob"):
        command_workload("echo {acme.fil}")({"acme.file": 1})
    with pytest.raises(ConfigError, match="THRIFTY_KNOB_A_B"):
        command_workload("echo")({"a.b": 1, "a-b": 2})


def test_hw_read_gives_a_list_option_as_text_to_the_factory(capsys):
    assert main(["hw", "read", "batch-size", "-o", "values=1,4,16", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["domain"] == "1, 4, 16" and row["value"] in (1, 4, 16)
