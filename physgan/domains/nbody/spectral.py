"""Fourier-shell bookkeeping and the differentiable field summaries shared by the nbody transform and models.

One mechanism, used in three places:

* :class:`~physgan.domains.nbody.transform.DensityTransform` (``kind='gauss'``) fits the mean power per
  Fourier shell of the training fields (the generator's initial spectrum) and the mean and spread of
  :func:`field_summaries` over the training fields (the critic standardises with them);
* :class:`~physgan.domains.nbody.model.SpectralFieldGenerator` colours white noise with a learned,
  condition-dependent amplitude per shell, interpolated with :func:`shell_interpolation`;
* :class:`~physgan.domains.nbody.model.SummaryFieldCritic` scores :func:`field_summaries` (binned log power,
  a soft histogram of the field, its moments and its mean density) beside its convolutional features.

Shells are integer rings of the Fourier index, ``round(|m|)``, with ``m`` the integer wave vector of an
``n^d`` grid: shell ``j`` holds wavenumbers ``k = 2 pi j / L``, as in
:func:`physgan.metrics.spectra.power_spectrum`. All transforms use ``norm='ortho'``, so unit white noise has
unit power in every mode, and the power of a field is ``P(k) / h^d`` for cell size ``h`` whatever the grid
size (a field ``s`` times larger per side keeps its spectrum).

References
----------
.. [1] D. Ribli, B. A. Pataki, I. Csabai, "An improved cosmological parameter inference scheme motivated by
   deep learning", Nat. Astron. 3, 93 (2019) (summary statistics beside learned features).
.. [2] N. Perraudin et al., "Cosmological N-body simulations: a challenge for scalable generative models",
   Comput. Astrophys. Cosmol. 6, 5 (2019) (power spectrum as a critic input).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from physgan.nn.topology import vacancy_products

__all__ = [
    "QUANTILES",
    "shell_index",
    "shell_members",
    "shell_multiplicity",
    "shell_power",
    "shell_interpolation",
    "field_summaries",
    "n_summaries",
    "fit_spectral_stats",
    "MF_LEVELS",
    "soft_minkowski",
    "soft_singletons",
    "singleton_thresholds",
    "SINGLETON_ISLAND_LEVELS",
    "SINGLETON_HOLE_LEVELS",
    "fit_amplitude_response",
    "node_power",
    "lattice_harmonics",
    "fit_lattice_anisotropy",
]

#: Quantile levels of the one-point distribution in :func:`field_summaries` (sorted values: differentiable, and
#: O(N log N) where a soft histogram's kernels cost N x bins in the gradient penalty's double backward).
QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


#: Quantile levels (of the training fields' pooled values) of the thresholds of :func:`soft_minkowski`.
MF_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.98)

#: The levels (of :data:`MF_LEVELS`) at which the critic counts one-cell islands and one-cell holes (:func:`soft_singletons`).
SINGLETON_ISLAND_LEVELS = (0.7, 0.9, 0.98)
SINGLETON_HOLE_LEVELS = (0.1, 0.3, 0.5)

#: Softness of the excursion-set indicator of :func:`soft_minkowski`, in units of the standardised field.
MF_WIDTH = 0.2


@lru_cache(maxsize=16)
def _wave_vectors(shape: tuple[int, ...]) -> list[np.ndarray]:
    """The integer wave vector ``m`` of each rfftn mode of a spatial ``shape``: one array (rfftn layout) per axis."""
    freqs = [np.fft.fftfreq(s, 1.0 / s) for s in shape[:-1]] + [np.fft.rfftfreq(shape[-1], 1.0 / shape[-1])]
    return np.meshgrid(*freqs, indexing="ij")


@lru_cache(maxsize=16)
def _index(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(|m| of each rfftn mode, its full-space multiplicity) for a spatial ``shape``."""
    kmag = np.sqrt(sum(g**2 for g in _wave_vectors(shape)))
    mult = np.full(kmag.shape, 2.0)
    mult[..., 0] = 1.0
    if shape[-1] % 2 == 0:
        mult[..., -1] = 1.0
    return kmag, mult


def shell_index(shape: tuple[int, ...]) -> np.ndarray:
    """Integer shell ``round(|m|)`` of every rfftn mode of a field of spatial ``shape`` (int64 array)."""
    return np.rint(_index(tuple(int(s) for s in shape))[0]).astype(np.int64)


@lru_cache(maxsize=16)
def shell_members(shape: tuple[int, ...], n_shells: int) -> torch.Tensor:
    """``(n_modes, n_shells)`` weights averaging rfftn power over shells ``1..n_shells`` (multiplicity-weighted).

    Row ``i`` of the flattened rfftn modes has weight ``mult_i / sum(mult in its shell)`` in its shell's column;
    modes of shell 0 or beyond ``n_shells`` have none.
    """
    kmag, mult = _index(tuple(int(s) for s in shape))
    shell = np.rint(kmag).astype(np.int64).ravel()
    w = np.zeros((shell.size, n_shells))
    for j in range(1, n_shells + 1):
        sel = shell == j
        if sel.any():
            w[sel, j - 1] = mult.ravel()[sel] / mult.ravel()[sel].sum()
    return torch.as_tensor(w, dtype=torch.float32)


@lru_cache(maxsize=16)
def shell_multiplicity(shape: tuple[int, ...]) -> torch.Tensor:
    """Full-space multiplicity (1 or 2) of each flattened rfftn mode of a field of spatial ``shape``."""
    return torch.as_tensor(_index(tuple(int(s) for s in shape))[1].ravel(), dtype=torch.float32)


def shell_power(y: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Mean power ``|FFT_ortho(y)|^2`` in shells ``1..n_shells`` of fields ``y`` (B, 1, *spatial) -> (B, n_shells)."""
    spatial = tuple(y.shape[2:])
    dims = tuple(range(2, y.ndim))
    f = torch.fft.rfftn(y[:, 0].float(), dim=tuple(d - 1 for d in dims), norm="ortho")
    p = (f.real**2 + f.imag**2).flatten(1)
    return p @ shell_members(spatial, n_shells).to(p.device)


@lru_cache(maxsize=16)
def shell_interpolation(shape: tuple[int, ...], n_train: int, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation of per-node values onto the rfftn modes of a field of spatial ``shape``.

    Node ``j`` sits at ``|m| = j`` on the training grid of side ``n_train``; on a grid ``n`` cells per side the
    mode ``m`` has the same physical wavenumber as ``|m| n_train / n`` there. Returns ``(lo, hi, w)``:
    node indices and the weight of ``hi`` (flattened modes), clamped at the last node. Cached per grid: the
    generator calls it on every forward pass (callers must not modify the returned tensors).
    """
    kmag, _ = _index(tuple(int(s) for s in shape))
    t = np.clip(kmag.ravel() * n_train / shape[0], 0.0, n_nodes - 1.0)
    lo = np.floor(t).astype(np.int64)
    hi = np.minimum(lo + 1, n_nodes - 1)
    w = (t - lo).astype(np.float32)
    return torch.as_tensor(lo), torch.as_tensor(hi), torch.as_tensor(w)


@lru_cache(maxsize=16)
def low_modes(shape: tuple[int, ...], n_train: int, cut: float) -> torch.Tensor:
    """Which rfftn modes of a field of spatial ``shape`` lie below ``|m| = cut`` on the training grid of side ``n_train``.

    A grid ``n`` cells per side holds the training grid's mode ``m`` at ``|m| n / n_train`` (the same physical
    wavenumber, as in :func:`shell_interpolation`), so a larger generated field keeps the same physical cut. Returns a
    boolean tensor of the rfftn shape (the mean, ``m = 0``, is below any positive cut). Cached per grid: callers must
    not modify it.
    """
    kmag, _ = _index(tuple(int(s) for s in shape))
    return torch.as_tensor(kmag * n_train / shape[0] < cut)


@lru_cache(maxsize=16)
def lattice_harmonics(shape: tuple[int, ...]) -> np.ndarray:
    """Direction features of each flattened rfftn mode of a field of spatial ``shape`` that the grid's cubic symmetry allows
    -> (n_modes, 2) float64: ``u = s4 - 3 / (d + 2)`` and ``u^2``, with ``s4 = sum_i m_i^4 / |m|^4``.

    ``s4`` is the lowest polynomial of a direction invariant under the lattice's reflections and axis swaps (in 2-D
    ``(3 + cos 4 theta) / 4``: 1 along an axis, 1/2 along a diagonal); ``3 / (d + 2)`` is its average over directions, so
    ``u`` is centred. The mean (``m = 0``) has no direction: zero. Cached per grid (callers must not modify it).
    """
    shape = tuple(int(v) for v in shape)
    d = len(shape)
    grids = [g.ravel() for g in _wave_vectors(shape)]
    m2 = sum(g**2 for g in grids)
    s4 = np.divide(sum(g**4 for g in grids), m2**2, out=np.full(m2.shape, 3.0 / (d + 2)), where=m2 > 0)
    u = s4 - 3.0 / (d + 2)
    return np.stack([u, u**2], axis=1)


def fit_lattice_anisotropy(power: np.ndarray, shape: tuple[int, ...], pk_node: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """How the mean power of each mode departs from the isotropic spectrum, as :func:`lattice_harmonics` per shell node.

    A pixelised simulator's fields are not isotropic near the grid scale: the mass assignment's window and aliasing
    depend on the direction of ``m``, not only on ``|m|`` (64^2 lognormal slabs: diagonal over axial power 1.10 at
    ``|m| = 28``, 1.47 at 32), while a spectrum per shell is the same in every direction (bench/RESULTS.md §11,
    thirty-first session). Least squares (multiplicity-weighted, ``ridge`` relative to the normal matrix's scale) of
    ``log power - log P_iso`` with ``P_iso`` the node powers interpolated as the generator interpolates them
    (:func:`shell_interpolation`), on ``sum_h u_h(m) a_h(|m|)`` with ``a_h`` linear between the nodes.

    Parameters
    ----------
    power : ndarray (n_modes,)
        Mean power of each flattened rfftn mode of the training fields.
    shape : tuple of int
        Their spatial shape (the training grid).
    pk_node : ndarray (n_nodes,)
        The node powers of :func:`node_power`.
    ridge : float
        Tikhonov weight (nodes without modes stay at zero).

    Returns
    -------
    ndarray (n_nodes, 2)
        ``a_h`` at each node: the log power's anisotropy; the generator adds half of ``sum_h u_h a_h`` to its log
        amplitude.
    """
    shape = tuple(int(v) for v in shape)
    n_nodes = len(pk_node)
    lo, hi, w = (t.numpy() for t in shell_interpolation(shape, shape[0], n_nodes))
    w = w.astype(np.float64)
    log_node = np.log(np.maximum(np.asarray(pk_node, dtype=np.float64), 1e-300))
    r = np.log(np.maximum(np.asarray(power, dtype=np.float64), 1e-300)) - ((1 - w) * log_node[lo] + w * log_node[hi])
    u = lattice_harmonics(shape)
    n_h, n_par = u.shape[1], n_nodes * u.shape[1]
    # each mode's row of the design matrix has 2 n_h non-zeros (its two nodes x the harmonics): the normal equations are
    # accumulated from those alone (a dense design matrix is modes x parameters: 2 GB at 128^3)
    cols = np.concatenate([lo[:, None] * n_h + np.arange(n_h), hi[:, None] * n_h + np.arange(n_h)], axis=1)  # (M, 2H)
    vals = np.concatenate([u * (1 - w)[:, None], u * w[:, None]], axis=1)
    sw = _index(shape)[1].ravel()
    normal = np.zeros(n_par * n_par)
    pairs = (cols[:, :, None] * n_par + cols[:, None, :]).ravel()
    np.add.at(normal, pairs, (sw[:, None, None] * vals[:, :, None] * vals[:, None, :]).ravel())
    normal = normal.reshape(n_par, n_par)
    rhs = np.zeros(n_par)
    np.add.at(rhs, cols.ravel(), (sw[:, None] * vals * r[:, None]).ravel())
    normal[np.diag_indices_from(normal)] += ridge * max(float(np.trace(normal)) / n_par, 1e-12)
    return np.linalg.solve(normal, rhs).reshape(n_nodes, n_h)


def n_summaries(n: int, density_power: bool = True) -> int:
    """Length of :func:`field_summaries` for fields ``n`` cells per side."""
    return (2 if density_power else 1) * (n // 2) + len(QUANTILES) + 3


def field_summaries(y: torch.Tensor, mu: float, sd: float, density_power: bool = True) -> torch.Tensor:
    """Differentiable per-field summaries of standardised log-density fields ``y`` (B, 1, *spatial).

    Columns: log mean power of ``y`` in shells ``1..n/2`` (``k <= k_Nyquist``); with ``density_power`` the
    same of the physical density ``x = exp(mu + sd * y)``; the quantiles of ``y`` at :data:`QUANTILES` (its
    one-point distribution); the mean and standard deviation of ``y``; and the log of the mean density
    ``log mean(exp(mu + sd * y))`` (the physical field's mean, in units of the cosmic mean).

    Why both spectra: ``P_y`` fixes ``P_x`` only for a Gaussian ``y``. A generator's local non-Gaussian
    structure moves ``P_x`` while ``P_y`` stays put: a critic that saw ``P_y`` alone let a tilt of +9 % at the
    lowest k to -5 % at k_N/2 through in ``P_x`` (the power spectrum users measure) while ``P_y`` was within
    4 % (bench/RESULTS.md §11). ``density_power=False`` gives the summaries of runs made before.
    """
    n = int(y.shape[2])
    cols = [torch.log(shell_power(y, n // 2) + 1e-8)]
    flat = y.flatten(1).float()
    if density_power:
        x = torch.exp(mu + sd * y.float())
        cols.append(torch.log(shell_power(x, n // 2) + 1e-8))
    idx = torch.as_tensor([round(q * (flat.shape[1] - 1)) for q in QUANTILES], device=flat.device)
    quant = torch.sort(flat, dim=1).values[:, idx]
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, keepdim=True)
    log_mean_density = torch.logsumexp(mu + sd * flat, dim=1, keepdim=True) - float(np.log(flat.shape[1]))
    return torch.cat([*cols, quant, mean, std, log_mean_density], dim=1)


def soft_minkowski(y: torch.Tensor, thresholds: torch.Tensor, width: float = MF_WIDTH) -> torch.Tensor:
    """Differentiable boundary measure and Euler characteristic of the excursion sets ``y >= nu`` -> (B, 2 T).

    The same periodic cubical complex as :func:`physgan.domains.nbody.metrics.minkowski_functionals` (closed
    cells; a k-cell belongs to the set when any cell sharing it does), with the hard indicator replaced by
    ``s = sigmoid((y - nu) / width)`` and "any" by ``1 - prod(1 - s)``: with ``width -> 0`` the columns are the
    metric's boundary faces and Euler characteristic per cell. The area fraction is not repeated (the
    quantiles of :func:`field_summaries` hold it).

    Why: for a Gaussian field the functionals follow from the spectrum, but a generator's local
    non-Gaussian structure (isolated cells above a threshold, breaks in filaments) changes the topology
    while the spectrum and the one-point distribution stay put. A critic that does not see the topology
    let the Euler characteristic sit at 3-7x its noise floor (bench/RESULTS.md §11).

    Parameters
    ----------
    y : Tensor (B, 1, *spatial)
        Standardised fields.
    thresholds : Tensor (T,)
        Levels ``nu`` on ``y``.
    width : float
        Softness of the indicator (units of ``y``).

    Returns
    -------
    Tensor (B, 2 T)
        The boundary measure at each threshold, then the Euler characteristic at each, both per cell.
    """
    d = y.ndim - 2
    dims = tuple(range(2, 2 + d))
    n_cells = float(np.prod(y.shape[2:]))
    empty = torch.sigmoid(-(y.float() - thresholds.view(1, -1, *([1] * d))) / width)  # 1 - s, (B, T, *spatial)
    # one set of products for both (physgan.nn.topology.vacancy_products): with e = 1 - s and e_A the product over the
    # voxels sharing a cell across the axes A, a face normal to axis a is on the boundary with s (1 - s') + s' (1 - s)
    # = e + e' - 2 e_(a), summed 2 (e - e_(a)); and chi = sum_A (-1)^(d - |A|) (1 - e_A) (the closed complex)
    sums = {a: e.sum(dim=dims) for a, e in vacancy_products(empty, dims).items()}
    boundary = sum(2 * (sums[()] - sums[(a,)]) for a in dims)
    chi = -sum((-1) ** (d - len(a)) * v for a, v in sums.items())
    return torch.cat([boundary / n_cells, chi / n_cells], dim=1)


def soft_singletons(
    y: torch.Tensor, island_thresholds: torch.Tensor, hole_thresholds: torch.Tensor | None = None, width: float = MF_WIDTH
) -> torch.Tensor:
    """Differentiable counts of one-cell islands and one-cell holes of the excursion sets ``y >= nu`` -> (B, T_i + T_h).

    In the closed cubical complex of :func:`soft_minkowski` a cell above ``nu`` is an island on its own when none of
    its ``3^d - 1`` neighbours (faces, edges, corners) is above; a cell below ``nu`` is a hole on its own when its
    ``2 d`` face neighbours are all above (the complement connects through faces only). With the soft indicator
    ``s = sigmoid((y - nu) / width)``: ``s_i prod_j (1 - s_j)`` and ``(1 - s_i) prod_j s_j``, per cell, periodic;
    with ``width -> 0`` the exact counts.

    Why: on lognormal slabs the Euler characteristic's miss is one-cell islands at high thresholds and one-cell
    holes at low ones (2-5 %), components of two cells and more within ~2 % (bench/RESULTS.md §11, thirty-first and
    thirty-second sessions); counted on their own, the critic's features separate generated from simulated fields
    1.5x better per field than the Euler characteristic, where every other component's noise dilutes them.

    Parameters
    ----------
    y : Tensor (B, 1, *spatial)
        Standardised fields.
    island_thresholds : Tensor (T_i,)
        Levels ``nu`` on ``y`` whose islands are counted.
    hole_thresholds : Tensor (T_h,), optional
        Levels whose holes are counted (default: ``island_thresholds``). The critic counts islands at its high
        thresholds and holes at its low ones (:data:`SINGLETON_ISLAND_LEVELS`, :data:`SINGLETON_HOLE_LEVELS`), where
        their misses are (bench/RESULTS.md §11, thirty-second session): those six columns cost about as much as the
        twelve of :func:`soft_minkowski` in the penalty's double backward (``python -m bench.nbody_critic_cost``).
    width : float
        Softness of the indicator (units of ``y``).

    Returns
    -------
    Tensor (B, T_i + T_h)
        One-cell islands per cell at each island threshold, then one-cell holes per cell at each hole threshold.
    """
    d = y.ndim - 2
    dims = tuple(range(2, 2 + d))
    n_cells = float(np.prod(y.shape[2:]))
    hole_thresholds = island_thresholds if hole_thresholds is None else hole_thresholds
    shape = (1, -1, *([1] * d))
    # in logs, products of memberships are sums: log(1 - s) = -softplus(x), log s = -softplus(-x) = log(1 - s) + x
    x = (y.float() - island_thresholds.view(shape)) / width  # (B, T_i, *spatial)
    block = -F.softplus(x)  # the 3^d block's sum of log(1 - s): separable, one pair of rolls per axis
    for a in dims:
        block = block + torch.roll(block, 1, dims=a) + torch.roll(block, -1, dims=a)
    island = torch.exp(x + block)  # log s_i - log(1 - s_i) = x_i: the centre's own factor swapped in
    x = (y.float() - hole_thresholds.view(shape)) / width  # (B, T_h, *spatial)
    log_full = -F.softplus(-x)
    faces = sum(torch.roll(log_full, 1, dims=a) + torch.roll(log_full, -1, dims=a) for a in dims)
    hole = torch.exp(log_full - x + faces)
    return torch.cat([island.sum(dim=dims) / n_cells, hole.sum(dim=dims) / n_cells], dim=1)


def singleton_thresholds(mf_thresholds) -> tuple[torch.Tensor, torch.Tensor]:
    """The island and hole thresholds of the critic's :func:`soft_singletons`: the fitted ``mf_thresholds`` (at
    :data:`MF_LEVELS`) at :data:`SINGLETON_ISLAND_LEVELS` and :data:`SINGLETON_HOLE_LEVELS`."""
    thr = torch.as_tensor(mf_thresholds, dtype=torch.float32)
    pick = lambda levels: thr[[MF_LEVELS.index(q) for q in levels]]  # noqa: E731
    return pick(SINGLETON_ISLAND_LEVELS), pick(SINGLETON_HOLE_LEVELS)


def fit_amplitude_response(
    y: np.ndarray,
    c: np.ndarray,
    n_nodes: int,
    degree: int = 2,
    batch: int = 512,
    statistic: str = "log",
    log_conditions: bool = False,
) -> dict[str, list]:
    """Least-squares fit of each shell's log power (or power) as a polynomial of the conditions, from the training fields.

    ``log P_j(field i) = sum_t beta_{j t} phi_t(u_i) + noise`` with ``u = (c - c_mean) / c_std`` and ``phi`` the
    monomials up to ``degree`` (:func:`physgan.train.moments.condition_basis`); with ``log_conditions``,
    ``u = (log c - c_mean) / c_std`` (``c_mean``, ``c_std`` then of ``log c``), so degree 1 is a power law per shell,
    ``P_j ∝ prod_i c_i^{b_ij}`` (the linear power spectrum scales exactly as sigma8^2). The estimator's bias (the mean log
    of a chi-squared power) depends on the shell's number of modes only, so it moves the constant term, not the
    dependence on the conditions; the generator takes the constant from the pooled spectrum instead.

    Parameters
    ----------
    y : ndarray (N, *spatial)
        Standardised log-density fields.
    c : ndarray (N, k)
        Their physical conditions.
    n_nodes : int
        Shell nodes of the generator (``0..n_nodes-1``); shells without modes take the nearest filled one's fit.
    degree : int
        Polynomial degree (1 or 2).
    batch : int
        Fields per FFT batch.
    statistic : {'log', 'mean'}
        ``'log'``: fit ``log P`` with the constant column zero (the generator's starting point); ``'mean'``: fit ``P``
        itself, constant kept, so ``phi(u) . coef_j`` estimates the mean power at ``u`` without the log's bias (the
        calibration's target, :mod:`physgan.domains.nbody.calibration`; ``offset`` is then zero).
    log_conditions : bool
        Fit in the logarithms of the conditions (all must be > 0).

    Returns
    -------
    dict
        ``c_mean``, ``c_std`` (k,), ``degree``, ``log`` (whether ``u`` is of ``log c``), ``coef`` (n_nodes x n_terms,
        the constant column zero unless kept) and ``offset`` (n_nodes,): ``log mean_i exp(phi(u_i) . coef_j)`` over
        the fitted fields, so that ``phi(u) . coef_j - offset_j`` keeps the pooled spectrum.
    """
    from physgan.train.moments import condition_basis

    y = np.asarray(y, dtype=np.float32)
    c = np.asarray(c, dtype=np.float64).reshape(len(y), -1)
    if log_conditions:
        if not np.all(c > 0):
            raise ValueError(f"fit_amplitude_response: log_conditions needs conditions > 0, found {float(c.min()):.4g}")
        c = np.log(c)
    spatial = tuple(y.shape[1:])
    c_mean = c.mean(axis=0)
    c_std = c.std(axis=0)
    c_std = np.where(c_std > 1e-12 * np.maximum(np.abs(c_mean), 1.0), c_std, 1.0)
    phi = condition_basis(torch.as_tensor((c - c_mean) / c_std), degree).numpy()  # (N, T)
    n_shells = n_nodes - 1
    if statistic not in ("log", "mean"):
        raise ValueError(f"fit_amplitude_response: statistic must be 'log' or 'mean', got {statistic!r}")
    with torch.no_grad():
        power = np.concatenate(
            [shell_power(torch.as_tensor(y[i : i + batch])[:, None], n_shells).numpy() for i in range(0, len(y), batch)]
        ).astype(np.float64)  # (N, n_shells)
    fitted = np.log(power + 1e-12) if statistic == "log" else power  # empty shells hold log(1e-12) / 0
    filled = np.zeros(n_nodes, dtype=bool)
    filled[1:] = shell_members(spatial, n_shells).numpy().sum(axis=0) > 0
    coef = np.zeros((n_nodes, phi.shape[1]))
    ridge = 1e-6 * len(phi) * np.eye(phi.shape[1])
    beta = np.linalg.solve(phi.T @ phi + ridge, phi.T @ fitted)  # (T, n_shells)
    coef[1:] = beta.T
    if statistic == "log":
        coef[:, 0] = 0.0  # the generator's constant comes from the pooled spectrum
    idx = np.flatnonzero(filled)
    nearest = idx[np.abs(np.arange(n_nodes)[:, None] - idx[None, :]).argmin(axis=1)]
    coef = coef[nearest]
    offset = np.log(np.mean(np.exp(phi @ coef.T), axis=0)) if statistic == "log" else np.zeros(n_nodes)
    return {
        "c_mean": c_mean.tolist(),
        "c_std": c_std.tolist(),
        "degree": int(degree),
        "log": bool(log_conditions),
        "coef": coef.tolist(),
        "offset": offset.tolist(),
    }


def fitted_power(fit: dict, c: np.ndarray) -> np.ndarray:
    """The mean power per shell node that a :func:`fit_amplitude_response` fit with ``statistic='mean'`` predicts.

    Parameters
    ----------
    fit : dict
        The fit (e.g. ``data_stats['density_power_fit']``: the training densities' power as a quadratic in the conditions).
    c : ndarray (P, k)
        Physical conditions.

    Returns
    -------
    ndarray (P, n_nodes)
        ``phi(u) . coef_j`` with ``u = (c - c_mean) / c_std`` (of ``log c`` for a fit in log conditions), floored at
        1e-30 (a fit is not a power where it dips below).
    """
    from physgan.train.moments import condition_basis

    c = np.atleast_2d(np.asarray(c, dtype=np.float64))
    if fit.get("log"):
        c = np.log(np.maximum(c, 1e-30))
    u = (c - np.asarray(fit["c_mean"], dtype=np.float64)) / np.asarray(fit["c_std"], dtype=np.float64)
    phi = condition_basis(torch.as_tensor(u), int(fit["degree"])).numpy()
    return np.maximum(phi @ np.asarray(fit["coef"], dtype=np.float64).T, 1e-30)


def node_power(pk_shell: np.ndarray, shape: tuple[int, ...], n_iter: int = 50) -> np.ndarray:
    """Node powers whose interpolation (:func:`shell_interpolation`) gives each shell its mean power ``pk_shell``.

    The spectral generator interpolates ``log A`` linearly in ``|m|`` between nodes at integer ``|m|``, but shell
    ``j`` averages modes over ``|m| in [j - 1/2, j + 1/2)``: with the shell means as node values, a falling
    spectrum puts less than the shell's mean power into it (shell 1 of a 32^2 field: its modes at ``|m| = sqrt 2``
    take 41 % of node 2; 17 % too little power there, 5-10 % in shells 2 and 5, bench/RESULTS.md §11). A fixed-point
    iteration on the log node values removes this: each filled shell's node moves by the log ratio of its target
    to the interpolated spectrum's shell mean (the shell's own node carries most of its weight, so it converges
    in a few tens of steps to ~1e-6).

    Parameters
    ----------
    pk_shell : ndarray (n_nodes,)
        Target mean power per shell ``0..n_nodes-1`` (positive; empty shells are ignored).
    shape : tuple of int
        Spatial shape of the training fields (the grid the generator's nodes are defined on).
    n_iter : int
        Fixed-point iterations.

    Returns
    -------
    ndarray (n_nodes,)
        Node powers; empty shells' nodes take the nearest filled node's value.
    """
    shape = tuple(int(s) for s in shape)
    target = np.asarray(pk_shell, dtype=np.float64)
    n_nodes = len(target)
    lo, hi, w = (t.numpy() for t in shell_interpolation(shape, shape[0], n_nodes))
    kmag, mult = _index(shape)
    shell = np.rint(kmag).astype(np.int64).ravel()
    mult = mult.ravel()
    keep = shell < n_nodes
    shell, mult, lo, hi, w = shell[keep], mult[keep], lo[keep], hi[keep], w[keep].astype(np.float64)
    weight = np.bincount(shell, weights=mult, minlength=n_nodes)
    filled = weight > 0
    idx = np.flatnonzero(filled)
    nearest = idx[np.abs(np.arange(n_nodes)[:, None] - idx[None, :]).argmin(axis=1)]
    log_t = np.log(np.maximum(target, 1e-300))
    log_node = log_t.copy()
    for _ in range(int(n_iter)):
        mode = np.exp((1.0 - w) * log_node[lo] + w * log_node[hi])
        mean = np.bincount(shell, weights=mode * mult, minlength=n_nodes)[filled] / weight[filled]
        log_node[filled] += log_t[filled] - np.log(mean)
        log_node = log_node[nearest]
    return np.exp(log_node)


def fit_spectral_stats(y: np.ndarray, mu: float, sd: float, batch: int = 512, c: np.ndarray | None = None) -> dict:
    """Training statistics of standardised fields ``y`` (N, *spatial), JSON-serialisable.

    ``pk_shell``: mean power per shell ``0..ceil(sqrt(d) n/2)+1`` (empty shells take the nearest filled one);
    ``pk_node``: the node powers that reproduce it through the generator's interpolation (:func:`node_power`;
    the generator's initial spectrum); ``summary_mean`` / ``summary_std``: of :func:`field_summaries`;
    ``mf_thresholds`` (the pooled values' quantiles at :data:`MF_LEVELS`) and ``mf_mean`` / ``mf_std``: of
    :func:`soft_minkowski` at those thresholds; ``singleton_mean`` / ``singleton_std``: of :func:`soft_singletons` at
    the thresholds of :func:`singleton_thresholds`; ``lattice_aniso``: the power's dependence on a mode's direction
    (:func:`fit_lattice_anisotropy`); with conditions ``c`` (N, k), ``amp_fit``: the spectrum's dependence on them
    (:func:`fit_amplitude_response`, a quadratic), the spectral generator's starting point, and where every condition
    is > 0 ``amp_fit_power_law``: the same as a power law in them (degree 1 in their logarithms; model option
    ``amp_form='power_law'``).
    """
    y = np.asarray(y, dtype=np.float32)
    thresholds = torch.as_tensor(np.quantile(y[: min(len(y), 256)], MF_LEVELS), dtype=torch.float32)
    spatial = tuple(y.shape[1:])
    n, d = spatial[0], len(spatial)
    n_nodes = int(np.ceil(np.sqrt(d) * n / 2)) + 2
    shell = shell_index(spatial).ravel()
    _, mult = _index(spatial)
    mult = mult.ravel()
    power = np.zeros(n_nodes)
    weight = np.zeros(n_nodes)
    mode_power = np.zeros(shell.size)
    rows, mf_rows, single_rows = [], [], []
    with torch.no_grad():
        for i in range(0, len(y), batch):
            t = torch.as_tensor(y[i : i + batch])
            f = torch.fft.rfftn(t, dim=tuple(range(1, t.ndim)), norm="ortho")
            p = (f.real**2 + f.imag**2).flatten(1).numpy().astype(np.float64)
            np.add.at(power, shell, (p * mult).sum(axis=0))
            np.add.at(weight, shell, mult * len(p))
            mode_power += p.sum(axis=0)
            rows.append(field_summaries(t[:, None], mu, sd).numpy().astype(np.float64))
            mf_rows.append(soft_minkowski(t[:, None], thresholds).numpy().astype(np.float64))
            single_rows.append(soft_singletons(t[:, None], *singleton_thresholds(thresholds)).numpy().astype(np.float64))
    filled = weight > 0
    pk = np.interp(np.arange(n_nodes), np.flatnonzero(filled), power[filled] / weight[filled])
    s = np.concatenate(rows)
    mf = np.concatenate(mf_rows)
    single = np.concatenate(single_rows)
    pk_node = np.maximum(node_power(np.maximum(pk, 1e-12), spatial), 1e-12)
    aniso = fit_lattice_anisotropy(mode_power / len(y), spatial, pk_node)
    extra = {}
    if c is not None and np.asarray(c).size and len(y) > 10:
        extra["amp_fit"] = fit_amplitude_response(y, c, n_nodes, degree=2, batch=batch)
        if np.all(np.asarray(c) > 0):
            extra["amp_fit_power_law"] = fit_amplitude_response(y, c, n_nodes, degree=1, batch=batch, log_conditions=True)
    return {
        **extra,
        "mf_thresholds": [float(v) for v in thresholds],
        "mf_mean": [float(v) for v in mf.mean(axis=0)],
        "mf_std": [float(v) for v in np.maximum(mf.std(axis=0), 1e-6)],
        "singleton_mean": [float(v) for v in single.mean(axis=0)],
        "singleton_std": [float(v) for v in np.maximum(single.std(axis=0), 1e-6)],
        "pk_shell": [float(v) for v in np.maximum(pk, 1e-12)],
        "pk_node": [float(v) for v in pk_node],
        "lattice_aniso": [[float(v) for v in row] for row in aniso],
        "summary_mean": [float(v) for v in s.mean(axis=0)],
        "summary_std": [float(v) for v in np.maximum(s.std(axis=0), 1e-6)],
    }
