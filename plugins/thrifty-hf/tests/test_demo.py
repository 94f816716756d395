"""``thrifty demo``: target-only and speculative runs interleaved, the ratio of medians, a quiet
console (thrifty's lines only) on the real SmolLM2-135M."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from thrifty import VerifierSpec, hookimpl
from thrifty.pipeline import pipeline
from thrifty_hf.demo import interleaved, summary


class _Toy:
    @hookimpl
    def thrifty_verifiers(self):
        from thrifty.testing.toy import ToyVerifier

        return [VerifierSpec(name="toy-demo", factory=lambda: ToyVerifier(vocab=6, seed=0))]


def test_runs_alternate_per_prompt_and_the_speedup_is_a_ratio_of_medians(register_plugin):
    register_plugin(_Toy(), name="toy-demo", entry_points=True)
    pipe = pipeline(("toy-demo", {}), [("ngram", {})], lookahead=2)
    order = []
    decoder = pipe.decoder

    def recording(draft=0, lookahead=None):
        order.append("target" if draft is None else "spec")
        return decoder(draft, lookahead)

    pipe.decoder = recording
    prompts = ["abcab", "bca", "cabca"]
    base, spec = interleaved(pipe, prompts, 6)
    assert order == ["target", "spec", "spec", "target", "target", "spec"]
    row = summary("toy", base, spec)
    ratio = (statistics.median(g.metrics.tokens_per_second for g in spec)
             / statistics.median(g.metrics.tokens_per_second for g in base))
    assert row["speedup"] == round(ratio, 3)
    assert row["identical_outputs"] == row["n"] == 3  # lossless: greedy outputs agree


def test_demo_console_shows_no_library_output(smollm2):
    env = {k: v for k, v in os.environ.items() if not k.startswith("THRIFTY_PLUGINS")}
    out = subprocess.run([sys.executable, "-m", "thrifty.cli", "demo", "--max-new-tokens", "2",
                          "--lookahead", "1"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.splitlines() == ["loading SmolLM2-135M-Instruct (fp32, CPU) ..."]
    rows = [ln for ln in out.stdout.splitlines() if "speedup" in ln]
    assert len(rows) == 2 and all("identical 4/4" in r for r in rows), out.stdout
