"""Acquisition functions for constrained minimisation: pure functions of GP predictions."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def expected_improvement(mean: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
    """E[max(best - f, 0)] for f ~ N(mean, var): how much a point is expected to beat ``best``."""
    sd = np.sqrt(var)
    z = (best - mean) / sd
    return sd * (z * ndtr(z) + np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi))


def probability_feasible(means: list[np.ndarray], variances: list[np.ndarray],
                         bounds: list[float]) -> np.ndarray:
    """P(every constraint g_j <= bound_j), treating the constraint GPs as independent."""
    if not means:
        return np.ones(0)
    p = np.ones_like(means[0])
    for mean, var, bound in zip(means, variances, bounds):
        p = p * ndtr((bound - mean) / np.sqrt(var))
    return p


def feasible_lower_bound(mean: np.ndarray, var: np.ndarray, pof: np.ndarray, beta: float,
                         threshold: float = 0.5) -> np.ndarray:
    """Score (higher is better) = -(mean - beta·sd) where P(feasible) >= ``threshold``, -inf
    elsewhere; P(feasible) itself where no point reaches the threshold.

    Why not EI × P(feasible): under a latency SLO the optimum sits on the SLO boundary, where
    P(feasible) is near one half, and EI rewards variance anywhere in the space; together they
    spend trials on uncertain corners far from the boundary. Minimising an optimistic estimate
    of the objective (a small ``beta``) among configurations more likely feasible than not walks
    along the boundary, which on smooth energy surfaces is where the answer is."""
    ok = pof >= threshold
    if not ok.any():
        return pof
    return np.where(ok, -(mean - beta * np.sqrt(var)), -np.inf)
