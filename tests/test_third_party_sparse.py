"""A third party's sampler and sparse layer, installed as a distribution with an entry point,
are selected by name through ``thrifty train --family`` / ``--layer`` (issue 19)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from thrifty.cli import main

SOURCE = (Path(__file__).parent / "third_party" / "acme_sparse.py").read_text()
TRAIN = ["train", "--train", "synthetic:64x40", "--n-train", "64", "--n-test", "16",
         "--hidden", "8", "--batch-size", "16", "--eval-every", "2", "--eval-points", "16",
         "--json"]


@pytest.fixture
def acme_site(fake_site):
    """thrifty plus the installed plugins plus the ``acme-sparse`` distribution."""
    fake_site.add("acme-sparse", {"acme": "acme_sparse"}, {"acme_sparse": SOURCE})
    return fake_site


@pytest.fixture
def acme(acme_site, monkeypatch):
    """The fake site visible in this process: the process-wide registry (what the CLI sees)
    loads its entry point with the installed plugins'. Returns the acme module."""
    import thrifty

    acme_site.activate(monkeypatch)
    monkeypatch.delitem(sys.modules, "acme_sparse", raising=False)
    monkeypatch.setattr(importlib.import_module("thrifty.registry"), "_default", None)
    assert thrifty.registry().sampler("acme-srp").distribution == "acme-sparse"
    return importlib.import_module("acme_sparse")


def _history(capsys, *args):
    assert main([*TRAIN, *args]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [h["step"] for h in history] == [2, 4]
    assert all(0 <= h["p1"] <= 1 and h["loss"] > 0 for h in history)
    return history


def test_installed_sampler_and_layer_train_through_the_cli(acme, capsys, tmp_path):
    slide = _history(capsys, "--family", "acme-srp")
    (tmp_path / "t.toml").write_text("[train.slide]\nrank = 2\n")
    lowrank = _history(capsys, "--layer", "acme-lowrank", "--config", str(tmp_path / "t.toml"))
    simhash = _history(capsys, "--family", "simhash")
    assert slide != simhash and lowrank != simhash  # three different networks trained


def test_the_named_parts_are_the_ones_built(acme):
    from thrifty_lsh.model import build_net

    net = build_net(30, 40, hidden=8, layer="slide", family="acme-srp",
                    sampler_options={"tables": 6})
    assert isinstance(net.output.sampler.inner, acme.BruteSRP)
    assert net.output.sampler.inner.tables == 6
    net = build_net(30, 40, hidden=8, layer="acme-lowrank", rank=3)
    assert isinstance(net.output, acme.LowRank) and net.output.v.shape == (3, 8)


def test_a_protocol_only_sampler_cannot_be_checkpointed(acme, tmp_path, capsys):
    assert main([*TRAIN, "--family", "acme-srp", "--checkpoint", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert "BruteSRP has no state()/load_state()" in err and "without --checkpoint" in err
    assert not list((tmp_path / "ck").iterdir())  # refused before the first step


@pytest.mark.parametrize("flag, name, registered", [
    ("--family", "acme-nope", "acme-srp, dwta, minhash, simhash, wta"),
    ("--layer", "acme-nope", "acme-lowrank, dense, pairconnect, slide"),
])
def test_unknown_names_list_what_is_registered(acme, capsys, flag, name, registered):
    assert main([*TRAIN, flag, name]) == 2
    err = capsys.readouterr().err
    assert f"named {name!r}" in err and registered in err
    assert "Attribute(" not in err and "attrs" not in err


def test_a_layer_that_cannot_be_an_output_layer_is_refused(capsys):
    # PairConnect is a sparse layer fed with token ids, not hidden vectors
    assert main([*TRAIN, "--layer", "pairconnect"]) == 2
    assert "sparse layer 'pairconnect' cannot be the output layer" in capsys.readouterr().err
