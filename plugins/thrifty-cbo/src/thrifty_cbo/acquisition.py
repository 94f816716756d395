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
