"""The result of :func:`physgan.evaluate`: every metric with its error, noise floor and verdict.

:class:`Evaluation` holds the :class:`MetricEntry` of each reported number and judges it against
its floor (:func:`judge`); its text summary is here, its figures and HTML report in
:mod:`physgan.report`. ``--fail-on`` rules are parsed and checked against the registry's report
names (:func:`check_threshold_names`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from physgan.errors import ConfigError
from physgan.evaluation.inputs import SampleSet
from physgan.metrics import PANELS, Reported, registered

__all__ = [
    "Evaluation",
    "MetricEntry",
    "judge",
    "detail_group",
    "parse_threshold",
    "check_threshold_names",
    "normalise_thresholds",
    "VERDICT_GROUPS",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = "physgan.evaluation/1"


def _reported_by_name() -> dict[str, Reported]:
    """The registry's numbers reported under fixed names."""
    return {r.name: r for m in registered().values() for r in m.reported}


def in_panel(name: str, panel: str) -> bool:
    """Whether a report name belongs to a display panel: a fixed name of it, or a per-key rule of it."""
    for m in registered().values():
        if any(r.name == name and r.panel == panel for r in m.reported):
            return True
        if m.per_key is not None and m.per_key.panel == panel and m.per_key.matches(name):
            return True
    return False


@dataclass
class MetricEntry:
    """One reported number."""

    name: str
    value: float
    error: float = math.nan
    floor: float = math.nan
    floor_error: float = math.nan
    group: str = "generic"
    better: str = "lower"
    description: str = ""
    verdict: str = ""
    #: signed distance from the floor in σ (positive = worse for one-sided metrics), NaN without a floor
    n_sigma: float = math.nan
    #: 'indistinguishable' | 'within 3x floor' | 'far' | 'n/a'
    closeness: str = "n/a"

    def sigma(self) -> float:
        e = [v for v in (self.error, self.floor_error) if math.isfinite(v)]
        return math.sqrt(sum(v * v for v in e)) if e else 0.0


_RULE = re.compile(r"^\s*([A-Za-z0-9_./:\-]+?)\s*(>=|<=|>|<)\s*([-+0-9.eE]+|nan|inf)\s*$")


def parse_threshold(rule: str) -> tuple[str, str, float]:
    """Parse ``'metric>value'`` (also ``>=``, ``<``, ``<=``) into ``(metric, op, value)``.

    The rule states the *failure* condition: ``auc_low>0.9`` fails when the AUC exceeds 0.9.
    """
    m = _RULE.match(str(rule))
    if not m:
        raise ConfigError(f"--fail-on '{rule}': expected METRIC>VALUE, METRIC>=VALUE, METRIC<VALUE or METRIC<=VALUE")
    return m.group(1), m.group(2), float(m.group(3))


def _violates(value: float, op: str, bound: float) -> bool:
    if not math.isfinite(value):
        return True  # a metric that could not be computed never passes a threshold
    return {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound}[op]


def _fmt(v: float, e: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    s = f"{v:.4g}"
    if e is not None and math.isfinite(e):
        s += f" ± {e:.2g}"
    return s


#: display groups of the first screen: (title, predicate on the metric name), from the registry's panels
VERDICT_GROUPS: list[tuple[str, Any]] = [(panel, partial(in_panel, panel=panel)) for panel in PANELS]


_CLOSENESS_ORDER = {"n/a": -1, "indistinguishable": 0, "within 3x floor": 1, "far": 2}


_LAYER = re.compile(r"^(?:(ebin\d+)/)?(?:.*?)_(\d+)$")


def _badness(m: MetricEntry) -> float:
    """How bad a metric looks for ranking the worst ones (σ away from the floor on the bad side)."""
    if not math.isfinite(m.n_sigma):
        return math.inf if m.closeness == "far" else -math.inf
    return abs(m.n_sigma) if m.better == "unknown" else m.n_sigma


def _short(name: str) -> str:
    for prefix in ("physics/", "memorisation/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def detail_group(name: str, domain: str) -> str:
    """Fold key of a long-table row: ``'layer 12'`` (calo) / ``'#12'`` for names ending in ``_<int>``,
    ``'energy bin k'`` for per-energy-bin rows, else ``'overall'``."""
    leaf = name.split("/", 1)[1] if name.startswith(("physics/", "w1/", "separation/")) else name
    m = _LAYER.match(leaf)
    if leaf.startswith("ebin"):
        return f"energy bin {leaf[4:].split('/', 1)[0]}"
    if m and m.group(2) is not None:
        return f"layer {int(m.group(2))}" if domain == "calo" else f"#{int(m.group(2))}"
    return "overall"


CLOSE_FACTOR = 3.0


#: figures shown on the first screen: the domain's first ones (its headline figures)
N_KEY_FIGURES = 4


#: marginal histograms drawn in the report: all features up to this many, else the ones furthest from the floor
MAX_MARGINAL_FEATURES = 24


INDISTINGUISHABLE_SIGMA = 2.0


def judge(value: float, floor: float, sigma: float, better: str, ideal: float | None = None) -> tuple[float, str]:
    """How far a metric is from its noise floor.

    Parameters
    ----------
    value, floor : float
        The metric (real vs generated) and the same metric between two real sets.
    sigma : float
        Combined error, ``sqrt(error² + floor_error²)``.
    better : {'lower', 'higher', 'unknown'}
        Direction: one-sided metrics count only the bad side; 'unknown' (signed
        quantities such as biases and ratios) counts ``|value − floor|`` whatever its sign.
    ideal : float, optional
        The metric's value for a perfect model (default 0 for 'lower', 1 for 'higher'; AUC: 0.5).

    Returns
    -------
    n_sigma : float
        ``(value − floor) / sigma``, sign flipped for 'higher' so that positive is worse
        (for 'unknown' the plain signed difference in σ); NaN without a floor.
    closeness : str
        ``'indistinguishable'`` within 2σ of the floor (or on its good side);
        ``'within 3x floor'`` when the distance from the ideal is at most 3 times the floor's
        (one-sided distances: value <= 3 x floor), or for signed quantities
        ``|value − floor| <= 3 x 2σ``; ``'far'`` otherwise; ``'n/a'`` without numbers.
    """
    if not (math.isfinite(value) and math.isfinite(floor)):
        return math.nan, "n/a"
    diff = value - floor
    if better == "higher":
        diff = -diff
    n_sig = diff / sigma if sigma > 0 else (math.inf if diff > 0 else -math.inf if diff < 0 else 0.0)
    bad = abs(n_sig) if better == "unknown" else n_sig
    if bad <= INDISTINGUISHABLE_SIGMA:
        return n_sig, "indistinguishable"
    if better == "lower" and floor > (ideal if ideal is not None else 0.0):
        ref = ideal if ideal is not None else 0.0
        close = value - ref <= CLOSE_FACTOR * (floor - ref)
    elif better == "higher" and floor < (ideal if ideal is not None else 1.0):
        ref = ideal if ideal is not None else 1.0  # fractions whose ideal is 1 (precision, coverage, ...)
        close = ref - value <= CLOSE_FACTOR * (ref - floor)
    else:
        close = bad <= CLOSE_FACTOR * INDISTINGUISHABLE_SIGMA
    return n_sig, "within 3x floor" if close else "far"


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    return v


class Evaluation:
    """Result of :func:`evaluate`: metrics with errors, noise floors and verdicts; report writers."""

    def __init__(self, domain: str, metrics: dict[str, MetricEntry], info: dict[str, Any], thresholds: list[tuple[str, str, float]]):
        self.domain = domain
        self.metrics = metrics
        self.info = info
        self.thresholds = list(thresholds)
        self.feature_names: list[str] = list(info.get("features", []))
        self._real: SampleSet | None = None
        self._fake: SampleSet | None = None
        self._feat_real: dict[str, np.ndarray] = {}
        self._feat_fake: dict[str, np.ndarray] = {}
        self._domain_obj: Any = None
        #: the domain's features of the real and generated samples (computed once in evaluate, reused by its plots)
        self._domain_features: tuple[dict, dict] | None = None
        self.training: dict[str, Any] | None = None  # see add_training
        self._apply_verdicts()

    def add_training(self, run_dir: str | os.PathLike) -> Evaluation:
        """Attach a run's training curves and diagnostics summary (shown in the report and metrics.json)."""
        from physgan.report.training import read_training

        self.training = read_training(run_dir)
        return self

    # -- verdicts ----------------------------------------------------------------------------
    def _apply_verdicts(self) -> None:
        ideals = _reported_by_name()
        rules = {}
        for name, op, bound in self.thresholds:
            rules.setdefault(name, []).append((op, bound))
        for m in self.metrics.values():
            m.n_sigma, m.closeness = judge(m.value, m.floor, m.sigma(), m.better, ideals[m.name].ideal if m.name in ideals else None)
            if m.name in rules:
                bad = [f"{m.name}{op}{b:g}" for op, b in rules[m.name] if _violates(m.value, op, b)]
                m.verdict = f"FAIL ({', '.join(bad)})" if bad else "pass (" + ", ".join(f"{m.name}{o}{b:g}" for o, b in rules[m.name]) + ")"
                continue
            if not (math.isfinite(m.value) and math.isfinite(m.floor)):
                m.verdict = "no floor" if math.isfinite(m.value) else "n/a"
                continue
            if m.closeness == "indistinguishable":
                m.verdict = "at floor"
                continue
            ns = m.n_sigma
            if m.better == "unknown":
                word = "differs from floor"
                sig = f"{ns:+.0f}σ" if math.isfinite(ns) else ""
            else:
                word = {"lower": "above floor", "higher": "below floor"}[m.better]
                sig = f"{abs(ns):.0f}σ" if math.isfinite(ns) else ""
            m.verdict = f"{word} ({sig})" if sig else word

    def failures(self) -> list[str]:
        """Human-readable threshold violations (empty when all pass)."""
        out = []
        for name, op, bound in self.thresholds:
            m = self.metrics.get(name)
            if m is not None and _violates(m.value, op, bound):
                out.append(f"{name} = {_fmt(m.value, m.error)} violates --fail-on '{name}{op}{bound:g}'")
        return out

    def unknown_threshold_metrics(self) -> list[str]:
        return [name for name, _, _ in self.thresholds if name not in self.metrics]

    @property
    def passed(self) -> bool:
        return not self.failures()

    # -- outputs -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; schema in the module docstring."""
        return _clean(
            {
                "schema": SCHEMA_VERSION,
                **{k: v for k, v in self.info.items() if k not in ("features",)},
                "domain": self.domain,
                "features": self.feature_names,
                "thresholds": [
                    {"metric": n, "op": o, "value": b, "violated": n in self.metrics and _violates(self.metrics[n].value, o, b)}
                    for n, o, b in self.thresholds
                ],
                "passed": self.passed,
                "training": None if self.training is None else {"run": self.training["run"], "diagnostics": self.training["diagnostics"]},
                "metrics": {
                    m.name: {
                        "value": m.value,
                        "error": m.error,
                        "floor": m.floor,
                        "floor_error": m.floor_error,
                        "group": m.group,
                        "better": m.better,
                        "verdict": m.verdict,
                        "n_sigma": m.n_sigma,
                        "closeness": m.closeness,
                        "description": m.description,
                    }
                    for m in self.metrics.values()
                },
            }
        )

    def group_verdicts(self, n_worst: int = 3) -> list[dict[str, Any]]:
        """Per display group: how far the model is from the noise floor, and its worst metrics.

        Look-elsewhere effect: among m metrics some sit 2-3σ from the floor by chance, so
        for the *group's* verdict a metric counts only when it is further from the floor
        than ``z_m``, the σ that one of m independent metrics exceeds by chance with 5 %
        probability (``z_m = Φ⁻¹(1 − 0.025/m)``, at least 2: 2.2 for one metric, 4.0 for 700).

        Returns
        -------
        list of dict
            ``{group, closeness, n, z, counts: {closeness: int}, worst: [(name, value, floor, n_sigma)]}``
            in :data:`VERDICT_GROUPS` order, groups without metrics left out. ``closeness``
            is the worst of its metrics beyond ``z`` ('indistinguishable' < 'within 3x floor' < 'far');
            ``counts`` are the metrics' own grades (2σ); ``worst`` the worst beyond ``z``.
        """
        from scipy.stats import norm

        out = []
        for title, pred in VERDICT_GROUPS:
            ms = [m for m in self.metrics.values() if pred(m.name) and m.closeness != "n/a"]
            if not ms:
                continue
            z = max(INDISTINGUISHABLE_SIGMA, float(norm.isf(0.025 / len(ms))))
            counts: dict[str, int] = {}
            for m in ms:
                counts[m.closeness] = counts.get(m.closeness, 0) + 1
            beyond = [m for m in ms if m.closeness != "indistinguishable" and not _badness(m) <= z]
            worst_c = max((m.closeness for m in beyond), key=_CLOSENESS_ORDER.__getitem__, default="indistinguishable")
            bad = sorted(beyond, key=lambda m: (_CLOSENESS_ORDER[m.closeness], _badness(m)), reverse=True)[:n_worst]
            out.append(
                {
                    "group": title,
                    "closeness": worst_c,
                    "n": len(ms),
                    "z": z,
                    "counts": counts,
                    "worst": [(m.name, m.value, m.floor, m.n_sigma) for m in bad],
                }
            )
        return out

    def headline(self) -> str:
        """The first screen as text: per group, how far from the floor (worst metrics named);
        PASS/FAIL only when thresholds were given."""
        n = self.info["n"]
        lines = [
            f"physgan evaluation ({self.domain}): {n['real']} real vs {n['fake']} generated; "
            f"noise floor from {self.info['floor_source']}",
        ]
        if self.thresholds:
            fails = self.failures()
            detail = ": " + "; ".join(fails) if fails else ""
            lines.append(f"thresholds: {'FAIL' if fails else 'PASS'} ({len(self.thresholds)} rule(s)){detail}")
        lines.append("distance from the noise floor (real vs real), per group:")
        groups = self.group_verdicts()
        width = max((len(g["group"]) for g in groups), default=0)
        for g in groups:
            worst = ", ".join(_worst_text(*w) for w in g["worst"])
            counts = ", ".join(f"{v} {k}" for k, v in sorted(g["counts"].items(), key=lambda kv: _CLOSENESS_ORDER[kv[0]]))
            tail = f"  worst: {worst}" if worst else ""
            lines.append(f"  {g['group'].ljust(width)}  {g['closeness'].upper():<17s} [{counts}; group counts >{g['z']:.1f}σ]{tail}")
        return "\n".join(lines)

    def summary(self, per_feature: bool = False) -> list[dict[str, str]]:
        """Table rows ``{metric, value, floor, verdict}`` (strings).

        Default: the headline metrics (generic, memorisation, and physics metrics that are not per
        feature / per layer / per energy bin); ``per_feature=True``: every metric.
        """
        rows = []
        for m in self.metrics.values():
            if not per_feature and not self._is_headline(m):
                continue
            rows.append(_row(m))
        return rows

    def _is_headline(self, m: MetricEntry) -> bool:
        if m.group == "per_feature":
            return False
        if m.group == "physics":
            return detail_group(m.name, self.domain) == "overall" and not m.name.startswith("physics/sep/")
        return True

    def format_summary(self, per_feature: bool = False) -> str:
        """The headline (verdict per group) followed by the summary as an aligned text table."""
        rows = self.summary(per_feature)
        head = {"metric": "metric", "value": "value ± error", "floor": "noise floor", "verdict": "verdict"}
        widths = {k: max(len(head[k]), *(len(r[k]) for r in rows)) if rows else len(head[k]) for k in head}
        lines = [self.headline(), ""]
        lines += ["  ".join(head[k].ljust(widths[k]) for k in head), "  ".join("-" * widths[k] for k in head)]
        lines += ["  ".join(r[k].ljust(widths[k]) for k in head) for r in rows]
        hidden = len(self.metrics) - len(rows)
        if hidden > 0:
            lines.append(f"({hidden} per-feature / per-layer rows more: metrics.json, the report, or summary(per_feature=True))")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Evaluation(domain={self.domain!r}, n_real={self.info['n']['real']}, n_fake={self.info['n']['fake']})\n"
            + self.format_summary()
        )

    def _repr_html_(self) -> str:
        from physgan.report.html import summary_table_html

        return summary_table_html(self.summary())

    def plot(self, max_per_figure: int = 12) -> list:
        """Figures: marginal histograms real vs fake with ratio panels (at most 24 features, those furthest from
        the floor), then the domain's plots."""
        from physgan.report.figures import evaluation_figures

        return evaluation_figures(self, max_per_figure)

    def to_html(self, report_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``metrics.json``, PNG figures and a self-contained ``index.html`` into ``report_dir``.

        The directory is built beside the target under a temporary name and
        renamed into place when complete (:func:`physgan.io.atomic.atomic_directory`);
        an existing directory is replaced only with ``overwrite``.
        """
        from physgan.report.html import write_report

        return write_report(self, report_dir, overwrite)


def _row(m: MetricEntry) -> dict[str, str]:
    return {"metric": m.name, "value": _fmt(m.value, m.error), "floor": _fmt(m.floor, m.floor_error), "verdict": m.verdict}


def _fold_order(key: str) -> tuple[int, int, str]:
    if key == "overall":
        return (0, 0, key)
    num = re.search(r"(\d+)$", key)
    return (1 if key.startswith(("layer", "#")) else 2, int(num.group(1)) if num else 0, key)


def _worst_text(name: str, value: float, floor: float, n_sigma: float) -> str:
    sig = f"{n_sigma:+.0f}σ" if math.isfinite(n_sigma) else "no error"
    return f"{_short(name)} {_fmt(value)} (floor {_fmt(floor)}, {sig})"


def check_threshold_names(rules: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Refuse ``--fail-on`` metric names that no evaluation produces, before any work is done."""
    known = list(_reported_by_name())
    rules_per_key = [m.per_key for m in registered().values() if m.per_key is not None]
    for name, _, _ in rules:
        if name not in known and not any(rule.matches(name) for rule in rules_per_key):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            patterns = [rule.prefix + k + "<name>" for rule in rules_per_key for k in (rule.keys or ("",))]
            raise ConfigError(f"--fail-on names unknown metric '{name}'{hint} (known: {', '.join(known)}, or {', '.join(patterns)})")
    return rules


def normalise_thresholds(thresholds) -> list[tuple[str, str, float]]:
    """``--fail-on`` rules in any accepted form as checked ``(metric, op, value)`` tuples."""
    return check_threshold_names(_parse_thresholds(thresholds))


def _parse_thresholds(thresholds) -> list[tuple[str, str, float]]:
    if thresholds is None:
        return []
    if isinstance(thresholds, str):
        thresholds = [thresholds]
    if isinstance(thresholds, dict):
        return [parse_threshold(f"{k}{v}") for k, v in thresholds.items()]
    out = []
    for t in thresholds:
        if isinstance(t, (tuple, list)) and len(t) == 3:
            if t[1] not in (">", ">=", "<", "<="):
                raise ConfigError(f"threshold {t}: operator must be one of > >= < <=")
            out.append((str(t[0]), str(t[1]), float(t[2])))
        else:
            out.append(parse_threshold(t))
    return out
