"""Generic two-sample metrics and the metric registry (:mod:`physgan.metrics.registry`).

Every metric ``evaluate`` computes is registered here, once, with its function, the
representation it compares, its error method and what it reports (names, directions,
ideal values, descriptions, display panels); :func:`physgan.evaluate` is a loop over
:func:`registered`. Two-sample functions take per-sample feature matrices ``(N, d)``
(``seed`` and ``device`` among the options where the metric uses them).

=================  ===============================================  ==============  ==============================
name               function                                         error method    reports
=================  ===============================================  ==============  ==============================
``fpd``            :func:`~physgan.metrics.frechet.fpd`              intrinsic       fpd
``kpd``            :func:`~physgan.metrics.kernel.kpd`               intrinsic       kpd
``prdc``           :class:`~physgan.metrics.prdc.PRDC`               half-sampling   precision, recall, density,
                                                                                    coverage
``classifier_*``   :func:`~physgan.metrics.classifier.classifier_test`  intrinsic   auc_high, jsd_high (features);
                                                                                    auc_low, jsd_low (low-level)
``marginals``      :class:`~physgan.metrics.marginals.Marginals`     bootstrap       w1_norm_mean, separation_mean,
                                                                                    w1/<f>, separation/<f>
``memorisation``   :func:`~physgan.metrics.memorisation.memorisation_stats`  half   memorisation/<ratio, ...>
``physics``        the domain's ``physics_metrics``                  bootstrap       physics/<name>
=================  ===============================================  ==============  ==============================

``classifier``, ``w1`` and ``separation`` are two-sample functions available by name
(:func:`get_metric`) that ``evaluate`` does not run itself (``marginals`` computes W1 and
separation power of every feature at once).

Errors and noise floors of any metric come from :func:`~physgan.metrics.bootstrap.with_floor`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from physgan.metrics.bootstrap import FloorResult, bootstrap_error, with_floor
from physgan.metrics.classifier import classifier_test, roc_auc
from physgan.metrics.frechet import fpd, frechet_distance
from physgan.metrics.kernel import kpd, mmd2_poly
from physgan.metrics.marginals import Marginals
from physgan.metrics.memorisation import copied_mask, memorisation, memorisation_stats, nearest_distances
from physgan.metrics.prdc import PRDC, prdc
from physgan.metrics.registry import PANELS, Metric, PerKey, Reported, get, register, registered
from physgan.metrics.separation import auto_edges, separation_power, separation_power_samples
from physgan.metrics.wasserstein import wasserstein_1d

__all__ = [
    "Metric",
    "Reported",
    "PerKey",
    "PANELS",
    "register",
    "registered",
    "register_metric",
    "get_metric",
    "metrics",
    "physics_direction",
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

#: PRDC: principal components of the standardised features, and rows per set (random subset)
PRDC_DIM = 128
PRDC_MAX_SAMPLES = 10000
#: classifier two-sample tests: samples per class (random subset)
CLASSIFIER_MAX_SAMPLES = 50000
#: memorisation: query rows searched per set (random subset)
MEMORISATION_MAX_QUERIES = 10000

#: physics metric names that are distances/errors (lower is better)
_LOWER_SUFFIXES = ("_err", "_error", "_mae", "_dev", "_w1", "_chi2", "separation", "separation_power", "score")
#: physics metric names that are signed (biases, ratios to 1, differences): judged by their distance from the floor's value
_SIGNED_SUFFIXES = ("_diff", "_rel_diff", "_bias", "_ratio", "_shift")


def physics_direction(name: str) -> str:
    """Direction of a domain's physics metric from its name: 'lower' for distances/errors (separation
    powers, errors, deviations), 'unknown' (two-sided: |value - floor| counts, whatever its sign) for
    signed quantities and everything else."""
    parts = name.split("/")
    leaf = parts[-1]
    if leaf.endswith(_SIGNED_SUFFIXES):
        return "unknown"
    if leaf.endswith(_LOWER_SUFFIXES) or any(p.startswith(("sep", "separation")) for p in parts):
        return "lower"
    return "unknown"


def register_metric(name: str, fn: Callable[..., Any] | None = None, *, error_method: str = "bootstrap"):
    """Register a two-sample function ``fn(real, fake, **options)`` under ``name`` (usable as a decorator).

    It is then available by name (:func:`get_metric`); to have ``evaluate`` run it, :func:`register`
    a :class:`Metric` with its ``inputs`` and ``reported`` numbers.
    """

    def deco(f):
        register(Metric(name, f, error_method))
        return f

    return deco(fn) if fn is not None else deco


def _built(factory: Callable[..., Any], real: Any, fake: Any, **options: Any) -> Any:
    return factory(**options)(real, fake)


def get_metric(name: str) -> Callable[..., dict[str, float]]:
    """The two-sample function registered as ``name``: ``metric(real, fake, **options)``."""
    m = get(name)
    if m.function is None:
        raise KeyError(f"metric '{name}' is the domain's own (physics_metrics)")
    return partial(_built, m.function) if m.factory else m.function


def metrics() -> dict[str, Callable[..., dict[str, float]]]:
    """Every registered two-sample function by name."""
    return {name: get_metric(name) for name, m in registered().items() if m.function is not None}


_DISTANCES, _PRDC, _CLASSIFIER = PANELS[1], PANELS[2], PANELS[0]
register(Metric(
    "fpd", fpd, "intrinsic", "scaled_features",
    (Reported("fpd", "fpd", "Fréchet physics distance on high-level features (jetnet, N→∞)", panel=_DISTANCES),),
    defaults={"normalise": None, "n_batches": 10}, context=("seed", "device", "cache"),
))
register(Metric(
    "kpd", kpd, "intrinsic", "scaled_features",
    (Reported("kpd", "kpd", "kernel physics distance (unbiased cubic-kernel MMD²)", panel=_DISTANCES),),
    defaults={"normalise": None}, context=("seed", "device", "cache"),
))
register(Metric(
    "prdc", PRDC, "half", "prdc_features",
    (
        Reported("precision", "precision", "fraction of fakes inside the real k-NN manifold (k=5)", "higher", panel=_PRDC),
        Reported("recall", "recall", "fraction of reals inside the fake k-NN manifold (k=5)", "higher", panel=_PRDC),
        Reported("density", "density", "k-NN density of fakes around reals (≈1 ideal)", "unknown", panel=_PRDC),
        Reported("coverage", "coverage", "fraction of reals with a fake within their k-NN radius", "higher", panel=_PRDC),
    ),
    defaults={"max_samples": PRDC_MAX_SAMPLES}, context=("seed", "device"), factory=True, input_options=True,
))
for _space, _inputs, _what in (("high", "features", "high-level features"), ("low", "low_level", "low-level samples")):
    register(Metric(
        f"classifier_{_space}", classifier_test, "intrinsic", _inputs,
        (
            Reported("auc", f"auc_{_space}", f"classifier AUC on {_what} (0.5 ideal)", ideal=0.5, panel=_CLASSIFIER),
            Reported("jsd", f"jsd_{_space}", f"classifier JSD score on {_what} (0 ideal)", panel=_CLASSIFIER),
        ),
        defaults={"max_samples": CLASSIFIER_MAX_SAMPLES}, context=("seed", "device"), options_key="classifier",
    ))
register(Metric(
    "marginals", Marginals, "bootstrap", "features",
    (
        Reported("w1_norm_mean", "w1_norm_mean", "mean 1-D W1 over features, in real standard deviations", panel=_DISTANCES),
        Reported("separation_mean", "separation_mean", "mean separation power over features", panel=_DISTANCES),
    ),
    PerKey("", "per_feature", PANELS[3], keys=("w1/", "separation/")),
    context=("names", "edges"), factory=True,
))
register(Metric(
    "memorisation", memorisation_stats, "half", "train_distances",
    tuple(
        Reported(key, f"memorisation/{key}", text, better, ideal, group="memorisation", panel=PANELS[5])
        for key, text, better, ideal in (
            ("ratio", "median NN-distance to train: fake / held-out real (≈1 ideal, ≪1 copies)", "higher", 1.0),
            ("copy_fraction", "fakes closer to train than 1 % of held-out reals (≈0.01 ideal)", "lower", None),
            ("exact_copy_fraction", "fakes that are exact training copies", "lower", None),
        )
    ),
    defaults={"quantile": 0.01}, input_options=True,
))
register(Metric("physics", None, "bootstrap", "domain", per_key=PerKey("physics/", "physics", PANELS[4], direction=physics_direction)))
register_metric("classifier", classifier_test, error_method="intrinsic")
register_metric("w1", wasserstein_1d, error_method="bootstrap")
register_metric("separation", separation_power_samples, error_method="bootstrap")
