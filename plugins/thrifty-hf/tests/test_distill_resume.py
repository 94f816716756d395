"""``thrifty distill --resume``: train a saved draft further, keeping its architecture."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from thrifty.errors import ConfigError
from thrifty_hf.distill import configure, run
from thrifty_hf.drafts import MANIFEST, WEIGHTS


def _distill(*argv):
    p = argparse.ArgumentParser()
    configure(p)
    return run(p.parse_args(list(argv)))


@pytest.fixture(scope="module")
def first(small_draft_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("first") / "draft"
    common = ["--verifier", str(small_draft_dir), "--corpus", "code", "--code-tokens", "3000",
              "--batch", "2", "--seq-len", "32", "--device", "cpu", "--quiet"]
    _distill("--out", str(out), "--depth", "1", "--init", "fresh", "--features", "--steps", "3",
             *common)
    return out, common


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / WEIGHTS))


def test_resume_starts_from_the_saved_weights_and_records_both_runs(first, tmp_path):
    folder, common = first
    again = tmp_path / "again"
    _distill("--out", str(again), "--resume", str(folder), "--steps", "1", "--lr", "1e-9",
             *common)
    before, after = _weights(folder), _weights(again)
    assert before.keys() == after.keys()
    # a near-zero learning rate: the resumed draft is the saved one, not a fresh start
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-3) for k in before)
    old, new = (json.loads((f / MANIFEST).read_text()) for f in (folder, again))
    assert new["architecture"] == old["architecture"] and old["architecture"]["features"]
    assert new["training"]["resumed_from"]["draft"] == str(folder)
    assert new["training"]["resumed_from"]["training"]["steps"] == 3


def test_resume_refuses_a_new_architecture_or_a_full_model(first, small_draft_dir, tmp_path):
    folder, common = first
    with pytest.raises(ConfigError, match="architecture"):
        _distill("--out", str(tmp_path / "x"), "--resume", str(folder), "--depth", "3", *common)
    with pytest.raises(ConfigError, match="full Hugging Face model"):
        _distill("--out", str(tmp_path / "y"), "--resume", str(small_draft_dir), *common)
