"""The attention mask of token trees: ``ancestors`` and ``depths`` against a walk up the tree."""

import random

import torch

from thrifty.speculative.tree import ancestors, depths


def _walk(parents: list[int], i: int) -> list[int]:
    out = []
    while i >= 0:
        out.append(i)
        i = parents[i]
    return out


def test_ancestors_and_depths_equal_a_walk_up_every_random_tree():
    rng = random.Random(0)
    for k in (1, 2, 3, 8, 17):
        trees = [[-1] + [rng.randrange(j) for j in range(1, k)] for _ in range(5)]
        trees.append([-1] + list(range(k - 1)))  # a chain: the longest path
        got, deep = ancestors(torch.tensor(trees)), depths(torch.tensor(trees))
        for b, parents in enumerate(trees):
            for i in range(k):
                path = _walk(parents, i)
                assert got[b, i].nonzero().flatten().tolist() == sorted(path), (parents, i)
                assert deep[b, i] == len(path) - 1
