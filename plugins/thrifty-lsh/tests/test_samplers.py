"""Samplers: the conformance suite for each family, and recall on planted data matching what
the collision probability predicts."""

import math

import pytest
import torch

from thrifty.testing.samplers import SamplerSuite
from thrifty_lsh.hashing import SimHash, make_family, retrieval_probability
from thrifty_lsh.sampler import LSHSampler


class _Registered(SamplerSuite):
    family = ""
    options: dict = {}

    @pytest.fixture
    def make_sampler(self, thrifty_registry):
        spec = thrifty_registry.sampler(self.family)
        return lambda dim, seed: spec.build(dim, seed=seed, **self.options)


class TestSimHash(_Registered):
    family, options = "simhash", {"k": 8, "l": 8}


class TestWTA(_Registered):
    family, options = "wta", {"k": 3, "l": 8}


class TestDWTA(_Registered):
    family, options = "dwta", {"k": 3, "l": 8}

    @pytest.fixture
    def make_weights(self):  # sparse non-negative: densification at work
        def weights(n, seed):
            g = torch.Generator().manual_seed(seed)
            return torch.rand(n, self.dim, generator=g) * (torch.rand(n, self.dim, generator=g)
                                                           < .3)
        return weights


class TestMinHash(_Registered):
    family, options = "minhash", {"k": 4, "l": 8, "bits": 3}

    @pytest.fixture
    def make_weights(self):  # sets: binary vectors
        def weights(n, seed):
            g = torch.Generator().manual_seed(seed)
            return (torch.rand(n, self.dim, generator=g) < 0.3).float()
        return weights


# --- recall on planted data --------------------------------------------------------------
# Each trial draws fresh hash functions, a query q and 10 planted neurons similar to q among
# random ones, and measures the share of the planted 10 (the true top-10) that the tables
# return. Theory: neuron i is found with probability 1-(1-p_i^K)^L. Trials are independent,
# so the mean recall over T trials is normal around the predicted mean with a standard error
# we estimate from the trials' spread; we accept within 4 standard errors (a false alarm rate
# of 6e-5), and check that the prediction for K+1 - a wrong model - would be rejected.
# Densified WTA is tested on dense vectors: on sparse ones densification copies codes between
# bins, the hashes are no longer independent, and 1-(1-p^K)^L is not its law. DIM is large
# beside K * window because the K bins of one table come from one permutation: when they
# cover most coordinates, their collisions are negatively dependent.
K, L, TRIALS, PLANTED, DIM, N = 4, 4, 80, 10, 128, 300


def _vectors(family, g):
    """q, planted [10, DIM] and background [N-10, DIM] for a family."""
    if family in ("simhash", "wta", "dwta"):
        q = torch.randn(DIM, generator=g)
        q /= q.norm()
        noise = torch.randn(PLANTED, DIM, generator=g)
        noise -= (noise @ q)[:, None] * q
        noise /= noise.norm(dim=1, keepdim=True)
        planted = 0.8 * q + 0.6 * noise  # cosine 0.8 exactly
        return q, planted, torch.randn(N - PLANTED, DIM, generator=g)
    # minhash: sets of 12 with exactly 9 shared -> Jaccard 9/15
    perm = torch.randperm(DIM, generator=g)
    q = torch.zeros(DIM)
    q[perm[:12]] = 1
    planted = torch.zeros(PLANTED, DIM)
    for i in range(PLANTED):
        keep = perm[:12][torch.randperm(12, generator=g)[:9]]
        extra = perm[12:][torch.randperm(DIM - 12, generator=g)[:3]]
        planted[i, keep] = 1
        planted[i, extra] = 1
    back = (torch.rand(N - PLANTED, DIM, generator=g) < 12 / DIM).float()
    return q, planted, back


def _collision_p(family, probe, q, planted):
    """Per-neuron single-hash collision probability: exact where theory gives it, else
    measured with 2000 hash functions independent of the trials' (``probe``)."""
    if family == "simhash":
        cos = (planted @ q) / (planted.norm(dim=1) * q.norm())
        return torch.tensor([SimHash.collision_probability(float(c)) for c in cos])
    if family == "minhash":
        fam = make_family("minhash", DIM, 1, 0, bits=2)
        inter = (planted * q).sum(1)
        union = ((planted + q) > 0).sum(1)
        return torch.tensor([fam.collision_probability(float(j)) for j in inter / union])
    return (probe.codes(planted) == probe.codes(q[None])).float().mean(1)


@pytest.mark.parametrize("family", ["simhash", "wta", "dwta", "minhash"])
def test_planted_recall_matches_collision_probability(family):
    params = {"bits": 2} if family == "minhash" else {}
    recalls, predicted, wrong = [], [], []
    probe = make_family(family, DIM, 2000, 99_999) if family in ("wta", "dwta") else None
    for t in range(TRIALS):
        g = torch.Generator().manual_seed(1000 + t)
        q, planted, back = _vectors(family, g)
        weights = torch.cat([planted, back])
        s = LSHSampler(DIM, family, k=K, l=L, bucket_size=N, seed=t, **params)
        s.build(weights)
        found = s.query(q[None], N)[0]
        recalls.append(float(torch.isin(torch.arange(PLANTED), found).float().mean()))
        p = _collision_p(family, probe, q, planted)
        predicted.append(float((1 - (1 - p ** K) ** L).mean()))
        wrong.append(float((1 - (1 - p ** (K + 1)) ** L).mean()))
    r, pred = torch.tensor(recalls), torch.tensor(predicted)
    se = float((r - pred).std() / math.sqrt(TRIALS))
    gap = float(r.mean() - pred.mean())
    assert abs(gap) <= 4 * se, f"{family}: recall {r.mean():.3f} vs predicted {pred.mean():.3f}"
    assert abs(float(r.mean()) - sum(wrong) / TRIALS) > 4 * se, "test cannot tell K from K+1"


def test_retrieval_probability_formula():
    assert retrieval_probability(1.0, 5, 3) == 1.0
    assert retrieval_probability(0.5, 1, 1) == 0.5
    assert abs(retrieval_probability(0.5, 2, 2) - (1 - 0.75 ** 2)) < 1e-12


def test_bounded_buckets_keep_lowest_priority_and_count_drops():
    s = LSHSampler(8, "simhash", k=1, l=2, bucket_size=5, seed=0)
    s.build(torch.randn(100, 8))
    load = s.load()
    assert load.max <= 5 and load.dropped == 2 * 100 - int(s.tables.ids.numel())
    assert load.dropped > 0 and load.full_share == 1.0


# --- the pieces of a training step's candidate search --------------------------------------
def test_bucket_hits_count_the_same_collisions_as_lookup():
    s = LSHSampler(8, "simhash", k=3, l=4, bucket_size=6, seed=0)
    s.build(torch.randn(200, 8, generator=torch.Generator().manual_seed(1)))
    buckets = s.hash(torch.randn(40, 8, generator=torch.Generator().manual_seed(2)))
    neuron, hits = s.tables.hits(buckets)
    _, local = s.tables.lookup(buckets)
    assert torch.equal(torch.bincount(neuron.long(), hits, minlength=200).long(),
                       torch.bincount(local, minlength=200))
    assert neuron.numel() < local.numel()  # 40 queries share some of the 8 buckets per table


def test_batch_scores_rank_by_collisions_then_priority():
    from thrifty_lsh.tables import PRIORITY_BITS, priority

    s = LSHSampler(8, "simhash", k=3, l=4, bucket_size=6, seed=3)
    weights = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    s.build(weights, torch.arange(200) + 500)  # a shard's global ids
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(2))
    ids, score = s.batch_scores(x)
    count = torch.bincount(s.tables.lookup(s.hash(x))[1], minlength=200)
    assert torch.equal(ids, count.nonzero().squeeze(1) + 500)
    expect = (count[ids - 500] << PRIORITY_BITS) + (1 << PRIORITY_BITS) - 1 - priority(ids, 3)
    assert torch.equal(score, expect)


def test_full_buckets_keep_lowest_priority_then_lowest_index():
    from thrifty_lsh.tables import HashTables

    t = HashTables(1, 2, 3)
    t.fill(torch.tensor([[0], [0], [0], [0], [0], [1]]), torch.tensor([5, 1, 5, 0, 5, 9]))
    assert t.ids.tolist() == [3, 1, 0, 5] and t.offsets.tolist() == [0, 3, 4]
    assert t.dropped == 2


@pytest.mark.parametrize("code_range,k,dtype", [(2, 10, torch.uint8), (8, 3, torch.long),
                                                (8, 9, torch.long)])  # 8**9 > 2**24: float64
def test_bucket_ids_are_the_codes_as_digits(code_range, k, dtype):
    from thrifty_lsh.hashing import bucket_ids

    codes = torch.randint(0, code_range, (50, 2 * k), generator=torch.Generator().manual_seed(0))
    ids = bucket_ids(codes.to(dtype), k, code_range, code_range ** k)
    expect = sum(codes.view(50, 2, k)[..., i] * code_range ** (k - 1 - i) for i in range(k))
    assert ids.dtype == torch.long and torch.equal(ids, expect)
