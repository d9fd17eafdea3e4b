"""One feature scaling for every comparison of an evaluation: fixed by the real reference, degenerate features set aside.

FPD and KPD compare covariances / polynomial kernels of feature vectors, so a
feature's unit sets its weight. jetnet divides each feature by the real
sample's max |x|. Done inside each metric call, that scale changes with the
subset: when the noise floor compares two random halves of a small real set,
a feature that is zero in nearly every shower (the energy or centroid of a
deep, almost empty calorimeter layer) can have max |x| ≈ 1e-9 in one half and
1 in the other, and the floor explodes (FPD 1e12, KPD 1e40 on 100 showers).

:func:`reference_scale` fixes one scale per feature from the pooled real
reference (all real samples the evaluation has), and marks *degenerate*
features: those for which fewer than ``max(min_count, min_varying * N)`` of
the N reference samples differ from the feature's median. Such a
feature carries no covariance information at the sample sizes at hand; it is
left out of FPD/KPD (its marginal is still compared feature by feature).

With few samples against many features (N < 4 d), sample covariances are
mostly noise: their trace adds ~d/N to FPD whatever the model does, and the
1/N extrapolation cannot remove it when N < d. ``max_components`` then keeps
only the leading principal components of the scaled reference (fitted on the
reference, the same basis for every comparison), where the differences a
model makes (energy scale, shower shape) live.

References
----------
.. [1] R. Kansal et al., "Evaluating generative models in high energy physics",
   Phys. Rev. D 107, 076017 (2023), arXiv:2211.10295 (jetnet's max-|x| scaling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from physgan.errors import ConfigError

__all__ = ["FeatureScaling", "reference_scale"]


@dataclass
class FeatureScaling:
    """Per-feature divisors and the features kept (see :func:`reference_scale`)."""

    scale: np.ndarray
    keep: np.ndarray
    names: list[str]
    mean: np.ndarray | None = None
    basis: np.ndarray | None = None
    #: fraction of the scaled reference's variance the projection keeps (1.0 without projection)
    variance_kept: float = 1.0

    @property
    def dropped(self) -> list[str]:
        """Names of the degenerate features left out."""
        return [n for n, k in zip(self.names, self.keep) if not k]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Kept columns of ``x`` (N, d) divided by their scale."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1] != len(self.keep):
            raise ConfigError(f"feature scaling: expected {len(self.keep)} features, got {x.shape[1]}")
        z = x[:, self.keep] / self.scale[self.keep]
        return z if self.basis is None else (z - self.mean) @ self.basis

    @property
    def n_components(self) -> int:
        """Dimension of the scaled (and possibly projected) features."""
        return int(self.basis.shape[1]) if self.basis is not None else int(self.keep.sum())


def reference_scale(
    reference: np.ndarray,
    names: list[str] | None = None,
    *,
    mode: str = "max",
    min_varying: float = 0.01,
    min_count: int = 10,
    max_components: int | None = None,
) -> FeatureScaling:
    """Scale every feature by the pooled real reference; flag near-constant features.

    Parameters
    ----------
    reference : numpy.ndarray, shape (N, d)
        All real samples available (held-out and second real set together).
    names : list of str, optional
        Feature names (for :attr:`FeatureScaling.dropped`).
    mode : {'max', 'std'}
        Divide by max |x| (jetnet) or by the standard deviation.
    min_varying, min_count : float, int
        A feature is kept when at least ``max(min_count, min_varying * N)`` reference
        samples differ from its median (at most N - 1).
    max_components : int, optional
        Project onto at most this many leading principal components of the
        scaled reference (None: no projection).

    Returns
    -------
    FeatureScaling
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2 or len(ref) < 2:
        raise ConfigError(f"reference_scale: need an (N >= 2, d) matrix, got shape {ref.shape}")
    names = list(names) if names is not None else [f"f{i}" for i in range(ref.shape[1])]
    if mode == "max":
        scale = np.max(np.abs(ref), axis=0)
    elif mode == "std":
        scale = ref.std(axis=0)
    else:
        raise ConfigError(f"reference_scale: unknown mode '{mode}'; use 'max' or 'std'")
    med = np.median(ref, axis=0)
    tol = 1e-9 * np.maximum(np.max(np.abs(ref), axis=0), 1e-300)
    varying = (np.abs(ref - med) > tol).sum(axis=0)
    need = min(max(min_count, int(np.ceil(min_varying * len(ref)))), len(ref) - 1)
    keep = (varying >= need) & (scale > 0)
    if not keep.any():
        raise ConfigError(
            f"every feature is (nearly) constant over the {len(ref)} real samples: nothing for FPD/KPD to compare"
        )
    out = FeatureScaling(np.where(scale > 0, scale, 1.0), keep, names)
    if max_components is not None and max_components < int(keep.sum()):
        z = out(ref)
        out.mean = z.mean(axis=0)
        # principal axes from the d x d scatter matrix (one pass over the N rows; the SVD of the N x d matrix
        # costs ~N/d times more for the same leading axes)
        zc = z - out.mean
        var, vecs = np.linalg.eigh(zc.T @ zc)
        var, vecs = np.clip(var[::-1], 0.0, None), vecs[:, ::-1]
        m = max(1, int(max_components))
        out.basis = vecs[:, :m]
        out.variance_kept = float(var[:m].sum() / var.sum()) if var.sum() > 0 else 1.0
    return out
