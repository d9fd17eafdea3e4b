"""The inputs of :func:`physgan.evaluate`: the sample sets, read once, and the representations the metrics compare.

:class:`Representations` builds, once per evaluation, what each registered metric's ``inputs``
names (:mod:`physgan.metrics.registry`): the high-level feature matrix (domain features, else
:class:`GenericFeatures`, plus conditions), its FPD/KPD scaling, the PRDC space, the low-level
representation (:class:`LowLevel`), the nearest-training-sample distances and the domain's own
physics inputs. Each is computed on first use and shared by the value, the floor and every round.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from physgan.errors import ConfigError, DataError
from physgan.metrics import MEMORISATION_MAX_QUERIES, PRDC_DIM
from physgan.metrics._common import make_rng
from physgan.metrics.bootstrap import LazyRows
from physgan.metrics.memorisation import train_distances
from physgan.metrics.scaling import reference_scale
from physgan.metrics.separation import auto_edges

__all__ = ["SampleSet", "load_samples", "read_sets", "resolve_domain", "GenericFeatures", "LowLevel", "Representations"]

MAX_LOW_DIM = 4096
PROJECTED_DIM = 1024
N_PCA = 3


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



def check_compatible(real: SampleSet, other: SampleSet, what: str) -> None:
    if real.x.shape[1:] != other.x.shape[1:]:
        raise DataError(other.label, f"{what} samples have shape {other.x.shape[1:]}, the real ones {real.x.shape[1:]}")
    if real.c.shape[1] != other.c.shape[1]:
        raise DataError(other.label, f"{what} has {other.c.shape[1]} conditions {other.condition_names}, real has {real.condition_names}")



class GenericFeatures:
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



def condition_columns(s: SampleSet, scales: dict[str, str]) -> dict[str, np.ndarray]:
    cols = {}
    for j, name in enumerate(s.condition_names[: s.c.shape[1]]):
        v = s.c[:, j].astype(np.float64)
        if scales.get(name) == "log" and (v > 0).all():
            cols[f"log10_{name}"] = np.log10(v)
        else:
            cols[name] = v
    return cols



class LowLevel:
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
        conds = condition_columns(SampleSet(s.x[:0], s.c[rows], s.attrs, s.condition_names), self.scales)
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



def read_sets(real: Any, fake: Any, real2: Any, train: Any, max_samples: int | None, seed: int):
    """The real, generated, second real and training sets (the last two may be None), checked compatible.

    Each file is read once: a path given for two roles (e.g. the training set as the second real set)
    is shared, unless ``max_samples`` makes the subset depend on the role's seed.
    """
    loaded: dict[str, SampleSet] = {}

    def load(obj: Any, label: str, set_seed: int) -> SampleSet | None:
        if obj is None:
            return None
        key = os.path.realpath(obj) if isinstance(obj, (str, os.PathLike)) and max_samples is None else None
        if key is None or key not in loaded:
            out = load_samples(obj, label, max_samples, set_seed)
            if key is None:
                return out
            loaded[key] = out
        return loaded[key]

    r, f = load(real, "real", seed), load(fake, "fake", seed + 1)
    check_compatible(r, f, "generated")
    r2, t = load(real2, "real2", seed + 2), load(train, "train", seed + 3)
    for other, what in ((r2, "second real"), (t, "training")):
        if other is not None:
            check_compatible(r, other, what)
    if len(r) < 20 or len(f) < 20:
        raise ConfigError(f"evaluate needs at least 20 real and 20 generated samples, got {len(r)} and {len(f)}")
    if not r.condition_names and f.condition_names:
        r.condition_names = f.condition_names
    return r, f, r2, t


def resolve_domain(name: str | None, real: SampleSet, fake: SampleSet):
    """``(name, Domain)``: the one named, else the real then the generated file's ``domain`` attribute, else array."""
    from physgan.domains.base import get_domain

    for cand in (name, real.attrs.get("domain"), fake.attrs.get("domain")):
        if cand:
            return str(cand), get_domain(str(cand))
    return "array", get_domain("array")


def _physics(real, fake, *, fn, attrs) -> dict[str, float]:
    out = fn(tuple(real), tuple(fake), attrs)
    return {str(k): float(v) for k, v in out.items()}


@dataclass
class Representations:
    """What the registered metrics compare, for the real, generated and (optional) second real set.

    Built with the high-level features, their FPD/KPD scaling and the low-level representation
    (the evaluation's "features" stage); the PRDC space and the training distances on first use.

    Parameters
    ----------
    real, fake, real2, train : SampleSet (``real2``, ``train`` may be None)
    name : str
        The domain's name.
    dom : Domain
    options : dict
        ``evaluate(options=...)`` (``features`` is read here).
    seed : int
    device : torch.device
    """

    real: SampleSet
    fake: SampleSet
    real2: SampleSet | None
    train: SampleSet | None
    name: str
    dom: Any
    options: dict[str, dict[str, Any]]
    seed: int
    device: torch.device
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r, f, r2, dom = self.real, self.fake, self.real2, self.dom
        self.scales = dict(dom.condition_scales)
        self.attrs = {**f.attrs, **r.attrs}
        self._feat_fn = dom.features or GenericFeatures(r.x, **self.options.get("features", {}), seed=self.seed)
        fr, ff = self._features(r), self._features(f)
        bad = [k for k, v in {**fr, **ff}.items() if not np.isfinite(v).all()]
        if bad:
            raise DataError(r.label, f"domain '{self.name}' features are not finite: {bad}")
        fr2 = None if r2 is None else fr if r2 is r else self._features(r2)  # a set read once is featurised once
        #: the domain's features of each set (reused by the physics metrics and the domain's plots)
        self.domain_features = (fr, ff, fr2)
        self.names = list(fr) + list(condition_columns(r, self.scales))
        hr, hf = self._matrix(fr, r), self._matrix(ff, f)
        hr2 = self._matrix(fr2, r2) if r2 is not None else None
        self.features = (hr, hf, hr2)
        self.low = LowLevel(r, self.scales, self.seed, self.device)
        lr, lf = self.low(r), self.low(f)
        self.low_level = (lr, lf, None if r2 is None else lr if r2 is r else self.low(r2))
        # one scale per feature, from all real samples, for FPD/KPD of the value and the floor alike
        n_small = min(len(r), len(f), len(r2)) if r2 is not None else min(len(r) // 2, len(f))
        self.scaling = reference_scale(self._pooled_real(), self.names, max_components=max(2, n_small // 4))
        self.scaled_features = tuple(None if h is None else self.scaling(h) for h in self.features)
        self.prdc_scaling = None
        self.memorisation_search: dict[str, float] | None = None

    def _features(self, s: SampleSet) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64).reshape(len(s)) for k, v in self._feat_fn(s.x, s.c, self.attrs).items()}

    def _matrix(self, feats: dict[str, np.ndarray], s: SampleSet) -> np.ndarray:
        from physgan.domains.base import feature_matrix

        return feature_matrix(feats, condition_columns(s, self.scales))[1]

    def _pooled_real(self) -> np.ndarray:
        hr, _, hr2 = self.features
        return hr if hr2 is None else np.concatenate([hr, hr2])

    @property
    def edges(self) -> dict[str, np.ndarray]:
        """Fixed histogram bins per feature, from the full real set."""
        if "edges" not in self.cache:
            self.cache["edges"] = {k: auto_edges(self.features[0][:, j]) for j, k in enumerate(self.names)}
        return self.cache["edges"]

    def available(self, inputs: str) -> bool:
        """Whether this evaluation has what ``inputs`` needs (a training set, the domain's physics)."""
        if inputs == "train_distances":
            return self.train is not None
        if inputs == "domain":
            return self.dom.physics_metrics is not None
        return True

    def get(self, inputs: str, options: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(real, fake, real2)`` in the representation ``inputs`` (``real2`` None without a second real set).

        ``options`` are the metric's options that its input takes (PRDC: ``dim``; the memorisation
        search: ``max_queries``, ``dim``, ...).
        """
        if inputs in ("features", "scaled_features", "low_level"):
            return getattr(self, inputs)
        if inputs == "prdc_features":
            # one ruler for the value, the floor and every half: standardised by the pooled real sets, leading components
            opts = dict(options)
            self.prdc_scaling = reference_scale(
                self._pooled_real(), self.names, mode="std", max_components=opts.pop("dim", PRDC_DIM)
            )
            return tuple(None if h is None else self.prdc_scaling(h) for h in self.features)
        if inputs == "train_distances":
            return self._train_distances(options)
        if inputs == "domain":
            return self._domain_inputs()
        raise ConfigError(f"evaluate: unknown metric inputs '{inputs}'")

    def _train_distances(self, options: dict[str, Any]):
        r, f, r2, t = self.real, self.fake, self.real2, self.train
        nearest = self.dom.nearest
        if nearest is not None:  # the domain's own (dis)similarity, e.g. periodic cross-correlation of fields
            sets = {"real": r.x, "fake": f.x, **({"real2": r2.x} if r2 is not None else {})}
            dist, info = nearest(t.x, sets, self.attrs, seed=self.seed, **options)
        else:
            lr, lf, lr2 = self.low_level
            sets = {"real": lr, "fake": lf, **({"real2": lr2} if lr2 is not None else {})}
            opts = {"max_queries": MEMORISATION_MAX_QUERIES, **options}
            dist, info = train_distances(t.x, sets, seed=self.seed, device=self.device, embed=partial(self.low.embed, t), **opts)
        self.memorisation_search = {k: float(v) for k, v in info.items()}
        return dist["real"], dist["fake"], dist.get("real2")

    def _domain_inputs(self):
        """The sets as the domain's ``physics_metrics`` takes them: ``(x, c)``, or ``(x, c, features)``."""
        if not self.dom.physics_takes_features:
            return tuple(None if s is None else (s.x, s.c) for s in (self.real, self.fake, self.real2))
        # with the features given, the domain reads few rows of x: rounds select them without copying every sample
        return tuple(
            None if s is None else (LazyRows(s.x), s.c, feats)
            for s, feats in zip((self.real, self.fake, self.real2), self.domain_features)
        )

    def domain_metric(self):
        """The domain's physics metrics as a two-sample callable."""
        return partial(_physics, fn=self.dom.physics_metrics, attrs=self.attrs)
