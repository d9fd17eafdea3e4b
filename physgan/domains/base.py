"""The Domain contract: what a physics domain plugs into the generic engine.

A domain is data, not a class hierarchy: a :class:`Domain` record of plain
functions and small objects. The engine (trainer, generator, evaluator, CLI)
only ever looks domains up by name with :func:`get_domain`; it never imports a
domain module directly. Users register their own with :func:`register_domain`.

Conventions every domain follows
--------------------------------
* Samples in *physical units* are numpy/torch arrays ``x`` of shape
  ``(N, *sample_shape)`` as a :class:`~physgan.io.layout.Layout` reads them;
  conditions ``c`` are ``(N, k)`` float arrays in physical units, columns named.
* A :class:`Transform` maps physical samples to *model space* (what G outputs
  and D reads) and back, given the batch's physical conditions (so a calorimeter
  transform can divide by the incident energy); it is fitted on training data
  and its statistics are saved in the run (``state_dict`` must be
  JSON-serialisable). ``make_transform(options)`` builds it unfitted.
* Files carry ``attrs['domain'] = <name>`` (written by ``data make``/``generate``)
  so ``evaluate`` can pick the domain without ``--domain``.
* ``build_generator(spec)`` returns an ``nn.Module`` ``G(z, c) -> y`` with ``y``
  of shape ``(B, *transform.model_shape)``, ``c`` the *normalised* conditions
  ``(B, k)``, and a method ``latent_shape(scale=1) -> tuple`` giving the shape of
  one latent ``z`` (scale > 1 asks fully convolutional generators for a larger
  output, e.g. bigger N-body boxes or microstructure volumes). Optionally a
  method ``take_auxiliary_loss() -> Tensor | None``: a term of the generator's
  own from its last training forward, which the training step adds to the
  generator's loss once (the calorimeter's ``occupancy_level_mean_weight``).
* ``build_critic(spec)`` returns an ``nn.Module`` ``D(y, c) -> (B,)`` scores; no
  batch norm (it breaks the per-sample gradient penalty).
* ``features(x, c, attrs)`` returns per-sample high-level features (physical
  units) as ``{name: (N,) array}``: the inputs of the generic metrics (FPD/KPD,
  separation power, classifier AUC on high-level features).
* ``physics_metrics(real, fake, attrs)`` with ``real = (x, c)``,
  ``fake = (x, c)`` returns ``{name: float}``; ``score(metrics)`` turns them into
  one number, lower is better, for best-checkpoint selection.
* ``plots(real, fake, attrs, outdir)`` writes PNG figures and returns
  ``[(title, path), ...]``; the first (up to four) are the domain's headline
  figures, shown on the first screen of the evaluation report.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from physgan.errors import ConfigError

__all__ = [
    "ModelSpec",
    "model_spec",
    "Transform",
    "StandardiseTransform",
    "IdentityTransform",
    "Domain",
    "register_domain",
    "get_domain",
    "domains",
    "import_hint",
    "feature_matrix",
    "typed_options",
]


@dataclass
class ModelSpec:
    """Everything a model factory needs to build G and D.

    Attributes
    ----------
    sample_shape : tuple of int
        Shape of one sample in model space (``Transform.model_shape``).
    n_cond : int
        Number of conditions (0 for unconditional data).
    condition_names : list of str
        Their names, in column order.
    z_dim : int
        Latent size (channels of the latent grid for conv generators).
    width : int
        Base width (hidden units / channels).
    depth : int
        Number of hidden layers / blocks (a hint; factories may derive it).
    embed_dim : int
        Size of the condition embedding.
    options : dict
        Domain-specific model options from the config (``model.options``): only what the user set,
        checked against the domain's ``model_options`` record.
    attrs : dict
        The data file's attributes (geometry, box size, ...).
    data_stats : dict
        The fitted transform's statistics of the training data (``Transform.stats``), passed by the
        engine so factories may initialise from the data and rebuild identically when a run is loaded.
    condition_stats : dict
        The condition normaliser's state (:class:`~physgan.train.conditions.ConditionNormaliser`).

    Notes
    -----
    ``options['data_stats']`` / ``options['condition_stats']`` given by hand (callers written before
    the two fields existed) are moved to the fields, replacing what they held.
    """

    sample_shape: tuple[int, ...]
    n_cond: int
    condition_names: list[str]
    z_dim: int = 64
    width: int = 64
    depth: int = 3
    embed_dim: int = 32
    options: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    data_stats: dict[str, Any] = field(default_factory=dict)
    condition_stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        options = dict(self.options or {})
        for key in ("data_stats", "condition_stats"):
            if key in options:
                setattr(self, key, dict(options.pop(key) or {}))
        self.options = options


def typed_options(record: type, values: Mapping[str, Any], where: str = "model.options") -> Any:
    """A domain's options mapping as its typed record: every declared option, the record's default where unset.

    The one place a factory reads its options from (``opts = typed_options(MyModelOptions, spec.options)``,
    then ``opts.width``), so each default is written once, in the record. Values are checked and converted
    as ``resolve_config`` does (a factory called directly gets the same errors). Keys the record does not
    declare (options of runs made by older code, named in a warning when the run's config was read) are
    left out.

    Parameters
    ----------
    record : dataclass type
        The domain's ``model_options`` or ``transform_options`` record.
    values : mapping
        ``model.options`` / ``data.transform``.
    where : str
        Their place in the config, for messages.

    Returns
    -------
    record instance

    Raises
    ------
    ConfigError
        A value of the wrong type or outside its choices.

    Examples
    --------
    >>> from physgan.domains.array import ArrayModelOptions
    >>> typed_options(ArrayModelOptions, {"n_up": "2", "retired_key": 1}).n_up
    2
    """
    from physgan.config import check_options

    names = {f.name for f in dataclasses.fields(record)}
    return record(**check_options(record, {k: v for k, v in values.items() if k in names}, where))


def model_spec(model_shape, condition_names, model_cfg, condition_state: dict, transform_stats: dict, attrs: dict) -> ModelSpec:
    """The :class:`ModelSpec` of a run (shared by training and :func:`physgan.run.load_run`).

    ``model_cfg`` is the config's ``model`` section (:class:`physgan.config.ModelConfig`).

    ``options`` is the config's ``model.options``; the fitted statistics travel beside them:
    ``condition_stats`` (the condition normaliser's state) and ``data_stats`` (the fitted transform's
    statistics of the training data), so factories may initialise from the data and rebuild
    identically when a run is loaded.
    """
    return ModelSpec(
        sample_shape=tuple(model_shape),
        n_cond=len(condition_names),
        condition_names=list(condition_names),
        z_dim=model_cfg.z_dim,
        width=model_cfg.width,
        depth=model_cfg.depth,
        embed_dim=model_cfg.embed_dim,
        options=dict(model_cfg.options),
        condition_stats=dict(condition_state or {}),
        data_stats=dict(transform_stats or {}),
        attrs=attrs,
    )


class Transform:
    """Invertible map between physical samples and model space.

    Subclasses override ``fit``, ``forward``, ``inverse`` and keep their fitted
    statistics in ``self.stats`` (a JSON-serialisable dict) so that
    ``state_dict`` / ``load_state_dict`` work unchanged.
    """

    name = "identity"

    def __init__(self, **options: Any):
        self.options = dict(options)
        self.stats: dict[str, Any] = {}

    def fit(self, x: np.ndarray, c: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> Transform:
        """Compute statistics from (a sample of) physical training data ``x`` with conditions ``c``."""
        return self

    def model_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample in model space."""
        return tuple(sample_shape)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Physical units -> model space. ``c``: the physical conditions (B, k) of the batch."""
        return x

    def inverse(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Model space -> physical units. ``c``: the physical conditions (B, k) of the batch."""
        return y

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options, "stats": self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> Transform:
        self.options = dict(state.get("options", {}))
        self.stats = dict(state.get("stats", {}))
        return self


class StandardiseTransform(Transform):
    """Standardise by one global mean and standard deviation (fitted); for user domains and tests."""

    name = "standardise"

    def fit(self, x: np.ndarray, c: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> Transform:
        self.stats = {"mean": float(np.mean(x)), "std": float(np.std(x) + 1e-12)}
        return self

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return (x - self.stats["mean"]) / self.stats["std"]

    def inverse(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return y * self.stats["std"] + self.stats["mean"]


#: The name it had, though it never was the identity (kept for user domains written against it).
IdentityTransform = StandardiseTransform

Real = tuple[np.ndarray, np.ndarray]


@dataclass
class Domain:
    """A physics domain plugged into the engine. See the module docstring.

    Attributes
    ----------
    name : str
        Registry name (``array``, ``calo``, ``nbody``, ``micro``, or yours).
    description : str
        One line for ``--help``.
    layouts : list of str
        Names of the file layouts this domain reads; the first is the default
        for writing new files.
    make_transform : callable
        ``(options: dict) -> Transform`` (unfitted).
    build_generator, build_critic : callable
        ``(ModelSpec) -> nn.Module``.
    condition_scales : dict
        Per condition name ``"log"`` or ``"linear"`` (default) before
        standardisation, e.g. ``{"energy": "log"}``.
    features, physics_metrics, score, plots : callable, optional
        See the module docstring.
    presets : dict
        Named config overrides, e.g. ``{"quick": {...}, "gpu": {...}}``; the
        preset called ``"default"`` is applied when the user names none.
    add_make_arguments, make : callable, optional
        ``data make <domain>``: declare its options (argparse: names, types, defaults, help); run the
        simulator, ``make(**options)`` with every declared option as a keyword argument (see
        :mod:`physgan.datamake`). Returns the written file.
    add_import_arguments, import_ : callable, optional
        ``data import <domain>``: the same for converting foreign files, ``import_(**options)``.
    quickstart : dict
        Arguments of the quickstart (``make`` options as keywords, preset name).
    detect : callable, optional
        ``(header) -> bool``: whether a file (already opened through a layout)
        belongs to this domain, for ``evaluate`` without ``--domain``.
    condition_bounds : dict
        Physical domain of each condition, ``{name: Bound}``
        (:class:`physgan.domains.checks.Bound`: an energy is > 0, a porosity in [0, 1]).
        Data outside it is refused for training and listed by ``data info``; generation
        refuses it even with ``--allow-extrapolation``.
    check_conditions : callable, optional
        ``(names, c) -> [Finding]``: joint condition checks (fractions summing above 1).
    check_samples : callable, optional
        ``(x, c, names, attrs) -> [Finding]``: per-sample physics checks of data (all-zero
        showers, deposits above the incident energy); see :mod:`physgan.domains.checks`.
    import_suffixes : tuple of str
        File endings ``data import <domain>`` reads (``.tif``, ``.npy``): a non-HDF5 input
        with one of them is pointed to that command.
    complete_conditions : callable, optional
        ``(names, c, free, ranges, rng, attrs) -> c``: the domain's constraints between
        conditions (e.g. phase fractions summing to 1). Columns with ``free[j]`` were drawn
        by default over their training ``ranges[j]`` and may be redrawn; rows that cannot
        be made valid raise :class:`~physgan.errors.ConfigError`.
    physics_takes_features : bool
        ``physics_metrics`` accepts ``(x, c, features)`` tuples, ``features`` being the
        dict ``features(x, c, attrs)`` returns for the same rows: ``evaluate`` then passes
        them, so its bootstrap rounds index precomputed features instead of recomputing them.
        ``x`` then comes as a :class:`~physgan.metrics.bootstrap.LazyRows` view (``shape``,
        ``len``, slicing and ``np.asarray`` read rows on demand), so a round that reads
        only a few rows of it does not copy every sample.
    model_options, transform_options : dataclass type, optional
        The typed records of ``model.options`` and ``data.transform``: every key the domain's
        factories read, with its type (``Literal`` for choices) and default. ``resolve_config``
        refuses unknown keys (naming the closest known one) and converts values to the declared
        types; without a record the mapping is passed on unchecked.
    nearest : callable, optional
        The memorisation check's dissimilarity to the training set, for domains
        where a Euclidean distance between flattened samples means little (e.g.
        periodic fields, where a shifted copy is still a copy):
        ``(train_x, {name: x}, attrs, seed=...) -> ({name: (N,) dissimilarity}, info)``,
        0 for an exact copy. Without it, ``evaluate`` uses Euclidean nearest-neighbour
        distances of the low-level representation.
    moment_features : callable, optional
        ``(ModelSpec) -> nn.Module`` mapping model-space samples ``(B, *model_shape)`` to standardised,
        differentiable summaries ``(B, F)`` whose mean at every condition the generator must match
        (:mod:`physgan.train.moments`; used when ``train.moment_weight > 0``).
    """

    name: str
    description: str
    layouts: list[str]
    make_transform: Callable[[dict[str, Any]], Transform]
    build_generator: Callable[[ModelSpec], torch.nn.Module]
    build_critic: Callable[[ModelSpec], torch.nn.Module]
    condition_scales: dict[str, str] = field(default_factory=dict)
    features: Callable[[np.ndarray, np.ndarray, dict], dict[str, np.ndarray]] | None = None
    physics_metrics: Callable[[Real, Real, dict], dict[str, float]] | None = None
    score: Callable[[dict[str, float]], float] | None = None
    plots: Callable[[Real, Real, dict, Any], list[tuple[str, Any]]] | None = None
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    add_make_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    make: Callable[..., Any] | None = None
    add_import_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    import_: Callable[..., Any] | None = None
    quickstart: dict[str, Any] = field(default_factory=dict)
    detect: Callable[[Any], bool] | None = None
    condition_bounds: dict[str, Any] = field(default_factory=dict)
    check_conditions: Callable[[list[str], np.ndarray], list[Any]] | None = None
    check_samples: Callable[[np.ndarray, np.ndarray, list[str], dict], list[Any]] | None = None
    import_suffixes: tuple[str, ...] = ()
    complete_conditions: Callable[..., np.ndarray] | None = None
    nearest: Callable[..., tuple[dict[str, np.ndarray], dict[str, float]]] | None = None
    physics_takes_features: bool = False
    model_options: type | None = None
    transform_options: type | None = None
    moment_features: Callable[[ModelSpec], torch.nn.Module] | None = None


_DOMAINS: dict[str, Domain] = {}


def feature_matrix(*columns: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Named per-sample columns as their names and one ``(N, d)`` float64 matrix, in the given order.

    The one way to turn a domain's ``features(x, c, attrs)`` output (and any extra columns, e.g.
    conditions) into a matrix: columns keep the domain's order, mappings follow each other.

    Parameters
    ----------
    *columns : mapping of str to array of N values
        E.g. ``dom.features(x, c, attrs)``, then condition columns.

    Returns
    -------
    names : list of str
    matrix : ndarray, shape (N, d), float64

    Examples
    --------
    >>> names, m = feature_matrix({"b": [1, 2], "a": [3, 4]}, {"log10_e": [0.5, 1.0]})
    >>> names, m.shape
    (['b', 'a', 'log10_e'], (2, 3))
    """
    names = [name for cols in columns for name in cols]
    arrays = [np.asarray(v, dtype=np.float64) for cols in columns for v in cols.values()]
    if not arrays:
        raise ConfigError("feature_matrix: no feature columns")
    n = len(arrays[0])
    bad = [name for name, a in zip(names, arrays) if a.size != n]
    if bad:
        raise ConfigError(f"feature columns {bad} do not hold one value per sample ({n} samples)")
    return names, np.stack([a.reshape(n) for a in arrays], axis=1)


def register_domain(domain: Domain) -> Domain:
    """Add (or replace) a domain in the registry and return it."""
    _DOMAINS[domain.name] = domain
    return domain


def domains() -> dict[str, Domain]:
    """All registered domains by name."""
    import physgan.domains  # noqa: F401  (registers the built-in domains)

    return dict(_DOMAINS)


def import_hint(path: str) -> str:
    """``; convert it with `physgan data import <domain> ...``` for a file a domain imports, else ``""``."""
    low = str(path).lower()
    names = [d.name for d in domains().values() if d.import_ is not None and low.endswith(tuple(d.import_suffixes))]
    if not names:
        return ""
    cmds = " or ".join(f"`physgan data import {n} {path} --out FILE.h5`" for n in names)
    return f"; convert it first with {cmds} (see --help for its options)"


def get_domain(name: str) -> Domain:
    """The registered domain called ``name`` (clear error otherwise)."""
    known = domains()
    if name not in known:
        raise ConfigError(f"unknown domain '{name}'; known domains: {', '.join(sorted(known))}")
    return known[name]
