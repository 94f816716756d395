"""thrifty-cbo: the optimizer contract, the GP's likelihood and fit, the acquisition, the search."""

import math

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from scipy.stats import norm

from thrifty.errors import ConfigError
from thrifty.testing.optimizers import OptimizerSuite
from thrifty.tuning import Constraint
from thrifty.tuning.synthetic import WORKLOADS, surface
from thrifty_cbo.acquisition import (expected_improvement, feasible_lower_bound,
                                     probability_feasible)
from thrifty_cbo.gp import fit_gp, neg_log_likelihood, sq_dists
from thrifty_cbo.optimizer import ConstrainedBO


class TestConformance(OptimizerSuite):
    optimizer = "cbo"


class TestSafeConformance(OptimizerSuite):
    optimizer = "cbo"
    options = {"safe": True, "initial": 2}


def test_likelihood_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.random((12, 3))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    y = (y - y.mean()) / y.std()
    d2 = sq_dists(x, x)
    theta = np.array([np.log(0.4), np.log(0.7), np.log(2.0), 0.1, np.log(1e-2)])
    for prior in (None, (np.log(0.6), 1.0)):
        numeric = approx_fprime(theta, lambda t: neg_log_likelihood(t, d2, y, prior)[0], 1e-6)
        assert np.allclose(neg_log_likelihood(theta, d2, y, prior)[1], numeric,
                           rtol=1e-4, atol=1e-4)


def test_length_scale_prior_adds_its_negative_log_density():
    rng = np.random.default_rng(3)
    x = rng.random((6, 2))
    y = np.sin(3 * x[:, 0])
    y = (y - y.mean()) / y.std()
    d2 = sq_dists(x, x)
    theta = np.array([np.log(0.1), np.log(2.0), 0.0, np.log(1e-3)])
    plain, prior = neg_log_likelihood(theta, d2, y, None)[0], neg_log_likelihood(theta, d2, y)[0]
    z = (theta[:2] - np.log(0.6)) / 1.0
    assert np.isclose(prior - plain, 0.5 * z @ z)


def test_gp_interpolates_and_is_uncertain_far_away():
    rng = np.random.default_rng(1)
    x = rng.random((20, 2))
    y = 3.0 + np.cos(4 * x[:, 0]) * x[:, 1]
    gp = fit_gp(x, y, rng)
    mean, var = gp.predict(x)
    assert np.allclose(mean, y, atol=0.02)
    _, far = gp.predict(np.array([[4.0, 4.0]]))
    assert far[0] > 100 * var.max()
    # an irrelevant input gets a long length-scale (ARD)
    x3 = np.column_stack([x, rng.random(20)])
    assert fit_gp(x3, y, rng).lengths[2] > 3 * fit_gp(x3, y, rng).lengths[0]


def test_acquisition_closed_forms():
    mean, var = np.array([1.0, 0.0]), np.array([4.0, 1e-12])
    # EI at the incumbent with sd 2 is 2 φ(0); a certain point below the incumbent gains exactly
    assert np.allclose(expected_improvement(mean, var, 1.0), [2 * norm.pdf(0), 1.0])
    p = probability_feasible([np.array([0.0]), np.array([1.0])], [np.array([1.0])] * 2, [1.0, 1.0])
    assert np.isclose(p[0], norm.cdf(1.0) * 0.5)


def test_feasible_lower_bound_prefers_low_optimistic_values_among_likely_feasible():
    mean, var = np.array([1.0, 0.5, 2.0, 0.0]), np.array([1.0, 0.0, 4.0, 1.0])
    pof = np.array([0.9, 0.6, 0.5, 0.4])
    score = feasible_lower_bound(mean, var, pof, beta=0.25)
    # mean - 0.25 sd: 0.75, 0.5, 1.5; the 0.0 point is more likely infeasible than not
    assert np.allclose(score[:3], [-0.75, -0.5, -1.5]) and score[3] == -np.inf
    assert np.argmax(score) == 1  # the certain 0.5 beats the uncertain 1.0 and 2.0 ...
    assert np.argmax(feasible_lower_bound(mean, var, pof, beta=2.0)) == 2  # ... until optimism
    low = np.array([0.1, 0.3, 0.2, 0.0])
    assert np.array_equal(feasible_lower_bound(mean, var, low, beta=0.25), low)


def _search(space, table, slo, seed, trials, **options):
    opt = ConstrainedBO(space, "energy", [slo], seed, **options)
    history = []
    for _ in range(trials):
        config = opt.ask()
        opt.tell(config, table[space.key(config)])
        history.append(table[space.key(config)])
    return opt, history


@pytest.fixture(scope="module")
def small_surface():
    space, rows, slo = surface(WORKLOADS["tx2-resnet18-small"])
    table = {space.key({k: r[k] for k in space.names}): r for r in rows}
    best = min(r["energy"] for r in rows if r["latency"] <= slo)
    return space, table, Constraint("latency", slo), best


@pytest.mark.parametrize("acquisition", ["lcb", "ei"])
def test_finds_a_near_optimal_configuration_in_few_trials(small_surface, acquisition):
    space, table, slo, best = small_surface
    for seed in (0, 1):
        opt, _ = _search(space, table, slo, seed, 20, acquisition=acquisition)
        assert opt.best().metrics["energy"] <= 1.05 * best  # 20 of 252 configurations


def test_safe_mode_stops_violating_after_the_initial_design(small_surface):
    space, table, slo, _ = small_surface
    plain = safe = 0
    for seed in (0, 2):
        opt, history = _search(space, table, slo, seed, 20)
        plain += sum(not slo.holds(m) for m in history[opt.initial:])
        opt, history = _search(space, table, slo, seed, 20, safe=True)
        safe += sum(not slo.holds(m) for m in history[opt.initial:])
        assert opt.best() is not None
    assert safe < plain and safe <= 1


def test_bad_options():
    space, _, _ = surface(WORKLOADS["tx2-resnet18-small"])
    with pytest.raises(ConfigError, match="safe_threshold"):
        ConstrainedBO(space, safe_threshold=1.5)
    with pytest.raises(ConfigError):
        ConstrainedBO(space, initial=-1)
    with pytest.raises(ConfigError, match="acquisition"):
        ConstrainedBO(space, acquisition="ucb")
    with pytest.raises(ConfigError, match="beta"):
        ConstrainedBO(space, beta=-1.0)
    assert math.isfinite(ConstrainedBO(space).initial)
