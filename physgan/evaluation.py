"""``physgan evaluate``: compare generated samples with real ones, every number with its error and noise floor.

Python::

    ev = physgan.evaluate("heldout.h5", "fake.h5", train="train.h5")
    ev.summary()            # rows: metric, value ± error, noise floor, verdict
    ev.plot()               # matplotlib figures (inline in Jupyter)
    ev.to_html("report/")   # metrics.json + PNG figures + index.html (atomic)

CLI::

    physgan evaluate --real R.h5 --fake F.h5 [--train T.h5] [--real2 R2.h5] --report DIR \\
        [--domain NAME] [--fail-on 'auc_low>0.9' ...] [--n-boot K] [--seed S] [--device auto|cpu|cuda] \\
        [--max-samples N] [--overwrite]

What is computed
----------------
1. The domain (``--domain``, else ``attrs['domain']`` of the real then the fake
   file, else ``array``) gives per-sample high-level ``features`` (else generic
   ones: per-sample mean, std, min, max and the first 3 principal components of
   the flattened sample, the basis fitted on the real set) and ``physics_metrics``.
2. On the feature matrix (features + conditions, log10 for conditions the
   domain marks ``log``): FPD, KPD (jetnet definitions; FPD with 10 subsets per
   size instead of 20, see :mod:`physgan.metrics.frechet` for the block-moment
   subsets), PRDC (k = 5, closed balls; in the leading 128 principal components
   of the features standardised by all real samples, on at most 10 000 random
   samples per set, the value, floor and half-sample rounds sharing each set's
   k-NN search: see :class:`physgan.metrics.prdc.PRDC`), classifier AUC / JSD
   ("high"), per-feature W1 and separation power. For FPD/KPD every feature is divided by max |x| of all real
   samples together (one scale for the value and the floor), features (nearly)
   constant over the real samples are left out, and when the smallest compared
   set has fewer than 4 samples per feature, the features are projected onto
   the leading principal components of the real samples (at most N/4 of them):
   see :mod:`physgan.metrics.scaling`.
3. On the low-level samples (flattened; ``log1p(x / s)`` with ``s`` the median
   positive real value when the data are non-negative with a dynamic range
   above 100; a seeded Gaussian random projection to 1024 dimensions above 4096
   dimensions; conditions appended): classifier AUC / JSD ("low") and, when
   ``train`` is given, the memorisation check: the distance of at most 10 000
   random real, generated and second real samples each to their nearest
   training sample, found once (float32 tiles, the winner re-measured exactly,
   in the leading 128 principal components of the standardised training
   representation fitted on 5 000 training rows, at most 50 000 training
   samples, mapped there from the raw samples by one matrix); errors and floor
   by resampling those distances. A domain may supply its own dissimilarity
   (``Domain.nearest``; nbody: phase correlation of fields). The classifiers
   use at most 50 000 random samples per class.
4. Every number gets an error (bootstrap, half-sampling or the metric's own,
   see :mod:`physgan.metrics.bootstrap`) and a noise floor: the same metric
   between two independent real sets (``real`` vs ``real2``, else two disjoint
   random halves of ``real``). Work shared between the value, the floor and
   the resampling rounds is done once: PRDC's k-NN lists, FPD's block moments
   and KPD's real batch kernels, the marginals' sorted columns (bootstrap
   rounds become row multiplicities), the domain features. Every cap above is
   written into ``metrics.json`` and the report, with the errors it implies
   carried by each metric's error bar.

``metrics.json`` schema (``Evaluation.to_dict()``, version ``physgan.evaluation/1``)
-------------------------------------------------------------------------------------
::

    schema        "physgan.evaluation/1"
    domain        str                      domain used
    created       str                      ISO-8601 UTC time
    physgan_version, torch_version  str
    inputs        {real, fake, train, real2: str | null}   file paths or "<array>"
    n             {real, fake, train, real2: int | null}   samples used
    floor_source  "real2" | "real halves"
    seed, n_boot  int;   device  str
    features      [str]                    names of the high-level feature columns
    thresholds    [{metric, op, value, violated}]
    passed        bool                     no threshold violated
    timings_s     {step: seconds}          wall-clock time per stage
    timings_cpu_s {step: seconds}          CPU time of this process per stage (independent of other load)
    metrics       {name: {value, error, floor, floor_error: float | null,
                          group: "generic" | "per_feature" | "memorisation" | "physics",
                          better: "lower" | "higher" | "unknown",
                          verdict: str, n_sigma: float | null,
                          closeness: "indistinguishable" | "within 3x floor" | "far" | "n/a",
                          description: str}}
    fpd_kpd_features_dropped  [str]        near-constant features left out of FPD/KPD
    fpd_kpd_dimension         int          dimension FPD/KPD compared (PCA when samples are few)
    memorisation_search       {n_train, dim, variance_kept} | null
    prdc_space                {n_real, n_fake, dim, variance_kept}   where PRDC was computed
    classifier_max_samples    int | null   samples per class the classifiers used at most

Metric names: ``fpd``, ``kpd``, ``precision``, ``recall``, ``density``,
``coverage``, ``auc_high``, ``jsd_high``, ``auc_low``, ``jsd_low``,
``w1_norm_mean`` and ``separation_mean`` (means over features; W1 in units of
the real standard deviation), ``w1/<feature>``, ``separation/<feature>``,
``memorisation/ratio``, ``memorisation/copy_fraction``,
``memorisation/exact_copy_fraction`` (with ``train``), ``physics/<name>``.
Non-finite numbers are written as ``null``.

Verdicts: ``FAIL (<rule>)`` / ``pass (<rule>)`` when a threshold names the
metric; otherwise ``at floor`` when the metric is within 2 σ of its noise floor
(σ² = error² + floor_error²) or on the good side of it, else
``above floor (Nσ)`` / ``below floor (Nσ)`` (for higher-is-better metrics) /
``differs from floor (±Nσ)`` (signed quantities: biases, ratios to 1, and
metrics whose direction is unknown are judged by |value − floor|, whatever the
sign). ``closeness`` (see :func:`judge`) grades the same distance as
``indistinguishable`` / ``within 3x floor`` / ``far``; the report's first screen
(:meth:`Evaluation.headline`) gives, per group of metrics, the worst grade and
the worst metrics by name. "PASS"/"FAIL" appear only when ``--fail-on`` rules
were given.
"""

from __future__ import annotations

import base64
import datetime
import difflib
import html
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physgan.errors import ConfigError, DataError, OutputExistsError, PhysganError
from physgan.metrics import (
    classifier_test,
    fpd,
    kpd,
    with_floor,
)
from physgan.metrics._common import make_rng, resolve_device
from physgan.metrics.bootstrap import LazyRows
from physgan.metrics.marginals import Marginals
from physgan.metrics.memorisation import memorisation_stats, train_distances
from physgan.metrics.prdc import PRDC
from physgan.metrics.scaling import reference_scale
from physgan.metrics.separation import auto_edges
from physgan.report.axes import set_ratio_axis

__all__ = ["Evaluation", "MetricEntry", "SampleSet", "evaluate", "load_samples", "parse_threshold", "add_arguments", "main"]

SCHEMA_VERSION = "physgan.evaluation/1"
MAX_LOW_DIM = 4096
PROJECTED_DIM = 1024
#: PRDC: principal components of the standardised features, and rows per set (random subset)
PRDC_DIM = 128
PRDC_MAX_SAMPLES = 10000
#: memorisation: query rows searched per set (random subset)
MEMORISATION_MAX_QUERIES = 10000
#: classifier two-sample tests: samples per class (random subset)
CLASSIFIER_MAX_SAMPLES = 50000
N_PCA = 3

_DESCRIPTIONS = {
    "fpd": "Fréchet physics distance on high-level features (jetnet, N→∞)",
    "kpd": "kernel physics distance (unbiased cubic-kernel MMD²)",
    "precision": "fraction of fakes inside the real k-NN manifold (k=5)",
    "recall": "fraction of reals inside the fake k-NN manifold (k=5)",
    "density": "k-NN density of fakes around reals (≈1 ideal)",
    "coverage": "fraction of reals with a fake within their k-NN radius",
    "auc_high": "classifier AUC on high-level features (0.5 ideal)",
    "jsd_high": "classifier JSD score on high-level features (0 ideal)",
    "auc_low": "classifier AUC on low-level samples (0.5 ideal)",
    "jsd_low": "classifier JSD score on low-level samples (0 ideal)",
    "w1_norm_mean": "mean 1-D W1 over features, in real standard deviations",
    "separation_mean": "mean separation power over features",
    "memorisation/ratio": "median NN-distance to train: fake / held-out real (≈1 ideal, ≪1 copies)",
    "memorisation/copy_fraction": "fakes closer to train than 1 % of held-out reals (≈0.01 ideal)",
    "memorisation/exact_copy_fraction": "fakes that are exact training copies",
}
_HIGHER_BETTER = {"precision", "recall", "coverage"}
#: metrics whose ideal is the real data's value itself (e.g. density ~ 1, the memorisation ratio ~ 1): judged two-sided
_TWO_SIDED = {"density", "memorisation/ratio"}
#: a perfect model's value where it is not 0 (lower-is-better) or 1 (higher-is-better)
_IDEAL = {"auc_high": 0.5, "auc_low": 0.5, "memorisation/ratio": 1.0}
#: physics metric names that are distances/errors (lower is better)
_LOWER_SUFFIXES = ("_err", "_error", "_mae", "_dev", "_w1", "_chi2", "separation", "separation_power", "score")
#: physics metric names that are signed (biases, ratios to 1, differences): judged by their distance from the floor's value
_SIGNED_SUFFIXES = ("_diff", "_rel_diff", "_bias", "_ratio", "_shift")


def _physics_direction(name: str) -> str:
    """Direction of a physics metric: 'lower' for distances/errors (separation powers, errors, deviations),
    'unknown' (two-sided: |value - floor| counts, whatever its sign) for signed quantities and everything else.
    """
    parts = name.split("/")
    leaf = parts[-1]
    if leaf.endswith(_SIGNED_SUFFIXES):
        return "unknown"
    if leaf.endswith(_LOWER_SUFFIXES) or any(p.startswith(("sep", "separation")) for p in parts):
        return "lower"
    return "unknown"


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class SampleSet:
    """Samples in physical units with their conditions and file attributes."""

    x: np.ndarray
    c: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    condition_names: list[str] = field(default_factory=list)
    label: str = "<array>"

    def __len__(self) -> int:
        return len(self.x)


def load_samples(obj: Any, label: str = "samples", max_samples: int | None = None, seed: int = 0) -> SampleSet:
    """Read a path, a :class:`~physgan.io.hdf5.SampleSource`, an ``(x, c[, attrs])`` tuple or an array.

    ``max_samples`` keeps a random subset (rows spread over the whole file, read
    block by block, so sorted files are not truncated to one condition range).
    """
    from physgan.io.hdf5 import SampleSource, open_source

    if isinstance(obj, SampleSet):
        s = obj
    elif isinstance(obj, (str, os.PathLike, SampleSource)):
        src = obj if isinstance(obj, SampleSource) else open_source(obj)
        n = len(src)
        keep = None
        if max_samples is not None and n > max_samples:
            keep = np.zeros(n, dtype=bool)
            keep[make_rng(seed).choice(n, size=max_samples, replace=False)] = True
        xs, cs, filled = None, None, 0
        for start, x, c in src.blocks():  # into one preallocated array: no copy of the whole set to join blocks
            if keep is not None:
                m = keep[start : start + len(x)]
                x, c = x[m], c[m]
            if xs is None:
                total = n if keep is None else int(keep.sum())
                xs, cs = np.empty((total, *x.shape[1:]), x.dtype), np.empty((total, *c.shape[1:]), c.dtype)
            xs[filled : filled + len(x)], cs[filled : filled + len(c)] = x, c
            filled += len(x)
        if xs is None:
            raise DataError(src.path, "holds no samples")
        return SampleSet(xs, cs, dict(src.header.attrs), list(src.condition_names), src.path)
    elif isinstance(obj, (tuple, list)):
        if len(obj) not in (2, 3):
            raise ConfigError(f"{label}: expected (x, c) or (x, c, attrs), got a sequence of {len(obj)}")
        x = _numpy(obj[0])
        c = _numpy(obj[1]) if obj[1] is not None else np.zeros((len(x), 0), np.float32)
        attrs = dict(obj[2]) if len(obj) == 3 and obj[2] is not None else {}
        c = c.reshape(len(c), -1) if c.size else np.zeros((len(x), 0), np.float32)
        names = list(attrs.get("condition_names", [f"c{i}" for i in range(c.shape[1])]))
        s = SampleSet(x, c, attrs, names, "<array>")
    else:
        x = _numpy(obj)
        s = SampleSet(x, np.zeros((len(x), 0), np.float32), {}, [], "<array>")
    if len(s.c) != len(s.x):
        raise ConfigError(f"{label}: {len(s.x)} samples but {len(s.c)} condition rows")
    if not np.isfinite(s.x).all():
        raise ConfigError(f"{label}: samples hold NaN/Inf (first at sample {int(np.argwhere(~np.isfinite(s.x))[0][0])})")
    if max_samples is not None and len(s) > max_samples:
        idx = np.sort(make_rng(seed).choice(len(s), size=max_samples, replace=False))
        s = SampleSet(s.x[idx], s.c[idx], s.attrs, s.condition_names, s.label)
    return s


def _numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        raise ConfigError("samples must be an array with a sample axis")
    return a


def _check_compatible(real: SampleSet, other: SampleSet, what: str) -> None:
    if real.x.shape[1:] != other.x.shape[1:]:
        raise DataError(other.label, f"{what} samples have shape {other.x.shape[1:]}, the real ones {real.x.shape[1:]}")
    if real.c.shape[1] != other.c.shape[1]:
        raise DataError(other.label, f"{what} has {other.c.shape[1]} conditions {other.condition_names}, real has {real.condition_names}")


# ---------------------------------------------------------------------------------------------
# representations
# ---------------------------------------------------------------------------------------------
class _GenericFeatures:
    """Per-sample mean, std, min, max and the first principal components (basis from the real set)."""

    def __init__(self, real_x: np.ndarray, n_pca: int = N_PCA, seed: int = 0):
        flat = real_x.reshape(len(real_x), -1).astype(np.float64)
        sub = flat[make_rng(seed).permutation(len(flat))[:2000]]
        self.mu = sub.mean(0)
        k = min(n_pca, flat.shape[1] - 1, len(sub) - 1) if flat.shape[1] > 1 else 0
        if k > 0:
            _, _, vt = np.linalg.svd(sub - self.mu, full_matrices=False)
            self.basis = vt[:k].T
        else:
            self.basis = np.zeros((flat.shape[1], 0))

    def __call__(self, x: np.ndarray, c: np.ndarray, attrs: dict) -> dict[str, np.ndarray]:
        flat = x.reshape(len(x), -1).astype(np.float64)
        out = {"mean": flat.mean(1), "std": flat.std(1), "min": flat.min(1), "max": flat.max(1)}
        proj = (flat - self.mu) @ self.basis
        for i in range(proj.shape[1]):
            out[f"pc{i + 1}"] = proj[:, i]
        return out


def _condition_columns(s: SampleSet, scales: dict[str, str]) -> dict[str, np.ndarray]:
    cols = {}
    for j, name in enumerate(s.condition_names[: s.c.shape[1]]):
        v = s.c[:, j].astype(np.float64)
        if scales.get(name) == "log" and (v > 0).all():
            cols[f"log10_{name}"] = np.log10(v)
        else:
            cols[name] = v
    return cols


class _LowLevel:
    """Flatten, optionally log-scale and randomly project samples; append scaled conditions."""

    def __init__(self, real: SampleSet, scales: dict[str, str], seed: int, device: torch.device):
        flat = real.x.reshape(len(real), -1)
        pos = flat[flat > 0]
        self.log_scale = None
        if flat.size and (flat >= 0).all() and pos.size:
            med = float(np.median(pos[: 10**6]))
            if med > 0 and float(pos.max()) / med > 100:
                self.log_scale = med
        self.scales = scales
        self.proj = None
        self.device = device
        if flat.shape[1] > MAX_LOW_DIM:
            g = torch.Generator().manual_seed(int(seed))
            self.proj = torch.randn(flat.shape[1], PROJECTED_DIM, generator=g) / math.sqrt(PROJECTED_DIM)

    def _flat(self, x: np.ndarray) -> torch.Tensor:
        """Flattened, log-scaled samples (float32, on the device)."""
        flat = torch.as_tensor(x.reshape(len(x), -1), device=self.device).float()
        if self.log_scale is not None:
            flat = torch.log1p(flat.clamp_min(0) / self.log_scale)
        return flat

    def _conds(self, s: SampleSet, rows=slice(None)) -> np.ndarray:
        conds = _condition_columns(SampleSet(s.x[:0], s.c[rows], s.attrs, s.condition_names), self.scales)
        return np.stack(list(conds.values()), 1) if conds else np.zeros((len(s.c[rows]), 0))

    def __call__(self, s: SampleSet, rows: np.ndarray | None = None) -> np.ndarray:
        """The representation ``[projected flat samples, conditions]`` (float32) of ``s`` (or of its ``rows``)."""
        rows = np.arange(len(s)) if rows is None else rows
        p = self.proj.to(self.device) if self.proj is not None else None
        out = []
        for i in range(0, len(rows), 4096):
            flat = self._flat(s.x[rows[i : i + 4096]])
            out.append((flat @ p if p is not None else flat).cpu().numpy())
        width = self.proj.shape[1] if self.proj is not None else int(np.prod(s.x.shape[1:]))
        flat = np.concatenate(out) if out else np.zeros((0, width), np.float32)
        return np.concatenate([flat, self._conds(s, rows).astype(np.float32)], axis=1)

    def embed(self, s: SampleSet, rows: np.ndarray, space) -> np.ndarray:
        """Rows of ``s`` in a memorisation search space fitted on this representation (see
        :func:`~physgan.metrics.memorisation.train_distances`): the projection and the space's
        affine map are one matrix, so the projected representation is never formed."""
        if space is None:
            return self(s, rows)
        weight = torch.as_tensor(space.weight, dtype=torch.float64)
        width = self.proj.shape[1] if self.proj is not None else int(np.prod(s.x.shape[1:]))
        w_flat = (self.proj.double() @ weight[:width] if self.proj is not None else weight[:width]).float().to(self.device)
        cond_part = self._conds(s, rows) @ space.weight[width:] + space.bias
        out = []
        for i in range(0, len(rows), 4096):
            out.append((self._flat(s.x[rows[i : i + 4096]]) @ w_flat).double().cpu().numpy())
        return (np.concatenate(out) if out else np.zeros((0, weight.shape[1]))) + cond_part


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
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


#: display groups of the first screen: (title, predicate on the metric name)
VERDICT_GROUPS: list[tuple[str, Any]] = [
    ("classifier two-sample test", lambda n: n in ("auc_high", "jsd_high", "auc_low", "jsd_low")),
    ("distribution distances (FPD, KPD, mean W1 / separation)", lambda n: n in ("fpd", "kpd", "w1_norm_mean", "separation_mean")),
    ("precision / recall / density / coverage", lambda n: n in ("precision", "recall", "density", "coverage")),
    ("per-feature marginals", lambda n: n.startswith(("w1/", "separation/"))),
    ("physics", lambda n: n.startswith("physics/")),
    ("memorisation", lambda n: n.startswith("memorisation/")),
]
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
        rules = {}
        for name, op, bound in self.thresholds:
            rules.setdefault(name, []).append((op, bound))
        for m in self.metrics.values():
            m.n_sigma, m.closeness = judge(m.value, m.floor, m.sigma(), m.better, _IDEAL.get(m.name))
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
        return _summary_table_html(self.summary())

    def plot(self, max_per_figure: int = 12) -> list:
        """Figures: marginal histograms real vs fake with ratio panels (at most 24 features, those furthest from
        the floor), then the domain's plots."""
        figs = _marginal_figures(self._worst_features(), self._feat_fake, max_per_figure)
        if self._domain_obj is not None and self._domain_obj.plots is not None and self._real is not None:
            import matplotlib.image as mpimg
            import matplotlib.pyplot as plt

            with tempfile.TemporaryDirectory() as tmp:
                for title, path in self._domain_plots(Path(tmp)):
                    img = mpimg.imread(str(path))
                    fig, ax = plt.subplots(figsize=(img.shape[1] / 100, img.shape[0] / 100), dpi=100)
                    ax.imshow(img)
                    ax.set_axis_off()
                    ax.set_title(title)
                    plt.close(fig)
                    figs.append(fig)
        return figs

    def _worst_features(self, most: int = MAX_MARGINAL_FEATURES) -> dict[str, np.ndarray]:
        """The real features to draw: all when few, else the ``most`` furthest from the floor (by W1)."""
        if len(self._feat_real) <= most:
            return self._feat_real
        score = {n: _badness(self.metrics[f"w1/{n}"]) if f"w1/{n}" in self.metrics else -math.inf for n in self._feat_real}
        keep = sorted(self._feat_real, key=lambda n: score[n], reverse=True)[:most]
        return {n: self._feat_real[n] for n in self._feat_real if n in keep}

    def _domain_plots(self, outdir: Path) -> list[tuple[str, Path]]:
        outdir.mkdir(parents=True, exist_ok=True)
        real, fake = (self._real.x, self._real.c), (self._fake.x, self._fake.c)
        if getattr(self._domain_obj, "physics_takes_features", False) and self._domain_features is not None:
            real, fake = (*real, self._domain_features[0]), (*fake, self._domain_features[1])  # computed once, in evaluate
        out = self._domain_obj.plots(real, fake, self._real.attrs, outdir) or []
        return [(str(t), Path(p)) for t, p in out]

    def to_html(self, report_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``metrics.json``, PNG figures and a self-contained ``index.html`` into ``report_dir``.

        The directory is built beside the target under a temporary name and
        renamed into place when complete; an existing directory is replaced
        only with ``overwrite``.
        """
        target = Path(report_dir)
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target}: exists already; pass --overwrite (overwrite=True) to replace it")
        if target.exists() and not target.is_dir():
            raise OutputExistsError(f"{target}: is a file, expected a report directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            (tmp / "metrics.json").write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
            generic = []
            for i, fig in enumerate(_marginal_figures(self._worst_features(), self._feat_fake)):
                p = tmp / f"marginals_{i + 1}.png"
                fig.savefig(p, dpi=90)
                generic.append((f"Marginal distributions ({i + 1})", p))
            domain_figs = []
            if self._domain_obj is not None and self._domain_obj.plots is not None and self._real is not None:
                ddir = tmp / "domain"
                for title, p in self._domain_plots(ddir):
                    if p.parent.resolve() != ddir.resolve():
                        dest = ddir / p.name
                        shutil.copyfile(p, dest)
                        p = dest
                    domain_figs.append((title, p))
            if self.training is not None:
                from physgan.report.training import training_figure

                p = tmp / "training.png"
                training_figure(self.training).savefig(p, dpi=90)
                generic.insert(0, ("Training curves", p))
            (tmp / "index.html").write_text(self._html(generic, domain_figs), encoding="utf-8")
            for p in tmp.rglob("*"):
                if p.is_file():
                    with open(p, "rb") as fh:
                        os.fsync(fh.fileno())
            old = None
            if target.exists():
                old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            from physgan.io.atomic import fsync_directory

            fsync_directory(target.parent)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PhysganError(f"{target}: could not write the report: {err}") from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _html(self, generic: list[tuple[str, Path]], domain_figs: list[tuple[str, Path]]) -> str:
        esc = html.escape
        info = self.info
        n = info["n"]
        meta = [
            ("domain", self.domain),
            ("real", f"{info['inputs']['real']} ({n['real']} samples)"),
            ("generated", f"{info['inputs']['fake']} ({n['fake']} samples)"),
            ("training set", f"{info['inputs']['train']} ({n['train']} samples)" if n["train"] else "not given"),
            ("noise floor from", info["floor_source"]),
            ("bootstrap rounds / seed / device", f"{info['n_boot']} / {info['seed']} / {info['device']}"),
            ("FPD/KPD features", f"{info.get('fpd_kpd_dimension', '?')} dimensions; left out as near-constant: "
             + (", ".join(info.get("fpd_kpd_features_dropped") or []) or "none")),
            ("classifiers", (f"at most {info['classifier_max_samples']} random samples per class"
                             if info.get("classifier_max_samples") else "all samples")
             + " (60 % train, 20 % calibration, 20 % test)"),
            ("PRDC space", _prdc_space_text(info.get("prdc_space"))),
            ("memorisation search", _memorisation_text(info.get("memorisation_search"))),
            ("time per stage [s]", ", ".join(f"{k} {v:.1f}" for k, v in info.get("timings_s", {}).items())),
        ]

        def img(title: str, path: Path) -> str:
            data = base64.b64encode(path.read_bytes()).decode()
            src = f"data:image/png;base64,{data}"
            return f'<figure><img alt="{esc(title)}" src="{src}"><figcaption>{esc(title)}</figcaption></figure>'

        key_figs = domain_figs[:N_KEY_FIGURES] if domain_figs else [g for g in generic if g[0] != "Training curves"][:N_KEY_FIGURES]
        rest_domain = [f for f in domain_figs if f not in key_figs]
        rest_generic = [g for g in generic if g not in key_figs]
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>physgan evaluation: {esc(self.domain)}</title>",
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
            ".fail,.far{background:#fbb}.pass,.indistinguishable{background:#cfc}.above,.within{background:#fe9}"
            "img{max-width:100%}.keyfigs{display:grid;grid-template-columns:1fr 1fr;gap:8px}"
            "details{margin:4px 0}summary{cursor:pointer}</style></head><body>",
            f"<h1>physgan evaluation ({esc(self.domain)})</h1>",
            f"<p>{n['real']} real vs {n['fake']} generated samples; noise floor = the same metric between two real sets "
            f"({esc(info['floor_source'])}).</p>",
        ]
        if self.thresholds:
            fails = self.failures()
            word, cls_ = ("FAIL", "fail") if fails else ("PASS", "pass")
            parts.append(f"<p id='thresholds' class='{cls_}'><b>{word}</b> ({len(self.thresholds)} --fail-on rule(s))"
                         + (": " + esc("; ".join(fails)) if fails else "") + "</p>")
        parts += ["<h2 id='verdict'>Verdict: distance from the noise floor</h2>", self._verdict_table_html()]
        if key_figs:
            parts.append("<h2>Key figures</h2><div class='keyfigs'>" + "".join(img(t, p) for t, p in key_figs) + "</div>")
        parts += [
            "<h2>Headline metrics</h2>",
            _summary_table_html(self.summary()),
            "<h2>All metrics, folded per group</h2>",
            self._details_html(),
            "<p>Full numbers: <a href='metrics.json'>metrics.json</a>.</p>",
        ]
        if self.training is not None:
            parts.append(f"<h2>Training ({esc(self.training['run'])})</h2>")
            if self.training.get("summary"):
                parts.append(f"<pre>{esc(self.training['summary'])}</pre>")
            parts += [img(t, p) for t, p in rest_generic if t == "Training curves"]
            rest_generic = [(t, p) for t, p in rest_generic if t != "Training curves"]
        if rest_domain:
            parts.append(f"<h2>More figures ({esc(self.domain)})</h2>")
            parts += [f"<details><summary>{esc(t)}</summary>{img(t, p)}</details>" for t, p in rest_domain]
        if rest_generic:
            parts.append(
                f"<h2>Marginal distributions of the high-level features (at most {MAX_MARGINAL_FEATURES}: "
                "those furthest from the floor in W1)</h2>"
            )
            parts += [f"<details><summary>{esc(t)}</summary>{img(t, p)}</details>" for t, p in rest_generic]
        parts += [
            "<h2>Inputs and settings</h2>",
            "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in meta) + "</table>",
            "</body></html>",
        ]
        return "\n".join(parts)

    def _verdict_table_html(self) -> str:
        esc = html.escape
        rows = []
        for g in self.group_verdicts():
            c = g["closeness"]
            counts = ", ".join(f"{v} {k}" for k, v in sorted(g["counts"].items(), key=lambda kv: _CLOSENESS_ORDER[kv[0]]))
            worst = "<br>".join(esc(_worst_text(*w)) for w in g["worst"]) or "&mdash;"
            rows.append(f"<tr class='{c.split()[0]}'><td>{esc(g['group'])}</td><td><b>{esc(c)}</b></td>"
                        f"<td>{esc(counts)} (group verdict counts metrics beyond {g['z']:.1f}σ)</td><td>{worst}</td></tr>")
        head = "<tr><th>group</th><th>verdict</th><th>metrics</th><th>worst (value, floor, σ from floor)</th></tr>"
        return f"<table class='verdict'>{head}{''.join(rows)}</table>"

    def _details_html(self) -> str:
        """Every metric, in <details> blocks per display group and, inside, per layer / energy bin."""
        esc = html.escape
        out = []
        for title, pred in VERDICT_GROUPS:
            ms = [m for m in self.metrics.values() if pred(m.name)]
            if not ms:
                continue
            folds: dict[str, list[MetricEntry]] = {}
            for m in ms:
                folds.setdefault(detail_group(m.name, self.domain), []).append(m)
            inner = []
            for key in sorted(folds, key=_fold_order):
                sub = folds[key]
                worst = max(sub, key=lambda m: _CLOSENESS_ORDER[m.closeness]).closeness
                inner.append(f"<details><summary>{esc(key)}: {len(sub)} metrics, worst {esc(worst)}</summary>"
                             f"{_summary_table_html([_row(m) for m in sub])}</details>")
            body = "".join(inner) if len(folds) > 1 else _summary_table_html([_row(m) for m in ms])
            out.append(f"<details class='group'><summary><b>{esc(title)}</b> ({len(ms)} metrics)</summary>{body}</details>")
        return "".join(out)


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


def _summary_table_html(rows: list[dict[str, str]]) -> str:
    def cls(verdict: str) -> str:
        if verdict.startswith("FAIL"):
            return " class='fail'"
        if verdict.startswith(("pass", "at floor")):
            return " class='pass'"
        if verdict.startswith(("above", "below", "differs")):
            return " class='above'"
        return ""

    head = "<tr><th>metric</th><th>value ± error</th><th>noise floor</th><th>verdict</th></tr>"
    body = "".join(
        f"<tr{cls(r['verdict'])}><td>{html.escape(r['metric'])}</td><td>{html.escape(r['value'])}</td>"
        f"<td>{html.escape(r['floor'])}</td><td>{html.escape(r['verdict'])}</td></tr>"
        for r in rows
    )
    return f"<table class='summary'>{head}{body}</table>"


def _marginal_figures(real: dict[str, np.ndarray], fake: dict[str, np.ndarray], max_per_figure: int = 12) -> list:
    """Histogram per feature (real filled, fake line) with a fake/real ratio panel below."""
    import matplotlib.pyplot as plt

    names = [n for n in real if n in fake]
    figs = []
    for start in range(0, len(names), max_per_figure):
        chunk = names[start : start + max_per_figure]
        ncol = min(4, len(chunk))
        nrow = math.ceil(len(chunk) / ncol)
        fig = plt.figure(figsize=(3.4 * ncol, 3.6 * nrow))
        grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3, 1] * nrow, hspace=0.05 + 0.35 * (nrow > 1))
        for k, name in enumerate(chunk):
            r, f = np.asarray(real[name], np.float64), np.asarray(fake[name], np.float64)
            edges = auto_edges(r, max_bins=50)[1:-1]
            if len(edges) < 2:
                edges = np.array([r.min() - 0.5, r.max() + 0.5])
            hr, _ = np.histogram(r, edges)
            hf, _ = np.histogram(f, edges)
            wr, wf = hr / max(len(r), 1), hf / max(len(f), 1)
            row, col = divmod(k, ncol)
            ax = fig.add_subplot(grid[2 * row, col])
            axr = fig.add_subplot(grid[2 * row + 1, col], sharex=ax)
            ax.stairs(wr, edges, fill=True, alpha=0.4, label="real")
            ax.stairs(wf, edges, lw=1.5, label="generated")
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelbottom=False, labelsize=7)
            if k == 0:
                ax.legend(fontsize=7)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(hr > 0, wf / wr, np.nan)
                err = np.where((hr > 0) & (hf > 0), ratio * np.sqrt(1 / np.maximum(hf, 1) + 1 / np.maximum(hr, 1)), np.nan)
            centres = (edges[1:] + edges[:-1]) / 2
            axr.errorbar(centres, ratio, yerr=err, fmt=".", ms=2, lw=0.6)
            axr.axhline(1.0, color="k", lw=0.6)
            set_ratio_axis(axr, np.where(hr >= 0.01 * len(r), ratio, np.nan), err)
            axr.set_ylabel("gen/real", fontsize=7)
            axr.tick_params(labelsize=7)
        fig.subplots_adjust(left=0.06, right=0.98, top=0.95, bottom=0.06, wspace=0.3)
        plt.close(fig)
        figs.append(fig)
    return figs


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
def _resolve_domain(name: str | None, real: SampleSet, fake: SampleSet):
    from physgan.domains.base import get_domain

    for cand in (name, real.attrs.get("domain"), fake.attrs.get("domain")):
        if cand:
            return str(cand), get_domain(str(cand))
    try:
        return "array", get_domain("array")
    except ConfigError:  # the generic domain is not registered (yet): generic features only
        return "array", None


def _add(results: dict[str, MetricEntry], res, names: dict[str, str], group: str, better: dict[str, str] | None = None) -> None:
    """Store FloorResults ``res`` (dict by key) under report names ``names[key]``."""
    for key, report_name in names.items():
        if key not in res:
            continue
        r = res[key]
        default = "higher" if report_name in _HIGHER_BETTER else "unknown" if report_name in _TWO_SIDED else "lower"
        b = (better or {}).get(report_name, default)
        results[report_name] = MetricEntry(
            report_name, r.value, r.error, r.floor, r.floor_error, group, b, _DESCRIPTIONS.get(report_name, "")
        )


def evaluate(
    real: Any,
    fake: Any,
    domain: str | None = None,
    train: Any = None,
    real2: Any = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    n_boot: int = 10,
    thresholds: list[str] | dict[str, str] | list[tuple[str, str, float]] | None = None,
    max_samples: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    run: str | os.PathLike | None = None,
    progress: bool | Any = False,
) -> Evaluation:
    """Evaluate generated samples against real ones (every number with error and noise floor).

    Parameters
    ----------
    real, fake : path, SampleSource, (x, c) or (x, c, attrs) tuple, or array
        Held-out real samples and generated samples, in physical units.
    domain : str, optional
        Domain name; else ``attrs['domain']`` of the real (then fake) file, else ``'array'``.
    train : optional
        The training samples, for the memorisation check.
    real2 : optional
        A second independent real sample for the noise floor (else halves of ``real``).
    seed : int
        Seeds subsets, splits, bootstrap and the classifiers.
    device : {'auto', 'cpu', 'cuda'} or torch.device
    n_boot : int
        Bootstrap / half-sampling rounds.
    thresholds : list of str, dict, or list of tuples, optional
        Failure rules ``'metric>value'`` (or ``{metric: '>value'}``, or ``(metric, op, value)``).
    max_samples : int, optional
        Random subset cap per input set.
    options : dict, optional
        Per-metric keyword overrides: ``{'fpd': {...}, 'kpd': {...}, 'prdc': {...},
        'classifier': {...}, 'memorisation': {...}, 'features': {'n_pca': 3}}``. The classifier
        uses at most 50 000 samples per class (random; its test split then holds 10 000 per class,
        AUC error ~0.003) unless ``{'classifier': {'max_samples': ...}}``.
    run : path, optional
        The run directory that generated ``fake``: its training curves and diagnostics
        (balance, gradient norms, diversity/coverage vs the noise floor, warnings) join the report.
    progress : bool or callable
        True prints one line per stage (start, then its time) to stderr, from the end of
        loading on (a bad input file gets only its one error line); a callable receives
        those lines instead.

    Returns
    -------
    Evaluation
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # process CPU seconds per stage (all threads): the work, whatever else loads the machine
    say = _progress_printer(progress)
    rules = _normalise_thresholds(thresholds)
    options = {k: dict(v) for k, v in (options or {}).items()}
    dev = resolve_device(device)
    if n_boot < 2:
        raise ConfigError(f"n_boot must be >= 2, got {n_boot}")
    loaded: dict[str, SampleSet] = {}

    def load(obj: Any, label: str, set_seed: int) -> SampleSet:
        """Read each file once: a path given for two roles (e.g. the training set as the second real set) is shared."""
        key = None
        if isinstance(obj, (str, os.PathLike)) and max_samples is None:  # a capped read depends on the role's seed
            key = os.path.realpath(obj)
        if key is not None and key in loaded:
            return loaded[key]
        out = load_samples(obj, label, max_samples, set_seed)
        if key is not None:
            loaded[key] = out
        return out

    r = load(real, "real", seed)
    f = load(fake, "fake", seed + 1)
    _check_compatible(r, f, "generated")
    r2 = load(real2, "real2", seed + 2) if real2 is not None else None
    t = load(train, "train", seed + 3) if train is not None else None
    for other, what in ((r2, "second real"), (t, "training")):
        if other is not None:
            _check_compatible(r, other, what)
    if len(r) < 20 or len(f) < 20:
        raise ConfigError(f"evaluate needs at least 20 real and 20 generated samples, got {len(r)} and {len(f)}")
    if not r.condition_names and f.condition_names:
        r.condition_names = f.condition_names
    timings["load"], cpu["load"] = time.perf_counter() - t_start, time.process_time() - c_start
    say(f"load: {timings['load']:.1f} s")

    name, dom = _resolve_domain(domain, r, f)
    scales = dict(dom.condition_scales) if dom is not None else {}
    attrs = {**f.attrs, **r.attrs}
    feat_fn = dom.features if dom is not None and dom.features is not None else None
    if feat_fn is None:
        feat_fn = _GenericFeatures(r.x, **options.get("features", {}), seed=seed)

    def features(s: SampleSet) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v, dtype=np.float64).reshape(len(s)) for k, v in feat_fn(s.x, s.c, attrs).items()}
        return out

    def feature_matrix(feats: dict[str, np.ndarray], s: SampleSet) -> np.ndarray:
        from physgan.domains.base import feature_matrix as columns_matrix

        return columns_matrix(feats, _condition_columns(s, scales))[1]

    t0, c0 = time.perf_counter(), time.process_time()
    say("features: high-level features and low-level representation")
    fr, ff = features(r), features(f)
    bad = [k for k, v in {**fr, **ff}.items() if not np.isfinite(v).all()]
    if bad:
        raise DataError(r.label, f"domain '{name}' features are not finite: {bad}")
    hl_names = list(fr) + list(_condition_columns(r, scales))
    hr, hf = feature_matrix(fr, r), feature_matrix(ff, f)
    fr2 = None if r2 is None else fr if r2 is r else features(r2)  # a set read once is featurised once
    hr2 = feature_matrix(fr2, r2) if r2 is not None else None
    low = _LowLevel(r, scales, seed, dev)
    lr, lf = low(r), low(f)
    lr2 = None if r2 is None else lr if r2 is r else low(r2)
    # one scale per feature, from all real samples, for FPD/KPD of the value and the floor alike
    n_small = min(len(r), len(f), len(r2)) if r2 is not None else min(len(r) // 2, len(f))
    scaling = reference_scale(
        hr if hr2 is None else np.concatenate([hr, hr2]), hl_names, max_components=max(2, n_small // 4)
    )
    sr, sf, sr2 = scaling(hr), scaling(hf), scaling(hr2) if hr2 is not None else None
    timings["features"], cpu["features"] = time.perf_counter() - t0, time.process_time() - c0
    say(f"features: {timings['features']:.1f} s")

    results: dict[str, MetricEntry] = {}
    common = {"n_boot": n_boot, "seed": seed}

    def run_metric(step: str, metric, a, b, a2, method: str):
        t1, c1 = time.perf_counter(), time.process_time()
        say(f"{step}: running")
        res = with_floor(metric, a, b, a2, method=method, **common)
        timings[step], cpu[step] = time.perf_counter() - t1, time.process_time() - c1
        say(f"{step}: {timings[step]:.1f} s")
        return res

    opt = options.get
    scaled = {"normalise": None, "seed": seed, "device": dev}
    # the real set's block moments (FPD) and batch kernel sums (KPD) are shared by the value and the floor
    fpd_fn = partial(fpd, **scaled, cache={}, **{"n_batches": 10, **opt("fpd", {})})
    res = run_metric("fpd", fpd_fn, sr, sf, sr2, "intrinsic")
    _add(results, res, {"fpd": "fpd"}, "generic")
    res = run_metric("kpd", partial(kpd, **scaled, cache={}, **opt("kpd", {})), sr, sf, sr2, "intrinsic")
    _add(results, res, {"kpd": "kpd"}, "generic")
    # PRDC: one ruler for the value, the floor and every half (standardised by the pooled real sets, leading
    # principal components), each set cut once to max_samples rows, each set's k-NN lists searched once
    prdc_opt = dict(opt("prdc", {}))
    prdc_scaling = reference_scale(
        hr if hr2 is None else np.concatenate([hr, hr2]), hl_names, mode="std", max_components=prdc_opt.pop("dim", PRDC_DIM)
    )
    prdc_metric = PRDC(seed=seed, device=dev, **{"max_samples": PRDC_MAX_SAMPLES, **prdc_opt})
    pr, pf = prdc_scaling(hr), prdc_scaling(hf)
    pr2 = prdc_scaling(hr2) if hr2 is not None else None
    res = run_metric("prdc", prdc_metric, pr, pf, pr2, "half")
    _add(results, res, {k: k for k in ("precision", "recall", "density", "coverage")}, "generic")
    cls_opt = {"max_samples": CLASSIFIER_MAX_SAMPLES, **opt("classifier", {})}
    cls = partial(classifier_test, seed=seed, device=dev, **cls_opt)
    res = run_metric("classifier_high", cls, hr, hf, hr2, "intrinsic")
    _add(results, res, {"auc": "auc_high", "jsd": "jsd_high"}, "generic")
    res = run_metric("classifier_low", cls, lr, lf, lr2, "intrinsic")
    _add(results, res, {"auc": "auc_low", "jsd": "jsd_low"}, "generic")

    edges = {k: auto_edges(hr[:, j]) for j, k in enumerate(hl_names)}  # fixed binning from the full real set
    res = run_metric("marginals", Marginals(hl_names, edges), hr, hf, hr2, "bootstrap")
    _add(results, res, {"w1_norm_mean": "w1_norm_mean", "separation_mean": "separation_mean"}, "generic")
    _add(results, res, {k: k for k in res if k.startswith(("w1/", "separation/"))}, "per_feature")

    if t is not None:
        t1, c1 = time.perf_counter(), time.process_time()
        say("memorisation: nearest-training-sample search")
        mem_opt = dict(opt("memorisation", {}))
        quantile = float(mem_opt.pop("quantile", 0.01))
        nearest = getattr(dom, "nearest", None) if dom is not None else None
        if nearest is not None:  # the domain's own (dis)similarity, e.g. periodic cross-correlation of fields
            sets = {"real": r.x, "fake": f.x, **({"real2": r2.x} if r2 is not None else {})}
            dist, mem_info = nearest(t.x, sets, attrs, seed=seed, **mem_opt)
        else:
            sets = {"real": lr, "fake": lf, **({"real2": lr2} if lr2 is not None else {})}
            mem_opt = {"max_queries": MEMORISATION_MAX_QUERIES, **mem_opt}
            dist, mem_info = train_distances(t.x, sets, seed=seed, device=dev, embed=partial(low.embed, t), **mem_opt)
        timings["memorisation_search"], cpu["memorisation_search"] = time.perf_counter() - t1, time.process_time() - c1
        say(f"memorisation search: {timings['memorisation_search']:.1f} s")
        stats = partial(memorisation_stats, quantile=quantile)
        res = run_metric("memorisation", stats, dist["real"], dist["fake"], dist.get("real2"), "half")
        names = {k: f"memorisation/{k}" for k in ("ratio", "copy_fraction", "exact_copy_fraction")}
        _add(results, res, names, "memorisation", {"memorisation/ratio": "higher"})
        info_memorisation = {k: float(v) for k, v in mem_info.items()}
    else:
        info_memorisation = None

    if dom is not None and dom.physics_metrics is not None:
        pm = partial(_physics, fn=dom.physics_metrics, attrs=attrs)
        with_feats = bool(getattr(dom, "physics_takes_features", False))
        # with the features given, the domain reads few rows of x: rounds select them without copying every shower
        xs = {k: (LazyRows(s.x) if with_feats else s.x) for k, s in (("r", r), ("f", f), ("r2", r2)) if s is not None}
        real_t = (xs["r"], r.c, fr) if with_feats else (r.x, r.c)
        fake_t = (xs["f"], f.c, ff) if with_feats else (f.x, f.c)
        real2_t = None if r2 is None else (xs["r2"], r2.c, fr2) if with_feats else (r2.x, r2.c)
        res = run_metric("physics", pm, real_t, fake_t, real2_t, "bootstrap")
        if not isinstance(res, dict):
            res = {"value": res}
        _add(results, res, {k: f"physics/{k}" for k in res}, "physics", {f"physics/{k}": _physics_direction(k) for k in res})

    timings["total"], cpu["total"] = time.perf_counter() - t_start, time.process_time() - c_start
    say(f"total: {timings['total']:.1f} s")
    import physgan

    info = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "physgan_version": getattr(physgan, "__version__", "unknown"),
        "torch_version": torch.__version__,
        "inputs": {
            "real": r.label,
            "fake": f.label,
            "train": t.label if t is not None else None,
            "real2": r2.label if r2 is not None else None,
        },
        "n": {
            "real": len(r),
            "fake": len(f),
            "train": len(t) if t is not None else None,
            "real2": len(r2) if r2 is not None else None,
        },
        "floor_source": "real2" if r2 is not None else "real halves",
        "seed": int(seed),
        "n_boot": int(n_boot),
        "device": str(dev),
        "features": hl_names,
        "fpd_kpd_features_dropped": scaling.dropped,
        "fpd_kpd_dimension": scaling.n_components,
        "memorisation_search": info_memorisation,
        "classifier_max_samples": cls_opt["max_samples"],
        "prdc_space": {
            "n_real": min(len(r), prdc_metric.max_samples or len(r)),
            "n_fake": min(len(f), prdc_metric.max_samples or len(f)),
            "dim": prdc_scaling.n_components,
            "variance_kept": round(prdc_scaling.variance_kept, 4),
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "timings_cpu_s": {k: round(v, 3) for k, v in cpu.items()},
    }
    ev = Evaluation(name, results, info, rules)
    ev._real, ev._fake, ev._domain_obj = r, f, dom
    ev._domain_features = (fr, ff)
    ev._feat_real = dict(zip(hl_names, hr.T))
    ev._feat_fake = dict(zip(hl_names, hf.T))
    if run is not None:
        ev.add_training(run)
    return ev


def _prdc_space_text(space: dict | None) -> str:
    """One line saying where PRDC was computed and on how many samples."""
    if not space:
        return "n/a"
    return (f"{space['n_real']} real and {space['n_fake']} generated samples (random subsets; errors by half-sampling "
            f"of these), {space['dim']} leading principal components of the standardised features "
            f"({100 * space['variance_kept']:.0f} % of their variance)")


def _memorisation_text(search: dict | None) -> str:
    """One line saying how the nearest training samples were searched."""
    if not search:
        return "not run (no training set given)"
    text = f"{int(search['n_train'])} training samples"
    if "max_queries" in search:
        text += f", at most {int(search['max_queries'])} random samples per compared set"
    if "dim" in search:
        text += f", {int(search['dim'])} dimensions"
    if "variance_kept" in search:
        text += f" ({100 * search['variance_kept']:.0f} % of the standardised variance)"
    return text


def _progress_printer(progress: bool | Any):
    """A function printing one progress line (to stderr, or to the callable given)."""
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(f"evaluate: {line}", file=sys.stderr, flush=True)
    return lambda line: None


def _physics(real, fake, *, fn, attrs) -> dict[str, float]:
    out = fn(tuple(real), tuple(fake), attrs)
    return {str(k): float(v) for k, v in out.items()}


#: metric names with a per-feature / per-domain part, known only once evaluated (checked again then)
_DYNAMIC_PREFIXES = ("w1/", "separation/", "physics/")


def check_threshold_names(rules: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Refuse ``--fail-on`` metric names that no evaluation produces, before any work is done."""
    for name, _, _ in rules:
        if name not in _DESCRIPTIONS and not name.startswith(_DYNAMIC_PREFIXES):
            close = difflib.get_close_matches(name, list(_DESCRIPTIONS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--fail-on names unknown metric '{name}'{hint} (known: {', '.join(_DESCRIPTIONS)}, "
                f"or {', '.join(p + '<name>' for p in _DYNAMIC_PREFIXES)})"
            )
    return rules


def _normalise_thresholds(thresholds) -> list[tuple[str, str, float]]:
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


# ---------------------------------------------------------------------------------------------
# CLI hooks
# ---------------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """Add the ``physgan evaluate`` options to an argparse parser."""
    parser.add_argument("--real", required=True, help="held-out real samples (HDF5)")
    parser.add_argument("--fake", required=True, help="generated samples (HDF5)")
    parser.add_argument("--train", default=None, help="training samples, for the memorisation check")
    parser.add_argument("--real2", default=None, help="second independent real sample for the noise floor (default: halves of --real)")
    parser.add_argument("--report", default=None, help="report directory (metrics.json, figures, index.html)")
    parser.add_argument("--domain", default=None, help="domain name (default: the files' 'domain' attribute, else 'array')")
    parser.add_argument("--run", default=None, help="run directory of the generator: adds its training curves and diagnostics")
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="RULE",
        help="exit with status 1 if a rule holds, e.g. 'auc_low>0.9' or 'coverage<0.5' (repeatable)",
    )
    parser.add_argument("--n-boot", type=int, default=10, help="bootstrap rounds (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-samples", type=int, default=None, help="random subset cap per input file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report directory")
    parser.add_argument("--quiet", action="store_true", help="no per-stage progress lines on stderr")


def main(args) -> int:
    """Run ``physgan evaluate``: print the summary, write the report; 1 if a --fail-on rule holds."""
    rules = _normalise_thresholds(list(args.fail_on or []))
    if args.report and Path(args.report).exists() and not args.overwrite:
        raise OutputExistsError(f"{args.report}: exists already; pass --overwrite to replace it")
    if args.report:  # before minutes of work, not after
        from physgan.io.atomic import probe_writable_dir

        probe_writable_dir(Path(args.report).parent)
    ev = evaluate(
        args.real,
        args.fake,
        domain=args.domain,
        train=args.train,
        real2=args.real2,
        seed=args.seed,
        device=args.device,
        n_boot=args.n_boot,
        thresholds=rules,
        max_samples=args.max_samples,
        run=args.run,
        progress=not getattr(args, "quiet", False),
    )
    print(ev.format_summary())
    if args.report:
        if not args.quiet:
            print(f"evaluate: writing the report to {args.report} ...", file=sys.stderr, flush=True)
        path = ev.to_html(args.report, overwrite=args.overwrite)
        print(f"report written to {path}/index.html")
    unknown = ev.unknown_threshold_metrics()
    if unknown:
        raise ConfigError(f"--fail-on names unknown metric(s) {unknown}; known: {', '.join(ev.metrics)}")
    fails = ev.failures()
    for line in fails:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if fails else 0
