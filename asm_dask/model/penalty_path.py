"""Ridge solutions for every penalty at once: one Lanczos run per fold.

A ridge fit with penalty ``alpha`` solves ``(A + alpha I) x = b`` for a symmetric
positive semi-definite ``A``: the fold's centred kernel ``Z Z'`` (dual, fewer rows than
features) or its centred Gram matrix ``Z'Z`` (primal, more rows than features). Krylov
spaces do not change when a multiple of the identity is added, so one Lanczos run,
``A Q = Q T`` with ``T`` tridiagonal, serves every alpha:
``x(alpha) = Q S diag(1 / (theta + alpha)) S' e1 |b|`` with ``T = S diag(theta) S'``.

Measured on 2 cores at Sierra Leone scale (2,450 rows per fold): a dense
eigendecomposition takes 2.6 s and a Cholesky factorisation 0.2 s per alpha, while
100-200 Lanczos steps (0.2-0.5 s) resolve every alpha of an eight-decade grid to a
relative residual below 1e-10. Each alpha's residual is read off ``T`` exactly; an alpha
the run does not resolve within ``MAX_STEPS`` (tiny penalties on ill-conditioned data) is
solved by Cholesky instead. No alpha is left at wherever the run happened to stop: every
one is solved as accurately as a direct solver would, to within the system's condition
number times the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

#: relative residual ``|b - (A + alpha I) x| / |b|`` below which a solution counts as exact
TOLERANCE = 1e-10
#: Lanczos steps before the remaining alphas are solved by Cholesky
MAX_STEPS = 800
_CHECK_EVERY = 10


@dataclass(frozen=True)
class PenaltyPath:
    """Scores of some rows as a function of the penalty, for one fitted fold.

    ``scores(alphas)[i] = basis @ (weights / (theta + alphas[i])) + offset`` for alphas
    the Lanczos run resolved (all alphas from ``resolved_from`` up: residuals shrink as
    alpha grows), and direct solves (``exact``) for the alphas below it it was asked for.
    """

    basis: np.ndarray  #: (n_rows, k): the scored rows against the Ritz vectors
    weights: np.ndarray  #: (k,): ``S' e1 |b|``
    theta: np.ndarray  #: (k,): Ritz values
    offset: float
    exact: dict[float, np.ndarray]  #: alpha -> scores less the offset, for alphas solved by Cholesky
    resolved_from: float  #: the smallest alpha the Lanczos run resolved
    steps: int

    def scores(self, alphas: np.ndarray) -> np.ndarray:
        """Scores of the rows, shape ``(len(alphas), n_rows)``.

        Raises ``ValueError`` for an alpha that was neither resolved nor solved directly:
        the path must be computed again with it.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        out = (self.weights[:, None] / (self.theta[:, None] + alphas[None, :])).T @ self.basis.T
        for i, alpha in enumerate(alphas):
            if float(alpha) in self.exact:
                out[i] = self.exact[float(alpha)]
            elif alpha < self.resolved_from:
                raise ValueError(f"alpha {alpha:g} is below the smallest alpha this path resolved "
                                 f"({self.resolved_from:g}) and was not solved directly")
        return out + self.offset


def penalty_path(A: np.ndarray, b: np.ndarray, rows: np.ndarray | None, offset: float,
                 alphas: np.ndarray, tol: float = TOLERANCE,
                 max_steps: int | None = None) -> PenaltyPath:
    """Scores ``rows @ x(alpha) + offset`` for every alpha, with ``(A + alpha I) x = b``.

    ``rows=None`` stands for the identity: the "scores" are the solutions themselves.
    ``A`` is symmetric positive semi-definite; Cholesky fallbacks shift its diagonal in
    place and restore it. Every alpha in ``alphas`` is solved to ``tol``; alphas passed
    later to :meth:`PenaltyPath.scores` are too if they are not below ``resolved_from``.
    """
    alphas = np.unique(np.asarray(alphas, dtype=np.float64))
    if not np.any(b):  # nothing to fit: every solution is zero
        width = len(b) if rows is None else len(rows)
        return PenaltyPath(basis=np.zeros((width, 1)), weights=np.zeros(1), theta=np.ones(1),
                           offset=offset, exact={}, resolved_from=0.0, steps=0)
    steps = min(MAX_STEPS if max_steps is None else max_steps, len(b))
    Q, alpha_diag, beta = _lanczos(A, b, alphas.min(), tol, steps)
    k = len(alpha_diag)
    theta, S = linalg.eigh_tridiagonal(alpha_diag, beta[:k - 1])
    weights = S[0] * np.linalg.norm(b)
    resolved = _residuals(theta, S, beta[k - 1], alphas) <= tol
    unresolved = alphas[~resolved]
    if rows is None:
        exact = {float(alpha): _cholesky_solve(A, b, alpha) for alpha in unresolved}
        basis = Q[:k].T @ S
    else:
        exact = {float(alpha): rows @ _cholesky_solve(A, b, alpha) for alpha in unresolved}
        basis = (rows @ Q[:k].T) @ S
    resolved_from = float(alphas[resolved].min()) if resolved.any() else np.inf
    return PenaltyPath(basis=basis, weights=weights, theta=theta, offset=offset, exact=exact,
                       resolved_from=resolved_from, steps=k)


def _lanczos(A: np.ndarray, b: np.ndarray, smallest_alpha: float, tol: float,
             max_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lanczos with full reorthogonalisation, until ``smallest_alpha`` is resolved.

    Returns the basis as rows ``Q`` (k+1, n), the diagonal of ``T`` and its off-diagonal
    ``beta`` (``beta[k-1]`` couples the last basis vector to the next).
    """
    n = len(b)
    Q = np.zeros((max_steps + 1, n))
    diagonal = np.zeros(max_steps)
    beta = np.zeros(max_steps)
    Q[0] = b / np.linalg.norm(b)
    scale = 0.0
    for j in range(max_steps):
        # NumPy's product releases the GIL, so folds in threads run side by side. SciPy's
        # BLAS symv reads half the matrix but holds the GIL: measured slower for two folds.
        u = A @ Q[j]
        diagonal[j] = Q[j] @ u
        # Two passes of classical Gram-Schmidt keep the basis orthogonal to rounding.
        for _ in range(2):
            u -= Q[:j + 1].T @ (Q[:j + 1] @ u)
        beta[j] = np.linalg.norm(u)
        scale = max(scale, abs(diagonal[j]) + beta[j])
        steps = j + 1
        if beta[j] <= 1e-13 * scale:  # the Krylov space is invariant: every alpha is exact
            beta[j] = 0.0
            break
        Q[j + 1] = u / beta[j]
        if steps % _CHECK_EVERY == 0 or steps == max_steps:
            theta, S = linalg.eigh_tridiagonal(diagonal[:steps], beta[:steps - 1])
            if _residuals(theta, S, beta[j], np.array([smallest_alpha]))[0] <= tol:
                break
    return Q, diagonal[:steps], beta[:steps]


def _residuals(theta: np.ndarray, S: np.ndarray, beta_last: float, alphas: np.ndarray) -> np.ndarray:
    """Relative residual of each alpha's solution: ``|beta_k e_k' (T + alpha I)^-1 e_1|``."""
    coupling = S[-1] * S[0]
    return np.abs(beta_last * (coupling[None, :] / (theta[None, :] + alphas[:, None])).sum(axis=1))


def _cholesky_solve(A: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """``(A + alpha I)^-1 b`` by Cholesky, shifting ``A``'s diagonal in place and back."""
    diagonal = A.flat[:: len(A) + 1].copy()
    A.flat[:: len(A) + 1] = diagonal + alpha
    try:
        # NumPy's Cholesky releases the GIL (SciPy's holds it), so tasks in threads overlap.
        lower = np.linalg.cholesky(A)
    finally:
        A.flat[:: len(A) + 1] = diagonal
    # The transpose of a C-ordered lower factor is a Fortran-ordered upper one, which
    # LAPACK takes without copying.
    return linalg.cho_solve((lower.T, False), b, check_finite=False)
