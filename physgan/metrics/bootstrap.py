"""Statistical errors and noise floors for any two-sample metric.

A metric is any callable ``metric(real, fake) -> float | dict[str, float]``
whose inputs are arrays with samples along axis 0, or tuples / dicts of such
arrays with the same length (e.g. ``(x, c)``). Two error estimates:

* ``method='bootstrap'``: both sets resampled with replacement, same sizes
  (Efron 1979); the error is the standard deviation of the metric over rounds.
  Suited to smooth statistics (moments, histograms, W1, FPD, physics metrics).
* ``method='half'``: both sets replaced by random halves drawn *without*
  replacement (the delete-d jackknife with d = n/2, whose variance factor
  (n − d)/d is 1, so the spread of half-sample values estimates the full-sample
  error directly; Shao & Wu 1989). Use it for nearest-neighbour metrics
  (PRDC, memorisation), which duplicated samples would corrupt.
* ``method='intrinsic'``: the metric returns its own errors under the keys
  ``<name>_err`` (FPD's fit error, KPD's batch spread, the classifier's
  test-set bootstrap): no resampling.

A metric may also offer ``metric.rounds(real, fake, rounds) -> list[result]``,
with ``rounds`` a list of ``(real_rows, fake_rows)`` index arrays (None: the
whole set): :func:`with_floor` and :func:`bootstrap_error` then hand it all
rounds at once (with exactly the rows they would have drawn), so that work
shared between rounds is done once (e.g. :class:`~physgan.metrics.prdc.PRDC`
searches each set's nearest neighbours once for the value and every half).

The *noise floor* is the same metric between two independent real samples:
``real`` vs ``real2`` when a second real set is given, otherwise two disjoint
random halves of ``real``. The floor from halves is measured at half the sample
size, so for size-dependent metrics it is slightly conservative (higher).

References
----------
.. [1] B. Efron, "Bootstrap methods: another look at the jackknife", Ann. Stat. 7, 1 (1979).
.. [2] J. Shao, C. F. J. Wu, "A general theory for jackknife variance estimation",
   Ann. Stat. 17, 1176 (1989).
.. [3] R. Kansal et al., arXiv:2211.10295 (judging metrics against the truth-vs-truth value).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from physgan.errors import ConfigError
from physgan.metrics._common import make_rng

__all__ = ["FloorResult", "LazyRows", "bootstrap_error", "with_floor", "split_halves", "take", "n_samples"]

Metric = Callable[[Any, Any], "float | dict[str, float]"]


@dataclass
class FloorResult:
    """A metric value with its error and noise floor (floor between two real samples)."""

    value: float
    error: float
    floor: float
    floor_error: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def n_samples(data: Any) -> int:
    """Number of samples of an array, or of a tuple / dict of same-length arrays."""
    if isinstance(data, dict):
        data = list(data.values())
    if isinstance(data, (tuple, list)):
        lengths = {n_samples(a) for a in data if a is not None}
        if len(lengths) != 1:
            raise ConfigError(f"parts of one sample set have different lengths: {sorted(lengths)}")
        return lengths.pop()
    return len(data)


class LazyRows:
    """Rows of an array, selected (and reselected) without copying until they are read.

    A metric that reads only some rows of a large part of its input (e.g. the first few hundred
    showers for a voxel spectrum) gets resampled rounds of it without a copy of every row per
    round. Slicing with ``[a:b]`` or ``np.asarray`` reads the rows; ``shape``, ``dtype`` and
    ``len`` do not.
    """

    def __init__(self, base: np.ndarray, rows: np.ndarray | None = None):
        self.base = base
        self.rows = np.arange(len(base)) if rows is None else np.asarray(rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def take_rows(self, idx: np.ndarray) -> LazyRows:
        """The rows ``idx`` of these rows, still unread."""
        return LazyRows(self.base, self.rows[idx])

    def __getitem__(self, key) -> np.ndarray:
        return self.base[self.rows[key]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.base[self.rows]
        return out if dtype is None else out.astype(dtype, copy=False)


def take(data: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array / tensor / :class:`LazyRows`, or of every array in a tuple / list / dict."""
    if isinstance(data, LazyRows):
        return data.take_rows(idx)
    if isinstance(data, dict):
        return {k: take(v, idx) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(take(a, idx) if a is not None else None for a in data)
    if isinstance(data, torch.Tensor):
        return data[torch.as_tensor(idx, device=data.device)]
    return np.asarray(data)[idx]


def split_halves(data: Any, seed: int | np.random.Generator = 0) -> tuple[Any, Any]:
    """Two disjoint random halves of a sample set."""
    n = n_samples(data)
    if n < 4:
        raise ConfigError(f"need at least 4 samples to split into two halves, got {n}")
    perm = make_rng(seed).permutation(n)
    return take(data, np.sort(perm[: n // 2])), take(data, np.sort(perm[n // 2 : 2 * (n // 2)]))


def _as_dict(v: float | dict[str, float]) -> dict[str, float]:
    return {k: float(x) for k, x in v.items()} if isinstance(v, dict) else {"": float(v)}


def _draw(n: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one resampled set of size ``n`` (with replacement, or a random half)."""
    if method == "bootstrap":
        return rng.integers(0, n, n)
    return np.sort(rng.permutation(n)[: n // 2])


def _evaluate(metric: Metric, real: Any, fake: Any, rounds: list[tuple[np.ndarray | None, np.ndarray | None]]) -> list:
    """``metric`` on each round's rows: all at once through ``metric.rounds`` when it has one."""
    many = getattr(metric, "rounds", None)
    if many is not None:
        return list(many(real, fake, rounds))

    def rows(data, idx):
        return data if idx is None else take(data, idx)

    return [metric(rows(real, i), rows(fake, j)) for i, j in rounds]


def _spread(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Standard deviation over rounds per key (NaN where fewer than two finite values)."""
    err = {}
    for k in rounds[0].keys():
        vals = np.array([r.get(k, math.nan) for r in rounds], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        err[k] = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
    return err


def bootstrap_error(
    metric: Metric,
    real: Any,
    fake: Any,
    *,
    n_boot: int = 20,
    method: str = "bootstrap",
    seed: int | np.random.Generator = 0,
) -> float | dict[str, float]:
    """Standard deviation of ``metric(real*, fake*)`` over resampled sets.

    Parameters
    ----------
    metric : callable
        ``(real, fake) -> float`` or ``-> dict`` of floats.
    real, fake : array, tuple or dict of arrays
        Sample sets (axis 0 = samples).
    n_boot : int
        Resampling rounds (>= 2).
    method : {'bootstrap', 'half'}
        See the module docstring.
    seed : int or numpy.random.Generator

    Returns
    -------
    float or dict
        Same structure as the metric's output (NaN where a round failed to give a finite value).
    """
    if method not in ("bootstrap", "half"):
        raise ConfigError(f"bootstrap_error: unknown method '{method}' (use 'bootstrap' or 'half')")
    if n_boot < 2:
        raise ConfigError(f"bootstrap_error: n_boot must be >= 2, got {n_boot}")
    rng = make_rng(seed)
    nr, nf = n_samples(real), n_samples(fake)
    rounds = [(_draw(nr, method, rng), _draw(nf, method, rng)) for _ in range(n_boot)]
    err = _spread([_as_dict(v) for v in _evaluate(metric, real, fake, rounds)])
    return err[""] if list(err) == [""] else err


def with_floor(
    metric: Metric,
    real: Any,
    fake: Any,
    real2: Any = None,
    *,
    n_boot: int = 20,
    method: str = "bootstrap",
    seed: int | np.random.Generator = 0,
) -> FloorResult | dict[str, FloorResult]:
    """A metric with its error and its noise floor.

    Parameters
    ----------
    metric : callable
        ``(real, fake) -> float | dict``.
    real, fake : array, tuple or dict of arrays
    real2 : optional
        A second, independent real sample for the floor (else halves of ``real``).
    n_boot : int
        Resampling rounds for the errors (ignored by ``method='intrinsic'``).
    method : {'bootstrap', 'half', 'intrinsic'}
        See the module docstring.
    seed : int or numpy.random.Generator

    Returns
    -------
    FloorResult or dict of FloorResult
        ``value`` = metric(real, fake), ``error``, ``floor`` = metric(real_a, real_b), ``floor_error``;
        a dict (by the metric's keys, ``*_err`` keys removed) when the metric returns a dict.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = with_floor(lambda a, b: abs(a.mean() - b.mean()), rng.normal(size=400), rng.normal(1, 1, 400), n_boot=5)
    >>> bool(res.value > 0.5 and res.floor < 0.5)
    True
    """
    rng = make_rng(seed)
    if real2 is None:
        floor_a, floor_b = split_halves(real, rng)
    else:
        floor_a, floor_b = real, real2
    if method not in ("bootstrap", "half", "intrinsic"):
        raise ConfigError(f"with_floor: unknown method '{method}' (use 'bootstrap', 'half' or 'intrinsic')")
    resampled = method != "intrinsic"
    if resampled and n_boot < 2:
        raise ConfigError(f"with_floor: n_boot must be >= 2, got {n_boot}")
    # the rows of every round, drawn in the order the rounds were always drawn (value's, then the floor's)
    pairs = {}
    for name, a, b in (("value", real, fake), ("floor", floor_a, floor_b)):
        na, nb = n_samples(a), n_samples(b)
        extra = [(_draw(na, method, rng), _draw(nb, method, rng)) for _ in range(n_boot)] if resampled else []
        pairs[name] = [(None, None), *extra]
    res_v = [_as_dict(v) for v in _evaluate(metric, real, fake, pairs["value"])]
    res_f = [_as_dict(v) for v in _evaluate(metric, floor_a, floor_b, pairs["floor"])]
    value, floor = res_v[0], res_f[0]
    if resampled:
        error, floor_error = _spread(res_v[1:]), _spread(res_f[1:])
    else:
        error = {k: value.get(f"{k}_err", math.nan) for k in value}
        floor_error = {k: floor.get(f"{k}_err", math.nan) for k in floor}
    out = {
        k: FloorResult(value[k], error.get(k, math.nan), floor.get(k, math.nan), floor_error.get(k, math.nan))
        for k in value
        if not (k.endswith("_err") and k[: -len("_err")] in value)
    }
    return out[""] if list(out) == [""] else out
