"""The held-out evaluation suite: prompts from sources no thrifty draft was distilled on.

``suite.json`` (built by ``build.py`` from pinned packages of the index) holds five workloads:
third-party code, HumanEval problems, single-turn chat, multi-turn chat and long-context
summarisation; ``load`` turns them into token ids for a tokenizer (chat workloads through its
chat template). ``lines`` is the rule by which a corpus shares no text with the suite: no line
of it is a line of a prompt (``tests/test_heldout_suite.py``, ``bench/draft_corpus.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

SUITE = Path(__file__).resolve().parent / "suite.json"
WORKLOADS = ("code", "humaneval", "chat", "multiturn", "summarise")
MIN_LINE = 40
MIN_LETTERS = 20


def normalise(line: str) -> str:
    """A line as the suite and a corpus are compared: whitespace runs made one space, trimmed."""
    return " ".join(line.split())


def lines(text: str) -> set[str]:
    """The lines of ``text`` that a corpus may not share with the suite: :func:`normalise`d
    lines of ``MIN_LINE``+ characters, ``MIN_LETTERS``+ of them letters (shorter ones,
    separators and one-call idioms such as ``handler = logging.StreamHandler()`` are shared
    by all code)."""
    return {s for line in text.splitlines() if len(s := normalise(line)) >= MIN_LINE
            and sum(c.isalpha() for c in s) >= MIN_LETTERS}


def texts(row: dict) -> list[str]:
    """The texts of one prompt: its ``text``, or the content of each of its messages."""
    return [row["text"]] if "text" in row else [m["content"] for m in row["messages"]]


def suite_lines() -> dict[str, str]:
    """Every :func:`lines` line of every prompt, with the prompt's source."""
    return {line: r["source"] for wl in prompts().values() for r in wl["prompts"]
            for text in texts(r) for line in lines(text)}


def prompts() -> dict[str, dict]:
    """The suite's workloads as stored: ``{name: {"kind": "text" | "chat", "prompts": [...]}}``."""
    return json.loads(SUITE.read_text(encoding="utf-8"))["workloads"]


def sample(rows: list, n: int | None) -> list:
    """``n`` of ``rows`` evenly spaced from the first (all when None or ``n`` >= their count).
    A workload is stored in its sources' order (chat: one AI question, 7 coding requests, then
    trivia and conversation), so its first ``n`` would be one or two sources' and a speed
    measured on them that of those sources; spaced, ``n`` prompts take each source's share."""
    if n is None or n >= len(rows):
        return list(rows)
    return [rows[i * len(rows) // n] for i in range(n)]


def load(tokenizer, names=WORKLOADS, n: int | None = None) -> dict[str, list[list[int]]]:
    """Token ids of ``n`` prompts (all when None) of each workload in ``names``, spread over
    the workload (:func:`sample`)."""
    suite = prompts()
    unknown = sorted(set(names) - set(suite))
    if unknown:
        raise SystemExit(f"unknown held-out workload(s) {unknown}; the suite has {sorted(suite)}")
    out = {}
    for name in names:
        wl = suite[name]
        rows = sample(wl["prompts"], n)
        if wl["kind"] == "chat":
            out[name] = [tokenizer.apply_chat_template(r["messages"], tokenize=True,
                                                       add_generation_prompt=True,
                                                       return_dict=False) for r in rows]
        else:
            out[name] = [tokenizer.encode(r["text"]) for r in rows]
    return out
