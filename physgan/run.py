"""Trained runs for analysis: load, sample, generate files; and a fit/sample facade.

Examples
--------
>>> import physgan
>>> run = physgan.load_run("runs/calo-001")                       # doctest: +SKIP
>>> x = run.sample(n=1000, cond={"energy": 50.0}, seed=0)          # doctest: +SKIP
>>> x = run.sample(n=1000, cond={"energy": (10.0, 100.0)}, seed=0) # uniform in [10, 100]
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import physgan
from physgan.config import Config, resolve_config
from physgan.device import resolve_device
from physgan.domains.base import get_domain, model_spec
from physgan.errors import CheckpointError, ConfigError, PhysganWarning
from physgan.progress import Progress
from physgan.sampling import generate_batch
from physgan.train.checkpoint import latest_checkpoint, load_checkpoint
from physgan.train.conditions import ConditionNormaliser

__all__ = ["Run", "load_run", "parse_condition", "check_sampling_args", "conditions_from_file", "Surrogate"]

#: a requested range may overshoot the training range by this fraction of its width: it is clipped to it
#: (a range typed as 1:100 for a training range [1.001, 99.999]); values from a file that far out are kept, with a warning
RANGE_SLACK = 0.01

CondSpec = float | tuple[float, float] | np.ndarray


def parse_condition(text: str) -> tuple[str, CondSpec]:
    """``name=value`` or ``name=lo:hi`` (uniform) or ``name=lo:hi:log`` (log-uniform)."""
    if "=" not in text:
        raise ConfigError(f"condition '{text}' must look like name=value or name=lo:hi")
    name, val = text.split("=", 1)
    parts = val.split(":")
    try:
        if len(parts) == 1:
            return name.strip(), float(parts[0])
        if len(parts) == 2:
            return name.strip(), (float(parts[0]), float(parts[1]))
        if len(parts) == 3 and parts[2] == "log":
            return name.strip(), (float(parts[0]), float(parts[1]), "log")
    except ValueError:
        pass
    raise ConfigError(f"condition '{text}': value must be a number, lo:hi or lo:hi:log")


#: seeds are non-negative 63-bit integers (what torch generators and :func:`~physgan.generate_sharded.rank_seed` use)
MAX_SEED = 2**63


def check_sampling_args(n: int | None = None, seed: int | None = 0, batch_size: int | None = None) -> None:
    """Clear errors for impossible sampling arguments (negative n or seed, batch size < 1).

    Raises
    ------
    ConfigError
        Naming the argument and the accepted values.
    """
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 0):
        raise ConfigError(f"the number of samples must be an integer >= 0 (got {n!r})")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED):
        raise ConfigError(f"seed must be an integer in [0, 2**63) or None (got {seed!r})")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ConfigError(f"batch size must be an integer >= 1 (got {batch_size!r})")


def conditions_from_file(path: str | Path, names: list[str]) -> np.ndarray:
    """The conditions of every sample of an HDF5 file, in file order, columns ordered as ``names``.

    Parameters
    ----------
    path : str or Path
        Any layout physgan reads (e.g. the held-out evaluation file).
    names : list of str
        The run's condition names; the file must hold each of them.

    Returns
    -------
    numpy.ndarray, shape (N, len(names))
        Physical conditions as the layout reads them (float32 values).

    Raises
    ------
    DataError
        When the file lacks a condition the run needs.
    """
    from physgan.errors import DataError
    from physgan.io.hdf5 import open_source

    src = open_source(path)
    have = list(src.condition_names)
    missing = [n for n in names if n not in have]
    if missing:
        raise DataError(str(path), f"has conditions {have}, the run needs {names} (missing {missing})")
    cols = [have.index(n) for n in names]
    blocks = [c[:, cols] for _, _, c in src.blocks()]
    return np.concatenate(blocks).astype(np.float64) if blocks else np.zeros((0, len(names)))


class Run:
    """A trained run: EMA generator, transform and condition normalisation.

    Use :func:`load_run`. Attributes: ``domain`` (name), ``condition_names``,
    ``condition_units``, ``condition_range`` ({name: (min, max)} seen in training),
    ``sample_shape``, ``info`` (run.json), ``config``, ``step``.
    """

    def __init__(self, run_dir: Path, state: dict[str, Any], device: torch.device):
        self.run_dir = Path(run_dir)
        self.info: dict[str, Any] = state["run"]
        from physgan.config import config_from_dict, undeclared_options

        self.config: Config = config_from_dict(state["config"])
        self.step = int(state["step"])
        self.domain_name = self.info["domain"]
        self.domain = get_domain(self.domain_name)
        retired = undeclared_options(self.domain.model_options, self.config.model.options)
        retired += undeclared_options(self.domain.transform_options, state["transform"].get("options", {}))
        if retired:
            warnings.warn(
                f"{run_dir}: the run's options {', '.join(sorted(retired))} are no longer declared by domain "
                f"'{self.domain_name}': ignored",
                PhysganWarning,
                stacklevel=3,
            )
        self.device = device
        self.transform = self.domain.make_transform(state["transform"].get("options", {}))
        self.transform.load_state_dict(state["transform"])
        self.normaliser = ConditionNormaliser.from_state(state["conditions"])
        spec = model_spec(
            self.info["model_shape"],
            self.info["condition_names"],
            self.config.model,
            state["conditions"],
            self.transform.stats,
            self.info.get("attrs", {}),
        )
        self.G = self.domain.build_generator(spec)
        self.G.load_state_dict(state["G_ema"])
        self.G.to(device).eval().requires_grad_(False)

    @property
    def condition_names(self) -> list[str]:
        return list(self.info["condition_names"])

    @property
    def condition_units(self) -> list[str]:
        return list(self.info["condition_units"])

    @property
    def condition_range(self) -> dict[str, tuple[float, float]]:
        n = self.normaliser
        return {name: (n.min[j], n.max[j]) for j, name in enumerate(n.names)}

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.info["sample_shape"])

    def __repr__(self) -> str:
        rng = ", ".join(
            f"{k} in [{lo:.4g}, {hi:.4g}] {u}" for (k, (lo, hi)), u in zip(self.condition_range.items(), self.condition_units)
        )
        return f"Run('{self.run_dir}', domain={self.domain_name}, step={self.step}, sample_shape={self.sample_shape}, {rng})"

    def conditions(
        self, n: int, cond: Mapping[str, Any] | None = None, seed: int | None = 0, allow_extrapolation: bool = False
    ) -> np.ndarray:
        """Physical conditions ``(n, k)`` from a spec per name (value, (lo, hi), or array).

        Conditions not given are drawn uniformly over their training range.
        Values outside the training range raise :class:`ConfigError` unless
        ``allow_extrapolation`` (then a warning); values outside the domain's physical
        bounds (an energy <= 0, a porosity above 1) always raise. A requested range that
        overshoots the training range by at most :data:`RANGE_SLACK` of its width is clipped
        to it (``energy=1:100`` for a training range [1.001, 99.999]); values (or arrays)
        that far out are kept with a warning.
        """
        check_sampling_args(n, seed)
        cond = dict(cond or {})
        unknown = set(cond) - set(self.condition_names)
        if unknown:
            raise ConfigError(f"unknown condition(s) {sorted(unknown)}; this run is conditioned on {self.condition_names}")
        rng = np.random.default_rng(seed)
        cols = []
        for j, name in enumerate(self.condition_names):
            lo_tr, hi_tr = self.normaliser.min[j], self.normaliser.max[j]
            spec = cond.get(name, (lo_tr, hi_tr))
            slack = RANGE_SLACK * (hi_tr - lo_tr) + 1e-6 * max(abs(lo_tr), abs(hi_tr), 1.0)
            if isinstance(spec, tuple):
                lo, hi = float(spec[0]), float(spec[1])
                if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                    raise ConfigError(f"condition {name}: range {lo:g}:{hi:g} must be finite with lo <= hi")
                if lo_tr - slack <= lo < lo_tr:
                    lo = float(lo_tr)
                if hi_tr < hi <= hi_tr + slack:
                    hi = float(hi_tr)
                if len(spec) == 3 and spec[2] == "log":
                    if lo <= 0:
                        raise ConfigError(f"condition {name}: log-uniform range needs lo > 0")
                    col = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
                else:
                    col = rng.uniform(lo, hi, n)
                vals = np.array([lo, hi])
            else:
                col = np.broadcast_to(np.asarray(spec, dtype=np.float64), (n,)).copy()
                if not np.isfinite(col).all():
                    raise ConfigError(f"condition {name}: values must be finite")
                vals = col
            self._physical(np.asarray(vals, dtype=np.float64).reshape(-1, 1), [name])  # physics before the range
            tol = 1e-6 * max(abs(lo_tr), abs(hi_tr), 1.0)
            if lo_tr - slack <= vals.min() < lo_tr - tol or hi_tr + tol < vals.max() <= hi_tr + slack:
                outside = int(np.sum((vals < lo_tr - tol) | (vals > hi_tr + tol)))
                warnings.warn(
                    f"condition {name}: {outside} value(s) up to [{vals.min():.6g}, {vals.max():.6g}] lie just outside the "
                    f"training range [{lo_tr:.6g}, {hi_tr:.6g}] (within {RANGE_SLACK:.0%} of its width); generating there",
                    stacklevel=2,
                )
            elif vals.min() < lo_tr - tol or vals.max() > hi_tr + tol:
                msg = (
                    f"condition {name} = [{vals.min():.6g}, {vals.max():.6g}] is outside the training range "
                    f"[{lo_tr:.6g}, {hi_tr:.6g}]"
                )
                if not allow_extrapolation:
                    raise ConfigError(msg + "; refusing to extrapolate (pass --allow-extrapolation / allow_extrapolation=True)")
                warnings.warn(msg + "; extrapolating", stacklevel=2)
            cols.append(col)
        c = np.stack(cols, 1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)
        c = self.check_conditions(c, free=[name not in cond for name in self.condition_names], rng=rng)
        return self._physical(c)

    def _physical(self, c_all: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """``c_all`` if inside the domain's physical bounds (:mod:`physgan.domains.checks`), else ConfigError."""
        from physgan.domains.checks import check_requested_conditions

        check_requested_conditions(self.domain, names or self.condition_names, c_all)
        return c_all

    def check_conditions(self, c: np.ndarray, free: list[bool] | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Apply the domain's constraints between conditions (``Domain.complete_conditions``).

        ``free[j]`` marks columns drawn by default, which the domain may redraw; given
        columns that violate a constraint raise :class:`ConfigError`.
        """
        hook = self.domain.complete_conditions
        if hook is None or not len(c):
            return c
        n = self.normaliser
        ranges = list(zip(n.min, n.max))
        free = free if free is not None else [False] * len(self.condition_names)
        return hook(self.condition_names, c, free, ranges, rng or np.random.default_rng(0), self.info.get("attrs", {}))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: Mapping[str, Any] | np.ndarray | None = None,
        seed: int | None = 0,
        batch_size: int = 4096,
        latent_scale: int = 1,
        return_conditions: bool = False,
        allow_extrapolation: bool = False,
        as_tensor: bool = False,
    ):
        """Generate ``n`` samples in physical units.

        Parameters
        ----------
        n : int
            Number of samples.
        cond : dict or array, optional
            ``{name: value | (lo, hi) | array}`` or an ``(n, k)`` array of physical
            conditions. Missing names: uniform over the training range.
        seed : int
            Seed of latents and drawn conditions (same seed, same samples).
        batch_size : int
            Samples per generator call.
        latent_scale : int
            >1 asks fully convolutional generators for larger samples.
        return_conditions : bool
            Also return the ``(n, k)`` conditions.
        as_tensor : bool
            Return a torch tensor on the run's device instead of numpy.

        Returns
        -------
        x : ndarray ``(n, *sample_shape)`` (and ``c`` if requested)
        """
        check_sampling_args(n, seed, batch_size)
        if isinstance(cond, np.ndarray):
            c_all = self._physical(self.check_conditions(np.asarray(cond, dtype=np.float32).reshape(n, len(self.condition_names))))
        else:
            c_all = self.conditions(n, cond, seed, allow_extrapolation)
        x = None  # filled batch by batch: one array of the result, not a list of batches joined at the end (which
        # held the samples twice; 20-35 % of the calorimeter's sampling time at 10^5 showers, bench/RESULTS.md §13)
        start = 0
        for xb, _ in self.iter_batches(c_all, seed, batch_size, latent_scale, as_tensor=as_tensor):
            if x is None:
                shape = (len(c_all), *xb.shape[1:])
                x = torch.empty(shape, dtype=xb.dtype, device=xb.device) if as_tensor else np.empty(shape, dtype=xb.dtype)
            x[start : start + len(xb)] = xb
            start += len(xb)
        if x is None:  # n = 0: an empty array of the right shape
            empty = np.zeros((0, *self.sample_shape), np.float32)
            x = torch.from_numpy(empty).to(self.device) if as_tensor else empty
        return (x, c_all) if return_conditions else x

    @torch.no_grad()
    def iter_batches(
        self, c_all: np.ndarray, seed: int | None, batch_size: int = 4096, latent_scale: int = 1, as_tensor: bool = False
    ):
        """Yield ``(x, c)`` batches for the physical conditions ``c_all`` (streaming)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed) if seed is not None else int(time.time_ns() % 2**62))
        for s in range(0, len(c_all), batch_size):
            c = torch.as_tensor(c_all[s : s + batch_size], dtype=torch.float32, device=self.device)
            z = torch.randn((len(c), *self.G.latent_shape(latent_scale)), device=self.device, generator=gen)
            x = generate_batch(self.G, self.transform, self.normaliser, c, z, self.config.train.precision)
            yield (x if as_tensor else x.cpu().numpy()), c_all[s : s + batch_size]

    def generate(
        self,
        path: str | Path,
        n: int,
        cond: Mapping[str, Any] | np.ndarray | None = None,
        seed: int | None = 0,
        batch_size: int = 4096,
        overwrite: bool = False,
        compression: str | None = None,
        progress: bool = True,
        allow_extrapolation: bool = False,
        latent_scale: int = 1,
    ) -> Path:
        """Write ``n`` generated samples (with conditions) to ``path`` in the training file's layout.

        Streams in batches into a temporary file renamed into place only when
        complete; refuses to overwrite unless ``overwrite``.
        """
        from physgan.io.hdf5 import SampleWriter
        from physgan.io.layout import Header, default_chunk_rows

        check_sampling_args(n, seed, batch_size)
        if isinstance(cond, np.ndarray):
            c_all = np.asarray(cond).reshape(n, -1)
            if c_all.shape[1] != len(self.condition_names):
                raise ConfigError(f"conditions have {c_all.shape[1]} columns, the run needs {self.condition_names}")
            # the same range checks as for drawn conditions, column by column
            self.conditions(n, dict(zip(self.condition_names, c_all.T)), seed, allow_extrapolation)
            cond = {}
        else:
            c_all = self.conditions(n, cond, seed, allow_extrapolation)
        shape = self.sample_shape if latent_scale == 1 else None
        if shape is None:  # larger fields: learn the shape from one sample
            shape = tuple(next(self.iter_batches(c_all[:1], seed, 1, latent_scale))[0].shape[1:])
        attrs = dict(self.info.get("attrs", {}))
        attrs.update(
            {
                "domain": self.domain_name,
                "generated_by": f"physgan {physgan.__version__}",
                "run": str(self.run_dir.resolve()),
                "run_step": self.step,
                "seed": -1 if seed is None else int(seed),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "conditions_requested": json.dumps(
                    {k: (list(v) if isinstance(v, tuple) else v) for k, v in (cond or {}).items()}
                ),
            }
        )
        header = Header(
            n=n,
            sample_shape=shape,
            condition_names=self.condition_names,
            condition_units=self.condition_units,
            attrs=attrs,
            chunk_rows=min(default_chunk_rows(shape), max(batch_size, 1)),
            sample_units=self.info.get("sample_units", ""),
            non_negative=bool(self.info.get("non_negative", False)),
            dtype=self.info.get("sample_dtype", "float32"),
            condition_dtype=self.info.get("condition_dtype", "float32"),
        )
        with (
            Progress(n, "generate", "sample", bool(progress)) as bar,
            SampleWriter(path, self.info["layout"], header, overwrite=overwrite, compression=compression) as w,
        ):
            for x, c in self.iter_batches(c_all, seed, batch_size, latent_scale):
                w.append(x, c)
                bar.update(len(x))
        return Path(path)


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto") -> Run:
    """Load a trained run for sampling.

    Parameters
    ----------
    path : path
        Run directory (or a checkpoint file).
    checkpoint : str
        ``best`` (falls back to ``last``), ``last``, or a file name in checkpoints/ (``.pt``
        optional); a named file that does not exist is a :class:`CheckpointError` listing those that do.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """
    ck, run_dir = resolve_checkpoint(path, checkpoint)
    dev = resolve_device(device)
    return Run(run_dir, load_checkpoint(ck, map_location="cpu"), dev)


def resolve_checkpoint(path: str | Path, checkpoint: str = "best") -> tuple[Path, Path]:
    """The checkpoint file :func:`load_run` reads for ``path`` and ``checkpoint``, and its run directory.

    Parameters
    ----------
    path : path
        Run directory (or a checkpoint file, whose run directory is two levels up).
    checkpoint : str
        As in :func:`load_run`.

    Returns
    -------
    (Path, Path)
        The checkpoint file and the run directory.
    """
    path = Path(path)
    if path.is_file():
        ck, run_dir = path, path.parent.parent
    else:
        if not path.is_dir():
            raise CheckpointError(f"{path}: run directory does not exist")
        ckdir = path / "checkpoints"
        if checkpoint in ("best", "last"):
            names = ["best.pt", "last.pt"] if checkpoint == "best" else ["last.pt"]
            ck = next((ckdir / n for n in names if (ckdir / n).is_file()), None) or latest_checkpoint(path)
            if ck is None:
                raise CheckpointError(f"{path}: no checkpoint found in {ckdir} (has the run been trained?)")
        else:
            ck = _named_checkpoint(path, checkpoint)
        run_dir = path
    return ck, run_dir


def _named_checkpoint(run_dir: Path, name: str) -> Path:
    """``RUN/checkpoints/<name>`` (``.pt`` optional); a missing one is an error listing those that exist."""
    from physgan.train.checkpoint import checkpoint_names

    ckdir = run_dir / "checkpoints"
    for cand in (ckdir / name, ckdir / f"{name}.pt"):
        if cand.is_file() and cand.parent == ckdir:
            return cand
    have = checkpoint_names(run_dir)
    raise CheckpointError(
        f"{run_dir}: no checkpoint '{name}' in {ckdir}; "
        + (f"it holds: {', '.join(have)} (or use best / last)" if have else "it holds no checkpoint (has the run been trained?)")
    )


class Surrogate:
    """scikit-learn-style facade: ``Surrogate("calo").fit("calo.h5").sample(...)``.

    Parameters
    ----------
    domain : str
        Registered domain name.
    run_dir : path, optional
        Where the run is written (default ``runs/<domain>-<time>``).
    preset : str, optional
        Domain preset (``quick``, ...).
    **settings
        Config values as ``section__key=value``, e.g. ``train__steps=500``, ``model__options={"cell_noise": True}``
        (typed values: nothing is parsed as YAML).
    """

    def __init__(self, domain: str = "array", run_dir: str | Path | None = None, preset: str | None = None, **settings: Any):
        self.domain = domain
        self.run_dir = Path(run_dir) if run_dir else Path("runs") / f"{domain}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.preset = preset
        self.values: dict[str, Any] = {}
        for key, value in settings.items():
            section, sep, name = key.partition("__")
            if not sep or not name:
                raise ConfigError(f"Surrogate setting '{key}' must look like section__key, e.g. train__steps=500")
            self.values.setdefault(section, {})[name] = value
        self.run: Run | None = None

    def fit(self, data: str | Path, resume: str | None = None, progress: bool = True) -> Surrogate:
        from physgan.train.loop import train
        from physgan.train.resume import saved_run_config

        base = saved_run_config(self.run_dir) if resume else None
        values = {**self.values, "data": {**self.values.get("data", {}), "path": str(data)}}
        cfg = resolve_config(self.domain, self.preset, base=base, values=values)
        train(cfg, self.run_dir, resume=resume, progress=progress)
        self.run = load_run(self.run_dir)
        return self

    def sample(self, n: int, cond=None, seed: int | None = 0, **kw):
        if self.run is None:
            raise CheckpointError("Surrogate.sample before fit(); or use physgan.load_run(run_dir)")
        return self.run.sample(n, cond, seed, **kw)
