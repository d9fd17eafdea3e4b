"""The generic ``array`` domain: any fixed-shape samples with named conditions.

Vectors (``(N, d)``) get MLPs; 2-D/3-D grids (``(N, H, W)``, ``(N, D, H, W)``)
get convolutional nets. The transform standardises per feature for vectors and
globally for grids, optionally after ``log1p`` for non-negative data
(``data.transform.log=true``). Useful on its own for simulations physgan has no
domain for, and the engine's reference domain.

Model options (``model.options.<name>``, recorded in the run so ``load_run`` rebuilds the same nets):

* MLPs: ``activation`` (``leaky_relu``, default, or ``relu``) and ``critic_norm`` (``layer``,
  default, or ``none``). ``relu`` and ``none`` suit low-dimensional multimodal data such as the 5 x 5
  grid of Gaussians (``python -m bench.mode_dropping --toy grid``).
* conv nets: ``z_channels``, ``n_up``, ``n_down`` and ``padding_mode`` (``zeros`` or ``circular``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from physgan.domains.base import Domain, ModelSpec, Transform, register_domain, typed_options
from physgan.nn.generic import ACTIVATIONS, CRITIC_NORMS, ConvCritic, ConvGenerator, MLPCritic, MLPGenerator

__all__ = ["ArrayTransform", "ArrayModelOptions", "ArrayTransformOptions", "array_features", "array_metrics"]


@dataclass(frozen=True)
class ArrayModelOptions:
    """``model.options`` of the array domain's MLPs (vectors) and conv nets (grids); the defaults are the code's."""

    activation: Literal[ACTIVATIONS] = ACTIVATIONS[0]  # MLP hidden activation
    critic_norm: Literal[CRITIC_NORMS] = CRITIC_NORMS[0]  # MLP critic hidden-layer normalisation
    z_channels: int | None = None  # conv generator latent channels (None: min(model.z_dim, 32))
    n_up: int | None = None  # conv generator upsamplings (None: min(model.depth, 3))
    n_down: int | None = None  # conv critic downsamplings (None: min(model.depth, 3))
    padding_mode: Literal["zeros", "circular", "reflect", "replicate"] = "zeros"  # 'circular' for periodic grids


@dataclass(frozen=True)
class ArrayTransformOptions:
    """``data.transform`` of :class:`ArrayTransform`."""

    log: bool = False  # log1p(x / log_scale) first
    log_scale: float | None = None  # None: the mean of the positive values


class ArrayTransform(Transform):
    """Standardisation (per feature for vectors, global for grids), optional log1p.

    Options
    -------
    log : bool
        Apply ``log1p(x / log_scale)`` first (non-negative data spanning decades).
    log_scale : float
        Scale inside the log (default: the mean of the positive values).
    """

    name = "array"

    def fit(self, x: np.ndarray, c: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> Transform:
        x = np.asarray(x, dtype=np.float64)
        opts = typed_options(ArrayTransformOptions, self.options, "data.transform")
        if opts.log:
            if (x < 0).any():
                from physgan.errors import ConfigError

                raise ConfigError("data.transform.log=true needs non-negative samples; this data has negative values")
            scale = float(opts.log_scale or (x[x > 0].mean() if (x > 0).any() else 1.0))
            self.stats["log_scale"] = scale
            x = np.log1p(x / scale)
        if x.ndim == 2:  # vectors: per feature
            self.stats["mean"] = x.mean(axis=0).tolist()
            self.stats["std"] = (x.std(axis=0) + 1e-6).tolist()
        else:
            self.stats["mean"] = float(x.mean())
            self.stats["std"] = float(x.std() + 1e-6)
        self.stats["grid"] = x.ndim > 2
        return self

    def model_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1, *sample_shape) if len(sample_shape) >= 2 else tuple(sample_shape)

    def _ms(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.stats["mean"], dtype=ref.dtype, device=ref.device)
        std = torch.as_tensor(self.stats["std"], dtype=ref.dtype, device=ref.device)
        return mean, std

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if "log_scale" in self.stats:
            x = torch.log1p(x.clamp_min(0) / self.stats["log_scale"])
        mean, std = self._ms(x)
        y = (x - mean) / std
        return y.unsqueeze(1) if self.stats.get("grid") else y

    def inverse(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.stats.get("grid"):
            y = y.squeeze(1)
        mean, std = self._ms(y)
        x = y * std + mean
        if "log_scale" in self.stats:
            x = torch.expm1(x.clamp_min(0)) * self.stats["log_scale"]
        return x


def build_generator(spec: ModelSpec) -> torch.nn.Module:
    opts = typed_options(ArrayModelOptions, spec.options)
    if len(spec.sample_shape) == 1:
        return MLPGenerator(spec.sample_shape, spec.n_cond, spec.z_dim, spec.width, spec.depth, spec.embed_dim, opts.activation)
    return ConvGenerator(
        spec.sample_shape,
        spec.n_cond,
        z_dim=opts.z_channels if opts.z_channels is not None else min(spec.z_dim, 32),
        width=spec.width,
        n_up=opts.n_up if opts.n_up is not None else min(spec.depth, 3),
        embed_dim=spec.embed_dim,
        padding_mode=opts.padding_mode,
    )


def build_critic(spec: ModelSpec) -> torch.nn.Module:
    opts = typed_options(ArrayModelOptions, spec.options)
    if len(spec.sample_shape) == 1:
        return MLPCritic(spec.sample_shape, spec.n_cond, spec.width, spec.depth, spec.embed_dim, opts.activation, opts.critic_norm)
    return ConvCritic(
        spec.sample_shape,
        spec.n_cond,
        width=spec.width,
        n_down=opts.n_down if opts.n_down is not None else min(spec.depth, 3),
        embed_dim=spec.embed_dim,
        padding_mode=opts.padding_mode,
    )


def array_features(x: np.ndarray, c: np.ndarray, attrs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Generic per-sample features: mean, std, min, max (and up to 8 raw features for vectors)."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    feats = {"mean": flat.mean(1), "std": flat.std(1), "min": flat.min(1), "max": flat.max(1)}
    if flat.shape[1] <= 8:
        feats.update({f"x{i}": flat[:, i] for i in range(flat.shape[1])})
    return feats


def array_metrics(real, fake, attrs: dict[str, Any]) -> dict[str, float]:
    """Validation metrics: separation power of the generic features, mean/std errors."""
    from physgan.metrics.separation import separation_power_samples

    fr, ff = array_features(real[0], real[1], attrs), array_features(fake[0], fake[1], attrs)
    names = list(fr)
    seps = separation_power_samples(np.stack([fr[k] for k in names], 1), np.stack([ff[k] for k in names], 1), names=names)
    out = {f"sep/{k}": v for k, v in seps.items()}
    rf, ff_ = real[0].reshape(len(real[0]), -1), fake[0].reshape(len(fake[0]), -1)
    scale = rf.std(0).mean() + 1e-12
    out["mean_abs_error"] = float(np.abs(rf.mean(0) - ff_.mean(0)).mean() / scale)
    out["std_abs_error"] = float(np.abs(rf.std(0) - ff_.std(0)).mean() / scale)
    return out


def array_score(metrics: dict[str, float]) -> float:
    """Mean separation power of the generic features (lower is better)."""
    seps = [v for k, v in metrics.items() if k.startswith("sep/")]
    return float(np.mean(seps)) if seps else float("inf")


def add_make_arguments(parser) -> None:
    """Options of ``physgan data make array`` (toy data with known answers)."""
    parser.add_argument(
        "--toy", choices=["ring", "grid", "blobs"], default="ring", help="ring of 8 Gaussians, 5x5 grid, or 2-D blob images"
    )
    parser.add_argument("--n", type=int, default=10000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cond-range", default=None, help="LO:HI of the condition (ring radius / grid spacing / blob width)")
    parser.add_argument("--size", type=int, default=16, help="image size for --toy blobs")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true")


def make(*, out: str, toy: str, n: int, seed: int, cond_range: str | None, size: int, overwrite: bool) -> Path:
    """Write a toy dataset in the ``array`` layout (the options of ``physgan data make array``); returns its path."""
    import time

    import physgan
    from physgan.io.hdf5 import write_samples
    from physgan.sim.toy import gaussian_blobs, sample_modes

    if n < 1:
        from physgan.errors import ConfigError

        raise ConfigError("--n must be >= 1")
    lo_hi = tuple(float(v) for v in cond_range.split(":")) if cond_range else None
    if toy == "blobs":
        x, c = gaussian_blobs(n, size, lo_hi or (1.5, 4.0), seed=seed)
        names, units = ["width"], ["pixel"]
    else:
        x, c = sample_modes(n, toy, radius_range=lo_hi or (1.5, 2.5), seed=seed)
        names, units = (["radius"] if toy == "ring" else ["spacing"]), [""]
    attrs = {
        "domain": "array",
        "simulator": f"physgan.sim.toy:{toy}",
        "seed": seed,
        "created_by": f"physgan {physgan.__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return write_samples(out, x, c, names, "array", units, attrs, overwrite=overwrite)


register_domain(
    Domain(
        name="array",
        description="any HDF5 file of fixed-shape samples with named conditions (MLP or conv nets)",
        layouts=["array"],
        make_transform=lambda options: ArrayTransform(**options),
        build_generator=build_generator,
        build_critic=build_critic,
        features=array_features,
        physics_metrics=array_metrics,
        score=array_score,
        model_options=ArrayModelOptions,
        transform_options=ArrayTransformOptions,
        presets={
            "quick": {"train": {"steps": 300, "batch_size": 64, "val_every": 100, "ckpt_every": 100, "log_every": 25}},
        },
        detect=lambda header: True,
        add_make_arguments=add_make_arguments,
        make=make,
        quickstart={"make": {"toy": "ring", "n": 4000}, "preset": "quick"},
    )
)
