"""Conformance suite for samplers (``thrifty_samplers``).

Subclass :class:`SamplerSuite` in a plugin's tests and override the ``make_sampler`` fixture::

    import pytest
    from thrifty.testing.samplers import SamplerSuite

    class TestMySampler(SamplerSuite):
        @pytest.fixture
        def make_sampler(self, thrifty_registry):
            return lambda dim, seed: thrifty_registry.sampler("my-lsh").build(dim, seed=seed)

Needs torch. The checks hold for any locality-sensitive family: an input identical to a neuron
collides with it in every table, so querying with a neuron's own weights must find it.
"""

from __future__ import annotations

import pytest

from ..protocols import Sampler


class SamplerSuite:
    """Contract tests for one sampler: the :class:`thrifty.protocols.Sampler` protocol, query
    shapes and padding, finding a neuron from its own weights (after ``build``, ``refill`` and
    ``rebuild``), determinism under a seed, new functions on ``rebuild``, and table memory.

    Fixtures to override: ``make_sampler`` (required) returns a function
    ``(dim, seed) -> sampler``; ``make_weights`` returns a function ``(n, seed) -> [n, dim]``
    weights the family can hash (the default draws Gaussian ones; a family of sparse or binary
    vectors overrides it). ``dim``, ``n_neurons`` and ``budget`` size the checks."""

    dim = 32
    n_neurons = 200
    budget = 16

    @pytest.fixture
    def make_sampler(self):  # pragma: no cover - overridden
        raise NotImplementedError("override the make_sampler fixture in your test class")

    @pytest.fixture
    def make_weights(self):
        import torch

        return lambda n, seed: torch.randn(n, self.dim,
                                           generator=torch.Generator().manual_seed(seed))

    @pytest.fixture
    def built(self, make_sampler, make_weights):
        sampler = make_sampler(self.dim, 0)
        weights = make_weights(self.n_neurons, 1)
        sampler.build(weights)
        return sampler, weights

    def test_follows_protocol(self, built):
        assert isinstance(built[0], Sampler)

    def test_query_shape_range_and_no_duplicates(self, built):
        sampler, weights = built
        out = sampler.query(weights[:10], self.budget)
        assert tuple(out.shape) == (10, self.budget)
        assert int(out.min()) >= -1 and int(out.max()) < self.n_neurons
        for row in out.tolist():
            found = [i for i in row if i >= 0]
            assert len(found) == len(set(found)), "a neuron was returned twice for one input"
            assert row[len(found):] == [-1] * (len(row) - len(found)), "-1 only as padding"

    def test_finds_a_neuron_from_its_own_weights(self, built):
        sampler, weights = built
        out = sampler.query(weights[:50], self.budget)
        found = sum(int(i in row) for i, row in enumerate(out.tolist()))
        assert found >= 45, f"only {found}/50 neurons found from their own weights"

    def test_same_seed_same_answer(self, built, make_sampler, make_weights):
        sampler, weights = built
        twin = make_sampler(self.dim, 0)
        twin.build(weights)
        x = make_weights(8, 2)
        assert sampler.query(x, self.budget).tolist() == twin.query(x, self.budget).tolist()

    def test_refill_follows_new_weights(self, built, make_weights):
        sampler, _ = built
        moved = make_weights(self.n_neurons, 3)
        sampler.refill(moved)
        out = sampler.query(moved[:50], self.budget)
        assert sum(int(i in row) for i, row in enumerate(out.tolist())) >= 45

    def test_rebuild_draws_new_functions(self, built, make_weights):
        sampler, weights = built
        x = make_weights(20, 4)
        before = sampler.query(x, self.budget).tolist()
        sampler.rebuild(weights, seed=12345)
        assert sampler.query(x, self.budget).tolist() != before
        out = sampler.query(weights[:50], self.budget)
        assert sum(int(i in row) for i, row in enumerate(out.tolist())) >= 45

    def test_reports_table_memory(self, built):
        assert built[0].nbytes() > 0
