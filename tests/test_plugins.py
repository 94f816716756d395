"""Plugin discovery, isolation, strictness, allow/deny lists, conflicts and provenance."""

from __future__ import annotations

import json

import pytest

from thrifty import DraftModelSpec, hookimpl
from thrifty.errors import PluginConflictError, PluginError
from thrifty.plugins import PluginManager
from thrifty.registry import Registry

from .conftest import TOY_PLUGIN

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
    with pytest.warns(RuntimeWarning, match="unknown hook"):
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
