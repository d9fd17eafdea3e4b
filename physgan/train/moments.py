"""Conditional moment matching: a generator term that pins the mean of chosen summaries at every condition.

A WGAN critic learns *where* generated and real samples differ, but a mean offset of a few per cent in a
noisy per-sample summary (the log power of a low Fourier shell holds a handful of modes) moves its score by
less than its own step-to-step noise: the N-body generator kept a tilt of +9 % / -5 % in P(k) for thousands
of steps while the critic saw it (bench/RESULTS.md §11). This term states the goal directly. With ``f`` a
domain's standardised summaries (:attr:`physgan.domains.base.Domain.moment_features`) and ``phi(c)`` the
polynomial basis of the (normalised) conditions up to ``degree``, it drives

    m = E[(f(G(z, c)) - f(x)) phi(c)^T],   (x, c) ~ data, the fakes at the same c,

to zero: with ``degree`` 1 the intercept *and the slope* of every summary against every condition agree
with the data's (the response an inference pipeline differentiates); degree 2 adds the curvature. The
estimate of ``|m|^2`` is unbiased: the batch is split in halves and the loss is ``m_1 . m_2`` (a squared
batch mean would also reward a generator whose summaries vary less, a push towards mode collapse of order
1/batch). It can be negative; its gradient is what matters.

This is feature matching (Salimans et al. 2016) made conditional and unbiased; it adds nothing the data do not
define and is off (weight 0) unless a domain preset or ``--set train.moment_weight=...`` turns it on.
"""

from __future__ import annotations

import torch

__all__ = ["condition_basis", "conditional_moment_loss"]


def condition_basis(c: torch.Tensor, degree: int) -> torch.Tensor:
    """Monomials of the conditions ``c`` (B, k) up to ``degree`` (0, 1 or 2): ``(B, n_terms)``, first column 1."""
    if degree not in (0, 1, 2):
        raise ValueError(f"moment degree must be 0, 1 or 2, got {degree}")
    cols = [torch.ones(c.shape[0], 1, dtype=c.dtype, device=c.device)]
    if degree >= 1 and c.shape[1]:
        cols.append(c)
    if degree >= 2 and c.shape[1]:
        i, j = torch.triu_indices(c.shape[1], c.shape[1], device=c.device)
        cols.append(c[:, i] * c[:, j])
    return torch.cat(cols, dim=1)


def conditional_moment_loss(f_fake: torch.Tensor, f_real: torch.Tensor, c: torch.Tensor, degree: int = 1) -> torch.Tensor:
    """Unbiased estimate of ``|E[(f_fake - f_real) phi(c)^T]|^2`` (summed over summaries and basis terms).

    Parameters
    ----------
    f_fake, f_real : Tensor
        ``(B, F)`` summaries of generated and real samples; row ``i`` of both has condition ``c[i]``.
    c : Tensor
        ``(B, k)`` normalised conditions.
    degree : int
        Degree of the condition basis (see :func:`condition_basis`).

    Returns
    -------
    Tensor
        Scalar; ``m_1 . m_2`` with ``m_h`` the moment matrix of half ``h`` of the batch. Needs ``B >= 2``. A
        summary off by ``delta`` (in its standardised units) at every condition adds ``delta^2``: summed, not
        averaged, so the pull on each summary does not shrink as summaries are added.
    """
    if f_fake.shape != f_real.shape or f_fake.shape[0] != c.shape[0]:
        raise ValueError(f"summaries {tuple(f_fake.shape)} / {tuple(f_real.shape)} and conditions {tuple(c.shape)} disagree")
    b = f_fake.shape[0]
    if b < 2:
        raise ValueError("conditional moment matching needs a batch of at least 2")
    phi = condition_basis(c.to(f_fake.dtype), degree)
    d = f_fake - f_real
    h = b // 2
    m1 = d[:h].T @ phi[:h] / h
    m2 = d[h : 2 * h].T @ phi[h : 2 * h] / h
    return (m1 * m2).sum()
