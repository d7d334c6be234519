"""Largest singular values without forming or decomposing the matrix: Golub-Kahan-Lanczos bidiagonalization.

A full SVD of a 3000 x 3000 step Jacobian (ptb-large's (h, c) pair) costs seconds, and forming it costs as
much again; the diagnostics need only its largest singular value. Lanczos bidiagonalization (Golub & Kahan
1965) reaches it from products A v and A^T u alone: for a step Jacobian these are one forward-mode and one
reverse-mode pass of the cell (torch.func.jvp / vjp), never the 2H x 2H matrix. The extreme singular
values of the small bidiagonal matrix it builds converge to those of A in a few dozen products. Every
vector is reorthogonalised against all earlier ones (full reorthogonalisation), so no spurious copies
appear. Batched: many matrices of one shape at once (every step and sequence of a probe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]  # (batch, n) -> (batch, m)


class TopSingular(NamedTuple):
    values: torch.Tensor  # (batch,) largest singular value of each matrix
    iterations: int  # products with A that it took (one fewer with A^T)


def _orthogonalise(w: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    """w minus its projection on the (orthonormal) basis vectors, twice for stability ("twice is enough")."""
    if not basis:
        return w
    stacked = torch.stack(basis, dim=1)  # (batch, k, n)
    for _ in range(2):
        w = w - torch.einsum("bk,bkn->bn", torch.einsum("bkn,bn->bk", stacked, w), stacked)
    return w


def _normalised(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w / ||w||, ||w||) per row; a row of (numerically) zero norm stays zero: its Krylov space is exhausted."""
    norm = w.norm(dim=-1)
    safe = torch.where(norm > torch.finfo(w.dtype).tiny, norm, torch.ones_like(norm))
    return torch.where((norm > 0).unsqueeze(-1), w / safe.unsqueeze(-1), torch.zeros_like(w)), norm


def largest_singular_values(matvec: MatVec, rmatvec: MatVec, batch: int, n: int, *, dtype: torch.dtype,
                            device: torch.device | None = None, tol: float = 1e-7, max_iters: int = 100,
                            generator: torch.Generator | None = None) -> TopSingular:
    """sigma_max of ``batch`` matrices A_b (m x n), given ``matvec(V) = [A_b v_b]`` and ``rmatvec(U) = [A_b^T u_b]``.

    Stops when no estimate moved by more than ``tol`` (relative) in an iteration, or after ``max_iters``
    products (or n, when the Krylov space is the whole space and the answer is exact)."""
    start = torch.randn(batch, n, dtype=dtype, device=device, generator=generator)
    v, _ = _normalised(start)
    vs: list[torch.Tensor] = [v]
    u, alpha = _normalised(matvec(v))
    us: list[torch.Tensor] = [u]
    alphas, betas = [alpha], []
    estimate = alpha.clone()
    iterations = 1
    for _ in range(1, min(max_iters, n)):
        v, beta = _normalised(_orthogonalise(rmatvec(u) - alpha.unsqueeze(-1) * v, vs))
        vs.append(v)
        u, alpha = _normalised(_orthogonalise(matvec(v) - beta.unsqueeze(-1) * u, us))
        us.append(u)
        alphas.append(alpha)
        betas.append(beta)
        iterations += 1
        # A V_k = U_k B_k with B_k upper bidiagonal (alphas on the diagonal, betas above it)
        bidiagonal = torch.diag_embed(torch.stack(alphas, -1)) + torch.diag_embed(torch.stack(betas, -1), offset=1)
        previous, estimate = estimate, torch.linalg.svdvals(bidiagonal)[:, 0]
        if bool(((estimate - previous).abs() <= tol * estimate.abs().clamp_min(torch.finfo(dtype).tiny)).all()):
            break
    return TopSingular(estimate, iterations)


def matrix_sigma_max(matrix: torch.Tensor, **options) -> TopSingular:
    """sigma_max of one matrix by Lanczos (what torch.linalg.matrix_norm(ord=2) gives by a full SVD)."""
    m, n = matrix.shape
    return largest_singular_values(lambda v: v @ matrix.t(), lambda u: u @ matrix, 1, n, dtype=matrix.dtype,
                                   device=matrix.device, **options)
