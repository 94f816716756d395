"""Pipelines: Python and TOML assemble the same thing; mistakes fail before any model loads."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import thrifty
from thrifty import DraftModelSpec, Option, VerifierSpec, hookimpl
from thrifty.errors import ConfigError, UnknownNameError
from thrifty.testing import fresh_registry
from thrifty.pipeline import from_config

LOADED: list[str] = []


def _verifier(model, vocab):
    from thrifty.testing.toy import ToyVerifier

    LOADED.append(model)
    return ToyVerifier(vocab=vocab)


def _draft(verifier, seed, device="cpu"):
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
                               options={"seed": Option(int, 1),
                                        "device": Option(str, "cpu")}),
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
    assert pipe.draft_parts[0].options == {"seed": 1, "device": "cpu"}


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


def test_drafts_of_one_plugin_are_told_apart_by_the_options_they_change(parts):
    """A label shows every option set away from its default, so two drafts of one plugin
    keep two entries where profiles and schedules key drafts by label; the same draft twice
    is refused rather than silently merged."""
    pipe = thrifty.pipeline(verifier=("toy", {"model": "m"}),
                            drafts=[("toy-draft", {"device": "meta"}),
                                    ("toy-draft", {"seed": 4, "device": "meta"})])
    # placement (device, dtype) is the run's, not the draft's: it is left out
    assert [p.label for p in pipe.draft_parts] == ["toy-draft", "toy-draft(seed=4)"]
    assert pipe.draft_index("toy-draft(seed=4)") == 1
    with pytest.raises(ConfigError, match=r"drafts \['toy-draft'\] are given more than once"):
        thrifty.pipeline(verifier=("toy", {"model": "m"}),
                         drafts=["toy-draft", ("toy-draft", {"seed": 1})])


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

    assert main(["generate", "--verifier", "toy", "--model", "m", "--draft", "toy-draft",
                 "--batch-size", "2", "--max-new-tokens", "5", "--json", "ab", "ba", "abc"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["texts"]) == 3 and out["metrics"]["batch_size"] == 2
    assert main(["generate", "--verifier", "toy", "--model", "m", "--batch-size", "0", "ab"]) == 2
    assert "batch_size must be an int >= 1" in capsys.readouterr().err


def test_cli_generate_with_a_token_tree(parts, capsys):
    """``--lookahead 3x2:5`` decodes with trees: the same greedy text as target-only."""
    import json

    from thrifty.cli import main

    argv = ["generate", "--verifier", "toy", "--model", "m", "--max-new-tokens", "12", "--json",
            "ab", "bca"]
    assert main(argv + ["--no-draft"]) == 0
    target = json.loads(capsys.readouterr().out)["texts"]
    assert main(argv + ["--draft", "toy-draft", "--lookahead", "3x2:5"]) == 0
    assert json.loads(capsys.readouterr().out)["texts"] == target
    for bad, message in (("3x", "a tree shape is DEPTHxBRANCH"), ("-1", "must be >= 0"),
                         ("four", "--lookahead is γ")):
        assert main(argv + ["--draft", "toy-draft", "--lookahead", bad]) == 2
        assert message in capsys.readouterr().err


def test_cli_generate_warns_when_acceptance_collapses(parts, capsys):
    import json

    from thrifty.cli import main

    args = ["generate", "--verifier", "toy", "--model", "m", "--draft", "toy-never",
            "--max-new-tokens", "12", "ab", "ba"]
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: draft") and "TAR 1.00" in err[0]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["acceptance_collapsed"] and out["warnings"] == [err[0]]
    assert main(["generate", "--verifier", "toy", "--model", "m", "--no-draft",
                 "--max-new-tokens", "12", "ab"]) == 0
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
        assert [(p.spec.name, p.options) for p in pipe.draft_parts] == [
            ("toy-draft", {"seed": 2, "device": "cpu"})]


# -- bad input to generate: every mistake is one line naming the file or option -------------------
def _run(*argv):
    from thrifty.cli import main

    return main(list(argv))


@pytest.mark.parametrize("tables, message", [
    ("[generate]\nmax_new_token = 3\n", "unknown key(s) ['max_new_token']. Did you mean "
                                        "'max_new_tokens'?"),
    ('[generate]\nprompts = "abc"\n', "option 'prompts' must be list, got str 'abc'"),
    ("[generate]\nprompts = [1, 2]\n", "prompts must be a list of strings"),
    ('[generate]\nmax_new_tokens = "3"\n', "option 'max_new_tokens' must be int"),
    ('[sampling]\ntemperature = "hot"\n', "option 'temperature' must be float"),
    ("[sampling]\ntemperature = inf\n", "must be a finite number"),
    ("[sampling]\ntop_p = 0.0\n", "[sampling]: sampling top_p must be a finite number > 0"),
    ("sampling = 3\n", "[sampling] must be a table"),
    ("[sampleing]\ntemperature = 1.0\n", "unknown table(s) ['sampleing']. Did you mean "
                                         "'sampling'?"),
])
def test_generate_and_sampling_tables_are_checked(parts, tmp_path, capsys, tables, message):
    path = tmp_path / "pipe.toml"
    path.write_text(tables + TOML)
    assert _run("generate", "--config", str(path), "ab") == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert LOADED == []  # refused before any model loads


def test_non_utf8_config_and_prompt_files_name_the_line(parts, tmp_path, capsys):
    config = tmp_path / "pipe.toml"
    config.write_bytes(TOML.encode() + '[generate]\nprompts = ["café"]\n'.encode("latin-1"))
    assert _run("generate", "--config", str(config)) == 2
    assert f"{config}:7 is not UTF-8 (byte 0xe9" in capsys.readouterr().err
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("ab\nba\xff\n".encode("latin-1"))
    assert _run("generate", "--verifier", "toy", "--model", "m", "--prompts-file",
                str(prompts)) == 2
    assert f"--prompts-file {prompts}:2 is not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "inf"], "sampling temperature must be a finite number >= 0; got inf"),
    (["--temperature", "nan"], "got nan"),
    (["--top-p", "1.5"], "sampling top_p must be a finite number > 0 and <= 1"),
    (["--max-new-tokens", "1000000000"], "max_new_tokens must be an integer >= 1 and <= "),
    (["--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
])
def test_generate_options_are_checked(parts, capsys, flags, message):
    assert _run("generate", "--verifier", "toy", "--model", "m", "--no-draft", *flags, "ab") == 2
    assert message in capsys.readouterr().err


def test_python_api_checks_sampling_and_lengths(parts):
    from thrifty.speculative import Sampling

    with pytest.raises(ConfigError, match="temperature must be a finite number"):
        Sampling(temperature=float("inf"))
    with pytest.raises(ConfigError, match="top_k must be an integer"):
        Sampling(top_k=True)
    decoder = thrifty.pipeline(verifier=("toy", {"model": "m"})).decoder(None)
    with pytest.raises(ConfigError, match="max_new_tokens must be an integer"):
        decoder.generate(["ab"], max_new_tokens=10**9)
    with pytest.raises(ConfigError, match="sampling must be a thrifty.speculative.Sampling"):
        decoder.generate(["ab"], sampling={"temperature": 1.0})


def test_context_window_is_checked_before_decoding(parts):
    pipe = thrifty.pipeline(verifier=("toy", {"model": "m"}), drafts=["toy-draft"], lookahead=3)
    pipe.verifier.max_context = 10
    decoder = pipe.decoder(0)
    # 3 prompt tokens + 4 new + lookahead 3 = 10 fit; one more new token does not
    assert len(decoder.generate(["abc"], max_new_tokens=4).token_ids[0]) == 4
    passes = pipe.verifier.passes
    with pytest.raises(ConfigError, match=r"3 tokens\) \+ max_new_tokens \(5\) \+ lookahead "
                                          r"\(3\) = 11 tokens exceed the context window of "
                                          r"verifier 'toy-verifier' \(10 tokens\)"):
        decoder.generate(["abc"], max_new_tokens=5)
    assert pipe.verifier.passes == passes  # refused before any pass
    pipe.verifier.max_context = 8
    assert len(pipe.decoder(None).generate(["abc"], max_new_tokens=5).token_ids[0]) == 5


WEIGHTS: list[str] = []


def _weighted(verifier, weights, seed):
    from thrifty.testing.toy import ToyDraft

    WEIGHTS.append(weights)
    return ToyDraft(vocab=verifier.vocab_size, seed=seed)


class WeightedParts(ToyParts):
    """The toy parts and a draft whose first required option is its weights file, as
    PairConnect's is."""

    @hookimpl
    def thrifty_draft_models(self):
        return [*super().thrifty_draft_models(), DraftModelSpec(
            name="weighted", factory=_weighted,
            options={"weights": Option(str), "seed": Option(int, 1)})]


def test_generate_takes_name_value_drafts_as_profile_does(register_plugin):
    register_plugin(WeightedParts(), name="toy-parts")
    WEIGHTS.clear()
    assert _run("generate", "--verifier", "toy", "--model", "m", "--draft",
                "weighted:w.safetensors", "--max-new-tokens", "3", "ab") == 0
    assert WEIGHTS == ["w.safetensors"]


def test_a_speculative_table_error_names_the_file(parts, tmp_path, capsys):
    path = tmp_path / "pipe.toml"
    path.write_text(TOML.replace("lookahead", "lookahaed"))
    assert _run("generate", "--config", str(path), "ab") == 2
    err = capsys.readouterr().err
    assert f"{path}: [speculative]: unknown key(s) ['lookahaed']. Did you mean 'lookahead'?" in err


# -- fuzz: random and mutated pipeline files ------------------------------------------------------
_fuzz = settings(max_examples=120, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
_scalar = (st.booleans() | st.integers(-10, 10) | st.integers() | st.floats() | st.text(max_size=4)
           | st.sampled_from([0.0, 1.0, 0.5, 2, 6, "ab", "toy", "toy-draft"]))
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_keys = {"speculative": ["verifier", "drafts", "lookahead"],
         "generate": ["prompts", "max_new_tokens", "stop", "batch_size"],
         "sampling": ["temperature", "top_k", "top_p"]}
_table = st.dictionaries(st.sampled_from(sum(_keys.values(), [])) | st.text(max_size=6), _value,
                         max_size=4)
_config = st.dictionaries(st.sampled_from(list(_keys)) | st.text(max_size=6), _table | _value,
                          max_size=4)


class BoundedParts(ToyParts):
    """The toy parts, with a verifier whose context window is 40 tokens: any accepted run ends."""

    @hookimpl
    def thrifty_verifiers(self):
        def bounded(model, vocab):
            verifier = _verifier(model, vocab)
            verifier.max_context = 40
            return verifier

        return [VerifierSpec(name="toy", factory=bounded, options={
            "model": Option(str, "m"), "vocab": Option(int, 5)})]


@_fuzz
@given(config=_config)
def test_fuzz_random_tables_give_settings_or_a_config_error(parts, config):
    from thrifty.pipeline import run_settings
    from thrifty.speculative import Sampling

    try:
        tables = run_settings(config, "fuzz.toml")
        from_config(config)
    except ConfigError as exc:
        assert str(exc)
        return
    Sampling(**tables["sampling"])
    assert all(isinstance(p, str) for p in tables["generate"].get("prompts", []))
    assert set(tables["generate"]) <= set(_keys["generate"])


VALID = TOML + '[generate]\nmax_new_tokens = 6\nprompts = ["ab", "ba"]\nstop = ["c"]\n' \
    '[sampling]\ntemperature = 0.8\ntop_k = 3\ntop_p = 0.9\n'


@_fuzz
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID)), st.sampled_from(
    ["", "0", "9", "-", ".", "e", "\"", "[", "]", "=", "\n", "x", "inf", "nan", "\xe9"])),
    min_size=1, max_size=3))
def test_fuzz_mutated_pipeline_files_generate_or_fail_cleanly(register_plugin, tmp_path, capsys,
                                                              edits):
    import json

    register_plugin(BoundedParts(), name="toy-parts")
    text = VALID
    for at, insert in edits:
        text = text[:at] + insert + text[at + 1:]
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    rc = _run("generate", "--config", str(path), "--json")
    out, err = capsys.readouterr()
    assert rc in (0, 2), err  # 1 is an internal error: a bug, not a user's mistake
    if rc == 2:
        assert err.startswith("thrifty: error: ") and "Traceback" not in err
        return

    def no_nan(name):
        raise AssertionError(f"{name} in the output")

    result = json.loads(out, parse_constant=no_nan)
    assert len(result["texts"]) == len(result["finish_reasons"]) >= 1


class _PreferredVerifier:
    @hookimpl
    def thrifty_verifiers(self):
        return [VerifierSpec(name="acme-verifier", factory=lambda **kw: kw, priority=100,
                             options={"model": Option(str, "acme-default", "its model")})]


def test_generate_flags_default_to_the_verifier_of_highest_priority(register_plugin):
    """Without --verifier the pipeline takes the preferred record (the core names none), and
    without --model the verifier's own model default."""
    import argparse

    from thrifty.builtin import _configure_generate, pipeline_from_args

    p = argparse.ArgumentParser()
    _configure_generate(p)
    installed = fresh_registry()
    assert installed.preferred("verifiers") == "hf"  # thrifty-hf's, priority 10
    reg = register_plugin(_PreferredVerifier(), name="acme", entry_points=True)
    assert reg.preferred("verifiers") == "acme-verifier"
    pipe, _, _ = pipeline_from_args(p.parse_args(["--no-draft", "hi"]))
    assert pipe.verifier_part.spec.name == "acme-verifier"
    assert pipe.verifier == {"model": "acme-default"}
    pipe, _, _ = pipeline_from_args(p.parse_args(["--verifier", "hf", "--model", "x", "hi"]))
    assert pipe.verifier_part.spec.name == "hf" and pipe.verifier_part.options["model"] == "x"
