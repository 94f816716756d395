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
