"""The held-out evaluation suite: prompts from sources no thrifty draft was distilled on.

``suite.json`` (built by ``build.py`` from pinned packages of the index) holds five workloads:
third-party code, HumanEval problems, single-turn chat, multi-turn chat and long-context
summarisation; ``load`` turns them into token ids for a tokenizer (chat workloads through its
chat template).
"""

from __future__ import annotations

import json
from pathlib import Path

SUITE = Path(__file__).resolve().parent / "suite.json"
WORKLOADS = ("code", "humaneval", "chat", "multiturn", "summarise")


def prompts() -> dict[str, dict]:
    """The suite's workloads as stored: ``{name: {"kind": "text" | "chat", "prompts": [...]}}``."""
    return json.loads(SUITE.read_text(encoding="utf-8"))["workloads"]


def load(tokenizer, names=WORKLOADS, n: int | None = None) -> dict[str, list[list[int]]]:
    """Token ids of the first ``n`` prompts (all when None) of each workload in ``names``."""
    suite = prompts()
    unknown = sorted(set(names) - set(suite))
    if unknown:
        raise SystemExit(f"unknown held-out workload(s) {unknown}; the suite has {sorted(suite)}")
    out = {}
    for name in names:
        wl = suite[name]
        rows = wl["prompts"][:n]
        if wl["kind"] == "chat":
            out[name] = [tokenizer.apply_chat_template(r["messages"], tokenize=True,
                                                       add_generation_prompt=True,
                                                       return_dict=False) for r in rows]
        else:
            out[name] = [tokenizer.encode(r["text"]) for r in rows]
    return out
