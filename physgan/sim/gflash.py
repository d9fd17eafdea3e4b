"""Vectorised GFlash (Grindhammer-Peters) electromagnetic showers deposited into a calorimeter geometry.

Each shower gets correlated log-normal parameters (T, alpha) of its longitudinal gamma profile;
its deposited energy is split into "spots" whose depths follow the (spot) gamma profile and
whose radii follow the two-component (core + tail) radial profile at the spot's relative depth;
spots are placed at a uniform azimuth around the shower axis (x = y = 0) and histogrammed into
the geometry's cells. Energy that falls outside the cells of a CaloGAN layer goes to that layer's
overflow entry; energy outside a CaloChallenge cylinder or behind the last layer leaks (CaloGAN
truncates each profile at the back face instead, see ``GFlashParams.contain_longitudinal``).

Two readouts:

* ``total`` (CaloGAN, whose Geant4 cells record lead + argon): homogeneous-medium parameters
  with the effective medium of the stack, total deposit ``E * N(response, response_sigma)``,
  no sampling fluctuation (the spots' multinomial fluctuation remains).
* ``sampling`` (CaloChallenge DS2/DS3, Si readout rescaled by 1/0.033): sampling-calorimeter
  parameters, mean response ``response`` and Gamma fluctuations of every spot with the
  stochastic term ``c`` (variance ``c^2 dE`` for a deposit dE in GeV), as in Geant4's
  ``GFlashSamplingShowerParameterisation``.

All numbers of the parameterisation are from Grindhammer & Peters (hep-ex/0001020) as
implemented in Geant4 ``source/parameterisations/gflash``; the tuned values of
:func:`default_params` and why are documented there and in ``datasets/calo_calibration.md``.

References
----------
G. Grindhammer, S. Peters, "The Parameterized Simulation of Electromagnetic Showers in
Homogeneous and Sampling Calorimeters", arXiv:hep-ex/0001020 (1993).
G. Grindhammer, M. Rudowicz, S. Peters, NIM A 290 (1990) 469.
Particle Data Group, "Passage of particles through matter" and "Calorimetry" reviews.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from physgan.domains.calo.geometry import CaloGeometry
from physgan.errors import ConfigError
from physgan.progress import Progress

__all__ = [
    "Material",
    "Medium",
    "GFlashParams",
    "PB",
    "LAR",
    "W",
    "SI",
    "mix_medium",
    "CALOGAN_MEDIUM",
    "PAR04_MEDIUM",
    "default_params",
    "shower_parameters",
    "simulate_showers",
    "iter_showers",
    "with_overrides",
]

#: critical-energy scale of the Moliere radius (MeV)
E_S_MEV = 21.2
#: showers per independent random stream: results do not depend on ``batch``
RNG_BLOCK = 32


@dataclass(frozen=True)
class Material:
    """A pure material (PDG atomic and nuclear properties).

    Attributes
    ----------
    name : str
    z, a : float
        Atomic number and mass (g/mol).
    density_g_cm3 : float
    x0_g_cm2 : float
        Radiation length in g/cm^2.
    """

    name: str
    z: float
    a: float
    density_g_cm3: float
    x0_g_cm2: float

    @property
    def ec_mev(self) -> float:
        """Critical energy by the GFlash formula 2.66 (X0 Z / A)^1.1 MeV."""
        return 2.66 * (self.x0_g_cm2 * self.z / self.a) ** 1.1


PB = Material("Pb", 82.0, 207.2, 11.35, 6.37)
LAR = Material("LAr", 18.0, 39.95, 1.390, 19.55)  # CaloGAN's liquid-argon density
W = Material("W", 74.0, 183.84, 19.3, 6.76)
SI = Material("Si", 14.0, 28.0855, 2.329, 21.82)


@dataclass(frozen=True)
class Medium:
    """Effective medium of a calorimeter stack (GFlash mixing rules).

    Attributes
    ----------
    name : str
    z_eff, a_eff : float
    density_g_cm3 : float
    x0_mm : float
        Radiation length in mm.
    rm_mm : float
        Moliere radius in mm.
    ec_mev : float
        Critical energy in MeV.
    fs : float
        Sampling frequency F_S = X0 / (d_abs + d_act) (inf for a homogeneous medium).
    ehat : float
        e/mip ratio 1 / (1 + 0.007 (Z_abs - Z_act)) (1 for a homogeneous medium).
    """

    name: str
    z_eff: float
    a_eff: float
    density_g_cm3: float
    x0_mm: float
    rm_mm: float
    ec_mev: float
    fs: float = math.inf
    ehat: float = 1.0


def mix_medium(name: str, layers: list[tuple[Material, float]]) -> Medium:
    """Effective medium of a repeated stack of material layers.

    Parameters
    ----------
    name : str
        Name of the medium.
    layers : list of (Material, thickness in mm)
        One period of the stack; the first entry is the absorber, the last the active layer.

    Returns
    -------
    Medium
        Z_eff, A_eff, X0, R_M, E_c by mass-weighted mixing; F_S and e/mip of absorber vs active.

    References
    ----------
    Geant4 ``GFlashSamplingShowerParameterisation::ComputeZAX0EFFetc``; hep-ex/0001020 App. A.2.
    """
    if not layers or any(d <= 0 for _, d in layers):
        raise ConfigError("a medium needs at least one layer of positive thickness")
    mass = np.array([m.density_g_cm3 * d for m, d in layers])
    w = mass / mass.sum()
    total_mm = sum(d for _, d in layers)
    rho = mass.sum() / total_mm
    z = float(sum(wi * m.z for wi, (m, _) in zip(w, layers)))
    a = float(sum(wi * m.a for wi, (m, _) in zip(w, layers)))
    x0_g = 1.0 / sum(wi / m.x0_g_cm2 for wi, (m, _) in zip(w, layers))
    ec_over_x0 = sum(wi * m.ec_mev / m.x0_g_cm2 for wi, (m, _) in zip(w, layers))
    x0_mm = x0_g / rho * 10.0
    rm_mm = E_S_MEV / ec_over_x0 / rho * 10.0
    if len(layers) > 1:
        fs = x0_mm / total_mm
        ehat = 1.0 / (1.0 + 0.007 * (layers[0][0].z - layers[-1][0].z))
    else:
        fs, ehat = math.inf, 1.0
    return Medium(name, z, a, float(rho), float(x0_mm), float(rm_mm), float(x0_g * ec_over_x0), float(fs), float(ehat))


#: CaloGAN: 80 x (2 mm Pb + 4 mm LAr); Z_eff 69.4, X0 15.6 mm, R_M 36.9 mm, E_c 8.96 MeV.
CALOGAN_MEDIUM = mix_medium("CaloGAN Pb/LAr", [(PB, 2.0), (LAR, 4.0)])
#: Geant4 Par04 (CaloChallenge DS2/DS3): 1.4 mm W + 0.3 mm Si.
PAR04_MEDIUM = mix_medium("Par04 W/Si", [(W, 1.4), (SI, 0.3)])


@dataclass(frozen=True)
class GFlashParams:
    """Settings of the shower simulation.

    Attributes
    ----------
    medium : Medium
        Effective medium (lengths in X0 and R_M are converted to mm with it).
    readout : str
        'total' (all deposited energy, homogeneous parameters) or 'sampling'.
    response, response_sigma : float
        Mean and spread of the recorded energy over the incident energy (per shower).
    sampling_c : float
        Stochastic term c of the sampling readout (sigma/E = c / sqrt(E/GeV)); 0 for 'total'.
    spot_scale : float
        Multiplier of the GFlash number of spots (more spots: smoother, slower).
    rm_scale : float
        Multiplier of the Moliere radius used to place the spots (lateral tuning knob).
    core_scale, tail_scale : float
        Multipliers of the core and tail radii R_C and R_T.
    t_shift_x0 : float
        Shift of every shower's depth of maximum, in X0 (longitudinal tuning knob).
    alpha_scale : float
        Multiplier of every shower's shape parameter alpha at fixed T (< 1: longer profiles).
    conversion_x0 : float
        Mean depth (X0) of the first conversion of incident photons (9/7 X0).
    max_radius_rm : float
        Radial cut of the profile sampling, in R_M (the GFlash tail has no natural end).
    contain_longitudinal : bool
        Truncate each shower's profile at the back face (renormalising its energy into the
        calorimeter), so that the recorded sum is exactly ``response`` (CaloGAN total readout).
    """

    medium: Medium
    readout: str = "total"
    response: float = 0.9945
    response_sigma: float = 0.003
    sampling_c: float = 0.0
    spot_scale: float = 1.0
    rm_scale: float = 1.0
    core_scale: float = 1.0
    tail_scale: float = 1.0
    t_shift_x0: float = 0.0
    alpha_scale: float = 1.0
    conversion_x0: float = 9.0 / 7.0
    max_radius_rm: float = 20.0
    contain_longitudinal: bool = False

    def __post_init__(self):
        if self.readout not in ("total", "sampling"):
            raise ConfigError(f"readout must be 'total' or 'sampling', got '{self.readout}'")
        for k in ("response", "spot_scale", "alpha_scale", "rm_scale", "core_scale", "tail_scale", "max_radius_rm"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"GFlash parameter {k} must be > 0, got {getattr(self, k)}")
        if self.response_sigma < 0 or self.sampling_c < 0 or self.conversion_x0 < 0:
            raise ConfigError("response_sigma, sampling_c and conversion_x0 must be >= 0")


def default_params(geometry: CaloGeometry) -> GFlashParams:
    """Tuned simulation settings for a geometry.

    CaloGAN: total-deposit readout calibrated on the 51 Geant4 e+ showers of the HEPCAT
    sample (see ``datasets/calo_calibration.md``): response 0.9945 +- 0.003 (measured sum of
    cells / E_inc); the untuned Geant4 parameterisation puts too much energy in layer 0 at low
    energy (f0 = 0.42 vs 0.35 for 1-10 GeV) and too little in the 10-30 GeV bin, so every
    shower maximum is moved 0.2 X0 deeper and alpha scaled by 0.8 (longer profiles), which
    brings all four bins within 0.03 (largest deviation 0.026, 10-30 GeV); the profile is
    truncated at the back face so that the sum stays at the measured 0.9945; the layer-0 core (|y| < 5 mm) was 5 % too narrow, fixed
    by R_C x 1.2 and R_T x 1.05; the radial profile is cut at 8 R_M, which reproduces the
    measured overflow (0.09 % of E_inc; the uncut GFlash tail gave 0.36 %). CaloChallenge DS2/DS3 (Par04 W/Si): sampling
    readout; response 0.77 = e/mip (0.70) x mip sampling fraction (0.036) / 0.033, stochastic
    term c = 2.7 % sqrt(0.3 mm / 0.036) = 7.8 % (PDG rule); not calibrated on Geant4 data.

    Parameters
    ----------
    geometry : CaloGeometry

    Returns
    -------
    GFlashParams
    """
    if geometry.name == "calogan":
        return GFlashParams(medium=CALOGAN_MEDIUM, readout="total", response=0.9945, response_sigma=0.003,
                            t_shift_x0=0.2, alpha_scale=0.8, core_scale=1.2, tail_scale=1.05, max_radius_rm=8.0,
                            contain_longitudinal=True)
    if geometry.kind == "cylindrical" and not any(math.isnan(lay.depth_mm) for lay in geometry.layers):
        return GFlashParams(medium=PAR04_MEDIUM, readout="sampling", response=0.77, response_sigma=0.0, sampling_c=0.078)
    raise ConfigError(
        f"geometry '{geometry.name}' has no known layer depths or medium: GFlash simulates CaloGAN and the "
        "Par04 (CaloChallenge DS2/DS3-like) binnings; DS1 is the ATLAS detector, which GFlash here does not model"
    )


# --------------------------------------------------------------------------------------------------
# parameterisation
# --------------------------------------------------------------------------------------------------


def shower_parameters(energy_gev: np.ndarray, params: GFlashParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-shower longitudinal parameters: fluctuated (T, alpha), spot profile and averages.

    Parameters
    ----------
    energy_gev : numpy.ndarray
        (B,) incident energies in GeV.
    params : GFlashParams
    rng : numpy.random.Generator

    Returns
    -------
    dict of numpy.ndarray
        ``T``, ``alpha``, ``beta`` (shower profile, depth in X0), ``alpha_spot``, ``beta_spot``,
        ``alpha_mean`` (exp of the mean log alpha, for the relative depth of the radial profile)
        and ``n_spots``.

    References
    ----------
    hep-ex/0001020 eqs. for individual profiles (log-normal, correlated); Geant4
    ``GFlashHomoShowerParameterisation`` / ``GFlashSamplingShowerParameterisation``.
    """
    m = params.medium
    e = np.asarray(energy_gev, dtype=np.float64)
    y = e * 1000.0 / m.ec_mev
    ln_y = np.log(y)
    z = m.z_eff
    mean_ln_t = np.log(np.maximum(ln_y - 0.812, 0.5))
    mean_ln_a = np.log(0.81 + (0.458 + 2.26 / z) * ln_y)
    if params.readout == "sampling":
        inv_fs = 1.0 / m.fs
        mean_ln_t = np.log(np.maximum(np.exp(mean_ln_t) - 0.55 * inv_fs - 0.69 * (1 - m.ehat), 0.5))
        mean_ln_a = np.log(np.maximum(np.exp(mean_ln_a) - 0.476 * inv_fs, 1.05))
        sig_t = 1.0 / np.maximum(-2.5 + 1.25 * ln_y, 1e-3)
        sig_a = 1.0 / np.maximum(-0.82 + 0.79 * ln_y, 1e-3)
        rho = 0.784 - 0.023 * ln_y
    else:
        sig_t = 1.0 / np.maximum(-1.4 + 1.26 * ln_y, 1e-3)
        sig_a = 1.0 / np.maximum(-0.58 + 0.86 * ln_y, 1e-3)
        rho = 0.705 - 0.023 * ln_y
    sig_t = np.minimum(sig_t, 0.5)  # Geant4 caps both widths at 0.5
    sig_a = np.minimum(sig_a, 0.5)
    rho = np.clip(rho, -1.0, 1.0)
    z1 = rng.standard_normal(e.shape)
    z2 = rng.standard_normal(e.shape)
    ln_t = mean_ln_t + sig_t * (np.sqrt((1 + rho) / 2) * z1 + np.sqrt((1 - rho) / 2) * z2)
    ln_a = mean_ln_a + sig_a * (np.sqrt((1 + rho) / 2) * z1 - np.sqrt((1 - rho) / 2) * z2)
    t_max = np.maximum(np.exp(ln_t) + params.t_shift_x0, 1.0)
    alpha = np.maximum(np.exp(ln_a) * params.alpha_scale, 1.1)
    beta = (alpha - 1.0) / t_max
    # spot profile (homogeneous constants, as Geant4 uses for both readouts)
    t_spot = t_max * (0.698 + 0.00212 * z)
    a_spot = np.maximum(alpha * (0.639 + 0.00334 * z), 1.1)
    b_spot = (a_spot - 1.0) / t_spot
    if params.readout == "sampling" and params.sampling_c > 0:
        n_spots = 10.3 / params.sampling_c * e**0.959
    else:
        n_spots = 93.0 * math.log(z) * e**0.876
    n_spots = np.maximum(np.rint(n_spots * params.spot_scale), 20).astype(np.int64)
    return {
        "T": t_max, "alpha": alpha, "beta": beta, "alpha_spot": a_spot, "beta_spot": b_spot,
        "alpha_mean": np.exp(mean_ln_a), "n_spots": n_spots,
    }


def _radial_profile(tau: np.ndarray, ln_e: np.ndarray, params: GFlashParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R_C, R_T, p) in R_M at relative depth tau, for ln(E/GeV) (hep-ex/0001020 radial profile)."""
    m = params.medium
    z = m.z_eff
    r_c = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3 = 0.659 - 0.00309 * z, 0.645, -2.59
    k4 = 0.3585 + 0.0421 * ln_e
    r_t = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z
    p3 = 1.313 - 0.0686 * ln_e
    arg = (p2 - tau) / p3
    p = p1 * np.exp(arg - np.exp(arg))
    if params.readout == "sampling":
        inv_fs, eh = 1.0 / m.fs, m.ehat
        r_c = r_c - 0.0203 * (1 - eh) + 0.0397 * inv_fs * np.exp(-tau)
        r_t = r_t - 0.14 * (1 - eh) - 0.495 * inv_fs * np.exp(-tau)
        p = p + (1 - eh) * (0.348 - 0.642 * inv_fs * np.exp(-((tau - 1) ** 2)))
    r_c = np.maximum(r_c * params.core_scale, 1e-4)
    r_t = np.maximum(r_t * params.tail_scale, r_c)
    return r_c, r_t, np.clip(p, 0.0, 1.0)


def _simulate_block(geometry: CaloGeometry, energy_gev: np.ndarray, particle: str, params: GFlashParams,
                    rng: np.random.Generator) -> np.ndarray:
    """Simulate one block of showers with one generator; returns (B, n_features) float64 MeV."""
    b = len(energy_gev)
    m = params.medium
    sp = shower_parameters(energy_gev, params, rng)
    n_sp = sp["n_spots"]
    owner = np.repeat(np.arange(b), n_sp)
    # depths: spots from the spot profile, energies weighted by shower / spot profile (Geant4's
    # per-step energy from the shower profile and spot count from the spot profile)
    a_s, b_s = sp["alpha_spot"][owner], sp["beta_spot"][owner]
    t = rng.standard_gamma(a_s) / b_s
    # log f_shower(t) - log f_spot(t) up to a per-shower constant, which the per-shower normalisation removes
    log_w = (sp["alpha"] - sp["alpha_spot"])[owner] * np.log(t) - (sp["beta"] - sp["beta_spot"])[owner] * t
    log_w -= np.max(log_w)
    w = np.exp(log_w)
    a, bt = sp["alpha"][owner], sp["beta"][owner]
    t_start = np.zeros(b)
    if particle == "gamma" and params.conversion_x0 > 0:
        t_start = rng.exponential(params.conversion_x0, size=b)
    z_mm = (t + t_start[owner]) * m.x0_mm
    if params.contain_longitudinal:
        # total readout: the recorded sum is the measured response, so the profile is truncated at the back face
        # (else rare long, low-alpha showers leak several % at 10 GeV, where Geant4 shows 0.994 +- 0.003)
        behind = z_mm >= geometry.z_edges_mm[-1]
        n_inside = np.bincount(owner, weights=(~behind).astype(np.float64), minlength=b)
        w = np.where(behind & (n_inside[owner] > 0), 0.0, w)
    wsum = np.bincount(owner, weights=w, minlength=b)
    e_dep_gev = energy_gev * params.response
    if params.response_sigma > 0:
        e_dep_gev = e_dep_gev * np.maximum(1.0 + params.response_sigma / params.response * rng.standard_normal(b), 0.0)
    e_spot = w * (e_dep_gev / wsum)[owner]  # GeV
    if params.readout == "sampling" and params.sampling_c > 0:
        c2 = params.sampling_c**2
        e_spot = rng.gamma(np.maximum(e_spot / c2, 1e-12), c2)
    # relative depth for the radial profile (Geant4: relative to the individual centre of gravity)
    a_mean = sp["alpha_mean"][owner]
    tau = t * (bt / a) * (a_mean / np.maximum(a_mean - 1.0, 1e-3))
    ln_e = np.log(energy_gev)[owner]
    r_c, r_t, p = _radial_profile(tau, ln_e, params)
    radius = np.where(rng.random(t.shape) < p, r_c, r_t)
    u = rng.random(t.shape)
    u_max = params.max_radius_rm**2 / (params.max_radius_rm**2 + radius**2)  # cut at max_radius_rm
    u = u * u_max
    r_mm = radius * np.sqrt(u / (1.0 - u)) * (m.rm_mm * params.rm_scale)
    phi = rng.random(t.shape) * (2 * math.pi)
    x = r_mm * np.cos(phi)
    y = r_mm * np.sin(phi)
    return _deposit(geometry, owner, b, x, y, z_mm, e_spot * 1000.0)


def _uniform(edges: np.ndarray | None) -> bool:
    return edges is not None and len(edges) > 1 and bool(np.allclose(np.diff(edges), edges[1] - edges[0], rtol=1e-9, atol=1e-9))


def _deposit_uniform(geometry: CaloGeometry, owner: np.ndarray, b: int, x: np.ndarray, y: np.ndarray, layer: np.ndarray,
                     e_mev: np.ndarray) -> np.ndarray:
    """Fast path of :func:`_deposit` when every layer is a uniform Cartesian or uniform (r, alpha) grid."""
    nf, n_lay = geometry.n_features, len(geometry.layers)
    ok = (layer >= 0) & (layer < n_lay)
    lay_i = np.where(ok, layer, 0)
    offs = np.array([geometry.layer_slice(i).start for i in range(n_lay)])
    has_overflow = geometry.n_extra == n_lay
    if geometry.kind == "cartesian":
        x0 = np.array([lay.x_edges_mm[0] for lay in geometry.layers])
        dx = np.array([lay.x_edges_mm[1] - lay.x_edges_mm[0] for lay in geometry.layers])
        y0 = np.array([lay.y_edges_mm[0] for lay in geometry.layers])
        dy = np.array([lay.y_edges_mm[1] - lay.y_edges_mm[0] for lay in geometry.layers])
        nx = np.array([lay.shape[0] for lay in geometry.layers])
        ny = np.array([lay.shape[1] for lay in geometry.layers])
        ix = np.floor((x - x0[lay_i]) / dx[lay_i]).astype(np.int64)
        iy = np.floor((y - y0[lay_i]) / dy[lay_i]).astype(np.int64)
        nyl = ny[lay_i]
        inside = (ix >= 0) & (ix < nx[lay_i]) & (iy >= 0) & (iy < nyl)
        cell = ix * nyl + iy
    else:
        dr = np.array([lay.r_edges_mm[1] - lay.r_edges_mm[0] for lay in geometry.layers])
        nr = np.array([lay.shape[1] for lay in geometry.layers])
        na = np.array([lay.n_alpha for lay in geometry.layers])
        ir = np.floor(np.hypot(x, y) / dr[lay_i]).astype(np.int64)
        nal = na[lay_i]
        ia = np.clip(np.floor((np.arctan2(y, x) + math.pi) / (2 * math.pi) * nal).astype(np.int64), 0, nal - 1)
        nrl = nr[lay_i]
        inside = ir < nrl
        cell = ia * nrl + ir
    target = np.where(inside, offs[lay_i] + cell, geometry.n_cells + lay_i if has_overflow else 0)
    keep = ok & (inside | has_overflow)
    out = np.bincount(owner[keep] * nf + target[keep], weights=e_mev[keep], minlength=b * nf)
    return out.reshape(b, nf)


def _deposit(geometry: CaloGeometry, owner: np.ndarray, b: int, x: np.ndarray, y: np.ndarray, z_mm: np.ndarray,
             e_mev: np.ndarray) -> np.ndarray:
    """Histogram spot energies into the flat (B, n_features) cell array (overflow for CaloGAN)."""
    nf = geometry.n_features
    z_edges = geometry.z_edges_mm
    if len(z_edges) <= 8:
        layer = (z_mm[:, None] >= z_edges[None, :]).sum(axis=1) - 1
    elif _uniform(z_edges):
        layer = np.floor((z_mm - z_edges[0]) / (z_edges[1] - z_edges[0])).astype(np.int64)
    else:
        layer = np.searchsorted(z_edges, z_mm, side="right") - 1
    if all(_uniform(lay.x_edges_mm) and _uniform(lay.y_edges_mm) for lay in geometry.layers) or all(
            _uniform(lay.r_edges_mm) and lay.r_edges_mm[0] == 0 for lay in geometry.layers):
        return _deposit_uniform(geometry, owner, b, x, y, layer, e_mev)
    out = np.zeros(b * nf)
    has_overflow = geometry.n_extra == len(geometry.layers)
    for i, lay in enumerate(geometry.layers):
        sel = np.flatnonzero(layer == i)
        if sel.size == 0:
            continue
        cell = lay.locate(x[sel], y[sel])
        start = geometry.layer_slice(i).start
        inside = cell >= 0
        idx = owner[sel] * nf + np.where(inside, start + cell, geometry.n_cells + i if has_overflow else 0)
        wts = e_mev[sel] if has_overflow else np.where(inside, e_mev[sel], 0.0)
        out += np.bincount(idx, weights=wts, minlength=b * nf)
    return out.reshape(b, nf)


def _check_inputs(geometry: CaloGeometry, energies_gev, particle: str) -> np.ndarray:
    if particle not in ("e+", "e-", "gamma"):
        raise ConfigError(f"particle must be 'e+', 'e-' or 'gamma' (GFlash models EM showers), got '{particle}'")
    e = np.asarray(energies_gev, dtype=np.float64).reshape(-1)
    if e.size and (not np.isfinite(e).all() or (e < 0.05).any() or (e > 1.0e4).any()):
        raise ConfigError("incident energies must be finite and within 0.05 GeV - 10 TeV (GFlash needs E >> E_c)")
    if any(math.isnan(lay.depth_mm) or math.isnan(lay.thickness_mm) for lay in geometry.layers):
        default_params(geometry)  # raises the explanatory ConfigError
    return e


def iter_showers(geometry: CaloGeometry, energies_gev, particle: str = "e+", seed: int | np.random.SeedSequence = 0,
                 batch: int = 1024, params: GFlashParams | None = None, progress: bool = False
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """Simulate showers batch by batch (memory bounded); yields ``(start, x)``.

    Parameters
    ----------
    geometry, energies_gev, particle, seed, params, progress
        As in :func:`simulate_showers`.
    batch : int
        Showers per yielded block (rounded up to a multiple of 32, the random-stream block).

    Yields
    ------
    start : int
        Index of the block's first shower.
    x : numpy.ndarray
        (n, n_features) float32 showers in MeV.
    """
    e = _check_inputs(geometry, energies_gev, particle)
    params = params or default_params(geometry)
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    n = len(e)
    n_blocks = -(-n // RNG_BLOCK)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    streams = ss.spawn(n_blocks)
    per_yield = max(1, -(-int(batch) // RNG_BLOCK))
    bar = Progress(n, "gflash", "shower", progress)
    try:
        for first in range(0, n_blocks, per_yield):
            parts = []
            for k in range(first, min(first + per_yield, n_blocks)):
                lo, hi = k * RNG_BLOCK, min((k + 1) * RNG_BLOCK, n)
                parts.append(_simulate_block(geometry, e[lo:hi], particle, params, np.random.default_rng(streams[k])))
            x = np.concatenate(parts).astype(np.float32)
            bar.update(len(x))
            yield first * RNG_BLOCK, x
    finally:
        bar.close()


def simulate_showers(geometry: CaloGeometry, energies_gev, particle: str = "e+", seed: int | np.random.SeedSequence = 0,
                     batch: int = 1024, progress: bool = False, params: GFlashParams | None = None) -> np.ndarray:
    """Simulate electromagnetic showers with GFlash into a calorimeter geometry.

    Parameters
    ----------
    geometry : CaloGeometry
        CaloGAN (:func:`~physgan.domains.calo.geometry.calogan_geometry`) or a cylindrical binning
        with known layer depths (CaloChallenge DS2/DS3 or a Par04-like XML).
    energies_gev : array_like
        (N,) incident energies in GeV (also for CaloChallenge, whose files store MeV).
    particle : str
        'e+' / 'e-' (shower starts at the front face) or 'gamma' (starts after an exponential
        conversion depth of mean 9/7 X0).
    seed : int or numpy.random.SeedSequence
        Seed; showers are drawn in blocks of 32 with independent streams, so the result does
        not depend on ``batch``.
    batch : int
        Showers processed per step (bounds memory: about 20 float64 arrays of n_spots per shower).
    progress : bool or str
        Show progress on stderr (:class:`physgan.progress.Progress`: True, a bar on a terminal, lines otherwise).
    params : GFlashParams, optional
        Simulation settings; default :func:`default_params` of the geometry.

    Returns
    -------
    numpy.ndarray
        (N, geometry.n_features) float32 cell energies in MeV (CaloGAN: + 3 overflow entries).

    References
    ----------
    Grindhammer & Peters, arXiv:hep-ex/0001020; Geant4 GFlash; reference recipe in
    ``shared/reference/calorimeter.md`` section 5.
    """
    e = _check_inputs(geometry, energies_gev, particle)
    out = np.zeros((len(e), geometry.n_features), np.float32)
    for start, x in iter_showers(geometry, e, particle=particle, seed=seed, batch=batch, params=params, progress=progress):
        out[start:start + len(x)] = x
    return out


def with_overrides(params: GFlashParams, **overrides) -> GFlashParams:
    """A copy of ``params`` with some fields replaced (validated)."""
    return replace(params, **overrides)
