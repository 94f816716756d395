"""Conformance suites for draft models and verifiers.

Subclass in a plugin's tests and override the fixtures::

    from thrifty.testing.drafts import DraftModelSuite

    class TestMyDraft(DraftModelSuite):
        @pytest.fixture
        def make_draft(self):
            return lambda verifier: MyDraft(verifier)

``verifier`` defaults to :class:`thrifty.testing.toy.ToyVerifier`; override it to run the suite
against a real model (a feature draft, which reads the verifier's hidden states, needs a verifier
with ``features``: the suite feeds them as the engine does). ``prompts`` gives the token-id
prompts (ragged on purpose).

The suites check the protocol's shapes and also its meaning: rollback must leave a model in the
same state as a fresh one that saw only the committed tokens, and speculative greedy output must
equal target-only greedy output. A draft that grows token trees
(:func:`thrifty.protocols.grows_trees`) is held to the same for its trees.
"""

from __future__ import annotations

import random

import pytest
import torch

from ..errors import IncompatibleModelsError
from ..protocols import (DraftModel, Proposal, TreeProposal, Verifier, grows_trees,
                         keeps_greedy_chains, keeps_greedy_trees, reads_features, scores_trees)
from ..speculative import Sampling, SpeculativeDecoder, TreeShape, accept, accept_tree
from ..speculative.tree import depths, with_root
from .toy import ToyVerifier

TREE_PARENTS = [[-1, 0, 0, 1, 1, 3, 5, 6],   # two branches, one five deep
                [-1, 0, 1, 7, 2, 0, 4, 3],   # the root alone; padding hangs anywhere
                [-1, 0, 1, 1, 0, 2, 5, 4],   # siblings that are not neighbours, then padding
                [-1, 0, 1, 2, 3, 4, 5, 6]]   # a chain
TREE_LENGTHS = [8, 1, 5, 8]
"""The suites' ragged batch of token trees, as ``score_tree`` takes them (columns; -1: the
root); row b's first ``TREE_LENGTHS[b]`` columns are real."""

TREE_PATHS = [[0, 1, 3, 5, 6], [0], [0, 1, 3], [0, 1, 2, 3]]
"""A root-to-node path of each tree above, as ``keep_path`` takes them."""


class _Common:
    @pytest.fixture
    def verifier(self):
        return ToyVerifier(vocab=8, seed=0)

    @pytest.fixture
    def prompts(self, verifier):
        """Ragged token-id prompts drawn from the verifier's vocabulary."""
        g = torch.Generator().manual_seed(7)
        vocab = min(verifier.vocab_size, 1000)
        return [torch.randint(1, vocab, (n,), generator=g).tolist() for n in (5, 1, 9, 3)]


class VerifierSuite(_Common):
    """Every verifier plugin passes this. Override ``verifier`` (and ``prompts`` if needed)."""

    atol = 1e-4

    def test_protocol(self, verifier):
        assert isinstance(verifier, Verifier)
        assert isinstance(verifier.vocab_size, int) and verifier.vocab_size > 1
        assert all(0 <= t < verifier.vocab_size for t in verifier.eos_token_ids)
        ids = verifier.tokenizer.encode("ab", add_special_tokens=False)
        assert ids and all(isinstance(t, int) and 0 <= t < verifier.vocab_size for t in ids)
        text = verifier.tokenizer.decode(ids, skip_special_tokens=True)
        assert text == "ab", f"tokenizer round trip of 'ab' gives {text!r}"

    def test_score_shape_and_dtype(self, verifier, prompts):
        verifier.start(prompts)
        tokens = torch.tensor([[p[-1], 1, 2] for p in prompts])
        lengths = torch.tensor([3, 1, 2, 3])
        logits = verifier.score(tokens, lengths)
        assert logits.shape == (len(prompts), 3, verifier.vocab_size)
        assert logits.dtype == torch.float32
        assert torch.isfinite(logits).all()

    def _last_logits(self, verifier, rows):
        """Logits after each full row, computed from a fresh start (reference)."""
        verifier.start(rows)
        last = torch.tensor([[r[-1]] for r in rows])
        return verifier.score(last, torch.ones(len(rows), dtype=torch.long))[:, 0]

    def _ragged_step(self, verifier, prompts, extra, keep):
        """start, score [pending + extra] ragged, keep a ragged prefix; return the logits."""
        verifier.start(prompts)
        width = max(len(e) for e in extra) + 1
        tokens = torch.zeros(len(prompts), width, dtype=torch.long)
        for b, (p, e) in enumerate(zip(prompts, extra)):
            tokens[b, : len(e) + 1] = torch.tensor([p[-1]] + e)
        logits = verifier.score(tokens, torch.tensor([len(e) + 1 for e in extra]))
        verifier.keep(torch.tensor([k + 1 for k in keep]))
        return logits

    def test_ragged_scoring_matches_fresh_start(self, verifier, prompts):
        """Each real position's logits equal those a fresh start on that prefix gives."""
        extra = [[3, 4, 5], [6], [7, 1], [2, 2, 2]]
        logits = self._ragged_step(verifier, prompts, extra, [1, 0, 2, 3])
        for b, (p, e) in enumerate(zip(prompts, extra)):
            for i in range(len(e) + 1):
                ref = self._last_logits(verifier, [p + e[:i]])
                torch.testing.assert_close(logits[b, i], ref[0], atol=self.atol, rtol=1e-4)

    def test_keep_rolls_back_per_row(self, verifier, prompts):
        """After keep, scoring continues exactly from each row's kept prefix."""
        extra = [[3, 4, 5], [6], [7, 1], [2, 2, 2]]
        keep = [1, 0, 2, 3]
        self._ragged_step(verifier, prompts, extra, keep)
        x = 5 % verifier.vocab_size
        got = verifier.score(torch.full((len(prompts), 1), x),
                             torch.ones(len(prompts), dtype=torch.long))[:, 0]
        committed = [p + e[:k] + [x] for p, e, k in zip(prompts, extra, keep)]
        torch.testing.assert_close(got, self._last_logits(verifier, committed),
                                   atol=self.atol, rtol=1e-4)

    def test_admit_resets_one_row(self, verifier, prompts):
        """``admit`` (optional: continuous batching) gives one row a new prompt mid-batch and
        leaves the other rows' caches as they were; without it the engine must not refill."""
        if not callable(getattr(verifier, "admit", None)):
            assert not SpeculativeDecoder(verifier).refills
            return
        extra, keep = [[3, 4, 5], [6], [7, 1], [2, 2, 2]], [1, 0, 2, 3]
        self._ragged_step(verifier, prompts, extra, keep)
        new = [(3 * i + 1) % verifier.vocab_size for i in range(7)]
        verifier.admit(1, new)
        x = 5 % verifier.vocab_size
        ones = torch.ones(len(prompts), dtype=torch.long)
        got = verifier.score(torch.tensor([[x] if b != 1 else [new[-1]]
                                           for b in range(len(prompts))]), ones)[:, 0]
        committed = [p + e[:k] + [x] for p, e, k in zip(prompts, extra, keep)]
        committed[1] = new
        torch.testing.assert_close(got, self._last_logits(verifier, committed),
                                   atol=self.atol, rtol=1e-4)

    def test_keep_greedy_chain_keeps_what_greedy_acceptance_keeps(self, verifier, prompts):
        """``keep_greedy_chain`` (optional: a greedy step in one call) returns the counts and
        next tokens that greedy ``accept`` finds in ``score``'s logits and keeps as ``keep``
        does: the next step scores the same. Ragged rows proposing the verifier's own
        continuation, cut short by a wrong token in some."""
        if not keeps_greedy_chains(verifier):
            return
        vocab = verifier.vocab_size
        rows = [list(p) for p in prompts]
        for _ in range(3):  # the verifier's greedy continuation, end of sequence or not
            for r, t in zip(rows, self._last_logits(verifier, rows).argmax(-1).tolist()):
                r.append(t)
        cont = [r[len(p):] for r, p in zip(rows, prompts)]
        proposals = [cont[0][:3], cont[1][:1], [(cont[2][0] + 1) % vocab] + cont[2][1:3],
                     cont[3][:2] + [(cont[3][2] + 1) % vocab]]
        tokens = torch.tensor([[p[-1]] + x + [0] * (3 - len(x))
                               for p, x in zip(prompts, proposals)])
        lengths = torch.tensor([1 + len(x) for x in proposals])

        def in_steps():
            accepted, nxt = accept(verifier.score(tokens, lengths), tokens[:, 1:], lengths - 1,
                                   greedy=True)
            verifier.keep(accepted + 1)
            return accepted, nxt

        want = self._greedy_both_ways(verifier, prompts, in_steps,
                                      lambda: verifier.keep_greedy_chain(tokens, lengths))
        assert want[0].tolist() == [3, 1, 0, 2]

    def _greedy_both_ways(self, verifier, prompts, in_steps, in_one_call):
        """Checks that ``in_steps`` (score, greedy acceptance, keep) and ``in_one_call`` (the
        optional one-call method) return the same from a fresh start on ``prompts`` (next
        tokens last), and that the verifier then gives those next tokens the same logits: equal
        only if both kept the same tokens' keys and values. Returns what ``in_steps`` gave."""
        ones = torch.ones(len(prompts), dtype=torch.long)
        found = []
        for run in (in_steps, in_one_call):
            verifier.start(prompts)
            out = run()
            after = verifier.score(out[-1][:, None], ones)[:, 0]
            found.append(tuple(t.clone() for t in (*out, after)))
        for want, got in zip(*found):
            torch.testing.assert_close(got, want, atol=self.atol, rtol=1e-4)
        return found[0]

    # -- token trees (optional: scores_trees) ----------------------------------------------------
    def _tree(self, verifier, rows, seed: int):
        """The suite's trees (:data:`TREE_PARENTS`) with random tokens under roots that are the
        rows' last tokens: (tokens, parents, lengths)."""
        parents = torch.tensor(TREE_PARENTS)[: len(rows)]
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(1, min(verifier.vocab_size, 1000), parents.shape, generator=g)
        tokens[:, 0] = torch.tensor([r[-1] for r in rows])
        return tokens, parents, torch.tensor(TREE_LENGTHS)[: len(rows)]

    @staticmethod
    def _path(tokens, parents, b: int, j: int) -> list[int]:
        """Row b's tokens from the root to column j, root first."""
        out = []
        while j >= 0:
            out.append(int(tokens[b, j]))
            j = int(parents[b, j])
        return out[::-1]

    @staticmethod
    def _score_tree(verifier, tree):
        """``score_tree``'s logits and, for a verifier that has them, features (copies)."""
        logits = verifier.score_tree(*tree).clone()
        features = getattr(verifier, "features", None)
        return logits, None if features is None else features.clone()

    def _check_tree(self, verifier, rows, tree, logits, features) -> None:
        """Each real node's logits (and features) equal those of its root-to-node path scored
        as a chain after ``rows`` (whose last tokens are the roots), from a fresh start."""
        tokens, parents, lengths = tree
        assert logits.shape == (*tokens.shape, verifier.vocab_size)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
        nodes = [(b, j) for b in range(len(rows)) for j in range(int(lengths[b]))]
        chains = [rows[b] + self._path(tokens, parents, b, j)[1:] for b, j in nodes]
        ref = self._last_logits(verifier, chains)
        for (b, j), want, chain in zip(nodes, ref, chains):
            torch.testing.assert_close(logits[b, j], want, atol=self.atol, rtol=1e-4,
                                       msg=lambda m: f"row {b}, node {j} ({chain}): {m}")
        if features is not None:
            assert features.shape[:2] == tokens.shape
            for (b, j), want in zip(nodes, verifier.features[:, -1]):
                torch.testing.assert_close(features[b, j], want, atol=self.atol, rtol=1e-4)

    @staticmethod
    def _keep_paths(verifier, rows, tree, step: int) -> list[list[int]]:
        """``keep_path`` of :data:`TREE_PATHS` (padded with real columns that are not kept);
        returns the rows with the kept tokens and a next token appended."""
        width = max(len(p) for p in TREE_PATHS)
        path = torch.tensor([p + [len(p)] * (width - len(p)) for p in TREE_PATHS])[: len(rows)]
        kept = torch.tensor([len(p) for p in TREE_PATHS])[: len(rows)]
        verifier.keep_path(path, kept)
        return [r + tree[0][b, path[b, 1: kept[b]]].tolist()
                + [(5 * b + 3 * step + 2) % verifier.vocab_size] for b, r in enumerate(rows)]

    def _refuses_trees(self, verifier) -> None:
        """A verifier without trees is refused a tree policy before decoding."""
        with pytest.raises(IncompatibleModelsError, match="score_tree"):
            SpeculativeDecoder(verifier, TreeOracle(verifier.vocab_size, []), TreeShape(2, 2, 4))

    def test_score_tree_equals_each_path_scored_as_a_chain(self, verifier, prompts):
        """``score_tree`` (optional: token trees) gives every node the logits of its own
        root-to-node path: branches in one pass do not see each other, and positions count
        depth, not columns. Ragged rows, padding columns, a root alone."""
        if not scores_trees(verifier):
            return self._refuses_trees(verifier)
        verifier.start(prompts)
        tree = self._tree(verifier, prompts, 11)
        self._check_tree(verifier, prompts, tree, *self._score_tree(verifier, tree))

    def test_keep_path_continues_as_a_fresh_start(self, verifier, prompts):
        """After ``keep_path``, the next tree and then, after another ``keep_path``, the next
        chain score as if the kept paths had been part of the prompts (rows keeping five
        nodes, the root alone, a path that skips a sibling, and a chain's prefix)."""
        if not scores_trees(verifier):
            return self._refuses_trees(verifier)
        verifier.start(prompts)
        first = self._tree(verifier, prompts, 11)
        verifier.score_tree(*first)
        rows = self._keep_paths(verifier, [list(p) for p in prompts], first, 0)
        second = self._tree(verifier, rows, 12)
        scored = self._score_tree(verifier, second)
        after = self._keep_paths(verifier, rows, second, 1)
        got = verifier.score(torch.tensor([[r[-1]] for r in after]),
                             torch.ones(len(after), dtype=torch.long))[:, 0].clone()
        self._check_tree(verifier, rows, second, *scored)
        torch.testing.assert_close(got, self._last_logits(verifier, after), atol=self.atol,
                                   rtol=1e-4)

    def _greedy_tree(self, verifier, prompts):
        """The suite's trees with the nodes of :data:`TREE_PATHS` set, depth by depth, to the
        verifier's argmax after their parents, so that a greedy walk keeps those paths."""
        tree = self._tree(verifier, prompts, 11)
        for _ in range(max(map(len, TREE_PATHS)) - 1):
            verifier.start(prompts)
            logits = verifier.score_tree(*tree)
            for b in range(len(prompts)):
                for parent, child in zip(TREE_PATHS[b], TREE_PATHS[b][1:]):
                    tree[0][b, child] = logits[b, parent].argmax()
        return tree

    def test_keep_greedy_tree_keeps_what_the_greedy_walk_keeps(self, verifier, prompts):
        """``keep_greedy_tree`` (optional: a greedy tree step in one call) returns the path,
        counts and next tokens that greedy ``accept_tree`` finds in ``score_tree``'s logits,
        and keeps that path as ``keep_path`` does: the next step scores the same."""
        if not keeps_greedy_trees(verifier):
            return
        tree = self._greedy_tree(verifier, prompts)
        tokens, parents, lengths = tree
        shape = TreeShape(6, 3, 7)

        def in_steps():
            path, kept, nxt = accept_tree(verifier.score_tree(*tree), tokens[:, 1:],
                                          parents[:, 1:], lengths - 1, shape, greedy=True)
            verifier.keep_path(path, kept)
            return path, kept, nxt

        want = self._greedy_both_ways(verifier, prompts, in_steps,
                                      lambda: verifier.keep_greedy_tree(*tree, shape))
        assert want[1].tolist() == [len(p) for p in TREE_PATHS][: len(prompts)]

    def test_tree_speculation_greedy_equals_target_only(self, verifier, prompts):
        """Lossless with trees: greedy decoding with a tree draft that hides the verifier's own
        continuation among random branches equals target-only decoding, in fewer passes."""
        if not scores_trees(verifier):
            return self._refuses_trees(verifier)
        base = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=8)
        oracle = TreeOracle(verifier.vocab_size,
                            [p + out for p, out in zip(prompts, base.token_ids)])
        spec = SpeculativeDecoder(verifier, oracle, TreeShape(3, 2, 5)).generate(
            prompts, max_new_tokens=8)
        assert spec.token_ids == base.token_ids
        assert spec.metrics.target_passes < base.metrics.target_passes


class TreeOracle:
    """A test-only tree draft that knows the verifier's greedy continuation of every row (a
    target-only run's output) and hides it among random branches: each node on the true path
    gets 1 .. ``branch`` children, the true one at a random rank and missing one time in five
    (the tree then stops), the others random tokens that may get a child of their own. What
    acceptance keeps is then the verifier's to decide, branch by branch."""

    name = "tree-oracle"

    def __init__(self, vocab_size: int, continuations, seed: int = 0) -> None:
        self.vocab_size = vocab_size
        self.rows = [list(c) for c in continuations]
        self.rng = random.Random(seed)
        self.done: list[int] = []

    def start(self, prompts) -> None:
        self.done = [len(p) for p in prompts]

    def _other(self, truth) -> int:
        while True:
            t = self.rng.randrange(1, self.vocab_size)
            if t != truth:
                return t

    def _grow(self, b: int, shape: TreeShape):
        truth = self.rows[b][self.done[b]: self.done[b] + shape.depth]
        tokens: list[int] = []
        parents: list[int] = []
        spine = 0
        for d in range(shape.depth):
            room = shape.nodes - len(tokens)
            if spine is None or room <= 0:
                break
            real = truth[d] if d < len(truth) else None
            kids = [self._other(real) for _ in range(self.rng.randint(1, min(shape.branch, room)))]
            rank = self.rng.randrange(len(kids)) if real is not None and \
                self.rng.random() < 0.8 else None
            if rank is not None:
                kids[rank] = real
            first = len(tokens) + 1
            tokens += kids
            parents += [spine] * len(kids)
            spine = None if rank is None else first + rank
            wrong = [first + i for i in range(len(kids)) if i != rank]
            if wrong and d + 2 <= shape.depth and len(tokens) < shape.nodes and \
                    self.rng.random() < 0.5:
                tokens.append(self._other(None))
                parents.append(self.rng.choice(wrong))
        return tokens, parents

    def propose_tree(self, shape: TreeShape, sampling, generator) -> TreeProposal:
        trees = [self._grow(b, shape) for b in range(len(self.done))]
        width = max(len(t) for t, _ in trees)
        tokens = torch.zeros(len(trees), width, dtype=torch.long)
        parents = torch.zeros(len(trees), width, dtype=torch.long)
        for b, (t, p) in enumerate(trees):
            tokens[b, : len(t)] = torch.tensor(t, dtype=torch.long)
            parents[b, : len(p)] = torch.tensor(p, dtype=torch.long)
        return TreeProposal(tokens, parents, torch.tensor([len(t) for t, _ in trees]))

    def commit_path(self, path, lengths, next_tokens) -> None:
        # the kept nodes after the root, then the next token
        self.done = [d + int(n) for d, n in zip(self.done, lengths.tolist())]


class DraftModelSuite(_Common):
    """Every draft-model plugin passes this. Override ``make_draft`` (a callable taking the
    verifier and returning a draft); override ``verifier``/``prompts`` to use a real model."""

    gamma = 3

    @pytest.fixture
    def make_draft(self):
        raise NotImplementedError("override the make_draft fixture in your suite subclass")

    @pytest.fixture
    def draft(self, make_draft, verifier):
        return make_draft(verifier)

    @staticmethod
    def _start(draft, verifier, prompts) -> None:
        """Start ``draft`` as the engine does: a feature draft first sees the prefill's
        features."""
        if reads_features(draft):
            verifier.start(prompts)
            draft.observe(verifier.features)
        draft.start(prompts)

    @staticmethod
    def _admit(draft, verifier, row, prompt) -> None:
        """Admit as the engine does: a feature draft first sees the verifier's features of the
        admitted row's prefill."""
        if reads_features(draft):
            verifier.admit(row, prompt)
            draft.observe(verifier.features)
        draft.admit(row, prompt)

    @staticmethod
    def _commit(draft, verifier, prompts, prop, accepted, nxt) -> None:
        """Commit as the engine does: a feature draft first sees the verifier's features of
        each row's pending token and proposals."""
        if reads_features(draft):
            pending = torch.tensor([[p[-1]] for p in prompts])
            width = int(prop.lengths.max())
            verifier.score(torch.cat([pending, prop.tokens[:, :width]], 1), prop.lengths + 1)
            draft.observe(verifier.features)
            verifier.keep(accepted + 1)
        draft.commit(accepted, nxt)

    def test_protocol(self, draft, verifier):
        assert isinstance(draft, DraftModel)
        assert draft.vocab_size in (None, verifier.vocab_size)
        assert isinstance(draft.name, str) and draft.name

    def _check_proposal(self, prop, batch, verifier):
        assert isinstance(prop, Proposal)
        assert prop.tokens.shape == (batch, self.gamma) and prop.tokens.dtype == torch.long
        assert prop.lengths.shape == (batch,)
        assert ((prop.lengths >= 0) & (prop.lengths <= self.gamma)).all()
        for b in range(batch):
            real = prop.tokens[b, : int(prop.lengths[b])]
            assert ((real >= 0) & (real < verifier.vocab_size)).all()
        if prop.q is not None:
            assert prop.q.shape == (batch, self.gamma, verifier.vocab_size)
            for b in range(batch):
                n = int(prop.lengths[b])
                q = prop.q[b, :n].float()
                torch.testing.assert_close(q.sum(-1), torch.ones(n), atol=1e-3, rtol=0)
                # the proposal must have been sampled from q: it has positive probability
                assert (q.gather(-1, prop.tokens[b, :n, None]) > 0).all()

    @pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.8, top_k=5)],
                             ids=["greedy", "sampled"])
    def test_proposal_shapes(self, draft, verifier, prompts, sampling):
        self._start(draft, verifier, prompts)
        gen = torch.Generator().manual_seed(0)
        self._check_proposal(draft.propose(self.gamma, sampling, gen), len(prompts), verifier)

    def test_greedy_is_deterministic(self, make_draft, verifier, prompts):
        a, b = make_draft(verifier), make_draft(verifier)
        self._start(a, verifier, prompts)
        self._start(b, verifier, prompts)
        pa = a.propose(self.gamma, Sampling(), torch.Generator().manual_seed(0))
        pb = b.propose(self.gamma, Sampling(), torch.Generator().manual_seed(1))
        assert torch.equal(pa.lengths, pb.lengths)
        for r in range(len(prompts)):
            n = int(pa.lengths[r])
            assert torch.equal(pa.tokens[r, :n], pb.tokens[r, :n])

    def _ragged_commit(self, draft, verifier, prompts, gen) -> list[list[int]]:
        """Start, propose and commit a ragged step (rows keep 2, 0, 1, 3 proposals); returns
        each row's committed tokens."""
        self._start(draft, verifier, prompts)
        prop = draft.propose(self.gamma, Sampling(), gen)
        accepted = torch.minimum(prop.lengths, torch.tensor([2, 0, 1, 3])[: len(prompts)])
        nxt = torch.tensor([4, 2, 6, 1])[: len(prompts)] % verifier.vocab_size
        self._commit(draft, verifier, prompts, prop, accepted, nxt)
        return [p + prop.tokens[b, : int(accepted[b])].tolist() + [int(nxt[b])]
                for b, p in enumerate(prompts)]

    def _proposes_as_fresh(self, draft, make_draft, verifier, rows, gen) -> None:
        """``draft`` proposes what a fresh draft started on ``rows`` proposes."""
        after = draft.propose(self.gamma, Sampling(), gen)
        fresh = make_draft(verifier)
        self._start(fresh, verifier, rows)
        ref = fresh.propose(self.gamma, Sampling(), gen)
        assert torch.equal(after.lengths, ref.lengths)
        for b in range(len(rows)):
            n = int(ref.lengths[b])
            assert after.tokens[b, :n].tolist() == ref.tokens[b, :n].tolist()

    def test_commit_equals_fresh_start(self, make_draft, verifier, prompts):
        """Its rollback is exact: step after step of ragged commits (rows keeping different
        numbers of proposals, the next tokens repeating earlier ones so that history-matching
        drafts find matches), the draft proposes what a fresh draft on the committed tokens
        proposes. A draft whose ``commit`` keeps rejected proposals drifts away from the fresh
        one within a few steps, even where one step cannot tell (a prompt-lookup draft that
        finds nothing to propose)."""
        gen = torch.Generator().manual_seed(0)
        draft, fresh = make_draft(verifier), make_draft(verifier)
        self._start(draft, verifier, prompts)
        rows = [list(p) for p in prompts]
        keep = torch.tensor([2, 0, 1, 3, 0, 1][: len(prompts)])
        for step in range(3):
            prop = draft.propose(self.gamma, Sampling(), gen)
            self._start(fresh, verifier, rows)  # a new batch: nothing of the last one remains
            ref = fresh.propose(self.gamma, Sampling(), gen)
            for b, row in enumerate(rows):
                n = int(ref.lengths[b])
                got = prop.tokens[b, : int(prop.lengths[b])].tolist()
                assert got == ref.tokens[b, :n].tolist(), (
                    f"step {step}, row {b}: the draft proposes {got} where a fresh draft on the "
                    f"committed tokens proposes {ref.tokens[b, :n].tolist()}: its rollback "
                    f"(commit of only the accepted proposals) is not exact")
            accepted = torch.minimum(prop.lengths, keep.roll(step))
            nxt = torch.tensor([row[(3 * step) % len(row)] for row in rows])
            self._commit(draft, verifier, rows, prop, accepted, nxt)
            rows = [row + prop.tokens[b, : int(accepted[b])].tolist() + [int(nxt[b])]
                    for b, row in enumerate(rows)]

    def test_admit_equals_fresh_start(self, make_draft, verifier, prompts):
        """``admit`` (optional: continuous batching) gives one row a new prompt mid-batch: that
        row then proposes what a fresh draft on the new prompt proposes, and the other rows
        what they would have; without ``admit`` the engine must not refill."""
        draft = make_draft(verifier)
        if not callable(getattr(draft, "admit", None)):
            assert not SpeculativeDecoder(verifier, draft).refills
            return
        gen = torch.Generator().manual_seed(0)
        rows = self._ragged_commit(draft, verifier, prompts, gen)
        rows[1] = [(3 * i + 1) % verifier.vocab_size for i in range(7)]
        self._admit(draft, verifier, 1, rows[1])
        self._proposes_as_fresh(draft, make_draft, verifier, rows, gen)

    @pytest.mark.parametrize("gamma, batch_size", [(1, None), (3, None), (3, 2)],
                             ids=["gamma1", "gamma3", "gamma3-two-rows"])
    def test_speculative_greedy_equals_target_only(self, make_draft, verifier, prompts, gamma,
                                                   batch_size):
        """Lossless: greedy output with this draft equals the verifier's own greedy output,
        also when two rows serve all the prompts (each refilled as its output ends)."""
        base = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=12)
        spec = SpeculativeDecoder(verifier, make_draft(verifier), gamma).generate(
            prompts, max_new_tokens=12, batch_size=batch_size)
        assert spec.token_ids == base.token_ids
        if batch_size is None:  # (refilled rows finish in another order: passes may differ)
            assert spec.metrics.target_passes <= base.metrics.target_passes

    # -- token trees (drafts that grow them) -----------------------------------------------------
    tree = TreeShape(3, 3, 6)
    """Deep enough for paths that end inside the tree, narrow enough that the budget is short
    of depth x branch (a draft must choose where its nodes go)."""

    def _grows(self, draft, verifier) -> bool:
        """Whether ``draft`` grows trees; without (they are optional) the engine must refuse
        to ask it for them."""
        if grows_trees(draft):
            return True
        with pytest.raises(IncompatibleModelsError, match="token trees"):
            SpeculativeDecoder(verifier, draft, self.tree)
        return False

    def _check_tree(self, prop, batch, verifier) -> None:
        shape = self.tree
        assert isinstance(prop, TreeProposal)
        n = prop.tokens.shape[1]
        assert prop.tokens.shape == prop.parents.shape == (batch, n) and n <= shape.nodes
        assert prop.tokens.dtype == prop.parents.dtype == torch.long
        assert prop.lengths.shape == (batch,)
        assert ((prop.lengths >= 0) & (prop.lengths <= n)).all()
        col = torch.arange(n)
        # every column, padding included, must be safe to score: a token of the vocabulary
        # and a parent before it (the verifier lays out attention over all of them)
        assert ((prop.tokens >= 0) & (prop.tokens < verifier.vocab_size)).all()
        assert ((prop.parents >= 0) & (prop.parents <= col)).all(), "parents must precede"
        real = col[None, :] < prop.lengths[:, None].cpu()
        deep = depths(torch.cat([torch.full((batch, 1), -1), prop.parents.cpu()], 1))[:, 1:]
        assert (deep[real] <= shape.depth).all(), f"a node is deeper than {shape.depth}"
        for b in range(batch):
            m = int(prop.lengths[b])
            kids = torch.bincount(prop.parents[b, :m].cpu(), minlength=m + 1)
            assert int(kids.max()) <= shape.branch, f"row {b}: children per node {kids}"
        if prop.q is not None:
            assert prop.q.shape == (batch, n, verifier.vocab_size)
            for b in range(batch):
                m = int(prop.lengths[b])
                q = prop.q[b, :m].float().cpu()
                torch.testing.assert_close(q.sum(-1), torch.ones(m), atol=1e-3, rtol=0)
                assert (q.gather(-1, prop.tokens[b, :m, None].cpu()) > 0).all()

    @pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.8, top_k=5)],
                             ids=["greedy", "sampled"])
    def test_tree_shapes(self, draft, verifier, prompts, sampling):
        """At most ``nodes`` nodes a row, no deeper than ``depth``, at most ``branch``
        children a node, in topological order; q (when reported) a distribution per node."""
        if not self._grows(draft, verifier):
            return
        self._start(draft, verifier, prompts)
        prop = draft.propose_tree(self.tree, sampling, torch.Generator().manual_seed(0))
        self._check_tree(prop, len(prompts), verifier)

    def test_tree_greedy_is_deterministic(self, make_draft, verifier, prompts):
        draft, other = make_draft(verifier), make_draft(verifier)
        if not self._grows(draft, verifier):
            return
        self._start(draft, verifier, prompts)
        self._start(other, verifier, prompts)
        a = draft.propose_tree(self.tree, Sampling(), torch.Generator().manual_seed(0))
        b = other.propose_tree(self.tree, Sampling(), torch.Generator().manual_seed(1))
        assert a.q is None and b.q is None, "greedy trees are deterministic candidates"
        assert self._real_nodes(a) == self._real_nodes(b)

    @staticmethod
    def _real_nodes(prop) -> list[list[tuple[int, int]]]:
        """Each row's real nodes as (token, parent) pairs."""
        return [list(zip(prop.tokens[b, :m].tolist(), prop.parents[b, :m].tolist()))
                for b, m in enumerate(prop.lengths.tolist())]

    @staticmethod
    def _paths(prop, depth: int, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A path per row, of the kinds the engine may keep: the root alone, one ending on the
        last node that is not its parent's first child (a sibling), the chain of first children
        down to the deepest node, one ending halfway through the columns; row b takes kind
        (b + shift) % 4. Returns (path [B, depth + 1], lengths [B])."""
        batch = len(prop.lengths)
        path = torch.zeros(batch, depth + 1, dtype=torch.long)
        lengths = torch.ones(batch, dtype=torch.long)
        for b in range(batch):
            m = int(prop.lengths[b])
            parents = [0] + prop.parents[b, :m].tolist()  # by node index; the root's unused
            first = {}
            for j in range(1, m + 1):
                first.setdefault(parents[j], j)
            seconds = [j for j in range(1, m + 1) if first[parents[j]] != j]
            kind = (b + shift) % 4
            node = [0, (seconds or [m])[-1], 0, (m + 1) // 2][kind]
            if kind == 2:
                while node in first:
                    node = first[node]
            nodes = []
            while node:
                nodes.append(node)
                node = parents[node]
            nodes.reverse()
            path[b, 1: len(nodes) + 1] = torch.tensor(nodes, dtype=torch.long)
            lengths[b] = len(nodes) + 1
        return path, lengths

    def _commit_path(self, draft, verifier, rows, prop, path, lengths, nxt) -> None:
        """Commit a path as the engine does: a feature draft first sees the verifier's
        features of every tree column. A verifier without ``score_tree`` stands in by scoring
        each row's path as a chain: the path's columns get the features a tree scorer gives
        them, the other columns noise, which the draft must not read."""
        if reads_features(draft):
            pending = torch.tensor([r[-1] for r in rows])
            tokens, parents, real = with_root(prop, pending.to(verifier.device))
            if scores_trees(verifier):
                verifier.score_tree(tokens, parents, real)
                features = verifier.features
                verifier.keep_path(path.to(verifier.device), lengths.to(verifier.device))
            else:
                chain = tokens.gather(1, path.to(tokens.device))
                verifier.score(chain, lengths.to(chain.device))
                on_path = verifier.features
                g = torch.Generator(device=on_path.device).manual_seed(0)
                features = torch.randn(*tokens.shape, on_path.shape[-1], generator=g,
                                       device=on_path.device).to(on_path.dtype)
                for b, m in enumerate(lengths.tolist()):
                    features[b, path[b, :m]] = on_path[b, :m]
                verifier.keep(lengths.to(chain.device))
            draft.observe(features)
        draft.commit_path(path, lengths, nxt)

    def test_commit_path_equals_fresh_start(self, make_draft, verifier, prompts):
        """Step after step, each row keeps a different kind of path (the root alone, one ending
        on a sibling, the whole chain, one ending inside the tree) and then a next token; the
        draft's next tree is then the one a fresh draft on the committed tokens grows."""
        draft, fresh = make_draft(verifier), make_draft(verifier)
        if not self._grows(draft, verifier):
            return
        gen = torch.Generator().manual_seed(0)
        self._start(draft, verifier, prompts)
        rows = [list(p) for p in prompts]
        for step in range(3):
            prop = draft.propose_tree(self.tree, Sampling(), gen)
            self._start(fresh, verifier, rows)  # a new batch: nothing of the last one remains
            ref = fresh.propose_tree(self.tree, Sampling(), gen)
            got, want = self._real_nodes(prop), self._real_nodes(ref)
            for b in range(len(rows)):
                assert got[b] == want[b], (
                    f"step {step}, row {b}: the draft grows {got[b]} where a fresh draft on the "
                    f"committed tokens grows {want[b]}: its commit_path is not exact")
            path, lengths = self._paths(prop, self.tree.depth, step)
            nxt = torch.tensor([row[(3 * step) % len(row)] for row in rows])
            self._commit_path(draft, verifier, rows, prop, path, lengths, nxt)
            nodes = torch.cat([torch.zeros(len(rows), 1, dtype=torch.long), prop.tokens.cpu()], 1)
            kept = nodes.gather(1, path)
            rows = [row + kept[b, 1: int(lengths[b])].tolist() + [int(nxt[b])]
                    for b, row in enumerate(rows)]

    def test_tree_greedy_equals_target_only(self, make_draft, verifier, prompts):
        """Lossless with trees: greedy output equals the verifier's own (where the verifier
        scores trees; otherwise the engine refuses the pair)."""
        draft = make_draft(verifier)
        if not self._grows(draft, verifier):
            return
        if not scores_trees(verifier):
            with pytest.raises(IncompatibleModelsError, match="token trees"):
                SpeculativeDecoder(verifier, draft, self.tree)
            return
        base = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=12)
        spec = SpeculativeDecoder(verifier, draft, self.tree).generate(prompts, max_new_tokens=12)
        assert spec.token_ids == base.token_ids
        assert spec.metrics.target_passes <= base.metrics.target_passes
