"""The held-out suite (bench/heldout) shares no text with any corpus a thrifty draft learns from.

Corpora: the standard library (``thrifty distill``'s code and the PairConnect corpora), the
``shakespeare`` plays (PairConnect), and ``thrifty distill``'s templated chat requests (whose
answers the verifier writes itself). A prompt fails if one of its lines of 40+ characters (20+ of them
letters: separators and one-call idioms such as ``handler = logging.StreamHandler()`` are
shared by all Python text) is a line of a corpus file, if it contains a distillation request, or if a chat prompt names a
distillation topic.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from thrifty_hf.distill import TOPICS, chat_prompts, stdlib_files
from thrifty_pairconnect.corpora import shakespeare

SUITE = Path(__file__).resolve().parents[1] / "bench" / "heldout" / "suite.json"
MIN_LINE = 40
MIN_LETTERS = 20


def _lines(text: str) -> set[str]:
    return {s for line in text.splitlines() if len(s := " ".join(line.split())) >= MIN_LINE
            and sum(c.isalpha() for c in s) >= MIN_LETTERS}


def _texts(row: dict) -> list[str]:
    return [row["text"]] if "text" in row else [m["content"] for m in row["messages"]]


@pytest.fixture(scope="module")
def suite() -> dict:
    return json.loads(SUITE.read_text(encoding="utf-8"))["workloads"]


@pytest.fixture(scope="module")
def corpus_lines() -> set[str]:
    lines: set[str] = set()
    for path in stdlib_files("train") + stdlib_files("heldout"):
        lines |= _lines(path.read_text(encoding="utf-8", errors="replace"))
    plays = shakespeare()
    for split in ("train", "heldout"):
        for text in plays.texts(split):
            lines |= _lines(text)
    return lines


def test_suite_has_every_workload(suite):
    assert set(suite) == {"code", "humaneval", "chat", "multiturn", "summarise"}
    for name, wl in suite.items():
        assert len(wl["prompts"]) >= 12, name
        assert all(r["source"] and _texts(r) and all(_texts(r)) for r in wl["prompts"]), name
    # long context: every summarisation prompt is thousands of characters
    assert min(len(_texts(r)[0]) for r in suite["summarise"]["prompts"]) > 6000


def test_no_prompt_line_occurs_in_a_corpus(suite, corpus_lines):
    assert len(corpus_lines) > 100_000  # the corpora were really read
    shared = [(name, r["source"], line) for name, wl in suite.items() for r in wl["prompts"]
              for text in _texts(r) for line in _lines(text) & corpus_lines]
    assert not shared, shared


def test_no_prompt_is_a_distillation_request_or_topic(suite):
    requests = [p.lower() for p in chat_prompts()]
    for name, wl in suite.items():
        for r in wl["prompts"]:
            for text in map(str.lower, _texts(r)):
                assert not any(q in text for q in requests), (name, r["source"])
                if wl["kind"] == "chat" and name != "summarise":
                    assert not [t for t in TOPICS if t.lower() in text], (name, r["source"])


def test_the_check_finds_a_planted_overlap(corpus_lines):
    """The line check is not vacuous: a line copied from the standard library is found."""
    planted = next(iter(sorted(corpus_lines)))
    assert _lines(f"def f():\n    {planted}\n") & corpus_lines


def test_bench_loader_tokenizes_every_workload(suite):
    spec = importlib.util.spec_from_file_location(
        "heldout", SUITE.parent / "__init__.py", submodule_search_locations=[])
    heldout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heldout)

    class Tok:  # counts characters: enough to see that every workload reaches the tokenizer
        def encode(self, text):
            return [ord(c) for c in text]

        def apply_chat_template(self, messages, **kw):
            return [ord(c) for m in messages for c in m["content"]]

    ids = heldout.load(Tok(), n=2)
    assert set(ids) == set(suite) and all(len(v) == 2 and all(v) for v in ids.values())
