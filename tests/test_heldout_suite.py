"""The held-out suite (bench/heldout) shares no text with any corpus a thrifty draft learns from.

Corpora: the standard library (``thrifty distill``'s code and the PairConnect corpora), the
``shakespeare`` plays (PairConnect), and the chat requests whose answers the verifier writes
itself: ``thrifty distill``'s templated requests and follow-ups and the requests
``bench/chat_requests.py`` writes. A prompt fails if one of its lines (``heldout.lines``: 40+
characters, 20+ of them letters) is a line of a corpus file, if it contains one of those
requests, or if a chat prompt names one of their topics. The multi-language corpus of
``bench/draft_corpus.py`` applies the same line rule when it is built
(``tests/test_draft_corpus.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from thrifty_hf.distill import FOLLOW_UPS, TOPICS, chat_prompts, stdlib_files
from thrifty_pairconnect.corpora import shakespeare

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench's modules
import chat_requests  # noqa: E402
import heldout  # noqa: E402


@pytest.fixture(scope="module")
def suite() -> dict:
    return heldout.prompts()


@pytest.fixture(scope="module")
def corpus_lines() -> set[str]:
    lines: set[str] = set()
    for path in stdlib_files("train") + stdlib_files("heldout"):
        lines |= heldout.lines(path.read_text(encoding="utf-8", errors="replace"))
    plays = shakespeare()
    for split in ("train", "heldout"):
        for text in plays.texts(split):
            lines |= heldout.lines(text)
    return lines


def test_suite_has_every_workload(suite):
    assert set(suite) == {"code", "humaneval", "chat", "multiturn", "summarise"}
    for name, wl in suite.items():
        assert len(wl["prompts"]) >= 12, name
        assert all(r["source"] and heldout.texts(r) and all(heldout.texts(r))
                   for r in wl["prompts"]), name
    # long context: every summarisation prompt is thousands of characters
    assert min(len(heldout.texts(r)[0]) for r in suite["summarise"]["prompts"]) > 6000


def test_no_prompt_line_occurs_in_a_corpus(suite, corpus_lines):
    assert len(corpus_lines) > 100_000  # the corpora were really read
    shared = [(name, r["source"], line) for name, wl in suite.items() for r in wl["prompts"]
              for text in heldout.texts(r) for line in heldout.lines(text) & corpus_lines]
    assert not shared, shared


def test_no_prompt_is_a_distillation_request_or_topic(suite):
    requests = [p.lower() for p in chat_prompts() + FOLLOW_UPS + chat_requests.requests()]
    topics = [t.lower() for t in TOPICS + chat_requests.TOPICS]
    assert len(requests) > 2500
    for name, wl in suite.items():
        for r in wl["prompts"]:
            for text in map(str.lower, heldout.texts(r)):
                assert not any(q in text for q in requests), (name, r["source"])
                if wl["kind"] == "chat" and name != "summarise":
                    assert not [t for t in topics if t in text], (name, r["source"])


def test_the_chat_requests_file_is_what_distill_reads(tmp_path, capsys):
    import argparse

    from thrifty_hf.distill import chat_requests as read_requests

    out = tmp_path / "requests.txt"
    assert chat_requests.main(["--out", str(out)]) == 0
    got = read_requests(argparse.Namespace(chat_prompts=str(out)))
    assert got == chat_requests.requests() != sorted(got)  # shuffled, every request once
    assert len(set(got)) == len(chat_requests.TOPICS) * len(chat_requests.FORMS)
    assert f"{len(got)} requests" in capsys.readouterr().out


def test_the_check_finds_a_planted_overlap(corpus_lines):
    """The line check is not vacuous: a line copied from the standard library is found."""
    planted = next(iter(sorted(corpus_lines)))
    assert heldout.lines(f"def f():\n    {planted}\n") & corpus_lines


def test_bench_loader_tokenizes_every_workload(suite):
    class Tok:  # counts characters: enough to see that every workload reaches the tokenizer
        def encode(self, text):
            return [ord(c) for c in text]

        def apply_chat_template(self, messages, **kw):
            return [ord(c) for m in messages for c in m["content"]]

    ids = heldout.load(Tok(), n=2)
    assert set(ids) == set(suite) and all(len(v) == 2 and all(v) for v in ids.values())


def test_a_sample_of_a_workload_spans_its_sources(suite):
    """The prompts a benchmark takes are spread over the workload, which is stored in its
    sources' order: 8 chat prompts hold trivia as well as coding requests (the first 8 are one
    AI question and 7 coding requests), 8 code prompts come from more than two packages."""
    def files(name, n):
        return [r["source"].rsplit("/", 1)[-1] for r in heldout.sample(suite[name]["prompts"], n)]

    assert {"coding.yml", "trivia.yml"} <= set(files("chat", 8))
    assert files("chat", 8).count("trivia.yml") >= 4  # 22 of the workload's 32
    packages = {r["source"].split(":")[0] for r in heldout.sample(suite["code"]["prompts"], 8)}
    assert len(packages) > 2


def test_a_sample_is_evenly_spaced_from_the_first_and_all_when_asked_for_as_many():
    rows = list(range(32))
    assert heldout.sample(rows, 8) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert heldout.sample(rows, 3) == [0, 10, 21]
    assert heldout.sample(rows, None) == rows == heldout.sample(rows, 40)
