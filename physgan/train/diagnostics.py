"""Training diagnostics: critic/generator balance, mode collapse, vanishing and exploding gradients.

Three cheap pieces the training loop calls:

* :func:`grad_norm` after each ``backward`` (before the optimiser step): the
  global L2 norm of a network's parameter gradients, kept on the device (no
  host sync); the loop averages it over a tick like any other statistic.
* :class:`SampleDiagnostics` once per tick: generated samples of a fixed batch
  (fixed latents, fixed real conditions) compared with a fixed real batch in a
  feature space (the domain's ``features`` if it has them, else the flattened
  samples), standardised by the real batch: diversity (mean pairwise distance,
  as a ratio to the real batch's), and k-NN precision, recall and coverage.
  The same numbers between two halves of the real batch (over several random
  splits) give the *noise floor* each value is judged against.
* :class:`TrainingMonitor` once per tick: turns those statistics into
  warnings with the step (diversity or coverage below the real noise floor,
  the generator's gradient norm collapsing below ``1e-6`` x its first-tick
  value, the critic's exploding above ``1e3`` x), keeps them as events for the
  run summary, and is saved in checkpoints so a resumed run keeps its reference.
  The trainer writes them to ``log.txt`` and the status output as
  ``warning: step N: ...``; called directly it raises :class:`DiagnosticWarning`.

:func:`summarise_stats` reads a run's ``stats.jsonl`` back into the summary the
trainer writes to ``diagnostics.json`` (and :func:`format_summary` to the log)
at the end of a run.

Keys added to ``stats.jsonl`` each tick: ``Grad/G_norm``, ``Grad/D_norm`` (means
over the tick), ``Diag/diversity``, ``Diag/coverage``, ``Diag/recall``,
``Diag/precision``, ``Diag/nonfinite_fraction`` and the real noise floors
``Diag/<name>_floor``; the objectives already log ``Loss/W``, ``Loss/GP``,
``D/real``, ``D/fake`` and ``Clip/fraction``.

References
----------
.. [1] M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi, J. Yoo, "Reliable fidelity and
   diversity metrics for generative models", ICML 2020, arXiv:2002.09797 (coverage).
.. [2] T. Kynkäänniemi, T. Karras, S. Laine, J. Lehtinen, T. Aila, "Improved
   precision and recall metric for assessing generative models", NeurIPS 2019,
   arXiv:1904.06991 (k-NN precision and recall).
.. [3] M. Arjovsky, L. Bottou, "Towards principled methods for training generative
   adversarial networks", ICLR 2017, arXiv:1701.04862 (vanishing generator gradients
   of the minimax objective).
.. [4] L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, "Unrolled generative adversarial
   networks", ICLR 2017, arXiv:1611.02163 (ring of 8 Gaussians, mode collapse).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from physgan.domains.base import feature_matrix as domain_feature_matrix
from physgan.errors import DataError
from physgan.metrics._common import knn_radius
from physgan.metrics.prdc import manifold

__all__ = [
    "DiagnosticWarning",
    "grad_norm",
    "mean_pairwise_distance",
    "knn_radii",
    "manifold_scores",
    "feature_rows",
    "SampleDiagnostics",
    "TrainingMonitor",
    "summarise_stats",
    "format_summary",
    "DIAGNOSTIC_KEYS",
]

#: statistics the diagnostics add to every tick of ``stats.jsonl`` (sample keys only when a held-out batch exists)
DIAGNOSTIC_KEYS = ("Grad/G_norm", "Grad/D_norm", "Diag/diversity", "Diag/coverage", "Diag/recall", "Diag/precision")


#: standardised features are clipped to [-_CLIP, _CLIP]
_CLIP = 50.0


class DiagnosticWarning(UserWarning):
    """A training-health warning (mode collapse, vanishing or exploding gradients)."""


# ---- gradient norms (per step, on device) --------------------------------------------------------


def grad_norm(module: nn.Module | Iterable[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the parameter gradients, as a float32 0-d tensor on their device.

    Call after ``backward`` and before the optimiser step. No host
    synchronisation: the result stays on the device until the caller reads it.
    Parameters without a gradient are skipped; with none at all the norm is 0.

    Parameters
    ----------
    module : nn.Module or iterable of Tensor
        The network (or its parameters).

    Returns
    -------
    Tensor
        ``sqrt(sum_p ||grad p||^2)``.
    """
    params = module.parameters() if isinstance(module, nn.Module) else module
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=None).float()


# ---- sample-based diagnostics (per tick) ---------------------------------------------------------


def mean_pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance over all pairs ``i < j`` of the rows of ``x`` (N, d).

    Parameters
    ----------
    x : Tensor, shape (N, d)
        At least two rows.

    Returns
    -------
    Tensor
        0-d tensor; for a batch of identical rows it is 0.
    """
    if x.shape[0] < 2:
        raise ValueError("mean_pairwise_distance needs at least two samples")
    return torch.pdist(x.double()).mean()


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest *other* row.

    Parameters
    ----------
    x : Tensor, shape (N, d)
        ``N > k`` rows.
    k : int
        Neighbour rank (1 = nearest other row).

    Returns
    -------
    Tensor, shape (N,)
    """
    if x.shape[0] <= k:
        raise ValueError(f"knn_radii needs more than k={k} samples, got {x.shape[0]}")
    return knn_radius(x.double(), k)  # the one k-NN search of physgan.metrics


def manifold_scores(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """k-NN precision, recall and coverage of ``fake`` with respect to ``real``.

    The one implementation of :func:`physgan.metrics.prdc.manifold` (float64, closed balls), with
    ``r_i`` the distance of real ``X_i`` to its k-th nearest other real row and ``s_j`` the same
    for fake ``Y_j`` among fakes:

    * precision = mean_j 1[exists i: |Y_j - X_i| <= r_i]  (fakes on the real manifold)
    * recall    = mean_i 1[exists j: |X_i - Y_j| <= s_j]  (reals on the fake manifold)
    * coverage  = mean_i 1[min_j |X_i - Y_j| <= r_i]     (real neighbourhoods holding a fake)

    Coverage drops by about ``1/M`` when a generator drops one of ``M``
    equally likely modes, and, unlike recall, is not inflated by a few
    scattered fakes.

    Parameters
    ----------
    real, fake : Tensor, shapes (N, d) and (M, d)
        Feature rows, ``N, M > k``.
    k : int
        Neighbour rank (5 as in Naeem et al.).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``coverage`` in [0, 1].

    References
    ----------
    Naeem et al., ICML 2020, arXiv:2002.09797; Kynkäänniemi et al., NeurIPS 2019, arXiv:1904.06991.
    """
    scores = manifold(real, fake, k=k, dtype=torch.float64)
    return {key: scores[key] for key in ("precision", "recall", "coverage")}


FeatureFn = Callable[[np.ndarray, np.ndarray, dict], dict[str, np.ndarray]]


def feature_rows(x: np.ndarray, c: np.ndarray, features: FeatureFn | None = None, attrs: dict | None = None) -> np.ndarray:
    """Per-sample feature rows: the domain's ``features`` (in its order, :func:`physgan.domains.base.feature_matrix`)
    or the flattened samples.

    Parameters
    ----------
    x : ndarray, shape (N, ...)
        Samples in physical units.
    c : ndarray, shape (N, k)
        Their physical conditions.
    features : callable, optional
        ``features(x, c, attrs) -> {name: (N,) array}`` (the domain contract).
    attrs : dict, optional
        The data file's attributes.

    Returns
    -------
    ndarray, shape (N, d), float64
    """
    if features is None:
        return np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return domain_feature_matrix(features(np.asarray(x), np.asarray(c), attrs or {}))[1]


class SampleDiagnostics:
    """Diversity and k-NN coverage of generated samples on a fixed batch, with the real noise floor.

    The real batch is split in two halves, A (reference) and B. Fakes are
    generated with B's conditions and fixed latents and compared with A, as B
    itself is: the *noise floor* of each statistic is its real-vs-real value
    (A vs B), averaged over ``n_splits`` random splits, with its standard
    deviation. Features are standardised with A's mean and standard deviation
    (columns with no spread are dropped).

    Parameters
    ----------
    real_x : ndarray, shape (N, ...)
        Fixed real batch in physical units (``N >= 2 * (k + 1)``).
    real_c : ndarray, shape (N, k_cond)
        Its physical conditions.
    features : callable, optional
        The domain's ``features``; None: flattened samples.
    attrs : dict, optional
        File attributes passed to ``features``.
    k : int
        Neighbour rank of the k-NN statistics.
    n_splits : int
        Random real-vs-real splits for the noise floor.
    seed : int
        Seed of the splits.
    rel_tol : float
        Relative tolerance: a statistic is *below the floor* when it is under
        ``floor_mean - max(3 * floor_std, rel_tol * floor_mean)``.

    Attributes
    ----------
    cond_b : ndarray
        The conditions to generate the fakes with (half B of the first split).
    floor : dict
        ``{name: (mean, std)}`` of the real-vs-real statistics.
    thresholds : dict
        ``{name: value}`` below which a statistic triggers a warning.
    """

    names = ("diversity", "coverage", "recall", "precision")
    watched = ("diversity", "coverage")

    def __init__(
        self,
        real_x: np.ndarray,
        real_c: np.ndarray,
        features: FeatureFn | None = None,
        attrs: dict | None = None,
        k: int = 5,
        n_splits: int = 8,
        seed: int = 0,
        rel_tol: float = 0.1,
    ):
        n = len(real_x)
        if n < 2 * (k + 1):
            raise DataError("held-out batch", f"sample diagnostics need at least {2 * (k + 1)} held-out samples, got {n}")
        self.features, self.attrs, self.k, self.rel_tol = features, dict(attrs or {}), k, rel_tol
        real_c = np.asarray(real_c, dtype=np.float32).reshape(n, -1)
        feats = feature_rows(real_x, real_c, features, attrs)
        rng = np.random.default_rng(seed)
        half = n // 2
        splits = [rng.permutation(n) for _ in range(n_splits)]
        a, b = splits[0][:half], splits[0][half : 2 * half]
        with warnings.catch_warnings():  # all-NaN feature columns (e.g. centroids of empty showers) are dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(feats[a], 0), np.nanstd(feats[a], 0)
        self._cols = np.isfinite(std) & (std > 1e-12 * (1 + np.abs(mean)))
        self._mean, self._std = mean[self._cols], std[self._cols]
        self.cond_b = real_c[b]
        self._ref = self._standardise(feats[a])
        self._ref_mpd = float(mean_pairwise_distance(self._ref))
        rr = []
        for p in splits:
            pa, pb = self._standardise(feats[p[:half]]), self._standardise(feats[p[half : 2 * half]])
            rr.append({"diversity": float(mean_pairwise_distance(pb) / mean_pairwise_distance(pa)), **manifold_scores(pa, pb, k)})
        self.floor = {m: (float(np.mean([r[m] for r in rr])), float(np.std([r[m] for r in rr]))) for m in self.names}
        self.thresholds = {m: mu - max(3 * sd, rel_tol * mu) for m, (mu, sd) in self.floor.items()}

    def _standardise(self, feats: np.ndarray) -> torch.Tensor:
        # undefined features (NaN) sit at the real mean; outliers are clipped so that one wild fake cannot dominate
        z = (feats[:, self._cols] - self._mean) / self._std
        return torch.as_tensor(np.clip(np.nan_to_num(z, nan=0.0, posinf=_CLIP, neginf=-_CLIP), -_CLIP, _CLIP))

    @property
    def n_fake(self) -> int:
        """Number of fakes :meth:`__call__` expects (the size of half B)."""
        return len(self.cond_b)

    def __call__(self, fake_x: np.ndarray) -> dict[str, float]:
        """Statistics of fakes generated with :attr:`cond_b`.

        Parameters
        ----------
        fake_x : ndarray, shape (n_fake, ...)
            Generated samples in physical units.

        Returns
        -------
        dict
            ``diversity`` (mean pairwise distance relative to the real half A's),
            ``coverage``, ``recall``, ``precision``, and ``nonfinite_fraction``
            (share of fakes with non-finite values; any gives ``nan`` for the
            others). Undefined (NaN) features count as the real mean, and
            standardised features are clipped to +-50.
        """
        fake_x = np.asarray(fake_x)
        if len(fake_x) != self.n_fake:
            raise ValueError(f"expected {self.n_fake} fakes (generated with cond_b), got {len(fake_x)}")
        bad = float((~np.isfinite(fake_x.reshape(len(fake_x), -1))).any(1).mean())
        if bad > 0:
            return {**dict.fromkeys(self.names, float("nan")), "nonfinite_fraction": bad}
        feats = feature_rows(fake_x, self.cond_b, self.features, self.attrs)
        f = self._standardise(feats)
        return {
            "diversity": float(mean_pairwise_distance(f)) / self._ref_mpd,
            **manifold_scores(self._ref, f, self.k),
            "nonfinite_fraction": 0.0,
        }

    def stats(self, fake_x: np.ndarray) -> dict[str, float]:
        """:meth:`__call__` as ``stats.jsonl`` keys: ``Diag/<name>`` and ``Diag/<name>_floor``."""
        out = {f"Diag/{k}": v for k, v in self(fake_x).items()}
        out.update({f"Diag/{m}_floor": mu for m, (mu, _) in self.floor.items()})
        return out

    def state(self) -> dict[str, Any]:
        """The noise floor and thresholds (for ``run.json`` / the report)."""
        return {"k": self.k, "n_reference": len(self._ref), "floor": self.floor, "thresholds": self.thresholds}


# ---- warnings ------------------------------------------------------------------------------------


class TrainingMonitor:
    """Health checks on the per-tick statistics, with warnings that name the step.

    * ``collapse``: ``Diag/diversity`` or ``Diag/coverage`` under the
      thresholds of :class:`SampleDiagnostics` (after ``warmup_steps``);
    * ``vanishing``: ``Grad/G_norm`` under ``vanish_factor`` x its first-tick value;
    * ``exploding``: ``Grad/D_norm`` over ``explode_factor`` x its first-tick value.

    A warning is raised when a condition *starts* (not at every tick while it
    lasts); its end is logged as a ``recovered`` event.

    Parameters
    ----------
    thresholds : dict, optional
        ``{'diversity': value, 'coverage': value}`` (from :class:`SampleDiagnostics`).
    warmup_steps : int
        No collapse warnings before this step (early generators are always
        narrower than the data).
    vanish_factor, explode_factor : float
        Gradient-norm ratios to the first-tick value (1e-6 and 1e3).
    """

    def __init__(
        self,
        thresholds: dict[str, float] | None = None,
        warmup_steps: int = 0,
        vanish_factor: float = 1e-6,
        explode_factor: float = 1e3,
    ):
        self.thresholds = dict(thresholds or {})
        self.warmup_steps = warmup_steps
        self.vanish_factor, self.explode_factor = vanish_factor, explode_factor
        self.reference: dict[str, float] = {}
        self.active: dict[str, bool] = {}
        self.events: list[dict[str, Any]] = []

    def check(self, step: int, stats: dict[str, float], emit: bool = True) -> list[str]:
        """Update with one tick's statistics; returns the new warning messages.

        Parameters
        ----------
        step : int
            Generator step of the tick.
        stats : dict
            The tick's means (``Grad/G_norm``, ``Grad/D_norm``, ``Diag/...``).
        emit : bool
            Also raise each as a :class:`DiagnosticWarning` (the trainer logs them instead).

        Returns
        -------
        list of str
        """
        for key in ("Grad/G_norm", "Grad/D_norm"):
            v = stats.get(key)
            if key not in self.reference and v is not None and math.isfinite(v) and v > 0:
                self.reference[key] = float(v)
        conditions: dict[str, tuple[bool, str]] = {}
        g, g0 = stats.get("Grad/G_norm"), self.reference.get("Grad/G_norm")
        if g is not None and g0 is not None and math.isfinite(g):
            conditions["vanishing"] = (
                g < self.vanish_factor * g0,
                f"generator gradient norm {g:.3g} fell below {self.vanish_factor:g} x its early value {g0:.3g} "
                "(vanishing gradients: the critic wins; try wgan-gp, the nonsaturating loss, or fewer critic steps)",
            )
        d, d0 = stats.get("Grad/D_norm"), self.reference.get("Grad/D_norm")
        if d is not None and d0 is not None:
            conditions["exploding"] = (
                not math.isfinite(d) or d > self.explode_factor * d0,
                f"critic gradient norm {d:.3g} rose above {self.explode_factor:g} x its early value {d0:.3g} "
                "(exploding gradients: lower train.lr_d, raise train.gp_lambda, or use wgan-gp)",
            )
        if step >= self.warmup_steps:
            for name in ("diversity", "coverage"):
                v, lim = stats.get(f"Diag/{name}"), self.thresholds.get(name)
                if v is None or lim is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                conditions[f"collapse/{name}"] = (
                    v < lim,
                    f"{name} of generated samples {v:.3g} is below the real data's noise floor "
                    f"(real-vs-real threshold {lim:.3g}): possible mode collapse",
                )
        messages = []
        for kind, (bad, text) in conditions.items():
            was = self.active.get(kind, False)
            if bad and not was:
                msg = f"step {step}: {text}"
                self.events.append({"step": step, "kind": kind, "message": msg})
                messages.append(msg)
                if emit:
                    warnings.warn(msg, DiagnosticWarning, stacklevel=2)
            elif was and not bad:
                self.events.append({"step": step, "kind": f"{kind}/recovered", "message": f"step {step}: {kind} recovered"})
            self.active[kind] = bad
        return messages

    def state_dict(self) -> dict[str, Any]:
        return {"reference": dict(self.reference), "active": dict(self.active), "events": list(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference = dict(state.get("reference", {}))
        self.active = dict(state.get("active", {}))
        self.events = list(state.get("events", []))


# ---- run summary ---------------------------------------------------------------------------------


def summarise_stats(path: str | Path, floor: dict[str, Any] | None = None, events: list[dict] | None = None) -> dict[str, Any]:
    """Summary of a run's training diagnostics from its ``stats.jsonl``.

    Parameters
    ----------
    path : path
        ``stats.jsonl`` or the run directory holding it.
    floor : dict, optional
        :meth:`SampleDiagnostics.state` (noise floor and thresholds).
    events : list of dict, optional
        :attr:`TrainingMonitor.events`.

    Returns
    -------
    dict
        ``steps`` (last step), ``last`` (the last tick's value of each
        balance/diagnostic key), ``min``/``max`` over ticks, ``floor``, ``warnings``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "stats.jsonl"
    if not path.is_file():
        raise DataError(path, "no stats.jsonl (has the run logged a tick yet?)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataError(path, f"line {i + 1} is not JSON: {err}") from err
    prefixes = ("Loss/", "Grad/", "Diag/", "D/", "Clip/")
    keys = sorted({k for r in rows for k in r if k.startswith(prefixes) and not k.endswith("_floor")})
    last, lo, hi = {}, {}, {}
    for key in keys:
        vals = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if vals:
            last[key] = vals[-1][1]
            lo[key] = min(v for _, v in vals)
            hi[key] = max(v for _, v in vals)
    return {
        "steps": max((r.get("step", 0) for r in rows), default=0),
        "last": last,
        "min": lo,
        "max": hi,
        "floor": floor or {},
        "warnings": [e for e in (events or []) if not e["kind"].endswith("/recovered")],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few readable lines from :func:`summarise_stats` (for the log and the report)."""
    last = summary["last"]
    lines = [f"training diagnostics after {summary['steps']} steps:"]
    bal = [f"{k}={last[k]:.4g}" for k in ("Loss/W", "Loss/GP", "D/real", "D/fake", "Clip/fraction") if k in last]
    if bal:
        lines.append("  balance: " + ", ".join(bal))
    grads = [
        f"{k}={last[k]:.3g} (range {summary['min'][k]:.3g}..{summary['max'][k]:.3g})" for k in ("Grad/G_norm", "Grad/D_norm") if k in last
    ]
    if grads:
        lines.append("  gradients: " + ", ".join(grads))
    floor = summary.get("floor", {}).get("floor", {})
    samples = []
    for name in ("diversity", "coverage", "recall", "precision"):
        if f"Diag/{name}" in last:
            f = floor.get(name)
            samples.append(f"{name}={last[f'Diag/{name}']:.3g}" + (f" (real {f[0]:.3g}±{f[1]:.2g})" if f else ""))
    if samples:
        lines.append("  samples: " + ", ".join(samples))
    warns = summary.get("warnings", [])
    lines.append(f"  warnings: {len(warns)}" + "".join(f"\n    {w['message']}" for w in warns[-10:]))
    return "\n".join(lines)
