"""The rules inside bench/'s GPU scripts that decide what they report, checked off the GPU."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench's modules
from gpu_speed import EXPAND, cache_len, worth_timing  # noqa: E402
from step_cost import busy_us  # noqa: E402

from thrifty.speculative.tree import TreeShape  # noqa: E402


def test_busy_time_counts_overlapping_kernels_once_and_gaps_never():
    # two streams overlapping (0-10, 5-12), one kernel inside another (20-30 holds 22-25),
    # and an idle gap between 12 and 20
    assert busy_us([(20, 30), (0, 10), (22, 25), (5, 12)]) == 22
    assert busy_us([]) == 0


def test_an_expanding_draft_runs_trees_only_and_siblings_can_be_left_out():
    tree = TreeShape(3, 3, 8)
    assert worth_timing("feat", 3) and worth_timing("feat", tree)
    assert not worth_timing("feat" + EXPAND, 3) and worth_timing("feat" + EXPAND, tree)
    assert not worth_timing("feat", tree, siblings=False)
    assert worth_timing("feat" + EXPAND, tree, siblings=False)


def test_a_run_cache_holds_the_longest_prompt_its_tokens_and_the_widest_tree():
    # 100 + 128 + 16 spare = 244 slots fit 256; a tree of 24 nodes (wider than γ 5) does not
    assert cache_len(100, 128) == 256 and cache_len(100, 128, [5]) == 256
    assert cache_len(100, 128, [5, TreeShape(6, 4, 24)]) == 512
