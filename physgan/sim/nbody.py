"""Reference simulators of cosmological density fields (training data for the ``nbody`` domain).

Three generators, from cheap to realistic, all on periodic boxes and all seeded:

* :func:`gaussian_field`: a Gaussian random field with a given P(k) (2-D or 3-D);
* :func:`lognormal_field`: the lognormal transform of a Gaussian field whose
  P(k) is chosen so that the lognormal field has the target P(k)
  (Coles & Jones 1991); fast, non-Gaussian, but wrong peaks and tail;
* :func:`pm_simulation`: a particle-mesh N-body run in numpy: 2LPT initial
  conditions at ``a_start`` (Scoccimarro 1998), then FastPM kick-drift-kick
  steps whose kick and drift factors make the linear growth exact for any
  number of steps (Feng et al. 2016); CIC painting and read-out, Fourier
  gradient of the potential. It takes a few seconds for 64^3 particles.

Linear theory is Eisenstein & Hu (1998) without baryon wiggles
(:func:`linear_power`), normalised to ``sigma8`` at z = 0 and scaled by the
growth factor of flat LCDM (:func:`growth_factor`). Units: lengths Mpc/h,
k in h/Mpc, P in (Mpc/h)^3.

2-D data are slabs of 3-D boxes: :func:`slab` averages ``thickness`` cells
along one axis (a projection of thickness ``d = thickness * L / N``).

Examples
--------
>>> rho = pm_simulation(omega_m=0.3, sigma8=0.8, grid=32, box_size=64.0, seed=1, n_steps=5)  # doctest: +SKIP
>>> rho.shape, float(rho.mean())  # doctest: +SKIP
((32, 32, 32), 1.0)

References
----------
.. [1] D. J. Eisenstein and W. Hu, "Baryonic features in the matter transfer
   function", ApJ 496, 605 (1998), arXiv:astro-ph/9709112 (eqs. 26-31).
.. [2] P. Coles and B. Jones, "A lognormal model for the cosmological mass
   distribution", MNRAS 248, 1 (1991).
.. [3] R. Scoccimarro, "Transients from initial conditions", MNRAS 299,
   1097 (1998), arXiv:astro-ph/9711187.
.. [4] Y. Feng, M.-Y. Chu, U. Seljak and P. McDonald, "FastPM: a new scheme
   for fast simulations of dark matter and haloes", MNRAS 463, 2273 (2016),
   arXiv:1603.00476.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import integrate

from physgan.errors import ConfigError
from physgan.metrics.spectra import assignment, fourier_grid, paint, readout

__all__ = [
    "Cosmology",
    "linear_power",
    "sigma_r",
    "growth_factor",
    "growth_rate",
    "gaussian_field",
    "lognormal_field",
    "lognormal_spectrum",
    "lpt_displacements",
    "pm_simulation",
    "slab",
]

Seed = int | np.random.Generator | None


@dataclass(frozen=True)
class Cosmology:
    """Flat LCDM parameters (defaults: Planck 2018).

    Attributes
    ----------
    omega_m : float
        Total matter density today.
    sigma8 : float
        rms linear density contrast in 8 Mpc/h spheres at z = 0.
    h : float
        H0 / (100 km/s/Mpc).
    omega_b : float
        Baryon density today.
    n_s : float
        Primordial spectral index.
    t_cmb : float
        CMB temperature (K).
    """

    omega_m: float = 0.3153
    sigma8: float = 0.8111
    h: float = 0.6736
    omega_b: float = 0.0493
    n_s: float = 0.9649
    t_cmb: float = 2.7255

    def __post_init__(self) -> None:
        if not 0.01 < self.omega_m <= 1.0:
            raise ConfigError(f"omega_m must be in (0.01, 1], got {self.omega_m}")
        if not 0.0 < self.sigma8 < 5.0:
            raise ConfigError(f"sigma8 must be in (0, 5), got {self.sigma8}")
        if not 0.0 <= self.omega_b < self.omega_m:
            raise ConfigError(f"omega_b must be in [0, omega_m), got {self.omega_b}")

    def efunc(self, a: np.ndarray | float) -> np.ndarray:
        """``E(a) = H(a)/H0`` of flat LCDM (radiation neglected)."""
        a = np.asarray(a, dtype=np.float64)
        return np.sqrt(self.omega_m * a**-3 + (1.0 - self.omega_m))

    def omega_m_of_a(self, a: np.ndarray | float) -> np.ndarray:
        """Matter density parameter at scale factor ``a``."""
        a = np.asarray(a, dtype=np.float64)
        return self.omega_m * a**-3 / self.efunc(a) ** 2


def _seed_rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _transfer_eh_nowiggle(k: np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Eisenstein & Hu (1998) zero-baryon-wiggle transfer function, eqs. 26-31; ``k`` in h/Mpc."""
    h = cosmo.h
    omh2 = cosmo.omega_m * h**2
    obh2 = cosmo.omega_b * h**2
    fb = cosmo.omega_b / cosmo.omega_m
    theta = cosmo.t_cmb / 2.7
    s = 44.5 * np.log(9.83 / omh2) / np.sqrt(1.0 + 10.0 * obh2**0.75)  # sound horizon, Mpc
    alpha = 1.0 - 0.328 * np.log(431.0 * omh2) * fb + 0.38 * np.log(22.3 * omh2) * fb**2
    kmpc = k * h
    gamma_eff = cosmo.omega_m * h * (alpha + (1.0 - alpha) / (1.0 + (0.43 * kmpc * s) ** 4))
    q = k * theta**2 / gamma_eff
    l0 = np.log(2.0 * np.e + 1.8 * q)
    c0 = 14.2 + 731.0 / (1.0 + 62.5 * q)
    return l0 / (l0 + c0 * q**2)


def _tophat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.ones_like(x)
    big = x > 1e-3
    xb = x[big]
    out[big] = 3.0 * (np.sin(xb) - xb * np.cos(xb)) / xb**3
    out[~big] = 1.0 - x[~big] ** 2 / 10.0
    return out


_LOGK = np.linspace(np.log(1e-5), np.log(1e3), 6000)


def sigma_r(pk_fn, radius: float) -> float:
    """rms of the field smoothed with a top-hat of ``radius`` (Mpc/h) for ``P(k) = pk_fn(k)``.

    Parameters
    ----------
    pk_fn : callable
        ``k [h/Mpc] -> P [(Mpc/h)^3]``.
    radius : float
        Top-hat radius in Mpc/h.

    Returns
    -------
    float
        ``sqrt( 1/(2 pi^2) int k^3 P(k) W^2(kR) dln k )``.
    """
    k = np.exp(_LOGK)
    integrand = k**3 * pk_fn(k) * _tophat(k * radius) ** 2 / (2 * np.pi**2)
    return float(np.sqrt(integrate.trapezoid(integrand, _LOGK)))


def linear_power(k: np.ndarray, cosmo: Cosmology | None = None, z: float = 0.0) -> np.ndarray:
    """Linear matter power spectrum (Eisenstein-Hu no-wiggle), normalised to ``sigma8``.

    Parameters
    ----------
    k : ndarray
        Wave numbers in h/Mpc (k = 0 gives 0).
    cosmo : Cosmology, optional
        Parameters (default Planck 2018).
    z : float
        Redshift; the z = 0 spectrum is scaled by ``D(z)^2``.

    Returns
    -------
    ndarray
        P(k) in (Mpc/h)^3.

    References
    ----------
    .. [1] D. J. Eisenstein and W. Hu, ApJ 496, 605 (1998), arXiv:astro-ph/9709112.
    """
    cosmo = cosmo or Cosmology()
    amp = _amplitude(cosmo)
    k = np.asarray(k, dtype=np.float64)
    out = np.zeros_like(k)
    pos = k > 0
    kp = k[pos]
    out[pos] = amp * kp**cosmo.n_s * _transfer_eh_nowiggle(kp, cosmo) ** 2
    if z:
        out *= growth_factor(1.0 / (1.0 + z), cosmo) ** 2
    return out


_AMP_CACHE: dict[Cosmology, float] = {}


def _amplitude(cosmo: Cosmology) -> float:
    amp = _AMP_CACHE.get(cosmo)
    if amp is None:

        def unnorm(k):
            return k**cosmo.n_s * _transfer_eh_nowiggle(k, cosmo) ** 2

        amp = (cosmo.sigma8 / sigma_r(unnorm, 8.0)) ** 2
        _AMP_CACHE[cosmo] = amp
    return amp


def _growth_unnormalised(a: float, cosmo: Cosmology) -> tuple[float, float]:
    """Heath (1977) integral solution of flat LCDM: ``D ∝ E(a) int_0^a da' / (a' E)^3`` and ``dD/da``."""
    om = cosmo.omega_m

    def integrand(x):
        return 1.0 / (x * cosmo.efunc(x)) ** 3

    ival, _ = integrate.quad(integrand, 0.0, a, epsabs=0.0, epsrel=1e-10, limit=200)
    e = float(cosmo.efunc(a))
    d = 2.5 * om * e * ival
    de_da = -1.5 * om * a**-4 / e
    dd_da = 2.5 * om * (de_da * ival + e / (a * e) ** 3)
    return d, dd_da


def growth_factor(a: float | np.ndarray, cosmo: Cosmology | None = None) -> np.ndarray | float:
    """Linear growth factor ``D(a)`` of flat LCDM normalised to ``D(1) = 1``.

    Parameters
    ----------
    a : float or ndarray
        Scale factor(s), ``a = 1/(1+z)``.
    cosmo : Cosmology, optional
        Parameters.

    Returns
    -------
    float or ndarray
        ``D(a)``; in matter domination ``D ∝ a``.
    """
    cosmo = cosmo or Cosmology()
    d1, _ = _growth_unnormalised(1.0, cosmo)
    vals = np.array([_growth_unnormalised(float(x), cosmo)[0] for x in np.atleast_1d(a)]) / d1
    return float(vals[0]) if np.ndim(a) == 0 else vals


def growth_rate(a: float, cosmo: Cosmology | None = None) -> float:
    """``f = dln D / dln a`` at scale factor ``a``."""
    cosmo = cosmo or Cosmology()
    d, dd = _growth_unnormalised(float(a), cosmo)
    return float(a * dd / d)


def _check_grid(grid: int, box_size: float, dim: int) -> None:
    if int(grid) < 2:
        raise ConfigError(f"grid must be >= 2 cells per side, got {grid}")
    if not box_size > 0:
        raise ConfigError(f"box_size must be positive (Mpc/h), got {box_size}")
    if dim not in (2, 3):
        raise ConfigError(f"dim must be 2 or 3, got {dim}")


def _kmag(grid: int, box_size: float, dim: int) -> np.ndarray:
    kc = fourier_grid(grid, box_size, dim)
    return np.sqrt(sum(c**2 for c in kc))


def _eval_pk(pk_fn, kmag: np.ndarray, box_size: float) -> np.ndarray:
    """``pk_fn`` on the grid's |k| (the k = 0 mode is evaluated at k_F and then set to 0)."""
    k = np.where(kmag > 0, kmag, 2 * np.pi / box_size)
    pk = np.broadcast_to(np.asarray(pk_fn(k), dtype=np.float64), kmag.shape).copy()
    pk[(0,) * kmag.ndim] = 0.0
    return pk


def gaussian_field(pk_fn, grid: int, box_size: float, dim: int = 3, seed: Seed = None) -> np.ndarray:
    """Gaussian random field with power spectrum ``pk_fn`` on a periodic grid.

    Drawn as white noise of unit variance per cell, multiplied in Fourier
    space by ``sqrt(P(k) / H^dim)`` so that the estimator of
    :func:`physgan.metrics.spectra.power_spectrum` returns ``P(k)`` on
    average. The k = 0 mode is zero (mean 0).

    Parameters
    ----------
    pk_fn : callable
        ``k [1/L] -> P [L^dim]`` (vectorised).
    grid : int
        Cells per side.
    box_size : float
        Box side ``L``.
    dim : int
        2 or 3.
    seed : int or numpy.random.Generator
        Random seed.

    Returns
    -------
    ndarray (grid,)*dim float64
        The field ``delta``.
    """
    _check_grid(grid, box_size, dim)
    rng = _seed_rng(seed)
    h = box_size / grid
    white = rng.standard_normal((grid,) * dim)
    kmag = _kmag(grid, box_size, dim)
    amp = np.sqrt(np.maximum(_eval_pk(pk_fn, kmag, box_size), 0.0) / h**dim)
    amp[(0,) * dim] = 0.0
    return np.fft.irfftn(np.fft.rfftn(white) * amp, s=(grid,) * dim, axes=tuple(range(dim)))


def lognormal_spectrum(pk_fn, grid: int, box_size: float, dim: int = 3) -> tuple[np.ndarray, float]:
    """The Gaussian field's spectrum on the grid and its variance, for :func:`lognormal_field` of target ``pk_fn``.

    The Gaussian field ``g`` has the correlation function ``xi_g = ln(1 + xi)`` where ``xi`` is the grid
    correlation function of ``pk_fn`` (negative ``P_g`` modes are clipped to 0). It depends on the cosmology
    only, so a caller drawing many fields at one cosmology computes it once.

    Returns
    -------
    pk_g : ndarray
        ``P_g`` on the rfftn grid (k = 0 mode zero).
    var_g : float
        The variance of ``g``.
    """
    _check_grid(grid, box_size, dim)
    h = box_size / grid
    kmag = _kmag(grid, box_size, dim)
    pk = np.maximum(_eval_pk(pk_fn, kmag, box_size), 0.0)
    pk[(0,) * dim] = 0.0
    xi = np.fft.irfftn(pk, s=(grid,) * dim, axes=tuple(range(dim))) / h**dim
    if np.min(xi) <= -1.0:
        raise ConfigError("lognormal field impossible: the correlation function reaches xi <= -1 on this grid")
    xi_g = np.log1p(xi)
    pk_g = np.maximum(np.fft.rfftn(xi_g).real * h**dim, 0.0)
    pk_g[(0,) * dim] = 0.0
    var_g = float(np.sum(_half_weights(grid, dim) * pk_g) / box_size**dim)
    return pk_g, var_g


def lognormal_field(
    pk_fn, grid: int, box_size: float, dim: int = 3, seed: Seed = None, spectrum: tuple[np.ndarray, float] | None = None
) -> np.ndarray:
    """Lognormal field ``delta = exp(g - sigma_g^2/2) - 1`` whose P(k) is ``pk_fn`` on the grid.

    The Gaussian field ``g`` has the correlation function
    ``xi_g = ln(1 + xi)`` where ``xi`` is the grid correlation function of
    ``pk_fn`` (negative ``P_g`` modes are clipped to 0), so ``delta > -1``
    and ``<delta> = 0``.

    Parameters
    ----------
    pk_fn : callable
        Target ``P(k)`` (units as in :func:`gaussian_field`).
    grid, box_size, dim, seed
        As in :func:`gaussian_field`.
    spectrum : tuple, optional
        :func:`lognormal_spectrum` of the same arguments, when already computed (same field, faster).

    Returns
    -------
    ndarray (grid,)*dim
        ``delta`` (add 1 for the density in units of the mean).

    References
    ----------
    .. [1] P. Coles and B. Jones, MNRAS 248, 1 (1991).
    """
    pk_g, var_g = spectrum if spectrum is not None else lognormal_spectrum(pk_fn, grid, box_size, dim)
    g = gaussian_field(lambda _k: pk_g, grid, box_size, dim, seed)
    return np.exp(g - var_g / 2.0) - 1.0


def _half_weights(grid: int, dim: int) -> np.ndarray:
    """Full-space multiplicity of each rfftn half-space mode (1 on the k_last = 0 / Nyquist planes, else 2)."""
    w = np.full(grid // 2 + 1, 2.0)
    w[0] = 1.0
    if grid % 2 == 0:
        w[-1] = 1.0
    return w.reshape((1,) * (dim - 1) + (-1,))


def lpt_displacements(delta_lin: np.ndarray, box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """First- and second-order LPT displacement fields of a linear density field (3-D).

    ``x = q + D1 psi1 + D2 psi2`` with ``psi1 = i k delta / k^2`` (so that
    ``div psi1 = -delta``) and ``psi2 = grad phi2``, ``lap phi2 =
    sum_{i<j} (phi_ii phi_jj - phi_ij^2)``, ``phi_ij = k_i k_j delta / k^2``
    (Scoccimarro 1998); ``D2 = -3/7 D1^2`` to good accuracy.

    Parameters
    ----------
    delta_lin : ndarray (n, n, n)
        Linear overdensity at the reference time (D1 = 1).
    box_size : float
        Box side (Mpc/h).

    Returns
    -------
    psi1, psi2 : ndarray (3, n, n, n)
        Displacements in Mpc/h per unit D1 and per unit D2.
    """
    n = delta_lin.shape[0]
    dk = np.fft.rfftn(delta_lin)
    kc = fourier_grid(n, box_size, 3)
    k2 = sum(c**2 for c in kc)
    k2[0, 0, 0] = 1.0
    s = (n,) * 3
    # zero the Nyquist components of the odd (gradient) operators
    kc_odd = [np.where(np.abs(c) * box_size / (2 * np.pi) >= n / 2 - 1e-9, 0.0, c) for c in kc]
    psi1 = np.stack([np.fft.irfftn(1j * kc_odd[i] * dk / k2, s=s, axes=(0, 1, 2)) for i in range(3)])
    phi = {}
    for i in range(3):
        for j in range(i, 3):
            phi[i, j] = np.fft.irfftn(kc_odd[i] * kc_odd[j] * dk / k2 if i != j else kc[i] ** 2 * dk / k2, s=s, axes=(0, 1, 2))
    src = phi[0, 0] * phi[1, 1] + phi[0, 0] * phi[2, 2] + phi[1, 1] * phi[2, 2] - phi[0, 1] ** 2 - phi[0, 2] ** 2 - phi[1, 2] ** 2
    sk = np.fft.rfftn(src)
    phi2k = -sk / k2
    phi2k[0, 0, 0] = 0.0
    psi2 = np.stack([np.fft.irfftn(1j * kc_odd[i] * phi2k, s=s, axes=(0, 1, 2)) for i in range(3)])
    return psi1, psi2


class _Growth:
    """Tabulated D1, D2 and the FastPM momentum growth ``G_p = a^3 E dD/da`` for one cosmology."""

    def __init__(self, cosmo: Cosmology):
        self.cosmo = cosmo
        self._d1 = _growth_unnormalised(1.0, cosmo)[0]

    def d1(self, a: float) -> float:
        return _growth_unnormalised(a, self.cosmo)[0] / self._d1

    def d1_prime(self, a: float) -> float:
        return _growth_unnormalised(a, self.cosmo)[1] / self._d1

    def d2(self, a: float) -> float:
        return -3.0 / 7.0 * self.d1(a) ** 2 * float(self.cosmo.omega_m_of_a(a)) ** (-1.0 / 143.0)

    def d2_prime(self, a: float) -> float:
        f2 = 2.0 * float(self.cosmo.omega_m_of_a(a)) ** (6.0 / 11.0)
        return self.d2(a) * f2 / a

    def gp(self, a: float) -> float:
        """``p = G_p(a) psi1`` in linear theory (``p = a^2 dx/dt``, time in 1/H0)."""
        return a**3 * float(self.cosmo.efunc(a)) * self.d1_prime(a)

    def kick_factor(self, a0: float, a1: float, ac: float) -> float:
        # dp/da = F/(a^2 E) with F = 1.5 Om D psi1 (force without 1/a) in linear theory: exact linear growth of p
        return (self.gp(a1) - self.gp(a0)) / (1.5 * self.cosmo.omega_m * self.d1(ac))

    def drift_factor(self, a0: float, a1: float, ac: float) -> float:
        return (self.d1(a1) - self.d1(a0)) / self.gp(ac)


def _pm_force(pos: np.ndarray, n_mesh: int, box_size: float, omega_m: float, n_part: int) -> np.ndarray:
    """Comoving force ``-grad phi`` with ``lap phi = 1.5 Om delta`` (the 1/a is in the kick factor).

    The density is CIC-painted, the potential divided by the squared CIC window
    (painting and read-out), differentiated by ``i k`` and read out with CIC.
    """
    stencil = assignment(pos, n_mesh, box_size, "cic")  # shared by the painting and the three read-outs
    rho = paint(pos, n_mesh, box_size, "cic", stencil=stencil)
    delta = rho * (n_mesh**3 / n_part) - 1.0
    dk = np.fft.rfftn(delta)
    kc = fourier_grid(n_mesh, box_size, 3)
    k2 = sum(c**2 for c in kc)
    k2[0, 0, 0] = 1.0
    # compensate the CIC window of painting and of read-out (W^2), so forces keep linear growth up to ~k_N/2
    h = box_size / n_mesh
    w = np.ones((1, 1, 1))
    for c in kc:
        w = w * np.sinc(c * h / (2 * np.pi)) ** 2
    phik = -1.5 * omega_m * dk / (k2 * w**2)
    phik[0, 0, 0] = 0.0
    kc_odd = [np.where(np.abs(c) * box_size / (2 * np.pi) >= n_mesh / 2 - 1e-9, 0.0, c) for c in kc]
    force = np.empty_like(pos)
    s = (n_mesh,) * 3
    for i in range(3):
        fi = np.fft.irfftn(-1j * kc_odd[i] * phik, s=s, axes=(0, 1, 2))
        force[:, i] = readout(fi, pos, box_size, "cic", stencil=stencil)
    return force


def pm_simulation(
    omega_m: float = 0.3153,
    sigma8: float = 0.8111,
    redshift: float = 0.0,
    *,
    grid: int = 64,
    box_size: float = 128.0,
    seed: Seed = None,
    n_steps: int = 10,
    a_start: float = 0.1,
    mesh_factor: int = 1,
    n_particles: int | None = None,
    scheme: str = "cic",
    return_particles: bool = False,
    cosmo_kwargs: dict | None = None,
):
    """Particle-mesh N-body simulation of a periodic LCDM box (numpy).

    Particles start on a lattice displaced by 2LPT at ``a_start``; ``n_steps``
    kick-drift-kick steps linear in ``a`` reach ``a = 1/(1+redshift)`` with
    FastPM's growth-matched kick and drift factors; forces come from a CIC
    density on a mesh of ``mesh_factor * n_particles`` cells per side.

    Parameters
    ----------
    omega_m, sigma8 : float
        Cosmology (flat LCDM; other parameters Planck 2018 unless in ``cosmo_kwargs``).
    redshift : float
        Output redshift.
    grid : int
        Cells per side of the output density.
    box_size : float
        Box side in Mpc/h.
    seed : int or numpy.random.Generator
        Seed of the initial conditions.
    n_steps : int
        Number of KDK steps (FastPM: 5-10 give percent-level P(k) at k < 0.5 h/Mpc).
    a_start : float
        Scale factor of the 2LPT initial conditions.
    mesh_factor : int
        Force mesh cells per particle per side (1 or 2).
    n_particles : int, optional
        Particles per side (default ``grid``).
    scheme : {'ngp', 'cic', 'tsc'}
        Mass assignment of the output density.
    return_particles : bool
        Also return the final positions (Mpc/h).

    Returns
    -------
    ndarray (grid, grid, grid)
        Density in units of the mean (``1 + delta``), or ``(density, positions)``.

    References
    ----------
    .. [1] Y. Feng et al., MNRAS 463, 2273 (2016), arXiv:1603.00476.
    .. [2] R. Scoccimarro, MNRAS 299, 1097 (1998).
    """
    cosmo = Cosmology(omega_m=omega_m, sigma8=sigma8, **(cosmo_kwargs or {}))
    n = int(n_particles or grid)
    _check_grid(n, box_size, 3)
    _check_grid(grid, box_size, 3)
    a_end = 1.0 / (1.0 + float(redshift))
    if not 0 < a_start < a_end:
        raise ConfigError(f"a_start={a_start} must lie in (0, 1/(1+redshift)={a_end:.4g})")
    if int(n_steps) < 1:
        raise ConfigError(f"n_steps must be >= 1, got {n_steps}")
    rng = _seed_rng(seed)
    delta_lin = gaussian_field(lambda k: linear_power(k, cosmo), n, box_size, 3, rng)
    psi1, psi2 = lpt_displacements(delta_lin, box_size)
    cell = box_size / n
    # lattice at cell centres, half way between mesh nodes: CIC weights are then smooth in the displacement
    q = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) * cell] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    psi1 = psi1.reshape(3, -1).T
    psi2 = psi2.reshape(3, -1).T
    g = _Growth(cosmo)
    a = float(a_start)
    e = float(cosmo.efunc(a))
    pos = q + g.d1(a) * psi1 + g.d2(a) * psi2
    mom = a**3 * e * (g.d1_prime(a) * psi1 + g.d2_prime(a) * psi2)
    del psi1, psi2, delta_lin
    n_mesh = int(mesh_factor) * n
    steps = np.linspace(a_start, a_end, int(n_steps) + 1)
    force = _pm_force(pos % box_size, n_mesh, box_size, cosmo.omega_m, n**3)
    for a0, a1 in zip(steps[:-1], steps[1:]):
        ah = 0.5 * (a0 + a1)
        mom += force * g.kick_factor(a0, ah, a0)
        pos += mom * g.drift_factor(a0, a1, ah)
        pos %= box_size
        force = _pm_force(pos, n_mesh, box_size, cosmo.omega_m, n**3)
        mom += force * g.kick_factor(ah, a1, a1)
    rho = paint(pos, grid, box_size, scheme)
    rho *= grid**3 / n**3
    if return_particles:
        return rho, pos
    return rho


def slab(field: np.ndarray, axis: int = 0, start: int = 0, thickness: int = 1) -> np.ndarray:
    """Average of ``thickness`` consecutive cells of a periodic 3-D field along ``axis``.

    Parameters
    ----------
    field : ndarray (n, n, n)
        Density in units of the mean.
    axis : int
        Projection axis.
    start : int
        First cell (wraps periodically).
    thickness : int
        Number of cells (the slab is ``thickness * L / n`` thick).

    Returns
    -------
    ndarray (n, n)
        Projected density in units of the mean (mean 1 for a mean-1 input).
    """
    f = np.asarray(field)
    if f.ndim != 3:
        raise ConfigError(f"slab needs a 3-D field, got shape {f.shape}")
    n = f.shape[axis]
    if not 1 <= int(thickness) <= n:
        raise ConfigError(f"slab thickness must be in [1, {n}] cells, got {thickness}")
    idx = (int(start) + np.arange(int(thickness))) % n
    return np.take(f, idx, axis=axis).mean(axis=axis)
