"""1-D Wasserstein-1 distances between the marginals of two feature samples.

``W1(P, Q) = ∫ |F_P(t) − F_Q(t)| dt`` per feature (scipy's exact estimator on
the empirical distributions), in the feature's own units; ``w1_norm`` divides it
by the real sample's standard deviation so that features can be compared and
thresholded together.

References
----------
.. [1] L. N. Vaserstein, "Markov processes over denumerable products of spaces",
   Probl. Inf. Transm. 5, 47 (1969).
.. [2] R. Kansal et al., "Particle cloud generation with message passing GANs",
   NeurIPS 2021, arXiv:2106.11535 (W1 of marginals as a generative metric).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from physgan.errors import ConfigError
from physgan.metrics._common import as_matrix

__all__ = ["wasserstein_1d"]


def wasserstein_1d(real, fake, *, names: list[str] | None = None, normalise: bool = False, **_ignored) -> dict[str, float]:
    """W1 distance of each feature's marginal, real vs fake.

    Parameters
    ----------
    real, fake : array-like, shape (N, d) / (M, d) (or 1-D for one feature)
    names : list of str, optional
        Feature names (default ``f0, f1, ...``).
    normalise : bool
        Divide each W1 by the real standard deviation of the feature (constant
        features are not divided).
    **_ignored
        Accepts ``seed``/``device`` for a uniform metric signature (this metric
        is deterministic and runs on the CPU).

    Returns
    -------
    dict
        ``{name: W1}`` in the features' units (or in real standard deviations).
    """
    r, f = as_matrix(real, "real", 1), as_matrix(fake, "fake", 1)
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"wasserstein_1d: real has {r.shape[1]} features, fake has {f.shape[1]}")
    names = list(names) if names is not None else [f"f{i}" for i in range(r.shape[1])]
    if len(names) != r.shape[1]:
        raise ConfigError(f"wasserstein_1d: {len(names)} names for {r.shape[1]} features")
    out = {}
    for j, name in enumerate(names):
        w = float(wasserstein_distance(r[:, j], f[:, j]))
        if normalise:
            sd = float(np.std(r[:, j]))
            w = w / sd if sd > 0 else w
        out[name] = w
    return out
