"""Specs are documentation: every hook has a page with its exact signature and an example that
runs; every CLI command is in docs/cli.md; every hook family has a conformance suite."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from thrifty import hookspecs
from thrifty.records import FAMILIES

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("thrifty_"))


def example(page: str) -> str:
    match = re.search(r"^## Example\b.*?```python\n(.*?)```", page, re.S | re.M)
    assert match, "the page has no '## Example' section with a python block"
    return match.group(1)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_page_has_exact_signature_and_docstring(hook):
    page_path = DOCS / "hooks" / f"{hook.removeprefix('thrifty_')}.md"
    assert page_path.exists(), f"hook {hook} is undocumented: write {page_path}"
    spec_block = re.search(r"```python\n(.*?)```", page_path.read_text(), re.S)
    assert spec_block, f"{page_path.name} does not open with the hook spec in a python block"
    block = spec_block.group(1).replace("'", "")
    signature = f"def {hook}{inspect.signature(getattr(hookspecs, hook))}".replace("'", "")
    assert signature in block, f"{page_path.name} lacks `{signature}`"
    docstring = " ".join(inspect.getdoc(getattr(hookspecs, hook)).replace("'", "").split())
    assert docstring in " ".join(block.split()), \
        f"{page_path.name}'s hook spec lacks the docstring of hookspecs.{hook}: {docstring!r}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_page_example_runs(hook, tmp_path):
    page = (DOCS / "hooks" / f"{hook.removeprefix('thrifty_')}.md").read_text()
    script = tmp_path / "example.py"
    script.write_text(example(page))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_family_has_a_hook():
    assert {f"thrifty_{f}" for f in FAMILIES} == set(HOOKS)


def test_every_command_is_in_the_cli_page():
    from thrifty.registry import registry

    page = (DOCS / "cli.md").read_text()
    missing = [c for c in registry().commands() if f"`thrifty {c}" not in page]
    assert not missing, f"docs/cli.md does not document: {missing}"


SUITES = {
    "draft_models": "thrifty.testing.drafts:DraftModelSuite",
    "verifiers": "thrifty.testing.drafts:VerifierSuite",
    "hardware_knobs": "thrifty.testing.knobs:KnobSuite",
    "energy_meters": "thrifty.testing.meters:EnergyMeterSuite",
    "optimizers": "thrifty.testing.optimizers:OptimizerSuite",
    "samplers": "thrifty.testing.samplers:SamplerSuite",
    "sparse_layers": "thrifty.testing.sparse_layers:SparseLayerSuite",
    "commands": "thrifty.testing.commands:CommandSuite",
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_a_conformance_suite(family):
    import importlib

    module, cls = SUITES[family].split(":")
    suite = getattr(importlib.import_module(module), cls)
    assert [n for n in dir(suite) if n.startswith("test_")], f"{cls} has no tests"


ROOT = DOCS.parent
PAGES = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]
# Phrases that tell how a figure came about instead of what the project is: the docs describe
# the project as it is, each figure with its machine, versions, date and command (git keeps the
# history).
NARRATIVE = re.compile(r"\bsessions?\b|\(new\)|\bno longer\b|\bused to\b|\bre-?runs?\b|"
                       r"\bre-?measured\b|\bsuperseded\b|\bthis time\b|\bpreviously\b|"
                       r"\b(?:before|after) the fix\b|\bfixed after\b", re.I)
# Artifacts named by when they were made (`speedup-s5.json`, `epyc6-cpu-b1.json`).
DATED_NAME = re.compile(r"[-_]s\d+[a-z]?[-_.]|(?:epyc|xeon)\d", re.I)


def narrative(text: str) -> list[str]:
    return [f"{n}: {line.strip()[:100]}" for n, line in enumerate(text.splitlines(), 1)
            if NARRATIVE.search(line)]


def test_narrative_finder_catches_history_and_spares_description():
    assert narrative("thrifty-cbo now (new)\nthe sixth session's run\nre-measured on an H100")
    assert narrative("Re-run on a quiet machine") and narrative("superseded by the table above")
    assert not narrative("the value in force now\nInferenceSession\nRe-running resumes it")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_narrate_no_history(page):
    hits = narrative(page.read_text())
    assert not hits, f"{page.relative_to(ROOT)} narrates history: {hits}"


def test_benchmark_artifacts_are_named_for_what_they_hold():
    assert DATED_NAME.search("gpu/speedup-s5.json") and DATED_NAME.search("cpu/epyc6-cpu-b1.json")
    assert not DATED_NAME.search("gpu/speedup-code-h100.json")
    dated = [str(p.relative_to(DOCS)) for p in (DOCS / "benchmarks").rglob("*")
             if DATED_NAME.search(p.name)]
    assert not dated, f"rename these for what they hold: {dated}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    missing = [link for link in links if "://" not in link
               and not (page.parent / link).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_template_in_writing_plugins_matches_the_ngram_plugin():
    """The hook module shown in writing-plugins.md is the contrib n-gram plugin's: same option
    names and defaults."""
    from thrifty.registry import registry

    page = (DOCS / "writing-plugins.md").read_text()
    shown = dict(re.findall(r'"(\w+)": Option\(\w+, ([^,]+),', page))
    declared = registry().draft_model("ngram").options
    assert shown == {k: repr(o.default) for k, o in declared.items()}


@pytest.mark.parametrize("page", ["tuning.md"])
def test_replay_examples_find_a_configuration(page, tmp_path):
    """Every `thrifty tune --table ...` example of the page meets its SLO on its table."""
    from thrifty.cli import main

    root = DOCS.parent
    text = (DOCS / page).read_text()
    examples = re.findall(r"thrifty tune --table (\S+) --slo '([^']+)'", text)
    assert examples
    for table, slo in examples:
        argv = ["tune", "--table", str(root / table), "--slo", slo, "--optimizer", "grid",
                "--trials", "1000", "--quiet", "--json"]
        assert main(argv) == 0, f"{page}: no row of {table} meets {slo}"
