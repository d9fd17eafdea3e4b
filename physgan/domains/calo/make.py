"""``physgan data make calo``: simulate GFlash showers into a CaloGAN or CaloChallenge file.

Examples
--------
``physgan data make calo --geometry calogan --particle e+ --energy 1:100 --n 100000 --out eplus_gflash.h5``
``physgan data make calo --geometry calochallenge-ds2 --energy 1:1000 --energy-dist log-uniform --n 10000 --out ds2.h5``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from physgan.domains.calo.geometry import CaloGeometry, calochallenge_geometry, calogan_geometry
from physgan.domains.calo.layouts import CaloChallengeLayout, CaloGANLayout
from physgan.errors import ConfigError
from physgan.io.hdf5 import SampleWriter
from physgan.io.layout import Header
from physgan.progress import Progress

__all__ = ["add_make_arguments", "make", "make_dataset", "resolve_geometry", "draw_energies"]


def resolve_geometry(name: str) -> CaloGeometry:
    """'calogan', 'calochallenge-ds2' / 'ds2', 'calochallenge-ds3' / 'ds3', or a binning XML path."""
    key = str(name).strip()
    if key.lower() == "calogan":
        return calogan_geometry()
    return calochallenge_geometry(key)


def draw_energies(n: int, lo_gev: float, hi_gev: float, dist: str, rng: np.random.Generator) -> np.ndarray:
    """Incident energies in GeV.

    Parameters
    ----------
    n : int
        Number of showers.
    lo_gev, hi_gev : float
        Range in GeV (equal values: a fixed energy).
    dist : str
        'uniform' (CaloGAN's choice) or 'log-uniform' (CaloChallenge DS2/DS3's choice).
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        (n,) float64 energies in GeV.
    """
    if not (math.isfinite(lo_gev) and math.isfinite(hi_gev)) or lo_gev <= 0 or hi_gev < lo_gev:
        raise ConfigError(f"--energy: need 0 < LO <= HI (GeV), got {lo_gev}:{hi_gev}")
    if dist == "uniform":
        return rng.uniform(lo_gev, hi_gev, size=n)
    if dist == "log-uniform":
        return np.exp(rng.uniform(math.log(lo_gev), math.log(hi_gev), size=n))
    raise ConfigError(f"--energy-dist must be 'uniform' or 'log-uniform', got '{dist}'")


def _parse_energy(text: str) -> tuple[float, float]:
    s = str(text)
    try:
        lo, hi = (float(v) for v in s.split(":", 1)) if ":" in s else (float(s), float(s))
    except ValueError:
        raise ConfigError(f"--energy: expected LO:HI in GeV (or one value), got '{text}'") from None
    return lo, hi


def add_make_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``physgan data make calo`` to ``parser``."""
    parser.add_argument("--geometry", default="calogan",
                        help="calogan (default), calochallenge-ds2, calochallenge-ds3, or a Par04-like binning XML path")
    parser.add_argument("--particle", choices=["e+", "e-", "gamma"], default="e+", help="incident particle (default e+)")
    parser.add_argument("--energy", default=None,
                        help="incident energy range LO:HI in GeV (default 1:100 CaloGAN, 1:1000 others)")
    parser.add_argument("--energy-dist", choices=["auto", "uniform", "log-uniform"], default="auto",
                        help="energy distribution; auto = uniform for CaloGAN (as its data), log-uniform for CaloChallenge")
    parser.add_argument("--n", type=int, default=10000, help="number of showers (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--batch", type=int, default=1024, help="showers simulated and written per block (default 1024)")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--compression", choices=["gzip", "lzf"], default=None, help="HDF5 compression (default none)")


def make_dataset(out, *, geometry: str | CaloGeometry = "calogan", particle: str = "e+",
                 energy_gev: tuple[float, float] | None = None, energy_dist: str = "auto", n: int = 10000,
                 seed: int = 0, batch: int = 1024, overwrite: bool = False, compression: str | None = None,
                 progress: bool | None = None, params=None) -> Path:
    """Simulate ``n`` GFlash showers and stream them atomically into ``out``.

    Parameters
    ----------
    out : str or Path
        Output HDF5 file: CaloGAN layout for the CaloGAN geometry, CaloChallenge layout otherwise.
    geometry : str or CaloGeometry
        See :func:`resolve_geometry`.
    particle : str
        'e+', 'e-' or 'gamma'.
    energy_gev : (float, float), optional
        Incident-energy range in GeV (default 1-100 for CaloGAN, 1-1000 otherwise).
    energy_dist : str
        'uniform', 'log-uniform' or 'auto' (uniform for CaloGAN, log-uniform otherwise).
    n, seed, batch : int
        Showers, seed, showers per simulated and written block.
    overwrite : bool
        Replace an existing file.
    compression : str, optional
        'gzip' or 'lzf'.
    progress : bool, optional
        None: a tqdm bar when stderr is a terminal, else a line per ~10 %; False: silent.
    params : GFlashParams, optional
        Simulator settings (default :func:`physgan.sim.gflash.default_params`).

    Returns
    -------
    Path
        The written file; its attributes hold the geometry, ``domain='calo'`` and provenance
        (simulator, parameters, seed, physgan version, creation time).
    """
    import physgan
    from physgan.sim import gflash

    geo = geometry if isinstance(geometry, CaloGeometry) else resolve_geometry(geometry)
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    params = params or gflash.default_params(geo)
    is_calogan = geo.name == "calogan"
    lo, hi = energy_gev or ((1.0, 100.0) if is_calogan else (1.0, 1000.0))
    dist = energy_dist if energy_dist != "auto" else ("uniform" if is_calogan else "log-uniform")
    ss_energy, ss_sim = np.random.SeedSequence(int(seed)).spawn(2)
    e_gev = draw_energies(int(n), float(lo), float(hi), dist, np.random.default_rng(ss_energy))
    to_file_units = 1.0 if geo.energy_units == "GeV" else 1000.0
    layout = CaloGANLayout() if is_calogan else CaloChallengeLayout(geo)
    param_dict = dataclasses.asdict(params)
    attrs = {
        **geo.to_attrs(),
        "domain": "calo",
        "energy_units": geo.energy_units,
        "simulator": "physgan.sim.gflash (Grindhammer-Peters parametrised EM showers, hep-ex/0001020)",
        "simulator_params": json.dumps(param_dict, default=float),
        "particle": particle,
        "energy_range_gev": [float(lo), float(hi)],
        "energy_dist": dist,
        "seed": int(seed),
        "physgan_version": physgan.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voxel_threshold_mev": geo.voxel_threshold_mev,
    }
    header = Header(n=int(n), sample_shape=(geo.n_features,), condition_names=["energy"], condition_units=[geo.energy_units],
                    attrs=attrs, chunk_rows=0, sample_units="MeV", non_negative=True, dtype="float32")
    bar = Progress(int(n), "gflash", "shower", progress)
    try:
        with SampleWriter(out, layout, header, overwrite=overwrite, compression=compression) as writer:
            for start, x in gflash.iter_showers(geo, e_gev, particle=particle, seed=ss_sim, batch=batch, params=params):
                c = (e_gev[start:start + len(x)] * to_file_units).astype(np.float32)[:, None]
                writer.append(x, c)
                bar.update(len(x))
    finally:
        bar.close()
    return Path(out)


def make(
    *, out: str, geometry: str, particle: str, energy: str | None, energy_dist: str, n: int, seed: int, batch: int,
    overwrite: bool, compression: str | None,
) -> Path:
    """``physgan data make calo`` with its options as keywords (:func:`add_make_arguments`); returns the written file."""
    return make_dataset(
        out, geometry=geometry, particle=particle, energy_gev=_parse_energy(energy) if energy else None,
        energy_dist=energy_dist, n=n, seed=seed, batch=batch, overwrite=overwrite, compression=compression,
    )
