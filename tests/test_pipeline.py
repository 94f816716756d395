"""Pipelines: Python and TOML assemble the same thing; mistakes fail before any model loads."""

from __future__ import annotations

import pytest

import thrifty
from thrifty import DraftModelSpec, Option, VerifierSpec, hookimpl
from thrifty.errors import ConfigError, UnknownNameError
from thrifty.pipeline import from_config

LOADED: list[str] = []


def _verifier(model, vocab):
    from thrifty.testing.toy import ToyVerifier

    LOADED.append(model)
    return ToyVerifier(vocab=vocab)


def _draft(verifier, seed):
    from thrifty.testing.toy import ToyDraft

    return ToyDraft(vocab=verifier.vocab_size, seed=seed)


def _never(verifier):
    """A draft whose greedy proposal is never the verifier's (its table is shifted by one)."""
    from thrifty.testing.toy import ToyDraft

    return ToyDraft(vocab=verifier.vocab_size, table=verifier.table.roll(1, dims=-1))


class ToyParts:
    @hookimpl
    def thrifty_verifiers(self):
        return [VerifierSpec(name="toy", factory=_verifier, options={
            "model": Option(str, help="model name"), "vocab": Option(int, 5)})]

    @hookimpl
    def thrifty_draft_models(self):
        return [DraftModelSpec(name="toy-draft", factory=_draft,
                               options={"seed": Option(int, 1)}),
                DraftModelSpec(name="toy-never", factory=_never)]


@pytest.fixture
def parts(register_plugin):
    LOADED.clear()
    return register_plugin(ToyParts(), name="toy-parts")


TOML = """
[speculative]
verifier = { plugin = "toy", model = "m" }
drafts = [ { plugin = "toy-draft", seed = 3 } ]
lookahead = 2
"""


def test_python_and_toml_are_equivalent(parts, tmp_path):
    py = thrifty.pipeline(verifier=("toy", {"model": "m"}), drafts=[("toy-draft", {"seed": 3})],
                          lookahead=2)
    path = tmp_path / "pipe.toml"
    path.write_text(TOML)
    tm = from_config(path)
    assert py.verifier_part == tm.verifier_part and py.draft_parts == tm.draft_parts
    assert py.lookahead == tm.lookahead == 2
    a = py.generate([[1, 2]], max_new_tokens=8)
    b = tm.generate([[1, 2]], max_new_tokens=8)
    assert a.token_ids == b.token_ids


def test_defaults_are_filled_in(parts):
    pipe = thrifty.pipeline(verifier=("toy", {"model": "m"}), drafts=["toy-draft"])
    assert pipe.verifier_part.options == {"model": "m", "vocab": 5}
    assert pipe.draft_parts[0].options == {"seed": 1}


@pytest.mark.parametrize("verifier,drafts,match", [
    (("toyy", {"model": "m"}), [], r"Did you mean 'toy'.*Registered: .*toy"),
    (("toy", {"model": "m"}), ["nope"], "Registered: .*toy-draft"),
    (("toy", {}), [], "'model' is required"),
    (("toy", {"model": "m", "vocab": "5"}), [], "'vocab' must be int"),
    (("toy", {"model": "m", "colour": 1}), [], r"unknown option.*colour.*accepts: model, vocab"),
    ((1, 2, 3), [], "cannot read verifiers entry"),
])
def test_mistakes_fail_at_assembly_before_loading(parts, verifier, drafts, match):
    with pytest.raises(ConfigError, match=match):
        thrifty.pipeline(verifier=verifier, drafts=drafts)
    assert LOADED == []


def test_unknown_name_error_type(parts):
    with pytest.raises(UnknownNameError):
        thrifty.pipeline(verifier=("missing", {}))


@pytest.mark.parametrize("text,match", [
    ("[speculative\n", "not valid TOML"),
    ("[other]\n", r"\[speculative\] table"),
    ('[speculative]\nverifier = { model = "m" }\n', 'needs plugin = "<name>"'),
    ('[speculative]\nverifier = "toy"\ncolour = 1\n', "unknown key"),
])
def test_bad_toml_is_explained(parts, text, match):
    with pytest.raises(ConfigError, match=match):
        from_config(text)


def test_missing_config_file(parts, tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        from_config(tmp_path / "absent.toml")


def test_draft_selection_by_name_and_target_only(parts):
    pipe = thrifty.pipeline(verifier=("toy", {"model": "m"}), drafts=["toy-draft"])
    assert pipe.decoder("toy-draft").draft is pipe.draft(0)
    assert pipe.decoder(None).draft is None
    with pytest.raises(ConfigError, match="no draft"):
        pipe.decoder("other")
    assert LOADED == ["m"]  # the verifier loads once and is shared


def test_cli_generate_from_config(parts, tmp_path, capsys):
    from thrifty.cli import main

    path = tmp_path / "pipe.toml"
    path.write_text(TOML + '[generate]\nmax_new_tokens = 6\nprompts = ["ab"]\n')
    assert main(["generate", "--config", str(path), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert len(out["texts"][0]) == 6 and out["metrics"]["target_passes"] >= 2


def test_cli_generate_batch_size(parts, capsys):
    """``--batch-size`` runs the prompts through that many rows, and a bad one is refused."""
    import json

    from thrifty.cli import main

    assert main(["generate", "--verifier", "toy", "--draft", "toy-draft", "--batch-size", "2",
                 "--max-new-tokens", "5", "--json", "ab", "ba", "abc"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["texts"]) == 3 and out["metrics"]["batch_size"] == 2
    assert main(["generate", "--verifier", "toy", "--batch-size", "0", "ab"]) == 2
    assert "batch_size must be an int >= 1" in capsys.readouterr().err


def test_cli_generate_warns_when_acceptance_collapses(parts, capsys):
    import json

    from thrifty.cli import main

    args = ["generate", "--verifier", "toy", "--draft", "toy-never", "--max-new-tokens", "12",
            "ab", "ba"]
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: draft") and "TAR 1.00" in err[0]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["acceptance_collapsed"] and out["warnings"] == [err[0]]
    assert main(["generate", "--verifier", "toy", "--no-draft", "--max-new-tokens", "12",
                 "ab"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_cli_reports_errors_without_traceback(parts, capsys):
    from thrifty.cli import main

    assert main(["generate", "--verifier", "nope", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thrifty: error:") and "Traceback" not in err


def test_pipeline_is_the_module_and_the_function(register_plugin):
    import importlib

    import thrifty
    import thrifty.pipeline

    module = importlib.import_module("thrifty.pipeline")
    assert thrifty.pipeline is module
    assert callable(thrifty.pipeline.from_config) and callable(thrifty.pipeline.load_config)
    text = ('[speculative]\nverifier = { plugin = "toy", model = "m" }\n'
            'drafts = [ { plugin = "toy-draft", seed = 2 } ]\n')
    register_plugin(ToyParts(), name="toy-parts")
    by_config = thrifty.pipeline.from_config(thrifty.pipeline.load_config(text))
    by_call = thrifty.pipeline(("toy", {"model": "m"}), [("toy-draft", {"seed": 2})])
    for pipe in (by_config, by_call):
        assert pipe.verifier_part.options == {"model": "m", "vocab": 5}
        assert [(p.spec.name, p.options) for p in pipe.draft_parts] == [("toy-draft",
                                                                          {"seed": 2})]
