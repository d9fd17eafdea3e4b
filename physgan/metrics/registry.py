"""The metric registry: one record per metric, the single source of what ``evaluate`` computes and reports.

A :class:`Metric` names its function, the representation of the samples it compares
(``inputs``), how its error is estimated, and the numbers it reports (name, direction,
ideal value, description, display panel). :func:`physgan.evaluate` is a loop over the
registered metrics in registration order; a new metric is one :func:`register` call.

Representations (``inputs``; prepared by :mod:`physgan.evaluation.inputs`):

==================  ===============================================================
``features``        high-level features + conditions (the domain's or generic ones)
``scaled_features`` the same, each divided by max |x| of the real samples, near-constant
                    ones dropped (PCA when samples are few): FPD and KPD
``prdc_features``   leading principal components of the standardised features
``low_level``       flattened (log-scaled, randomly projected) samples + conditions
``train_distances`` each set's distance to its nearest training sample (needs a training set)
``domain``          the domain's own physics metrics on the samples (needs ``physics_metrics``)
==================  ===============================================================

``None``: a two-sample function available by name (:func:`get_metric`) that ``evaluate``
does not run itself (``w1`` and ``separation``, whose per-feature values ``marginals`` computes
for all features at once).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from physgan.errors import ConfigError

__all__ = ["Reported", "PerKey", "Metric", "register", "registered", "get", "INPUTS", "PANELS"]

ERROR_METHODS = ("bootstrap", "half", "intrinsic")
INPUTS = ("features", "scaled_features", "prdc_features", "low_level", "train_distances", "domain")
#: the report's display panels, in the order of its first screen
PANELS = (
    "classifier two-sample test",
    "distribution distances (FPD, KPD, mean W1 / separation)",
    "precision / recall / density / coverage",
    "per-feature marginals",
    "physics",
    "memorisation",
)
#: what ``evaluate`` hands a metric that asks for it (``Metric.context``)
CONTEXT = ("seed", "device", "cache", "names", "edges")


@dataclass(frozen=True)
class Reported:
    """One number a metric reports.

    Attributes
    ----------
    key : str
        Key of the metric function's output.
    name : str
        Name in ``metrics.json``, the summary and ``--fail-on``.
    description : str
    better : {'lower', 'higher', 'unknown'}
        Direction ('unknown': two-sided, judged by ``|value - floor|``).
    ideal : float, optional
        A perfect model's value where it is not 0 ('lower') or 1 ('higher').
    group : str
        ``metrics.json`` group: ``generic``, ``per_feature``, ``memorisation`` or ``physics``.
    panel : str
        Display panel (one of :data:`PANELS`).
    """

    key: str
    name: str
    description: str = ""
    better: str = "lower"
    ideal: float | None = None
    group: str = "generic"
    panel: str = ""


@dataclass(frozen=True)
class PerKey:
    """Outputs whose names are known only once computed (per feature, per domain): reported as ``prefix + key``.

    Attributes
    ----------
    prefix : str
        Report-name prefix (``physics/``); empty: the key itself.
    group, panel : str
        As in :class:`Reported`.
    keys : tuple of str
        Only output keys starting with one of these (empty: every key not reported by name).
    direction : callable, optional
        ``key -> 'lower' | 'higher' | 'unknown'`` (default 'lower').
    """

    prefix: str
    group: str
    panel: str
    keys: tuple[str, ...] = ()
    direction: Callable[[str], str] | None = None

    def names(self, output: Mapping[str, Any], fixed: set[str]) -> dict[str, str]:
        """``{output key: report name}`` of the outputs this rule reports."""
        return {
            k: self.prefix + k for k in output if k not in fixed and (not self.keys or k.startswith(self.keys))
        }

    def matches(self, name: str) -> bool:
        """Whether a report name can come from this rule."""
        return name.startswith(tuple(self.prefix + k for k in (self.keys or ("",))))


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes
    ----------
    name : str
        Registry name, also the stage name in ``timings_s``.
    function : callable or None
        ``function(real, fake, **options) -> {key: float}`` on the ``inputs`` representation; with
        ``factory``, ``function(**options)`` returns that callable (:class:`~physgan.metrics.prdc.PRDC`,
        :class:`~physgan.metrics.marginals.Marginals`). None for ``inputs='domain'`` (the domain's).
    error_method : {'bootstrap', 'half', 'intrinsic'}
        How :func:`~physgan.metrics.bootstrap.with_floor` estimates its error.
    inputs : str or None
        One of :data:`INPUTS`; None: not run by ``evaluate``.
    reported : tuple of Reported
        The numbers it reports by name, in report order.
    per_key : PerKey, optional
        The numbers reported under names made from their keys.
    defaults : mapping
        Option defaults (the user's ``evaluate(options={options_key: ...})`` win).
    context : tuple of str
        Keywords from the evaluation it takes (:data:`CONTEXT`): ``seed``, ``device``, ``cache``
        (a dict shared by the value and the floor), ``names`` and ``edges`` (feature names, fixed bins).
    factory : bool
        ``function`` builds the metric from its options.
    options_key : str, optional
        Key of its options in ``evaluate(options=...)`` (default: ``name``).
    input_options : bool
        Options the function does not take go to the preparation of its input (PRDC's ``dim``,
        the memorisation search's ``max_queries``).
    """

    name: str
    function: Callable[..., Any] | None
    error_method: str = "bootstrap"
    inputs: str | None = None
    reported: tuple[Reported, ...] = ()
    per_key: PerKey | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    factory: bool = False
    options_key: str | None = None
    input_options: bool = False

    def __post_init__(self) -> None:
        if self.error_method not in ERROR_METHODS:
            raise ConfigError(f"metric '{self.name}': unknown error method '{self.error_method}'")
        if self.inputs is not None and self.inputs not in INPUTS:
            raise ConfigError(f"metric '{self.name}': unknown inputs '{self.inputs}'; known: {', '.join(INPUTS)}")
        bad = [c for c in self.context if c not in CONTEXT]
        if bad:
            raise ConfigError(f"metric '{self.name}': unknown context {bad}; known: {', '.join(CONTEXT)}")

    def split_options(self, user: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(options of the function, options of the input preparation)``: defaults, then the user's."""
        options = {**self.defaults, **(user or {})}
        if not self.input_options:
            return options, {}
        params = inspect.signature(self.function).parameters
        own = {k: v for k, v in options.items() if k in params}
        return own, {k: v for k, v in options.items() if k not in params}

    def bind(self, options: Mapping[str, Any], context: Mapping[str, Any]) -> Callable[..., Any]:
        """The two-sample callable ``(real, fake) -> {key: float}`` with its options and context bound."""
        kwargs = {**{k: context[k] for k in self.context}, **options}
        return self.function(**kwargs) if self.factory else partial(self.function, **kwargs)

    def report_names(self, output: Mapping[str, Any]) -> dict[str, tuple[str, Reported | PerKey]]:
        """``{output key: (report name, its record)}`` for an output of this metric, in report order."""
        out: dict[str, tuple[str, Reported | PerKey]] = {r.key: (r.name, r) for r in self.reported if r.key in output}
        if self.per_key is not None:
            fixed = {r.key for r in self.reported}
            out.update({k: (name, self.per_key) for k, name in self.per_key.names(output, fixed).items()})
        return out


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add (or replace) a metric; returns it."""
    _REGISTRY[metric.name] = metric
    return metric


def registered() -> dict[str, Metric]:
    """Every registered metric by name, in registration order."""
    return dict(_REGISTRY)


def get(name: str) -> Metric:
    """The metric registered as ``name`` (ConfigError listing the known ones otherwise)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown metric '{name}'; known metrics: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
