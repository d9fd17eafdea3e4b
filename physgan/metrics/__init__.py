"""Generic two-sample metrics and a registry of them by name.

Every registered metric is a callable ``metric(real, fake, **options) -> dict[str, float]``
(``seed`` and ``device`` among the options where the metric uses them) taking
per-sample feature matrices ``(N, d)``. Physics metrics of the domains live in
their own modules (``spectra``, ``morphology``, ...) and may add themselves
with :func:`register_metric`.

=================  ==============================================  =================
name               function                                        error method
=================  ==============================================  =================
``fpd``            :func:`~physgan.metrics.frechet.fpd`             intrinsic (fit)
``kpd``            :func:`~physgan.metrics.kernel.kpd`              intrinsic (batches)
``prdc``           :func:`~physgan.metrics.prdc.prdc`               half-sampling
``classifier``     :func:`~physgan.metrics.classifier.classifier_test`  intrinsic (test bootstrap)
``w1``             :func:`~physgan.metrics.wasserstein.wasserstein_1d`  bootstrap
``separation``     :func:`~physgan.metrics.separation.separation_power_samples`  bootstrap
=================  ==============================================  =================

``memorisation`` needs a third (training) set and is not a two-sample metric;
errors and noise floors of any metric come from :func:`~physgan.metrics.bootstrap.with_floor`.
"""

from __future__ import annotations

from collections.abc import Callable

from physgan.errors import ConfigError
from physgan.metrics.bootstrap import FloorResult, bootstrap_error, with_floor
from physgan.metrics.classifier import classifier_test, roc_auc
from physgan.metrics.frechet import fpd, frechet_distance
from physgan.metrics.kernel import kpd, mmd2_poly
from physgan.metrics.memorisation import copied_mask, memorisation, nearest_distances
from physgan.metrics.prdc import prdc
from physgan.metrics.separation import auto_edges, separation_power, separation_power_samples
from physgan.metrics.wasserstein import wasserstein_1d

__all__ = [
    "register_metric",
    "get_metric",
    "metrics",
    "ERROR_METHODS",
    "FloorResult",
    "bootstrap_error",
    "with_floor",
    "fpd",
    "frechet_distance",
    "kpd",
    "mmd2_poly",
    "prdc",
    "classifier_test",
    "roc_auc",
    "wasserstein_1d",
    "separation_power",
    "separation_power_samples",
    "auto_edges",
    "memorisation",
    "nearest_distances",
    "copied_mask",
]

_METRICS: dict[str, Callable[..., dict[str, float]]] = {}

#: how :func:`with_floor` should estimate each registered metric's error
ERROR_METHODS: dict[str, str] = {}


def register_metric(name: str, fn: Callable[..., dict[str, float]] | None = None, *, error_method: str = "bootstrap"):
    """Register ``fn`` under ``name`` (usable as a decorator). Returns ``fn``.

    ``error_method`` is how its error is estimated: ``'bootstrap'``, ``'half'``
    or ``'intrinsic'`` (see :mod:`physgan.metrics.bootstrap`).
    """
    if error_method not in ("bootstrap", "half", "intrinsic"):
        raise ConfigError(f"register_metric: unknown error method '{error_method}'")

    def deco(f):
        _METRICS[name] = f
        ERROR_METHODS[name] = error_method
        return f

    return deco(fn) if fn is not None else deco


def get_metric(name: str) -> Callable[..., dict[str, float]]:
    """The metric registered as ``name`` (ConfigError listing the known ones otherwise)."""
    if name not in _METRICS:
        raise ConfigError(f"unknown metric '{name}'; known metrics: {', '.join(sorted(_METRICS))}")
    return _METRICS[name]


def metrics() -> dict[str, Callable[..., dict[str, float]]]:
    """All registered metrics by name."""
    return dict(_METRICS)


register_metric("fpd", fpd, error_method="intrinsic")
register_metric("kpd", kpd, error_method="intrinsic")
register_metric("prdc", prdc, error_method="half")
register_metric("classifier", classifier_test, error_method="intrinsic")
register_metric("w1", wasserstein_1d, error_method="bootstrap")
register_metric("separation", separation_power_samples, error_method="bootstrap")
