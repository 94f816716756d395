"""Token trees: shapes, the attention a tree gets, the greedy walk, and the engine's tree steps."""

from __future__ import annotations

import pytest
import torch

from thrifty.errors import ConfigError, IncompatibleModelsError
from thrifty.speculative import FixedTree, SpeculativeDecoder, TreeShape, accept_tree
from thrifty.speculative.tree import ancestors, depths
from thrifty.testing.toy import ToyDraft, ToyVerifier

# root(0) -> 1 'a', 2 'b';  2 -> 3 'c';  1 -> 4 'd';  3 -> 5 'e'
TOKENS = torch.tensor([[0, 1, 2, 3, 4]])
PARENTS = torch.tensor([[0, 0, 2, 1, 3]])


def test_ancestors_and_depths_of_a_tree():
    parents = torch.cat([torch.tensor([[-1]]), PARENTS], 1)
    seen = ancestors(parents)[0]
    assert seen[5].nonzero().flatten().tolist() == [0, 2, 3, 5]
    assert seen[4].nonzero().flatten().tolist() == [0, 1, 4]
    assert depths(parents)[0].tolist() == [0, 1, 1, 2, 2, 3]


def _point_logits(targets: list[int], vocab: int = 6):
    """Logits whose argmax at node i is ``targets[i]``."""
    out = torch.zeros(1, len(targets), vocab)
    out[0, torch.arange(len(targets)), torch.tensor(targets)] = 5.0
    return out


def test_greedy_walk_takes_the_matching_branch_and_its_bonus():
    # the verifier wants b (the root's second child), then c, then e, then 5
    logits = _point_logits([1, 0, 2, 4, 0, 5])
    path, kept, nxt = accept_tree(logits, TOKENS, PARENTS, torch.tensor([5]),
                                  TreeShape(3, 2, 5), greedy=True)
    assert path[0, : kept[0]].tolist() == [0, 2, 3, 5] and nxt.tolist() == [5]


def test_greedy_walk_stops_at_the_first_miss_and_ignores_padding():
    logits = _point_logits([0, 3, 0, 0, 0, 0])  # wants a, then 3 where a's only child is d (3)
    path, kept, nxt = accept_tree(logits, TOKENS, PARENTS, torch.tensor([3]),
                                  TreeShape(3, 2, 5), greedy=True)
    # node 4 (d) is padding (lengths 3), so the walk stops at node 1 and emits the 3 itself
    assert path[0, : kept[0]].tolist() == [0, 1] and nxt.tolist() == [3]


def _walk(targets, tokens, parents, length, depth):
    """The greedy walk node by node in plain Python: (path, next token) of one row."""
    path, cur = [0], 0
    for _ in range(depth):
        kids = [j for j in range(length) if parents[j] == cur and tokens[j] == targets[cur]]
        if not kids:
            break
        cur = kids[0] + 1
        path.append(cur)
    return path, targets[cur]


def _random_tree(n: int, depth: int, vocab: int, gen):
    """(tokens, parents) of a random tree of ``n`` nodes no deeper than ``depth``, siblings'
    tokens distinct (as every draft grows them)."""
    def pick(k: int) -> int:
        return int(torch.randint(0, k, (1,), generator=gen))

    level, used, tokens, parents = {0: 0}, {0: set()}, [], []
    for j in range(n):
        open_ = [v for v in level if level[v] < depth and len(used[v]) < vocab]
        parent = open_[pick(len(open_))]
        free = [t for t in range(vocab) if t not in used[parent]]
        token = free[pick(len(free))]
        used[parent].add(token)
        level[j + 1], used[j + 1] = level[parent] + 1, set()
        tokens.append(token)
        parents.append(parent)
    return tokens, parents


def test_greedy_walk_equals_a_node_by_node_walk_on_random_trees():
    gen = torch.Generator().manual_seed(0)
    deep = 0
    for _ in range(200):
        depth, batch, vocab = int(torch.randint(1, 5, (1,), generator=gen)), 3, 3
        n = 2 * depth
        trees = [_random_tree(n, depth, vocab, gen) for _ in range(batch)]
        tokens = torch.tensor([t for t, _ in trees])
        parents = torch.tensor([p for _, p in trees])
        lengths = torch.randint(1, n + 1, (batch,), generator=gen)
        logits = torch.randn(batch, n + 1, vocab, generator=gen)
        path, kept, nxt = accept_tree(logits, tokens, parents, lengths,
                                      TreeShape(depth, vocab, n), greedy=True)
        for b in range(batch):
            want, bonus = _walk(logits[b].argmax(-1).tolist(), tokens[b].tolist(),
                                parents[b].tolist(), int(lengths[b]), depth)
            assert path[b, : kept[b]].tolist() == want and int(nxt[b]) == bonus
            assert path[b, kept[b]:].eq(0).all()
            deep += len(want) > 2
    assert deep > 50  # the walks went past the first level often enough to test ancestry


@pytest.mark.parametrize("text", ["4", "x2", "4x", "4x2:3", "0x2", "4x2:a"])
def test_tree_shape_parse_refuses_bad_text(text):
    with pytest.raises(ConfigError):
        TreeShape.parse(text)


def test_tree_shape_parse_and_print():
    assert TreeShape.parse("4x2") == TreeShape(4, 2, 8)
    assert str(TreeShape.parse("3x4:7")) == "3x4:7"


@pytest.mark.parametrize("shape", ["1x1", "3x2", "4x3:6", "5x1"])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_greedy_tree_speculation_equals_target_only(shape, batch_size):
    verifier, draft = ToyVerifier(vocab=5, seed=3, eos=4), ToyDraft(vocab=5, seed=4)
    prompts = [[0, 1, 2], [3], [1, 1], [2, 0, 3, 1]]
    ref = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=24)
    out = SpeculativeDecoder(verifier, draft, TreeShape.parse(shape)).generate(
        prompts, max_new_tokens=24, batch_size=batch_size)
    assert out.token_ids == ref.token_ids
    assert out.finish_reasons == ref.finish_reasons


def test_a_tree_accepts_more_than_its_chain():
    """Siblings give a miss of the chain a second chance: fewer verifier passes."""
    prompts = [[0, 1, 2], [3, 2], [1, 1]]
    passes = {}
    for policy in (3, TreeShape(3, 3, 9)):
        verifier = ToyVerifier(vocab=5, seed=3)
        SpeculativeDecoder(verifier, ToyDraft(vocab=5, seed=4), policy).generate(
            prompts, max_new_tokens=40)
        passes[str(policy)] = verifier.passes
    assert passes["3x3:9"] < passes["3"]


class _ChainOnlyDraft(ToyDraft):
    propose_tree = None


def test_trees_need_models_that_grow_and_score_them():
    with pytest.raises(IncompatibleModelsError, match="draft 'toy-draft'"):
        SpeculativeDecoder(ToyVerifier(vocab=5), _ChainOnlyDraft(vocab=5), TreeShape(2, 2, 4))


def test_context_check_counts_every_node_of_a_tree():
    verifier = ToyVerifier(vocab=5)
    verifier.max_context = 20
    dec = SpeculativeDecoder(verifier, ToyDraft(vocab=5), FixedTree(TreeShape(2, 4, 8)))
    with pytest.raises(ConfigError, match=r"lookahead \(8\)"):
        dec.generate([[0, 1, 2]], max_new_tokens=10)
