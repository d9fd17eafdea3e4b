"""The spectral generator's mean density and density power set to the training fields' at every condition, after training.

A WGAN generator under-disperses: on particle-mesh slabs the trained generator's density power was 0.83-0.99 of its
own training slabs' at all nine training cosmologies (every checkpoint, the raw generator worse than the EMA one), and
its mean density 0.974-1.006 where the cosmic mean is 1 by definition (bench/RESULTS.md §11, twenty-fifth and
twenty-sixth sessions). Both are smooth in the conditions, so they are measured and taken off, as the calorimeter
generator sets its hit-shift tables from its own outputs (``calibrate_statistics``):

* the *mean density* ``E[x]`` at each condition is brought to 1 by a shift of the output's log density;
* the *density power* per Fourier shell up to half the Nyquist frequency, the mean ``P_j`` over fields of the
  densities ``x`` (not of the log field), is brought to the training fields' (``data_stats['density_power_fit']``: a
  least-squares quadratic in the conditions, :func:`~physgan.domains.nbody.spectral.fit_amplitude_response` with
  ``statistic='mean'``) by a correction of the colouring amplitude, smooth in the shell (a cubic in ``log |m|``) and
  fitted by least squares weighted by each shell's number of modes.

Both corrections are functions of the conditions in :func:`grid_basis`, measured at a grid that spans the training
data (three values of each condition at its mean and mean +- sqrt(3/2) standard deviations: the grid points
themselves for a three-value training grid; beyond the grid's edge a correction is held at the edge's value), with the
same latents in every round, and refined ``n_iter`` times with damped steps (the log-density shift and the colouring
interact through the exponential). The mean log power per field, a less noisy estimator, overshot the mean power by
4-9 % on PM slabs (the generator's fields spread their power differently from the simulator's), so the mean power is
the target.

Off by default (``model.options.calibrate``): the fields' power is heavy-tailed, so the mean over the calibration's
fields scatters and the calibration copies that scatter into the generator. With 512 fields per point it made the
grid centre of lognormal slabs (already within 2-4 %) 6 % high (bench/RESULTS.md §11, twenty-sixth session). The
generator's density cap (the particle-mesh generator's rare fields up to 4.6 times denser than the densest training
cell doubled the spread of its mean power) and four times the fields in the last two rounds halved that noise
(twenty-seventh session), but one lognormal calibration in three still put the grid corner 8 % high. 8192 fields per
point (``physgan calibrate --scale 4`` after training, :mod:`physgan.calibrate`) take that noise off, but on lognormal
slabs the Minkowski functionals then pass 3x their floor at 0 of 6 cosmologies (raw: 4 of 6): matching the density's
power moves the log field's spectrum, which the functionals read (twenty-eighth session). On particle-mesh slabs,
whose raw generator is 5-24 % off, it is what makes the surrogate: with ``physgan calibrate --scale 4`` P(k) within
10 % at all six benchmark cosmologies for two training seeds (raw: 4 and 0 of 6).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from physgan.domains.nbody.spectral import fitted_power, shell_members, shell_power

__all__ = ["GRID_OFFSETS", "GRID_EDGE", "calibration_grid", "grid_basis", "shell_basis", "fit_correction", "calibrate_generator"]

#: the grid's offsets from the conditions' mean, in standard deviations (a three-value grid's own points)
GRID_OFFSETS = (-float(np.sqrt(1.5)), 0.0, float(np.sqrt(1.5)))
#: beyond the grid's edge (in standard deviations) a correction is held at the edge's value, not extrapolated
GRID_EDGE = float(np.sqrt(1.5))
#: degree of the correction's polynomial in log |m|
SHELL_DEGREE = 3


def calibration_grid(c_mean: np.ndarray, c_std: np.ndarray, c_min: np.ndarray, c_max: np.ndarray) -> np.ndarray:
    """Physical conditions ``(3^k, k)`` at which a generator is calibrated, clipped to the training range.

    Parameters
    ----------
    c_mean, c_std : ndarray (k,)
        Mean and standard deviation of the training conditions.
    c_min, c_max : ndarray (k,)
        Their range.

    Returns
    -------
    ndarray (3^k, k)
        Every combination of ``mean + o * std`` for ``o`` in :data:`GRID_OFFSETS`; one row of no columns when
        ``k = 0``.
    """
    c_mean, c_std = np.asarray(c_mean, dtype=np.float64), np.asarray(c_std, dtype=np.float64)
    rows = [c_mean + np.asarray(o) * c_std for o in itertools.product(GRID_OFFSETS, repeat=len(c_mean))]
    return np.clip(np.asarray(rows, dtype=np.float64).reshape(-1, len(c_mean)), c_min, c_max)


def grid_basis(u: torch.Tensor) -> torch.Tensor:
    """Products of ``1, u_i, u_i^2`` over the conditions: ``(B, 3^k)`` for ``u`` (B, k), the first column 1.

    The corrections are functions of the conditions in this basis: on the :func:`calibration_grid` it interpolates
    every point exactly (a full quadratic in ``u`` has 6 terms for 9 points and left the mean density 1.1 % off at
    one of them), and between the points it is a smooth (multi-quadratic) interpolant.
    """
    cols = [torch.ones(u.shape[0], dtype=u.dtype, device=u.device)]
    for j in range(u.shape[1]):
        cols = [col * u[:, j] ** a for col in cols for a in range(3)]
    return torch.stack(cols, dim=1)


def shell_basis(n_nodes: int, n_fit: int) -> np.ndarray:
    """``(n_nodes, SHELL_DEGREE + 1)`` powers of ``s = log(j) / log(n_fit)`` at shell nodes ``j``, held beyond ``[1, n_fit]``."""
    j = np.clip(np.arange(n_nodes, dtype=np.float64), 1.0, float(n_fit))
    s = np.log(j) / np.log(max(n_fit, 2))
    return np.stack([s**a for a in range(SHELL_DEGREE + 1)], axis=1)


def fit_correction(delta: np.ndarray, phi: np.ndarray, psi: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted least squares of ``delta[p, j] ~ sum_{a,t} psi[j, a] beta[a, t] phi[p, t]``.

    Parameters
    ----------
    delta : ndarray (P, J)
        What is missing at each calibration point and shell.
    phi : ndarray (P, T)
        Condition basis at the points.
    psi : ndarray (J, A)
        Shell basis at the shells.
    weight : ndarray (J,)
        Weight of each shell (its number of modes).

    Returns
    -------
    ndarray (A, T)
        ``beta``.
    """
    design = np.einsum("ja,pt->pjat", psi, phi).reshape(phi.shape[0] * psi.shape[0], -1)
    w = np.sqrt(np.broadcast_to(weight[None, :], delta.shape).ravel())
    ridge = 1e-8 * np.eye(design.shape[1]) * (w**2).sum()
    a = design * w[:, None]
    beta = np.linalg.solve(a.T @ a + ridge, a.T @ (delta.ravel() * w))
    return beta.reshape(psi.shape[1], phi.shape[1])


@torch.no_grad()
def calibrate_generator(
    gen,
    n_per_point: int = 512,
    n_iter: int = 4,
    seed: int = 0,
    batch_size: int = 64,
    damping: float = 0.6,
    n_final: int | None = None,
) -> dict[str, list[float]]:
    """Set ``gen.cal_mean`` and ``gen.cal_power`` (a :class:`~physgan.domains.nbody.model.SpectralFieldGenerator`).

    Parameters
    ----------
    gen : SpectralFieldGenerator
        With ``density_power_fit`` in its data statistics (``gen.calibrated``).
    n_per_point : int
        Fields generated at each calibration condition in the first ``n_iter - 2`` rounds (the same latents in each).
    n_iter : int
        Measure-and-correct rounds.
    n_final : int, optional
        Fields per condition in the last two rounds (default ``4 * n_per_point``), which set what is left of the noise:
        each field's power spreads by ~75 % about the mean on particle-mesh slabs, so 512 fields leave ~3 % on the mean
        power of each point. The first rounds only take off the bulk.
    seed : int
        Seed of the latents; the global random state is untouched.
    batch_size : int
        Generator batch.
    damping : float
        Fraction of each round's measured correction applied. The densities' power responds more than one to one to
        the colouring (the exponential couples the modes): full steps overshot and the rounds diverged on PM slabs,
        0.6 converged in four rounds (bench/RESULTS.md §11, twenty-sixth session).

    Returns
    -------
    dict
        ``mean_dev`` and ``power_dev``, one entry per round, measured before its correction: the largest ``|E[x] - 1|``
        over the points and the largest mode-weighted rms of ``log P_gen - log P_target`` over shells ``1..n/4``.
    """
    device = gen.cal_power.device
    fit = gen.power_fit
    c_phys = calibration_grid(fit["c_mean"], fit["c_std"], np.asarray(gen.cond_norm.min), np.asarray(gen.cond_norm.max))
    c_phys_t = torch.as_tensor(c_phys, dtype=torch.float32)
    u = (c_phys_t - torch.as_tensor(fit["c_mean"], dtype=torch.float32)) / torch.as_tensor(fit["c_std"], dtype=torch.float32)
    phi = grid_basis(u.double()).numpy()  # (P, 3^k): the corrections' basis
    # shells up to half the Nyquist frequency: beyond it the densities' power comes from mode coupling and the residual
    # more than from the colouring, and chasing it there made the rounds diverge (bench/RESULTS.md §11, twenty-sixth session)
    n_fit = max(gen.n // 4, 2)
    target = np.log(fitted_power(fit, c_phys))[:, 1 : n_fit + 1]  # (P, n_fit): log mean power, shells 1..n_fit
    spatial = (gen.n,) * gen.dim
    weight = (shell_members(spatial, n_fit).numpy() > 0).sum(axis=0).astype(np.float64)
    psi = shell_basis(gen.n_nodes, n_fit)
    c_in = gen.cond_norm(c_phys_t).to(device)
    was_training = gen.training
    gen.eval()
    gen.cal_mean.zero_()
    gen.cal_power.zero_()
    report: dict[str, list[float]] = {"mean_dev": [], "power_dev": []}
    n_final = 4 * int(n_per_point) if n_final is None else int(n_final)
    try:
        for it in range(int(n_iter)):
            size = n_final if it >= int(n_iter) - 2 else int(n_per_point)
            mean_x = np.zeros(len(c_phys))
            logp = np.zeros((len(c_phys), n_fit))
            for p in range(len(c_phys)):
                # the same latents in every round of one size
                rng = torch.Generator(device="cpu").manual_seed(int(seed) * 1_000_003 + p + 7919 * (size != int(n_per_point)))
                sums, powers = 0.0, []
                for start in range(0, size, batch_size):
                    b = min(batch_size, size - start)
                    z = torch.randn(b, *gen.latent_shape(), generator=rng).to(device)
                    x = torch.exp(gen.mu + gen.sd * gen(z, c_in[p : p + 1].expand(b, -1)).double()) - gen.eps
                    sums += float(x.mean()) * b
                    powers.append(shell_power(x, n_fit).double().cpu())
                mean_x[p] = sums / size
                logp[p] = np.log(torch.cat(powers).mean(dim=0).numpy() + 1e-30)
            shift = -np.log((mean_x + gen.eps) / (1.0 + gen.eps)) / gen.sd
            delta = target - logp
            report["mean_dev"].append(float(np.abs(mean_x - 1.0).max()))
            report["power_dev"].append(float(np.sqrt((delta**2 * weight).sum(axis=1) / weight.sum()).max()))
            beta_mean = damping * np.linalg.lstsq(phi, shift, rcond=None)[0]
            beta_power = damping * fit_correction(delta, phi, psi[1 : n_fit + 1], weight)
            gen.cal_mean += torch.as_tensor(beta_mean, dtype=gen.cal_mean.dtype, device=device)
            gen.cal_power += torch.as_tensor(psi @ beta_power, dtype=gen.cal_power.dtype, device=device)
    finally:
        gen.train(was_training)
    return report
