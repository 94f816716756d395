"""Plugin discovery, isolation, strictness, allow/deny lists, conflicts and provenance."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from thrifty import CommandSpec, DraftModelSpec, VerifierSpec, hookimpl
from thrifty.errors import ConfigError, PluginConflictError, PluginError, PluginWarning
from thrifty.plugins import PluginManager
from thrifty.registry import Registry

from .conftest import HELLO_PLUGIN, TOY_PLUGIN

BROKEN = "raise RuntimeError('this plugin is broken on purpose')\n"


def test_broken_plugin_is_reported_and_does_not_stop_generate(fake_site):
    fake_site.add("thrifty-broken", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    listed = fake_site.thrifty("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["broken"]["status"] == "error"
    assert "broken on purpose" in rows["broken"]["error"]
    assert rows["broken"]["distribution"] == "thrifty-broken"
    assert rows["toy"]["status"] == "ok" and rows["toy"]["provides"] == {"verifiers": ["toy"]}
    assert "broken on purpose" in listed.stderr  # also a warning
    gen = fake_site.thrifty("generate", "--verifier", "toy", "--no-draft", "--json",
                            "--max-new-tokens", "5", "abc")
    assert gen.returncode == 0, gen.stderr
    assert len(json.loads(gen.stdout)["texts"][0]) == 5


def test_strict_mode_fails_loudly(fake_site):
    fake_site.add("thrifty-broken", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    out = fake_site.thrifty("plugins", THRIFTY_STRICT_PLUGINS="1")
    assert out.returncode != 0
    assert "broken" in out.stderr and "THRIFTY_STRICT_PLUGINS" in out.stderr


def test_table_output_lists_plugins(fake_site):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    out = fake_site.thrifty("plugins")
    assert out.returncode == 0
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "PROVIDES"]
    assert any(r.startswith("toy ") and "thrifty-toy" in r and "verifiers: toy" in r
               for r in rows)


def test_allow_and_deny_lists(fake_site, monkeypatch):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    fake_site.add("thrifty-broken", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    fake_site.activate(monkeypatch)
    monkeypatch.setenv("THRIFTY_PLUGINS", "toy")
    assert [i.name for i in PluginManager(strict=True).load_entry_points().plugins()] == ["toy"]
    monkeypatch.setenv("THRIFTY_PLUGINS", "toy,broken")
    monkeypatch.setenv("THRIFTY_DISABLE_PLUGINS", "broken")
    names = [i.name for i in PluginManager(strict=True).load_entry_points().plugins()]
    assert names == ["toy"]


def test_same_entry_point_name_in_two_distributions(fake_site, monkeypatch):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    fake_site.add("thrifty-toy-fork", {"toy": "toy_plugin"}, {})
    fake_site.activate(monkeypatch)
    monkeypatch.setenv("THRIFTY_PLUGINS", "toy")
    with pytest.raises(PluginConflictError) as err:
        PluginManager(strict=True).load_entry_points()
    assert "thrifty-toy" in str(err.value) and "thrifty-toy-fork" in str(err.value)


IMPOSTOR = """
from thrifty import DraftModelSpec, hookimpl

@hookimpl
def thrifty_draft_models():
    return [DraftModelSpec(name="impostor-draft", factory=lambda verifier: None)]
"""


@pytest.mark.parametrize("impostor", ["thrifty-toy-fork", "a-toy-impostor"])
def test_entry_point_clash_is_attributed_to_each_distribution(fake_site, impostor):
    """Whichever distribution loads first keeps the name; each row and each record carries its
    own distribution, never the other's."""
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    fake_site.add(impostor, {"toy": "impostor_plugin"}, {"impostor_plugin": IMPOSTOR})
    out = fake_site.thrifty("plugins", "--json", THRIFTY_PLUGINS="core,toy")
    assert out.returncode == 0, out.stderr
    rows = {r["distribution"]: r for r in json.loads(out.stdout) if r["name"] == "toy"}
    assert set(rows) == {"thrifty-toy", impostor}
    kept, refused = sorted(rows)  # loaded in (name, distribution) order: the first keeps it
    assert rows[kept]["status"] == "ok" and rows[kept]["error"] is None
    assert rows[refused]["status"] == "error" and rows[refused]["provides"] == {}
    assert kept in rows[refused]["error"] and refused in rows[refused]["error"]
    provided = {"thrifty-toy": {"verifiers": ["toy"]}, impostor: {"draft_models":
                                                                   ["impostor-draft"]}}
    assert rows[kept]["provides"] == provided[kept]


def test_entry_point_clash_stamps_the_loaded_distribution(fake_site, monkeypatch):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    fake_site.add("a-toy-impostor", {"toy": "impostor_plugin"}, {"impostor_plugin": IMPOSTOR})
    fake_site.activate(monkeypatch)
    monkeypatch.setenv("THRIFTY_PLUGINS", "toy")
    with pytest.warns(PluginWarning, match="thrifty-toy"):
        reg = Registry(PluginManager(strict=False).load_entry_points())
    assert reg.draft_model("impostor-draft").distribution == "a-toy-impostor"
    assert "toy" not in reg.names("verifiers")


DUPLICATES = """
from thrifty import CommandSpec, DraftModelSpec, OptimizerSpec, hookimpl

@hookimpl
def thrifty_draft_models():
    return [DraftModelSpec(name="toy-draft", factory=lambda verifier: None),
            DraftModelSpec(name="only-in-{dist}", factory=lambda verifier: None)]

@hookimpl
def thrifty_optimizers():
    return [OptimizerSpec(name="grid", factory=lambda *a: None)]

@hookimpl
def thrifty_commands():
    return [CommandSpec(name="generate", configure=lambda p: None, run=lambda a: 7,
                        description="not the real generate")]
"""


def test_duplicate_parts_outside_strict_refuse_the_later_and_every_command_runs(fake_site):
    # entry points load in name order: every installed plugin first, then x-first, x-second
    for dist, name in (("dist-first", "x-first"), ("dist-second", "x-second")):
        fake_site.add(dist, {name: name.replace("-", "_")},
                      {name.replace("-", "_"): DUPLICATES.replace("{dist}", name)})
    out = fake_site.thrifty("plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    first, second = rows["x-first"], rows["x-second"]
    assert first["provides"] == {"draft_models": ["toy-draft", "only-in-x-first"]}
    assert second["provides"] == {"draft_models": ["only-in-x-second"]}  # the rest still works
    assert first["status"] == second["status"] == "error"
    assert "'toy-draft'" not in first["error"]
    for part in ("draft model 'toy-draft'", "optimizer 'grid'", "command 'generate'"):
        assert part in second["error"]
    assert "by dist-first (plugin x-first), which keeps it" in second["error"]
    assert "by thrifty (plugin tuning), which keeps it" in second["error"]
    command = [line for line in out.stderr.splitlines() if "command 'generate'" in line
               and "x-second" in line]
    assert len(command) == 1 and command[0].startswith("thrifty: warning:")
    assert "plugin core" in command[0] and "dist-second" in command[0]
    assert "THRIFTY_DISABLE_PLUGINS=x-second" in command[0]
    table = fake_site.thrifty("plugins").stdout.splitlines()
    row = next(line for line in table if line.startswith("x-second "))
    assert "draft_models: only-in-x-second" in row and "command 'generate'" in row
    helped = fake_site.thrifty("--help")
    assert helped.returncode == 0 and "generate" in helped.stdout
    gen = fake_site.thrifty("generate", "--help")
    assert gen.returncode == 0 and "--draft" in gen.stdout  # the core's generate kept its name


def test_non_strict_warnings_are_one_clean_line(fake_site):
    fake_site.add("thrifty-broken", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    out = fake_site.thrifty("plugins")
    assert out.returncode == 0
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("thrifty: warning: thrifty plugin 'broken' (thrifty-broken 1.0)")
    assert ".py" not in lines[0]


BROKEN_HOOK = HELLO_PLUGIN + """
@hookimpl
def thrifty_draft_models():
    raise RuntimeError("this hook is broken on purpose")
"""


@pytest.mark.parametrize("argv", [["generate", "--help"], ["hello", "world"], ["plugins"]])
def test_strict_mode_is_fatal_for_every_command(fake_site, argv):
    fake_site.add("thrifty-hello", {"hello": "hello_plugin"}, {"hello_plugin": BROKEN_HOOK})
    relaxed = fake_site.thrifty(*argv)
    assert relaxed.returncode == 0, relaxed.stderr
    strict = fake_site.thrifty(*argv, THRIFTY_STRICT_PLUGINS="1")
    assert strict.returncode == 2
    assert "broken on purpose" in strict.stderr and "thrifty-hello" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_strict_unknown_hook_names_the_distribution(fake_site):
    typo = "from thrifty import hookimpl\n\n@hookimpl\ndef thrifty_draft_model():\n    return []\n"
    fake_site.add("thrifty-typo", {"typo": "typo_plugin"}, {"typo_plugin": typo})
    out = fake_site.thrifty("plugins", THRIFTY_STRICT_PLUGINS="1")
    assert out.returncode == 2
    assert "thrifty_draft_model" in out.stderr and "thrifty-typo 1.0" in out.stderr


def test_plugin_lists_with_unknown_names(fake_site):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    garbage = fake_site.thrifty("plugins", THRIFTY_PLUGINS="garbage")
    assert garbage.returncode == 2
    assert "THRIFTY_PLUGINS" in garbage.stderr and "['garbage']" in garbage.stderr
    assert "core" in garbage.stderr and "toy" in garbage.stderr  # what is installed
    typo = fake_site.thrifty("plugins", THRIFTY_PLUGINS="core,tyo")
    assert typo.returncode == 2 and "Did you mean 'toy' for 'tyo'?" in typo.stderr
    disabled = fake_site.thrifty("plugins", "--json", THRIFTY_DISABLE_PLUGINS="tyo")
    assert disabled.returncode == 0
    assert [ln for ln in disabled.stderr.splitlines()] == [
        ln for ln in disabled.stderr.splitlines() if ln.startswith("thrifty: warning:")]
    assert "THRIFTY_DISABLE_PLUGINS" in disabled.stderr and "'toy'" in disabled.stderr
    assert "toy" in {r["name"] for r in json.loads(disabled.stdout)}


def test_commands_are_records_with_provenance(fake_site, monkeypatch):
    fake_site.add("thrifty-hello", {"hello": "hello_plugin"}, {"hello_plugin": HELLO_PLUGIN},
                  version="3.1")
    fake_site.activate(monkeypatch)
    reg = Registry(PluginManager(strict=True).load_entry_points())
    spec = reg.command("hello")
    assert isinstance(spec, CommandSpec)
    assert (spec.plugin, spec.distribution, spec.version) == ("hello", "thrifty-hello", "3.1")
    assert reg.names("commands") == sorted(reg.commands())
    ran = fake_site.thrifty("hello", "world")
    assert ran.returncode == 0 and ran.stdout == "hello, world\n"
    listed = {r["name"]: r for r in json.loads(fake_site.thrifty("plugins", "--json").stdout)}
    assert listed["hello"]["provides"] == {"commands": ["hello"]}


def test_old_style_commands_hook_is_refused_loudly():
    class OldStyle:
        @hookimpl
        def thrifty_commands(self, cli):
            cli.add("x", "x", lambda p: None, lambda a: 0)

    with pytest.raises(PluginError, match="cli"):
        PluginManager(strict=True).register(OldStyle(), name="old", distribution="old-dist")


class _Drafts:
    def __init__(self, name):
        self.name = name

    @hookimpl
    def thrifty_draft_models(self):
        return [DraftModelSpec(name=self.name, factory=lambda verifier: None)]


def test_duplicate_record_names_name_both_distributions():
    pm = PluginManager(strict=True)
    pm.register(_Drafts("same"), name="a", distribution="dist-a")
    pm.register(_Drafts("same"), name="b", distribution="dist-b")
    with pytest.raises(PluginConflictError) as err:
        pm.records("draft_models")
    assert "dist-a" in str(err.value) and "dist-b" in str(err.value)


def test_records_carry_provenance():
    pm = PluginManager(strict=True)
    pm.register(_Drafts("mine"), name="mine-plugin", distribution="my-dist", version="2.0")
    spec = Registry(pm).draft_model("mine")
    assert (spec.plugin, spec.distribution, spec.version) == ("mine-plugin", "my-dist", "2.0")
    assert "my-dist 2.0" in spec.provenance()


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def thrifty_draft_model(self):  # missing "s"
            return []

    with pytest.raises(PluginError, match="thrifty_draft_model"):
        PluginManager(strict=True).register(Typo(), name="typo")
    pm = PluginManager(strict=False)
    with pytest.warns(PluginWarning, match="unknown hook"):
        pm.register(Typo(), name="typo")
    assert pm.info["typo"].status == "error"


def test_wrong_record_type_is_rejected():
    class Wrong:
        @hookimpl
        def thrifty_verifiers(self):
            return [DraftModelSpec(name="x", factory=lambda v: None)]

    pm = PluginManager(strict=True)
    pm.register(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="VerifierSpec"):
        pm.records("verifiers")


def test_unknown_name_lists_registered(empty_registry):
    with pytest.raises(Exception) as err:
        empty_registry.draft_model("ngramm")
    assert "Registered" in str(err.value)


def test_unknown_name_suggests_close_match():
    pm = PluginManager(strict=True)
    pm.register(_Drafts("ngram"), name="n")
    with pytest.raises(Exception, match="Did you mean 'ngram'"):
        Registry(pm).draft_model("ngramm")


def test_register_plugin_fixture_scopes_to_test(register_plugin):
    import thrifty

    register_plugin(_Drafts("scoped"), name="scoped-plugin")
    assert "scoped" in thrifty.registry().names("draft_models")


def test_register_plugin_fixture_did_not_leak():
    import thrifty

    assert "scoped" not in thrifty.registry().names("draft_models")


def test_kernel_names_no_plugin_distribution():
    """The core picks parts by registered name and record fields, never by naming a plugin:
    no installed plugin's distribution or import package appears in the kernel's source."""
    root = Path(__file__).resolve().parents[1]
    names = {name for ep in metadata.entry_points(group="thrifty")
             if ep.dist.metadata["Name"] != "thrifty"
             for name in (ep.dist.metadata["Name"], ep.value.split(".")[0])}
    assert {"thrifty-cbo", "thrifty_hf", "thrifty_ngram"} <= names
    found = [f"{path.relative_to(root)}: {name}"
             for path in (root / "kernel" / "thrifty").rglob("*.py")
             for name in names if name in path.read_text()]
    assert not found, found


def test_option_parse_reads_text_by_the_declared_type():
    from thrifty import Option

    assert Option((list, tuple, str), ()).parse("o", "values", "1,4,16") == "1,4,16"
    assert Option(list, []).parse("o", "values", "a, b") == ["a", "b"]
    assert Option(bool, False).parse("o", "safe", "yes") is True
    assert Option((int, type(None)), None).parse("o", "default", "none") is None
    assert Option((int, type(None)), None).parse("o", "default", "4") == 4
    assert Option(float, 1.0).parse("o", "beta", "0.5") == 0.5
    with pytest.raises(ConfigError, match="'beta' must be float"):
        Option(float, 1.0).parse("o", "beta", "half")


def test_plugin_options_on_the_command_line(register_plugin):
    from thrifty import Option
    from thrifty.refs import plugin_ref

    class Weighted:
        @hookimpl
        def thrifty_draft_models(self):
            return [DraftModelSpec(name="weighted", factory=lambda verifier, **o: None, options={
                "weights": Option(str, help="file"), "depth": Option(int, 2),
                "greedy": Option(bool, False)})]

        @hookimpl
        def thrifty_verifiers(self):
            return [VerifierSpec(name="toy", factory=lambda **o: None,
                                 options={"vocab": Option(int, 6)})]

    reg = register_plugin(Weighted(), name="weighted", entry_points=True)
    assert plugin_ref("ngram,max_ngram=5,min_ngram=1", "draft_models", reg) == (
        "ngram", {"max_ngram": 5, "min_ngram": 1})
    assert plugin_ref("weighted:w.safetensors,depth=3,greedy=true", "draft_models", reg) == (
        "weighted", {"weights": "w.safetensors", "depth": 3, "greedy": True})
    assert plugin_ref("toy,vocab=9", "verifiers", reg) == ("toy", {"vocab": 9})
    with pytest.raises(ConfigError, match="Did you mean 'max_ngram'.*accepts: max_ngram, "
                                          "min_ngram"):
        plugin_ref("ngram,max_ngrams=5", "draft_models", reg)
    with pytest.raises(ConfigError, match="no required option to take 'x'"):
        plugin_ref("ngram:x", "draft_models", reg)
    with pytest.raises(ConfigError, match="'depth' must be int"):
        plugin_ref("weighted:w,depth=deep", "draft_models", reg)
    with pytest.raises(ConfigError, match="verifier 'toy' has no option 'vocabs'"):
        plugin_ref("toy,vocabs=9", "verifiers", reg)


def test_generate_takes_verifier_options(fake_site):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    args = ["generate", "--json", "--no-draft", "--max-new-tokens", "8", "abcabcab"]
    six = fake_site.thrifty(*args, "--verifier", "toy")
    nine = fake_site.thrifty(*args, "--verifier", "toy,vocab=9")
    assert six.returncode == nine.returncode == 0, nine.stderr
    # a larger vocabulary is another trigram table: the option reached the verifier
    assert json.loads(six.stdout)["texts"] != json.loads(nine.stdout)["texts"]
    bad = fake_site.thrifty(*args, "--verifier", "toy,vocab=nine")
    assert bad.returncode != 0 and "'vocab' must be int" in bad.stderr


def test_generate_takes_draft_options(fake_site):
    fake_site.add("thrifty-toy", {"toy": "toy_plugin"}, {"toy_plugin": TOY_PLUGIN})
    args = ["generate", "--verifier", "toy", "--json", "--max-new-tokens", "8", "abcabcab"]
    plain = fake_site.thrifty(*args, "--no-draft")
    drafted = fake_site.thrifty(*args, "--draft", "ngram,max_ngram=2,min_ngram=1")
    assert plain.returncode == drafted.returncode == 0, drafted.stderr
    assert json.loads(drafted.stdout)["texts"] == json.loads(plain.stdout)["texts"]
    bad = fake_site.thrifty(*args, "--draft", "ngram,max_ngram=two")
    assert bad.returncode == 2 and "'max_ngram' must be int" in bad.stderr
