"""Synthetic two-phase microstructures from porespy's generators, with conditions per sample.

Each sample draws its generator parameters uniformly from given ranges (the
conditions a surrogate learns from), runs porespy with its own integer seed and
records the porosity it actually achieved. Labels follow physgan's convention
for porous media: **0 = pore**, **1 = solid**, so ``porosity = fraction of label 0``.

Example
-------
>>> from physgan.sim.micro import generate_micro
>>> labels, cond, names = generate_micro("blobs", 4, (32, 32), porosity=(0.3, 0.5), seed=0)  # doctest: +SKIP
>>> names
['porosity', 'blobiness']

References
----------
.. [1] J. T. Gostick et al., "PoreSpy: a Python toolkit for quantitative analysis of
   porous media images", JOSS 4 (2019) 1296 (``generators.blobs``,
   ``generators.overlapping_spheres``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from physgan.errors import ConfigError

__all__ = ["GENERATORS", "MicroSpec", "condition_names", "sample_conditions", "make_one", "iter_micro", "generate_micro"]

#: generator name -> its second condition (the first is always porosity)
GENERATORS: dict[str, str] = {"blobs": "blobiness", "overlapping_spheres": "radius"}

_DEFAULT_RANGE = {"porosity": (0.3, 0.6), "blobiness": (0.5, 1.5), "radius": (3.0, 6.0)}


@dataclass
class MicroSpec:
    """What to generate.

    Attributes
    ----------
    generator : str
        ``'blobs'`` or ``'overlapping_spheres'`` (``'overlapping-spheres'`` accepted).
    shape : tuple of int
        Image (h, w) or volume (d, h, w) shape, voxels.
    porosity : (float, float)
        Range of the target pore fraction, drawn uniformly per sample.
    blobiness : (float, float)
        Range of porespy's blobiness (``blobs``; Gaussian sigma = mean(shape) / (40 blobiness)).
    radius : (float, float)
        Range of the sphere radius in voxels (``overlapping_spheres``; rounded to an integer).
    periodic : bool
        ``blobs`` only: periodic images (porespy's default True).
    """

    generator: str = "blobs"
    shape: tuple[int, ...] = (64, 64, 64)
    porosity: tuple[float, float] = (0.3, 0.6)
    blobiness: tuple[float, float] = (0.5, 1.5)
    radius: tuple[float, float] = (3.0, 6.0)
    periodic: bool = True

    def __post_init__(self) -> None:
        self.generator = self.generator.replace("-", "_")
        if self.generator not in GENERATORS:
            raise ConfigError(f"unknown micro generator '{self.generator}'; choose one of {', '.join(GENERATORS)}")
        self.shape = tuple(int(s) for s in self.shape)
        if len(self.shape) not in (2, 3) or min(self.shape) < 2:
            raise ConfigError(f"micro shape must be 2-D or 3-D with sides >= 2, got {self.shape}")
        for name in ("porosity", "blobiness", "radius"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                raise ConfigError(f"{name} range must be lo <= hi, got {lo}:{hi}")
            setattr(self, name, (lo, hi))
        if not (0.0 < self.porosity[0] and self.porosity[1] < 1.0):
            raise ConfigError(f"porosity range must lie inside (0, 1), got {self.porosity}")
        if self.blobiness[0] <= 0:
            raise ConfigError(f"blobiness must be > 0, got {self.blobiness}")
        if self.radius[0] < 1:
            raise ConfigError(f"radius must be >= 1 voxel, got {self.radius}")


def condition_names(generator: str) -> list[str]:
    """Condition columns of a generator: ``['porosity', 'blobiness' | 'radius']``."""
    return ["porosity", GENERATORS[generator.replace("-", "_")]]


def sample_conditions(spec: MicroSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` target parameter rows and ``n`` porespy seeds.

    Returns
    -------
    params : ndarray, shape (n, 2)
        Target porosity and the generator's second parameter (radius rounded to int).
    seeds : ndarray of int64, shape (n,)
    """
    second = GENERATORS[spec.generator]
    por = rng.uniform(*spec.porosity, size=n)
    other = rng.uniform(*getattr(spec, second), size=n)
    if second == "radius":
        other = np.rint(other)
    seeds = rng.integers(0, 2**31 - 1, size=n, dtype=np.int64)
    return np.stack([por, other], axis=1), seeds


def make_one(spec: MicroSpec, porosity: float, param: float, seed: int) -> np.ndarray:
    """One labelled sample (uint8, 0 = pore, 1 = solid) from porespy with an explicit seed."""
    import porespy as ps

    ps.settings.tqdm["disable"] = True
    if spec.generator == "blobs":
        pore = ps.generators.blobs(
            list(spec.shape), porosity=float(porosity), blobiness=float(param), seed=int(seed), periodic=spec.periodic
        )
    else:
        pore = ps.generators.overlapping_spheres(list(spec.shape), r=int(param), porosity=float(porosity), seed=int(seed))
    return (~np.asarray(pore, dtype=bool)).astype(np.uint8)


def iter_micro(spec: MicroSpec, n: int, seed: int | np.random.Generator = 0, block: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(labels, conditions)`` blocks of up to ``block`` samples.

    ``conditions[:, 0]`` is the *achieved* porosity (fraction of label 0) and
    ``conditions[:, 1]`` the generator parameter (blobiness or radius). The target
    porosity of each sample is what was asked of porespy; for ``blobs`` it is met
    exactly, for ``overlapping_spheres`` within about 0.01.

    Parameters
    ----------
    spec : MicroSpec
    n : int
        Number of samples.
    seed : int or numpy Generator
        Fixes the conditions and every sample.
    block : int
        Samples per yielded block.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    params, seeds = sample_conditions(spec, n, rng)
    for start in range(0, n, block):
        stop = min(n, start + block)
        labs = np.stack([make_one(spec, params[i, 0], params[i, 1], seeds[i]) for i in range(start, stop)])
        achieved = (labs == 0).reshape(len(labs), -1).mean(axis=1)
        cond = np.stack([achieved, params[start:stop, 1]], axis=1).astype(np.float32)
        yield labs, cond


def generate_micro(
    generator: str,
    n: int,
    shape: tuple[int, ...],
    porosity: tuple[float, float] = _DEFAULT_RANGE["porosity"],
    blobiness: tuple[float, float] = _DEFAULT_RANGE["blobiness"],
    radius: tuple[float, float] = _DEFAULT_RANGE["radius"],
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """In-memory dataset: ``(labels uint8 (n, *shape), conditions float32 (n, 2), names)``.

    See :func:`iter_micro` for the meaning of the columns.
    """
    spec = MicroSpec(generator=generator, shape=tuple(shape), porosity=porosity, blobiness=blobiness, radius=radius)
    labs, conds = zip(*iter_micro(spec, n, seed=seed))
    return np.concatenate(labs), np.concatenate(conds), condition_names(spec.generator)
