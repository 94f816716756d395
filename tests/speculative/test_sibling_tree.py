"""sibling_tree: a draft's chain with its runners-up as leaf siblings, placed where the draft is
least sure; sampled chains report their q, siblings one-hot rows."""

import torch

from thrifty.speculative import TreeShape
from thrifty.speculative.tree import sibling_tree

# depth 0: sure of token 1; depth 1: unsure (token 2 at 0.4, then 3, then 0); depth 2: sure of 3
PROBS = torch.tensor([[[0.05, 0.90, 0.03, 0.02],
                       [0.25, 0.00, 0.40, 0.35],
                       [0.00, 0.00, 0.10, 0.90]]])


def test_siblings_go_where_the_draft_is_least_sure():
    tree, on_chain = sibling_tree(PROBS.argmax(-1), PROBS, TreeShape(3, 3, 5), sampled=False)
    # per depth the chain node, then its siblings, children of the chain node above
    assert tree.tokens.tolist() == [[1, 2, 3, 0, 3]]
    assert tree.parents.tolist() == [[0, 1, 1, 1, 2]]
    assert on_chain.tolist() == [[True, True, False, False, True]]
    assert tree.lengths.tolist() == [5] and tree.q is None


def test_budget_beyond_the_shape_leaves_padding():
    tree, _ = sibling_tree(PROBS.argmax(-1)[:, :2], PROBS[:, :2], TreeShape(2, 2, 6),
                           sampled=False)
    assert tree.lengths.tolist() == [4]  # depth x branch is all a chain with siblings holds
    assert tree.tokens.tolist() == [[1, 0, 2, 3, 0, 0]]
    assert tree.parents.tolist() == [[0, 0, 1, 1, 0, 0]]


def test_sampled_chain_reports_q_and_one_hot_siblings():
    chain = torch.tensor([[0, 3, 2]])  # drawn, not the argmax
    tree, on_chain = sibling_tree(chain, PROBS, TreeShape(3, 2, 6), sampled=True)
    assert tree.tokens.tolist() == [[0, 1, 3, 2, 2, 3]]  # each sibling the best but the chain's
    for col, (tok, chained) in enumerate(zip(tree.tokens[0].tolist(), on_chain[0].tolist())):
        depth = sum(on_chain[0, : col + 1].tolist()) - 1
        want = PROBS[0, depth] if chained else torch.nn.functional.one_hot(
            torch.tensor(tok), 4).float()
        torch.testing.assert_close(tree.q[0, col], want)
