"""Token trees on the 'hf' verifier (CachedLM.score_tree / keep_path) against chains and greedy
decoding, on tiny perturbed Llama and Qwen2 models (float32, CPU)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import families  # noqa: E402
from thrifty.errors import ConfigError  # noqa: E402
from thrifty.protocols import TreeProposal  # noqa: E402
from thrifty.speculative import SpeculativeDecoder, TreeShape  # noqa: E402
from thrifty.testing.toy import ToyTokenizer  # noqa: E402
from thrifty_hf.cached import CachedLM  # noqa: E402
from thrifty_hf.models import HFVerifier  # noqa: E402

PROMPTS = [[5, 9, 2, 7, 30, 31, 32, 40], [3, 3], [7, 1, 2, 3, 4]]

TREE = (torch.tensor([[11, 12, 13, 14, 15, 16], [21, 22, 23, 24, 0, 0], [31, 32, 33, 0, 0, 0]]),
        torch.tensor([[-1, 0, 0, 1, 3, 2], [-1, 0, 1, 0, 2, 2], [-1, 0, 0, 1, 1, 1]]),
        torch.tensor([6, 4, 3]))
"""tokens, parents, lengths: a ragged tree per row (root in column 0), padding hanging off
real nodes."""


def _chain(tokens, parents, j):
    """The tokens of the path root..j."""
    path = []
    while j >= 0:
        path.append(int(tokens[j]))
        j = int(parents[j])
    return path[::-1]


def _close(got, want, what):
    err = (got - want).abs().max().item()
    assert err <= 1e-4 * want.abs().max().item(), f"{what}: max error {err:.3g}"


def _scored(family):
    """(model, its CachedLM with PROMPTS cached and TREE scored, the tree's logits)."""
    model = families.make_model(family)
    lm = CachedLM(model)
    lm.start(PROMPTS)
    return model, lm, lm.score_tree(*TREE)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_each_tree_node_scores_as_its_path_would_as_a_chain(family):
    model, lm, logits = _scored(family)
    tokens, parents, lengths = TREE
    for b, prompt in enumerate(PROMPTS):
        for j in range(int(lengths[b])):
            path = _chain(tokens[b], parents[b], j)
            want = model(torch.tensor([prompt[:-1] + path])).logits[0, -1]
            _close(logits[b, j], want, f"{family} row {b} node {j}")


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_kept_path_becomes_the_rows_next_tokens(family):
    """After keep_path, the next step (a chain) scores as if the path had been fed as one."""
    model, lm, _ = _scored(family)
    tokens = TREE[0]
    path = torch.tensor([[0, 1, 3, 4], [0, 3, 0, 0], [0, 0, 0, 0]])  # padding after the path
    kept = torch.tensor([4, 2, 1])
    lm.keep_path(path, kept)
    before = [len(p) - 1 for p in PROMPTS]
    assert lm.counts.tolist() == [n + int(k) for n, k in zip(before, kept)]
    assert lm.slots == before[0] + 5  # row 0 keeps column 4 of the tree; the rest is cropped
    step = torch.tensor([[50, 51], [52, 53], [54, 0]])
    got = lm.score(step, torch.tensor([2, 2, 1]))
    for b, prompt in enumerate(PROMPTS):
        fed = [int(tokens[b, j]) for j in path[b, : kept[b]]]
        n = 2 if b < 2 else 1
        seq = prompt[:-1] + fed + step[b, :n].tolist()
        want = model(torch.tensor([seq])).logits[0, -n:]
        _close(got[b, :n], want, f"{family} row {b} after the path")


def test_a_tree_is_settled_by_keep_path_only():
    lm = CachedLM(families.make_model("llama"))
    lm.start(PROMPTS)
    one = torch.ones(3, dtype=torch.long)
    with pytest.raises(ConfigError, match="scored none"):
        lm.keep_path(one[:, None] - 1, one)
    lm.score_tree(*TREE)
    with pytest.raises(ConfigError, match="keep_path"):
        lm.keep(one)


def test_a_tree_deeper_than_the_sliding_window_is_refused():
    lm = CachedLM(families.make_model("mistral-window"))  # a 16-token window
    lm.start([list(range(1, 14))])  # 12 tokens cached
    chain = torch.arange(5)[None] - 1  # a chain of 5 nodes: the last sees 17 tokens
    with pytest.raises(ConfigError, match="window"):
        lm.score_tree(torch.arange(10, 15)[None], chain, torch.tensor([5]))
    star = torch.tensor([[-1, 0, 0, 0, 0]])  # as many nodes, the deepest seeing 14 tokens
    assert lm.score_tree(torch.arange(10, 15)[None], star, torch.tensor([5])).shape[1] == 5


class OracleTree:
    """A test-only tree draft that knows the verifier's greedy output: every level holds the
    right token and a random sibling (in random order), the spine goes on from the right token
    except (1 in 4) from the random one, and rows drop up to two trailing nodes, so that trees
    are ragged and acceptance stops at every depth."""

    name = "oracle-tree"

    def __init__(self, outputs, vocab_size: int, seed: int = 0) -> None:
        self.outputs = outputs
        self.vocab_size = vocab_size
        self.gen = torch.Generator().manual_seed(seed)

    def start(self, prompts) -> None:
        self.done = [[] for _ in prompts]

    def _draw(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.gen))

    def propose_tree(self, shape, sampling, generator) -> TreeProposal:
        rows = []
        for b, done in enumerate(self.done):
            right = self.outputs[b][len(done):]
            tokens, parents, at = [], [], 0
            for d in range(shape.depth):
                good = right[d] if d < len(right) else self._draw(self.vocab_size)
                first = self._draw(2)  # 0: the right token comes first among the two
                pair = [good, self._draw(self.vocab_size)]
                tokens += [pair[first], pair[1 - first]]
                parents += [at, at]
                right_node = len(tokens) - 1 + first  # node j is proposal column j - 1
                at = right_node if self._draw(4) else 2 * len(tokens) - 1 - right_node
            keep = len(tokens) - self._draw(3)
            rows.append((tokens[:keep], parents[:keep]))
        width = max(len(t) for t, _ in rows)
        self.tokens = [t + [0] * (width - len(t)) for t, _ in rows]
        parents = [p + [0] * (width - len(p)) for _, p in rows]
        return TreeProposal(torch.tensor(self.tokens), torch.tensor(parents),
                            torch.tensor([len(t) for t, _ in rows]))

    def commit_path(self, path, lengths, next_tokens) -> None:
        for b, done in enumerate(self.done):
            nodes = [None] + self.tokens[b]
            done += [nodes[int(j)] for j in path[b, 1: int(lengths[b])]]
            done.append(int(next_tokens[b]))


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_speculative_with_trees_equals_target_only(family):
    model = families.make_model(family)
    verifier = HFVerifier(model, ToyTokenizer(), "hf")
    verifier.eos_token_ids = frozenset()
    want = SpeculativeDecoder(verifier).generate(PROMPTS, max_new_tokens=24).token_ids
    draft = OracleTree(want, families.VOCAB)
    got = SpeculativeDecoder(verifier, draft, TreeShape(4, 2, 8)).generate(
        PROMPTS, max_new_tokens=24)
    assert got.token_ids == want
    assert got.metrics.tar > 1.5  # paths beyond the root were kept
