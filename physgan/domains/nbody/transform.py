"""Invertible maps between densities (units of the mean, ``x = 1 + delta >= 0``) and model space.

Three options (``kind``):

* ``'gauss'`` (default of the presets): ``y = (log(x + eps) - mu) / sd``, standardised with the training
  fields' mean ``mu`` and spread ``sd`` of ``log(x + eps)``. For a lognormal field ``log(1 + delta)`` is
  exactly Gaussian, and nothing squashes the high-density tail (the generator's output is linear). With
  ``eps='auto'`` the fit chooses the softening from the data (:func:`symmetric_log_eps`): particle-mesh slabs
  have near-empty void cells whose ``log(x + 1e-3)`` is skewed (-0.58), ``eps = 0.01`` makes it nearly
  symmetric (-0.05). Its fit
  also records the training fields' power per Fourier shell and the mean and spread of the critic's
  summaries (:func:`physgan.domains.nbody.spectral.fit_spectral_stats`), which the spectral generator
  and the summary critic read from the run's ``data_stats``, and with conditions the densities' mean power per
  shell as a quadratic in them (``density_power_fit``, from every training field), the target of the generator's
  calibration (:mod:`physgan.domains.nbody.calibration`), and the largest standardised log density ``y_max`` (the
  spectral generator's ceiling).

The other two map into [-1, 1) so a ``tanh`` generator output fits (runs made before ``'gauss'`` use them):

* ``'s'`` (default): ``s(x) = 2x/(x + a) - 1`` (Rodriguez et al. 2018), inverse
  ``x = a (1 + s) / (1 - s)``; ``a`` is fitted as the median of the training
  densities unless given (the research notes: about the median pixel value).
* ``'log'``: ``u = log(x + eps)`` (log(1 + delta) softened at empty cells),
  scaled linearly to [-1, 1] with the training range (plus a 10 % margin above).

Samples gain a channel axis in model space: ``(B, *shape) -> (B, 1, *shape)``.

References
----------
.. [1] A. C. Rodriguez et al., "Fast cosmic web simulations with generative
   adversarial networks", Comput. Astrophys. Cosmol. 5, 4 (2018), arXiv:1801.09070.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from physgan.domains.base import Transform, typed_options
from physgan.domains.nbody.options import NbodyTransformOptions
from physgan.domains.nbody.spectral import fit_amplitude_response, fit_spectral_stats
from physgan.errors import ConfigError, DataError

__all__ = ["DensityTransform", "make_transform", "symmetric_log_eps"]

_GAUSS_MAX = 30.0  # standardised log density; the inverse clamps here (no float overflow)
_S_MAX = 1.0 - 1e-4  # inverse of s clamps here: x <= a (2 - 1e-4) / 1e-4


def symmetric_log_eps(x: np.ndarray, tol: float = 0.05, lo: float = 1e-4, hi: float = 1.0, max_values: int = 500_000) -> float:
    """The smallest softening ``eps`` in ``[lo, hi]`` at which ``log(x + eps)`` of the densities ``x`` is symmetric.

    Symmetric: skewness ``>= -tol``. The skewness grows with ``eps`` (a larger softening lifts the empty cells'
    long negative tail), so the ``eps`` where it reaches ``-tol`` is found by bisection in ``log eps``; ``lo``
    where the data are symmetric already (a lognormal field: ``log x`` is Gaussian, and a softening would only
    bend it), ``hi`` where even that is not enough. The smallest such ``eps`` keeps the most of the low-density
    contrast. At most ``max_values`` cells enter (an evenly strided subset of the flattened sample: deterministic).

    Parameters
    ----------
    x : ndarray
        Densities (units of the mean, >= 0), any shape.
    tol : float
        Skewness accepted as symmetric.
    lo, hi : float
        The range searched.
    max_values : int
        Cells used at most.

    Returns
    -------
    float
    """
    flat = np.asarray(x, dtype=np.float64).ravel()
    flat = flat[:: max(1, flat.size // max_values)]

    def skew(log_eps: float) -> float:
        u = np.log(flat + np.exp(log_eps))
        d = u - u.mean()
        return float(np.mean(d**3) / (np.mean(d**2) ** 1.5 + 1e-300))

    a, b = np.log(lo), np.log(hi)
    if skew(a) >= -tol:
        return float(lo)
    if skew(b) < -tol:
        return float(hi)
    for _ in range(30):
        m = 0.5 * (a + b)
        a, b = (m, b) if skew(m) < -tol else (a, m)
    return float(np.exp(b))


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float32)), True


class DensityTransform(Transform):
    """Density (``1 + delta``) <-> model space; see the module docstring.

    Parameters
    ----------
    kind : {'s', 'log', 'gauss'}
        The map.
    a : float, optional
        Scale of the ``'s'`` map (fitted as the median density if omitted).
    eps : float
        Softening of ``'log'`` at empty cells (units of the mean density).
    """

    name = "nbody"

    def __init__(self, **options: Any):
        super().__init__(**options)
        kind = self.options.setdefault("kind", "s")
        if kind not in ("s", "log", "gauss"):
            raise ConfigError(f"nbody transform kind must be 's', 'log' or 'gauss', got '{kind}'")
        eps = self.options.setdefault("eps", 1e-3)
        if eps == "auto":
            if kind != "gauss":
                raise ConfigError(f"nbody transform eps='auto' needs kind 'gauss' (got kind '{kind}')")
        else:
            try:
                self.options["eps"] = float(eps)
            except (TypeError, ValueError):
                raise ConfigError(f"nbody transform eps must be a number > 0 or 'auto', got {eps!r}") from None
            if not self.options["eps"] > 0:
                raise ConfigError(f"nbody transform eps must be > 0, got {eps!r}")
        if self.typed.a is not None and not float(self.typed.a) > 0:
            raise ConfigError(f"nbody transform 'a' must be > 0, got {self.options['a']}")

    @property
    def typed(self) -> NbodyTransformOptions:
        """``data.transform`` as the domain's typed record (each default written once, there)."""
        return typed_options(NbodyTransformOptions, self.options, "data.transform")

    def fit(self, x: np.ndarray, c: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> DensityTransform:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            raise DataError("<training data>", "cannot fit the nbody transform on an empty sample", dataset="samples")
        if np.nanmin(x) < 0:
            found = float(np.nanmin(x))
            raise DataError("<training data>", f"densities must be >= 0 (mean units), found {found:.4g}", dataset="samples")
        if self.options["kind"] == "s":
            a = self.typed.a
            a = float(np.median(x)) if a is None else float(a)
            if not a > 0:
                a = float(np.mean(x)) or 1.0
            self.stats = {"a": a}
        elif self.options["kind"] == "gauss":
            eps = symmetric_log_eps(x) if self.options["eps"] == "auto" else float(self.options["eps"])
            u = np.log(x + eps)
            mu, sd = float(u.mean()), float(u.std()) or 1.0
            rng = np.random.default_rng(0)
            rows = rng.choice(len(u), size=min(len(u), 4096), replace=False) if len(u) > 4096 else slice(None)
            c_fit = None if c is None or np.asarray(c).size == 0 else np.asarray(c, dtype=np.float64).reshape(len(u), -1)[rows]
            spectral = fit_spectral_stats((u[rows] - mu) / sd, mu, sd, c=c_fit)
            if c_fit is not None and len(u) > 10:
                # the calibration's target (physgan.domains.nbody.calibration): every training field, not the subsample, as
                # its noise is what the calibrated generator inherits
                c_all = np.asarray(c, dtype=np.float64).reshape(len(u), -1)
                spectral["density_power_fit"] = fit_amplitude_response(x, c_all, len(spectral["pk_shell"]), degree=2, statistic="mean")
            # the largest standardised log density of the training fields: the spectral generator's ceiling (option
            # density_cap of physgan.domains.nbody.model)
            y_max = float((np.nanmax(u) - mu) / sd)
            self.stats = {"mu": mu, "sd": sd, "eps": eps, "y_max": y_max, **spectral}
        else:
            eps = float(self.options["eps"])
            lo = float(np.log(eps))
            umax = float(np.log(np.max(x) + eps))
            hi = umax + 0.1 * (umax - lo)
            self.stats = {"lo": lo, "hi": hi}
        return self

    def model_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1, *tuple(sample_shape))

    @property
    def _eps(self) -> float:
        """The softening in use: the fitted one (``'gauss'`` records it; ``'auto'`` chooses it), else the option."""
        return float(self.stats.get("eps", self.options["eps"]))

    def _need_fit(self) -> None:
        if not self.stats:
            raise ConfigError("the nbody transform is not fitted (call fit on training densities first)")

    def forward(self, x, c=None):
        self._need_fit()
        t, was_np = _as_tensor(x)
        t = t.unsqueeze(1)
        if self.options["kind"] == "s":
            a = self.stats["a"]
            y = 2 * t / (t + a) - 1
        elif self.options["kind"] == "gauss":
            y = (torch.log(t.clamp_min(0) + self._eps) - self.stats["mu"]) / self.stats["sd"]
        else:
            lo, hi = self.stats["lo"], self.stats["hi"]
            u = torch.log(t.clamp_min(0) + float(self.options["eps"]))
            y = 2 * (u - lo) / (hi - lo) - 1
        return y.numpy() if was_np else y

    def inverse(self, y, c=None):
        self._need_fit()
        t, was_np = _as_tensor(y)
        if t.ndim >= 2 and t.shape[1] == 1:
            t = t.squeeze(1)
        if self.options["kind"] == "s":
            a = self.stats["a"]
            s = t.clamp(-1.0, _S_MAX)
            x = a * (1 + s) / (1 - s)
        elif self.options["kind"] == "gauss":
            u = self.stats["mu"] + self.stats["sd"] * t.clamp(max=_GAUSS_MAX)
            x = (torch.exp(u) - self._eps).clamp_min(0)
        else:
            lo, hi = self.stats["lo"], self.stats["hi"]
            u = lo + (t + 1) * (hi - lo) / 2
            x = (torch.exp(u) - float(self.options["eps"])).clamp_min(0)
        return x.numpy() if was_np else x


def make_transform(options: dict[str, Any] | None = None) -> DensityTransform:
    """Unfitted :class:`DensityTransform` from ``options`` (``kind``, ``a``, ``eps``)."""
    return DensityTransform(**dict(options or {}))
