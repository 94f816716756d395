"""Gaussian-process regression with a Matérn 5/2 ARD kernel, in numpy and scipy only.

Hyper-parameters (one length-scale per input dimension, the signal variance and the noise
variance, all in log space) maximise the log marginal likelihood plus a log-normal prior on the
length-scales (a MAP fit) with L-BFGS-B from several starting points; the gradient is analytic. Targets are standardised before fitting so that the
bounds mean the same thing for joules and for seconds.

    k(x, x') = s² (1 + √5 r + 5 r² / 3) exp(-√5 r),   r² = Σ_i (x_i - x'_i)² / l_i²
"""

from __future__ import annotations

import math

import attrs
import numpy as np

SQRT5 = math.sqrt(5.0)
JITTER = 1e-8
# log-space bounds, for inputs scaled to [0, 1] and standardised targets
LOG_LENGTH = (math.log(0.03), math.log(20.0))
LOG_SIGNAL = (math.log(0.05), math.log(20.0))
LOG_NOISE = (math.log(1e-6), math.log(0.5))
# log l ~ N(log 0.6, 1): with 5-15 points the likelihood alone often picks length-scales far
# shorter than the knob ranges; the GP then reverts to its mean a step away from every trial, so
# any unexplored corner looks as good as the incumbent and the search wanders. Energy and latency
# change smoothly along a frequency ladder or a batch axis, so the prior favours length-scales of
# about half the range and gives way when the data insist (one e-fold costs half a nat).
LENGTH_PRIOR = (math.log(0.6), 1.0)


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-dimension squared differences, shape [d, len(a), len(b)]."""
    return (a.T[:, :, None] - b.T[:, None, :]) ** 2


def matern52(d2: np.ndarray, lengths: np.ndarray, signal: float) -> np.ndarray:
    """The kernel matrix from per-dimension squared differences ``d2`` [d, n, m]."""
    r = np.sqrt(np.tensordot(1.0 / lengths**2, d2, axes=1))
    return signal * (1.0 + SQRT5 * r + 5.0 / 3.0 * r**2) * np.exp(-SQRT5 * r)


def neg_log_likelihood(theta: np.ndarray, d2: np.ndarray, y: np.ndarray,
                       prior: tuple[float, float] | None = LENGTH_PRIOR):
    """Negative log marginal likelihood, minus the log of the length-scale ``prior`` (mean and
    sd of log l; None for plain maximum likelihood), and its gradient in ``theta`` =
    [log l_1 .. log l_d, log s², log σ²]."""
    d, n = d2.shape[0], len(y)
    lengths, signal, noise = np.exp(theta[:d]), math.exp(theta[d]), math.exp(theta[d + 1])
    scaled = d2 / lengths[:, None, None] ** 2
    r = np.sqrt(scaled.sum(0))
    e = np.exp(-SQRT5 * r)
    k0 = signal * (1.0 + SQRT5 * r + 5.0 / 3.0 * r**2) * e
    k = k0 + (noise + JITTER) * np.eye(n)
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    chol_inv = np.linalg.inv(chol)  # plain numpy: for n <= a few hundred, call overhead dominates
    k_inv = chol_inv.T @ chol_inv
    alpha = k_inv @ y
    nll = 0.5 * y @ alpha + np.log(np.diag(chol)).sum() + 0.5 * n * math.log(2 * math.pi)
    w = np.outer(alpha, alpha) - k_inv
    # dk/dlog l_i = s² (5/3) (1 + √5 r) exp(-√5 r) (Δ_i / l_i)²
    common = signal * 5.0 / 3.0 * (1.0 + SQRT5 * r) * e
    grad = np.empty_like(theta)
    grad[:d] = -0.5 * np.einsum("jk,ijk->i", w * common, scaled)
    grad[d] = -0.5 * np.sum(w * k0)
    grad[d + 1] = -0.5 * np.trace(w) * noise
    if prior is not None:
        z = (theta[:d] - prior[0]) / prior[1]
        nll += 0.5 * float(z @ z)
        grad[:d] += z / prior[1]
    return float(nll), grad


def _cho_solve(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve_triangular

    z = solve_triangular(chol, b, lower=True)
    return solve_triangular(chol.T, z, lower=False)


@attrs.frozen
class GaussianProcess:
    """A fitted GP: predicts mean and variance in the units of the targets it was fitted on."""

    x: np.ndarray
    theta: np.ndarray
    lengths: np.ndarray
    signal: float
    noise: float
    chol: np.ndarray
    alpha: np.ndarray
    y_mean: float
    y_std: float

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.linalg import solve_triangular

        ks = matern52(sq_dists(xs, self.x), self.lengths, self.signal)
        mean = ks @ self.alpha
        v = solve_triangular(self.chol, ks.T, lower=True)
        var = np.maximum(self.signal - (v**2).sum(0), 1e-12)
        return mean * self.y_std + self.y_mean, var * self.y_std**2


def fit_gp(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, restarts: int = 3,
           start: np.ndarray | None = None) -> GaussianProcess:
    """Fit hyper-parameters by marginal likelihood (L-BFGS-B from ``restarts`` starting points:
    ``start`` (the previous fit's ``theta``, which is usually close) or a fixed sensible one, the
    rest drawn from ``rng`` within the bounds)."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    y_mean, y_std = float(y.mean()), float(y.std())
    if not y_std > 1e-12:
        y_std = 1.0
    ys = (y - y_mean) / y_std
    d = x.shape[1]
    d2 = sq_dists(x, x)
    bounds = [LOG_LENGTH] * d + [LOG_SIGNAL, LOG_NOISE]
    lo, hi = np.array(bounds).T
    default = np.array([math.log(0.5)] * d + [0.0, math.log(1e-3)])
    starts = [default if start is None else np.clip(start, lo, hi)]
    starts += [rng.uniform(lo, hi) for _ in range(max(restarts - 1, 0))]
    best = None
    for theta0 in starts:
        res = minimize(neg_log_likelihood, theta0, args=(d2, ys), jac=True, method="L-BFGS-B",
                       bounds=bounds, options={"maxiter": 200})
        if best is None or res.fun < best.fun:
            best = res
    theta = best.x
    lengths, signal, noise = np.exp(theta[:d]), math.exp(theta[d]), math.exp(theta[d + 1])
    k = matern52(d2, lengths, signal) + (noise + JITTER) * np.eye(len(ys))
    chol = np.linalg.cholesky(k)
    return GaussianProcess(x, theta, lengths, signal, noise, chol, _cho_solve(chol, ys), y_mean, y_std)
