"""Power spectra of periodic 2-D and 3-D fields, and particle mass assignment.

One estimator, one convention (the one Pylians and nbodykit use):

* grid of ``N`` cells per side, box side ``L`` (e.g. Mpc/h), cell ``H = L/N``,
  volume ``V = L^d``, fundamental frequency ``k_F = 2 pi / L``, Nyquist
  frequency ``k_N = pi N / L``;
* ``delta_k = H^d FFT(delta)`` with numpy's unnormalised FFT and
  ``P(k) = |delta_k|^2 / V``, in units of ``L^d`` ((Mpc/h)^3 in 3-D,
  (Mpc/h)^2 in 2-D) with ``k`` in ``1/L`` (h/Mpc);
* optionally divided by the mass-assignment window ``W(k)^2`` with
  ``W(k) = prod_i sinc(k_i H / 2)^p`` (NGP p=1, CIC p=2, TSC p=3);
* shells of width ``k_F``: bin ``i`` holds the modes with
  ``i k_F <= |k| < (i+1) k_F``; the k = 0 mode is dropped; bins reach ``k_N``;
  each bin reports the mean ``|k|`` of its modes and its number of independent
  modes (a mode and its complex conjugate count once);
* shot noise ``1/nbar = V/N_part`` subtracted when given (with the aliasing
  correction of Jing 2005 when the field was painted with a window).

The binning uses precomputed shell indices per (shape, box, window, bins)
and ``numpy.bincount``; the cost beyond the FFT is a few passes over the
half-space array.

References
----------
.. [1] Y. P. Jing, "Correcting for the alias effect when measuring the power
   spectrum using a fast Fourier transform", ApJ 620, 559 (2005).
.. [2] F. Villaescusa-Navarro, Pylians3, ``Pk_library`` (2018),
   https://github.com/franciscovillaescusa/Pylians3.
.. [3] R. W. Hockney and J. W. Eastwood, "Computer Simulation Using
   Particles", McGraw-Hill (1981), ch. 5 (NGP/CIC/TSC assignment).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from physgan.errors import ConfigError, DataError

__all__ = [
    "PowerSpectrum",
    "CrossPower",
    "power_spectrum",
    "cross_power",
    "correlation_coefficient",
    "assignment",
    "paint",
    "readout",
    "overdensity",
    "fourier_grid",
]

_SCHEME_ORDER = {"ngp": 1, "cic": 2, "tsc": 3}


@dataclass
class PowerSpectrum:
    """Binned power spectrum.

    Attributes
    ----------
    k : ndarray (n_bins,)
        Mean ``|k|`` of the modes in each bin (units ``1/L``, e.g. h/Mpc).
    pk : ndarray (n_bins,) or (B, n_bins)
        Power per bin (units ``L^d``), one row per field for a batch.
    n_modes : ndarray (n_bins,)
        Independent modes per bin (``k`` and ``-k`` count once).
    k_edges : ndarray (n_bins + 1,)
        Bin edges.
    box_size, grid, dim : float, int, int
        The box side, cells per side and dimension of the fields.
    shot_noise : float
        The shot noise subtracted (0 if none).
    """

    k: np.ndarray
    pk: np.ndarray
    n_modes: np.ndarray
    k_edges: np.ndarray
    box_size: float
    grid: int
    dim: int
    shot_noise: float = 0.0

    @property
    def error(self) -> np.ndarray:
        """Gaussian (cosmic-variance) error ``P / sqrt(N_modes)`` of each bin."""
        return np.abs(self.pk) / np.sqrt(np.maximum(self.n_modes, 1))

    @property
    def k_nyquist(self) -> float:
        return float(np.pi * self.grid / self.box_size)

    @property
    def k_fundamental(self) -> float:
        return float(2 * np.pi / self.box_size)


@dataclass
class CrossPower:
    """Cross power spectrum of two fields and their correlation coefficient.

    Attributes
    ----------
    k, n_modes, k_edges : ndarray
        As in :class:`PowerSpectrum`.
    pk : ndarray
        Cross power ``Re <a_k b_k^*> / V`` per bin.
    pk_a, pk_b : ndarray
        Auto power spectra of ``a`` and ``b``.
    r : ndarray
        Correlation coefficient ``P_ab / sqrt(P_aa P_bb)`` per bin.
    """

    k: np.ndarray
    pk: np.ndarray
    pk_a: np.ndarray
    pk_b: np.ndarray
    r: np.ndarray
    n_modes: np.ndarray
    k_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))


# ---------------------------------------------------------------------------------------------
# Fourier grid and cached shell indices
# ---------------------------------------------------------------------------------------------


def fourier_grid(grid: int, box_size: float, dim: int) -> list[np.ndarray]:
    """Wave-vector components of the rfftn half-space, broadcastable (units ``2 pi / box``).

    Parameters
    ----------
    grid : int
        Cells per side.
    box_size : float
        Box side (e.g. Mpc/h).
    dim : int
        2 or 3.

    Returns
    -------
    list of ndarray
        ``dim`` arrays; the last axis is the non-negative half (``rfftfreq``).
    """
    kf = 2 * np.pi / box_size
    out = []
    for axis in range(dim):
        if axis < dim - 1:
            k1 = np.fft.fftfreq(grid, d=1.0 / grid) * kf
        else:
            k1 = np.fft.rfftfreq(grid, d=1.0 / grid) * kf
        shape = [1] * dim
        shape[axis] = -1
        out.append(k1.reshape(shape))
    return out


def _window_sq(grid: int, box_size: float, dim: int, order: int) -> np.ndarray:
    """``W(k)^2`` of the mass assignment of order ``order`` on the half-space grid."""
    h = box_size / grid
    w = np.ones((1,) * dim)
    for kc in fourier_grid(grid, box_size, dim):
        w = w * np.sinc(kc * h / (2 * np.pi)) ** (2 * order)  # np.sinc(x) = sin(pi x)/(pi x)
    return w


def _alias_sum(grid: int, box_size: float, dim: int, order: int) -> np.ndarray:
    """``sum_n W^2(k + 2 k_N n)`` for NGP/CIC/TSC (Jing 2005, eq. 20): the shape of aliased shot noise."""
    h = box_size / grid
    c = np.ones((1,) * dim)
    for kc in fourier_grid(grid, box_size, dim):
        s2 = np.sin(kc * h / 2) ** 2
        if order == 1:
            term = np.ones_like(s2)
        elif order == 2:
            term = 1 - 2.0 / 3.0 * s2
        else:
            term = 1 - s2 + 2.0 / 15.0 * s2**2
        c = c * term
    return c


class _Shells:
    """Precomputed binning of the rfftn half-space of one (grid, box, dim, bins, window)."""

    def __init__(self, grid: int, box_size: float, dim: int, n_bins: int | None, order: int | None):
        self.grid, self.box_size, self.dim = grid, box_size, dim
        kc = fourier_grid(grid, box_size, dim)
        kmag = np.sqrt(sum(c.astype(np.float64) ** 2 for c in kc))
        kf = 2 * np.pi / box_size
        kn = np.pi * grid / box_size
        if n_bins is None:
            # kF-wide shells, bin i = floor(|k|/kF) computed from integer wave numbers; bins 1 .. N/2
            ints = [np.rint(c / kf).astype(np.int64) for c in kc]
            idx = np.floor(np.sqrt(sum(i**2 for i in ints).astype(np.float64)) + 1e-9).astype(np.int64)
            lo, hi = 1, grid // 2
            self.k_edges = np.arange(lo, hi + 2) * kf
        else:
            if int(n_bins) < 1:
                raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
            dk = kn / int(n_bins)
            idx = np.floor(kmag / dk * (1 - 1e-12)).astype(np.int64)
            lo, hi = 0, int(n_bins) - 1
            self.k_edges = np.arange(int(n_bins) + 1) * dk
        idx = np.broadcast_to(idx, kmag.shape)
        valid = (idx >= lo) & (idx <= hi)
        valid[(0,) * dim] = False  # the k = 0 mode is always dropped
        nb = hi - lo + 1
        trash = nb  # one overflow bin collects every dropped mode
        self.index = np.where(valid, idx - lo, trash).astype(np.intp).ravel()
        self.n_bins_total = nb
        # half-space weights: planes 0 < k_last < N/2 stand for two modes (k and -k)
        nlast = kmag.shape[-1]
        wplane = np.full(nlast, 2.0)
        wplane[0] = 1.0
        if grid % 2 == 0:
            wplane[-1] = 1.0
        weight = np.broadcast_to(wplane.reshape((1,) * (dim - 1) + (-1,)), kmag.shape)
        self.order = order
        self.weight = np.ascontiguousarray(weight, dtype=np.float64).ravel()
        if order:
            self.weight_deconv = (weight / np.broadcast_to(_window_sq(grid, box_size, dim, order), kmag.shape)).ravel()
        else:
            self.weight_deconv = self.weight
        count_full = np.bincount(self.index, weights=self.weight, minlength=trash + 1)[:trash]
        ksum = np.bincount(self.index, weights=(weight * kmag).ravel(), minlength=trash + 1)[:trash]
        # self-conjugate modes (every component 0 or N/2) are their own pair
        selfconj = np.ones(kmag.shape, bool)
        for c in kc:
            ci = np.rint(c / kf).astype(np.int64)
            selfconj = selfconj & ((ci == 0) | (2 * np.abs(ci) == grid))
        n_self = np.bincount(self.index, weights=selfconj.ravel().astype(np.float64), minlength=trash + 1)[:trash]
        self.count_full = count_full
        with np.errstate(invalid="ignore", divide="ignore"):
            self.k = ksum / count_full
        self.n_modes = (count_full + n_self) / 2.0
        self._alias: np.ndarray | None = None

    def alias(self, order: int) -> np.ndarray:
        """Per-mode ``C(k)/W(k)^2`` (deconvolved) or ``C(k)`` factors of the shot noise, flattened."""
        if self._alias is None:
            c = _alias_sum(self.grid, self.box_size, self.dim, order)
            shape = (self.grid,) * (self.dim - 1) + (self.grid // 2 + 1,)
            self._alias = np.broadcast_to(c, shape).ravel().astype(np.float64)
        return self._alias

    def bin(self, power_modes: np.ndarray, deconvolve: bool) -> np.ndarray:
        """Mean of per-mode power over each shell (full-space weighting)."""
        w = self.weight_deconv if deconvolve else self.weight
        s = np.bincount(self.index, weights=power_modes * w, minlength=self.n_bins_total + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return s[: self.n_bins_total] / self.count_full


_CACHE: OrderedDict[tuple, _Shells] = OrderedDict()
_CACHE_SIZE = 6


def _shells(grid: int, box_size: float, dim: int, n_bins: int | None, order: int | None) -> _Shells:
    key = (grid, float(box_size), dim, n_bins, order)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    sh = _Shells(grid, float(box_size), dim, n_bins, order)
    _CACHE[key] = sh
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return sh


def _check_field(field: np.ndarray, dim: int | None, name: str = "field") -> tuple[np.ndarray, int, int]:
    arr = np.asarray(field)
    if dim is None:
        dim = arr.ndim
    if dim not in (2, 3):
        raise ConfigError(f"{name}: power spectra are defined for 2-D and 3-D fields, got dim={dim}")
    if arr.ndim < dim:
        raise DataError("<array>", f"{name} has shape {arr.shape}, fewer than dim={dim} axes", dataset=name)
    spatial = arr.shape[arr.ndim - dim :]
    if len(set(spatial)) != 1:
        raise DataError("<array>", f"{name} must have equal sides, got spatial shape {spatial}", dataset=name)
    if spatial[0] < 2:
        raise DataError("<array>", f"{name} needs at least 2 cells per side, got {spatial}", dataset=name)
    if not np.all(np.isfinite(arr)):
        raise DataError("<array>", f"{name} contains NaN or Inf", dataset=name)
    return arr, dim, int(spatial[0])


def _order(window: str | None) -> int | None:
    if window is None:
        return None
    try:
        return _SCHEME_ORDER[str(window).lower()]
    except KeyError:
        raise ConfigError(f"unknown window '{window}'; use None, 'ngp', 'cic' or 'tsc'") from None


def _rfft(x: np.ndarray, dim: int) -> np.ndarray:
    axes = tuple(range(x.ndim - dim, x.ndim))
    return np.fft.rfftn(x, axes=axes)


def power_spectrum(
    field: np.ndarray,
    box_size: float,
    *,
    window: str | None = None,
    shot_noise: float | None = None,
    n_bins: int | None = None,
    dim: int | None = None,
) -> PowerSpectrum:
    """Power spectrum of a periodic 2-D or 3-D field (or a batch of them).

    Parameters
    ----------
    field : ndarray
        Overdensity ``delta`` on a grid of equal sides, shape ``(N,)*dim`` or
        ``(B, *(N,)*dim)`` for a batch (then give ``dim``). A constant offset
        (e.g. passing ``1 + delta``) only changes the dropped k = 0 mode.
    box_size : float
        Box side ``L`` (Mpc/h gives k in h/Mpc and P in (Mpc/h)^dim).
    window : {None, 'ngp', 'cic', 'tsc'}
        Divide by the mass-assignment window ``W(k)^2`` of this scheme.
    shot_noise : float, optional
        Poisson shot noise ``1/nbar = V / N_part`` (units ``L^dim``) to
        subtract. With a ``window`` it is subtracted with its aliased shape
        ``C(k)`` (Jing 2005) before the deconvolution, so uniform random
        particles give P = 0 at every k.
    n_bins : int, optional
        None: shells of width ``k_F`` up to ``k_N`` (Pylians' binning).
        Otherwise ``n_bins`` equal-width linear bins over ``[0, k_N]``.
    dim : int, optional
        Number of spatial (trailing) axes; default ``field.ndim``.

    Returns
    -------
    PowerSpectrum
        ``k`` (mean per bin), ``pk`` (``(n_bins,)`` or ``(B, n_bins)``),
        ``n_modes`` and edges.

    References
    ----------
    .. [1] Y. P. Jing, ApJ 620, 559 (2005), arXiv:astro-ph/0409240.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ps = power_spectrum(rng.normal(size=(32, 32, 32)), 100.0)
    >>> ps.pk.shape == ps.k.shape
    True
    """
    arr, dim, grid = _check_field(field, dim)
    if box_size is None or not np.isfinite(box_size) or box_size <= 0:
        raise ConfigError(f"box_size must be a positive length, got {box_size}")
    order = _order(window)
    sh = _shells(grid, box_size, dim, n_bins, order)
    h = box_size / grid
    volume = float(box_size) ** dim
    norm = h ** (2 * dim) / volume
    batch_shape = arr.shape[: arr.ndim - dim]
    flat = arr.reshape((-1,) + arr.shape[arr.ndim - dim :])
    out = []
    for x in flat:
        fk = _rfft(x.astype(np.float64, copy=False), dim)
        p = (fk.real**2 + fk.imag**2).ravel()
        p *= norm
        if shot_noise:
            p -= float(shot_noise) * (sh.alias(order) if order else 1.0)
        out.append(sh.bin(p, deconvolve=order is not None))
    pk = np.stack(out).reshape(batch_shape + (len(sh.k),))
    return PowerSpectrum(
        k=sh.k.copy(),
        pk=pk,
        n_modes=sh.n_modes.copy(),
        k_edges=sh.k_edges.copy(),
        box_size=float(box_size),
        grid=grid,
        dim=dim,
        shot_noise=float(shot_noise or 0.0),
    )


def cross_power(
    a: np.ndarray,
    b: np.ndarray,
    box_size: float,
    *,
    window: str | None = None,
    n_bins: int | None = None,
    dim: int | None = None,
) -> CrossPower:
    """Cross power spectrum ``P_ab`` and correlation coefficient ``r = P_ab / sqrt(P_aa P_bb)``.

    Parameters
    ----------
    a, b : ndarray
        Fields of the same shape (a batch of pairs is allowed with ``dim``).
    box_size : float
        Box side.
    window, n_bins, dim
        As in :func:`power_spectrum` (the window cancels in ``r``).

    Returns
    -------
    CrossPower
        ``k``, ``pk`` (cross), ``pk_a``, ``pk_b``, ``r``, ``n_modes``.
    """
    a, dim, grid = _check_field(a, dim, "a")
    b, _, _ = _check_field(b, dim, "b")
    if a.shape != b.shape:
        raise DataError("<array>", f"cross_power needs equal shapes, got {a.shape} and {b.shape}", dataset="b")
    order = _order(window)
    sh = _shells(grid, box_size, dim, n_bins, order)
    h = box_size / grid
    norm = h ** (2 * dim) / float(box_size) ** dim
    fa = _rfft(a.astype(np.float64, copy=False), dim)
    fb = _rfft(b.astype(np.float64, copy=False), dim)
    lead = a.shape[: a.ndim - dim]
    fa = fa.reshape((-1,) + fa.shape[len(lead) :])
    fb = fb.reshape((-1,) + fb.shape[len(lead) :])
    pab, paa, pbb = [], [], []
    for x, y in zip(fa, fb):
        pab.append(sh.bin(norm * (x.real * y.real + x.imag * y.imag).ravel(), order is not None))
        paa.append(sh.bin(norm * (x.real**2 + x.imag**2).ravel(), order is not None))
        pbb.append(sh.bin(norm * (y.real**2 + y.imag**2).ravel(), order is not None))
    shape = lead + (len(sh.k),)
    pab, paa, pbb = (np.stack(v).reshape(shape) for v in (pab, paa, pbb))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = pab / np.sqrt(paa * pbb)
    return CrossPower(k=sh.k.copy(), pk=pab, pk_a=paa, pk_b=pbb, r=r, n_modes=sh.n_modes.copy(), k_edges=sh.k_edges.copy())


def correlation_coefficient(a: np.ndarray, b: np.ndarray, box_size: float, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``(k, r(k))`` with ``r = P_ab / sqrt(P_aa P_bb)``; see :func:`cross_power`."""
    cp = cross_power(a, b, box_size, **kwargs)
    return cp.k, cp.r


def overdensity(density: np.ndarray, dim: int | None = None) -> np.ndarray:
    """``delta = rho / mean(rho) - 1`` over the trailing ``dim`` axes (per field of a batch)."""
    rho = np.asarray(density, dtype=np.float64)
    dim = rho.ndim if dim is None else dim
    axes = tuple(range(rho.ndim - dim, rho.ndim))
    mean = rho.mean(axis=axes, keepdims=True)
    if np.any(mean == 0):
        raise DataError("<array>", "density has zero mean; cannot form an overdensity", dataset="density")
    return rho / mean - 1.0


# ---------------------------------------------------------------------------------------------
# Mass assignment
# ---------------------------------------------------------------------------------------------


def _stencil(u: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis node offsets and weights, shapes (Np, order): positions ``u`` in grid units.

    Grid node ``i`` sits at position ``i * H`` (Pylians' and jaxpm's convention).
    """
    if order == 1:
        base = np.floor(u + 0.5)
        return base[:, None].astype(np.int64), np.ones((len(u), 1))
    if order == 2:
        base = np.floor(u)
        d = u - base
        return (base[:, None] + np.arange(2)).astype(np.int64), np.stack([1 - d, d], axis=1)
    base = np.floor(u + 0.5)
    d = u - base  # in [-0.5, 0.5)
    w = np.stack([0.5 * (0.5 - d) ** 2, 0.75 - d**2, 0.5 * (0.5 + d) ** 2], axis=1)
    return (base[:, None] + np.arange(-1, 2)).astype(np.int64), w


def _flat_stencil(p: np.ndarray, grid: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat node indices and weights ``(N, order**d)`` of particles at ``p`` (grid units), periodic."""
    dim = p.shape[1]
    strides = [grid ** (dim - 1 - a) for a in range(dim)]
    idx = np.zeros((len(p), 1), dtype=np.int64)
    wt = np.ones((len(p), 1))
    for a in range(dim):
        nodes, w = _stencil(p[:, a], order)
        nodes %= grid
        idx = (idx[:, :, None] + (nodes * strides[a])[:, None, :]).reshape(len(p), -1)
        wt = (wt[:, :, None] * w[:, None, :]).reshape(len(p), -1)
    return idx, wt


def _chunk_stencils(pos: np.ndarray, grid: int, box_size: float, order: int, chunk: int,
                    stencil: tuple[np.ndarray, np.ndarray] | None):
    """``(start, idx, wt)`` per chunk of particles: slices of a precomputed ``stencil``, or built chunk by chunk."""
    for s in range(0, len(pos), chunk):
        if stencil is None:
            yield (s, *_flat_stencil(pos[s : s + chunk].astype(np.float64) * (grid / box_size), grid, order))
        else:
            yield s, stencil[0][s : s + chunk], stencil[1][s : s + chunk]


def assignment(positions: np.ndarray, grid: int, box_size: float, scheme: str = "cic") -> tuple[np.ndarray, np.ndarray]:
    """The nodes and weights that :func:`paint` and :func:`readout` use, computed once for several calls.

    A particle-mesh step paints the particles and reads three force components back at the same positions:
    passing this to both (``stencil=``) builds the stencil once instead of four times.

    Parameters
    ----------
    positions : ndarray (N, d)
        Positions in box units, d = 2 or 3.
    grid : int
        Cells per side.
    box_size : float
        Box side.
    scheme : {'ngp', 'cic', 'tsc'}
        Assignment scheme.

    Returns
    -------
    idx, wt : ndarray (N, order**d)
        Flat periodic node indices and their weights (each row sums to 1).
    """
    pos = _check_positions(positions, grid, box_size)
    order = _order(scheme)
    if order is None:
        raise ConfigError("assignment needs a scheme: 'ngp', 'cic' or 'tsc'")
    return _flat_stencil(pos.astype(np.float64) * (int(grid) / box_size), int(grid), order)


def _check_positions(positions: np.ndarray, grid: int, box_size: float) -> np.ndarray:
    pos = np.asarray(positions)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise DataError("<positions>", f"positions must have shape (N, 2) or (N, 3), got {pos.shape}", dataset="positions")
    if not np.all(np.isfinite(pos)):
        raise DataError("<positions>", "positions contain NaN or Inf", dataset="positions")
    if int(grid) < 1 or box_size <= 0:
        raise ConfigError(f"grid must be >= 1 and box_size > 0, got grid={grid}, box_size={box_size}")
    return pos


def paint(
    positions: np.ndarray,
    grid: int,
    box_size: float,
    scheme: str = "cic",
    weights: np.ndarray | None = None,
    chunk: int = 1 << 20,
    stencil: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Assign particles to a periodic grid (NGP, CIC or TSC).

    Parameters
    ----------
    positions : ndarray (N, d)
        Particle positions in box units (e.g. Mpc/h), d = 2 or 3; wrapped
        periodically into ``[0, box_size)``.
    grid : int
        Cells per side.
    box_size : float
        Box side.
    scheme : {'ngp', 'cic', 'tsc'}
        Assignment scheme (window order 1, 2, 3).
    weights : ndarray (N,), optional
        Particle masses (default 1).
    chunk : int
        Particles per vectorised pass (bounds memory).
    stencil : (ndarray, ndarray), optional
        :func:`assignment` of these positions, grid and scheme, computed once for several calls.

    Returns
    -------
    ndarray (grid,)*d float64
        Mass per cell; its sum equals the total mass (mass conservation).
        ``rho / rho.mean() - 1`` is the overdensity.

    References
    ----------
    .. [1] R. W. Hockney and J. W. Eastwood, "Computer Simulation Using
       Particles" (1981), section 5-2.
    """
    pos = _check_positions(positions, grid, box_size)
    order = _order(scheme)
    if order is None:
        raise ConfigError("paint needs a scheme: 'ngp', 'cic' or 'tsc'")
    dim = pos.shape[1]
    grid = int(grid)
    out = np.zeros(grid**dim, dtype=np.float64)
    w_all = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w_all is not None and len(w_all) != len(pos):
        raise DataError("<positions>", f"{len(w_all)} weights for {len(pos)} particles", dataset="weights")
    for s, idx, wt in _chunk_stencils(pos, grid, box_size, order, chunk, stencil):
        if w_all is not None:
            wt = wt * w_all[s : s + chunk, None]
        out += np.bincount(idx.ravel(), weights=wt.ravel(), minlength=grid**dim)
    return out.reshape((grid,) * dim)


def readout(field: np.ndarray, positions: np.ndarray, box_size: float, scheme: str = "cic", chunk: int = 1 << 20,
            stencil: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Interpolate a periodic grid field at particle positions (the transpose of :func:`paint`).

    Parameters
    ----------
    field : ndarray (grid,)*d
        Values on the grid nodes (node ``i`` at ``i * H``).
    positions : ndarray (N, d)
        Positions in box units.
    box_size : float
        Box side.
    scheme : {'ngp', 'cic', 'tsc'}
        Interpolation kernel (use the painting scheme for momentum conservation).
    chunk : int
        Particles per vectorised pass.
    stencil : (ndarray, ndarray), optional
        :func:`assignment` of these positions, the field's grid and the scheme, computed once for several calls.

    Returns
    -------
    ndarray (N,)
        Interpolated values.
    """
    f = np.asarray(field)
    grid = f.shape[0]
    pos = _check_positions(positions, grid, box_size)
    order = _order(scheme)
    dim = pos.shape[1]
    if f.ndim != dim:
        raise DataError("<array>", f"field is {f.ndim}-D but positions are {dim}-D", dataset="field")
    flat = f.ravel()
    out = np.empty(len(pos), dtype=np.result_type(f.dtype, np.float32))
    for s, idx, wt in _chunk_stencils(pos, grid, box_size, order, chunk, stencil):
        out[s : s + chunk] = (flat[idx] * wt).sum(axis=1)
    return out
