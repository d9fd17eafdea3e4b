"""Configuration: dataclasses, named recipes and presets, YAML, overrides, validation.

Resolution order (later wins)::

    dataclass defaults -> recipe (train.recipe, e.g. gulrajani2017)
    -> domain preset (e.g. calo 'quick') -> YAML file (--config) -> CLI overrides

Recipes own the objective and the optimiser (:data:`RECIPE_KEYS`: every recipe sets each of them);
presets own sizes and schedules and may not set a recipe key, so a named recipe means the same in
every domain. A preset may name the recipe it was tuned with (``train.recipe``): it is used when the
user names none. An explicit ``--set``/``--loss`` or YAML value wins over both.

The resolved config is saved as ``config.yaml`` in every run directory and in
every checkpoint.

Examples
--------
>>> cfg = resolve_config(domain="array", overrides=["train.steps=200", "train.batch_size=32"])
>>> cfg.train.lr_d
0.0001
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from physgan.errors import ConfigError, PhysganWarning

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "Config",
    "RECIPES",
    "RECIPE_KEYS",
    "recipe_settings",
    "resolve_config",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
    "apply_overrides",
    "check_options",
    "check_domain_options",
    "undeclared_options",
]


@dataclass
class DataConfig:
    path: str = ""  # training HDF5 file
    layout: str | None = None  # None: detect from the file
    val_fraction: float = 0.05  # held-out share for validation during training
    val_size: int = 2000  # at most this many held-out samples are scored each validation
    in_memory: str = "auto"  # auto | yes | no: load the training set onto the device or stream it
    memory_limit_gb: float = 4.0  # 'auto' streams above this many GB of float32 samples
    block_rows: int = 0  # streaming block size in rows (0: a whole number of chunks, ~4096 rows)
    shuffle_blocks: int = 8  # streaming: blocks mixed in one shuffle buffer
    workers: int = 0  # streaming: DataLoader worker processes (each opens the file itself)
    prefetch: bool = True  # streaming: read the next shuffle buffer in a background thread (same batches)
    transform: dict[str, Any] = field(default_factory=dict)  # options of the domain's transform


@dataclass
class ModelConfig:
    z_dim: int = 64  # latent size (channels of the latent grid for conv generators)
    width: int = 64  # base width (hidden units or channels)
    depth: int = 3  # hidden layers / blocks
    embed_dim: int = 32  # condition embedding size
    options: dict[str, Any] = field(default_factory=dict)  # domain-specific model options


@dataclass
class TrainConfig:
    recipe: str = "gulrajani2017"  # named hyper-parameter recipe (see RECIPES)
    loss: str = "wgan-gp"  # wgan-gp | wgan-clip | minimax | nonsaturating
    steps: int = 2000  # generator steps
    batch_size: int = 64  # per process
    n_critic: int = 5  # critic steps per generator step
    optimizer: str = "adam"  # adam | rmsprop
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    gp_lambda: float = 10.0  # gradient-penalty weight (wgan-gp)
    # gp_every 2 + reuse_fake: 1.2-1.4x the steps/s (micro, nbody, calo); better on Berea at equal time, but on calorimeter
    # dataset 2 layer 0 collapsed at step ~2750 with both, and reuse_fake alone ran to 6000 steps in 60 min for a worse
    # classifier than the preset's 4000 (AUC 0.927 vs 0.897; bench/RESULTS.md §12.28, §13 twenty-fifth and twenty-sixth
    # sessions): off by default
    gp_every: int = 1  # lazy penalty (wgan-gp): on every gp_every-th critic update only, at weight gp_lambda * gp_every
    reuse_fake: bool = False  # the generator update reuses the last critic update's latents and fakes (one G forward fewer)
    drift: float = 0.0  # ProGAN drift term eps_drift * E[D(x)^2]
    clip: float = 0.01  # weight clipping bound (wgan-clip)
    ema_beta: float = 0.999  # EMA of generator weights (used for sampling)
    moment_weight: float = 0.0  # conditional moment matching of the domain's summaries (physgan.train.moments); 0: off
    moment_degree: int = 1  # degree of its condition basis: 0 means, 1 + slopes, 2 + curvature
    moment_start: int = 0  # generator step from which the moment term is on (before it the critic alone trains)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the generator (CUDA)
    log_every: int = 50  # status line / stats every this many generator steps
    diag_warmup: int = -1  # no mode-collapse warnings before this step (-1: a tenth of train.steps, at most 5000)
    val_every: int = 500  # validation metrics every this many steps (0: never)
    ckpt_every: int = 500  # checkpoint every this many steps
    keep_snapshots: int = 3  # numbered snapshots kept besides last.pt and best.pt
    # write best.pt when the validation score improves (False: the score is still logged, but a run's best is its last
    # checkpoint; for models whose score stops following what matters, e.g. micro 3-D tortuosity, RESULTS §12.34)
    keep_best: bool = True
    max_rollbacks: int = 3  # divergence: roll back this many times before giving up
    lr_decay_on_rollback: float = 0.5  # learning rates are multiplied by this on each rollback
    lr_final: float = 1.0  # learning rates fall linearly over train.steps to this fraction of lr_g / lr_d (1: constant)
    deterministic: bool = False  # torch.use_deterministic_algorithms


@dataclass
class Config:
    domain: str = "array"
    preset: str | None = None  # the domain preset applied (None: the domain's 'default' if any)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        """Check every value; raise :class:`ConfigError` with a readable message."""
        t, d, m = self.train, self.data, self.model
        problems = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                problems.append(msg)

        need(t.steps >= 0, f"train.steps must be >= 0 (got {t.steps})")
        need(0 <= t.seed < 2**62, f"train.seed must be an integer in [0, 2**62) (got {t.seed})")
        need(t.diag_warmup >= -1, f"train.diag_warmup must be >= 0, or -1 for a tenth of train.steps (got {t.diag_warmup})")
        need(t.batch_size >= 1, f"train.batch_size must be >= 1 (got {t.batch_size})")
        need(
            t.n_critic >= 1,
            f"train.n_critic must be >= 1: the critic needs at least one step per generator step (got {t.n_critic})",
        )
        need(t.lr_g > 0 and t.lr_d > 0, f"learning rates must be positive (lr_g={t.lr_g}, lr_d={t.lr_d})")
        need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), f"train.betas must be two numbers in [0, 1) (got {t.betas})")
        need(t.gp_lambda >= 0, f"train.gp_lambda must be >= 0 (got {t.gp_lambda})")
        need(t.gp_every >= 1, f"train.gp_every must be >= 1: the penalty on every k-th critic update (got {t.gp_every})")
        need(t.gp_every == 1 or t.loss == "wgan-gp", f"train.gp_every applies to loss wgan-gp only (got loss '{t.loss}')")
        need(t.clip > 0, f"train.clip must be > 0 (got {t.clip})")
        need(0 <= t.ema_beta < 1, f"train.ema_beta must be in [0, 1) (got {t.ema_beta})")
        need(t.moment_weight >= 0, f"train.moment_weight must be >= 0 (got {t.moment_weight})")
        need(t.moment_degree in (0, 1, 2), f"train.moment_degree must be 0, 1 or 2 (got {t.moment_degree})")
        need(t.moment_start >= 0, f"train.moment_start must be >= 0 (got {t.moment_start})")
        need(t.drift >= 0, f"train.drift must be >= 0 (got {t.drift})")
        need(t.loss in LOSSES, f"train.loss '{t.loss}' is unknown; choose one of {', '.join(LOSSES)}")
        need(t.optimizer in ("adam", "rmsprop"), f"train.optimizer must be 'adam' or 'rmsprop' (got '{t.optimizer}')")
        need(t.precision in ("auto", "fp32", "bf16"), f"train.precision must be auto, fp32 or bf16 (got '{t.precision}')")
        need(
            t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
            f"train.device must be auto, cpu or cuda[:N] (got '{t.device}')",
        )
        need(
            t.log_every >= 1 and t.ckpt_every >= 1 and t.val_every >= 0,
            "train.log_every and train.ckpt_every must be >= 1, train.val_every >= 0",
        )
        need(t.keep_snapshots >= 0 and t.max_rollbacks >= 0, "train.keep_snapshots and train.max_rollbacks must be >= 0")
        need(0 < t.lr_decay_on_rollback <= 1, f"train.lr_decay_on_rollback must be in (0, 1] (got {t.lr_decay_on_rollback})")
        need(0 < t.lr_final <= 1, f"train.lr_final must be in (0, 1] (got {t.lr_final})")
        need(0 <= d.val_fraction < 1, f"data.val_fraction must be in [0, 1) (got {d.val_fraction})")
        need(d.val_size >= 0, f"data.val_size must be >= 0 (got {d.val_size})")
        need(d.in_memory in ("auto", "yes", "no"), f"data.in_memory must be auto, yes or no (got '{d.in_memory}')")
        need(
            d.memory_limit_gb > 0 and d.block_rows >= 0 and d.shuffle_blocks >= 1 and d.workers >= 0,
            "data streaming options out of range",
        )
        need(
            m.z_dim >= 1 and m.width >= 1 and m.depth >= 1 and m.embed_dim >= 1,
            "model sizes (z_dim, width, depth, embed_dim) must be >= 1",
        )
        if t.loss == "wgan-gp" and t.gp_lambda == 0:
            problems.append(
                "train.gp_lambda = 0 with loss wgan-gp leaves the critic unconstrained; use loss wgan-clip or gp_lambda > 0"
            )
        if problems:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return self


LOSSES = ("wgan-gp", "wgan-clip", "minimax", "nonsaturating")

#: Named hyper-parameter recipes: keep them whole rather than mixing them.
RECIPES: dict[str, dict[str, Any]] = {
    # Gulrajani et al. 2017, Algorithm 1 (the default)
    "gulrajani2017": {
        "loss": "wgan-gp",
        "gp_lambda": 10.0,
        "n_critic": 5,
        "optimizer": "adam",
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "betas": (0.0, 0.9),
    },
    # Karras et al. 2018 (progressive GANs): WGAN-GP with drift, one critic step, faster Adam
    "progan": {
        "loss": "wgan-gp",
        "gp_lambda": 10.0,
        "drift": 1e-3,
        "n_critic": 1,
        "optimizer": "adam",
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "betas": (0.0, 0.99),
    },
    # Arjovsky et al. 2017: weight clipping, RMSProp
    "arjovsky2017": {"loss": "wgan-clip", "clip": 0.01, "n_critic": 5, "optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5},
    # Gulrajani et al. 2017 with Adam lr 2e-4 for both networks (micro's CPU presets: batches of 4-32 samples)
    "gulrajani2017-lr2e-4": {
        "loss": "wgan-gp",
        "gp_lambda": 10.0,
        "n_critic": 5,
        "optimizer": "adam",
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": (0.0, 0.9),
    },
    # Gulrajani et al. 2017 with two critic updates per generator step and the critic at twice the generator's rate
    # (the two time-scale rule of Heusel et al. 2017): a step costs ~2.5x less than with five critic updates; the micro
    # 3-D CPU preset's own (bench/RESULTS.md §12.26-12.27: Berea's tortuosity +28-47 % -> +7.8 % / +22 % in 60 min, two seeds)
    "gulrajani2017-ttur": {
        "loss": "wgan-gp",
        "gp_lambda": 10.0,
        "n_critic": 2,
        "optimizer": "adam",
        "lr_g": 2e-4,
        "lr_d": 4e-4,
        "betas": (0.0, 0.9),
    },
    # Goodfellow et al. 2014 with the non-saturating generator loss, DCGAN-style Adam
    "goodfellow2014": {
        "loss": "nonsaturating",
        "n_critic": 1,
        "optimizer": "adam",
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),
    },
}

#: The train keys recipes own (objective and optimiser); a preset setting one is refused.
RECIPE_KEYS = ("loss", "gp_lambda", "drift", "clip", "n_critic", "optimizer", "lr_g", "lr_d", "betas")

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def recipe_settings(name: str) -> dict[str, Any]:
    """Every :data:`RECIPE_KEYS` value of recipe ``name``; keys it does not name take the dataclass defaults.

    Complete, so switching recipe (e.g. when resuming) leaves nothing of the previous one behind
    (``progan``'s drift term, say).

    Raises
    ------
    ConfigError
        For an unknown recipe name.
    """
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown recipe '{name}'{hint}; known: {', '.join(RECIPES)}")
    defaults = TrainConfig()
    return {key: RECIPES[name].get(key, getattr(defaults, key)) for key in RECIPE_KEYS}


def preset_settings(dom: Any, name: str) -> tuple[dict[str, Any], str | None]:
    """The values of preset ``name`` of domain ``dom`` and the recipe it names (``train.recipe``, or None).

    Raises
    ------
    ConfigError
        For an unknown preset, or a preset that sets a key recipes own.
    """
    if name not in dom.presets:
        known = ", ".join(dom.presets) or "(none)"
        raise ConfigError(f"domain '{dom.name}' has no preset '{name}'; its presets: {known}")
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in dom.presets[name].items()}
    train = values.get("train", {})
    owned = [k for k in RECIPE_KEYS if k in train]
    if owned:
        raise ConfigError(
            f"preset '{dom.name}/{name}' sets train.{', train.'.join(owned)}, which recipes own "
            f"(objective and optimiser); name a recipe in the preset's train.recipe instead ({', '.join(RECIPES)})"
        )
    recipe = train.pop("recipe", None)
    return values, recipe


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML and checkpoints."""
    out = dataclasses.asdict(cfg)
    out["train"]["betas"] = list(cfg.train.betas)
    return out


def _check_type(section: str, key: str, value: Any, default: Any) -> Any:
    where = f"{section}.{key}" if section else key
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where} must be true or false (got {value!r})")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where} must be an integer (got {value!r})")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{where} must be an integer (got {value!r})") from None
        if f != int(f):
            raise ConfigError(f"{where} must be an integer (got {value!r})")
        return int(f)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number (got {value!r})")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number (got {value!r})") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ConfigError(f"{where} must be a list of {len(default)} numbers (got {value!r})")
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a list of {len(default)} numbers (got {value!r})") from None
    if isinstance(default, str):
        if isinstance(value, bool):  # YAML reads yes/no as booleans
            return "yes" if value else "no"
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where} must be a string (got {value!r})")
        return str(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping (got {value!r})")
        return dict(value)
    return value


def _merge_section(obj: Any, section: str, values: dict[str, Any]) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{section}.{key}'{hint}")
        default = getattr(obj, key)
        if isinstance(default, dict) and isinstance(value, dict):
            merged = dict(default)
            merged.update(value)
            setattr(obj, key, merged)
        else:
            setattr(obj, key, _check_type(section, key, value, default if default is not None else None))


def _check_hinted(where: str, value: Any, hint: Any) -> Any:
    """``value`` checked against (and converted to) the type ``hint`` of an options record field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _check_hinted(where, value, inner[0])
        return value
    if origin is typing.Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint_text = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))} (got {value!r}){hint_text}")
        return value
    if origin is tuple and args and args[-1] is not Ellipsis:
        return list(_check_type("", where, value, tuple(a() for a in args)))  # a list: YAML-safe
    if origin in (list, dict) or hint in (list, dict):
        kind = origin or hint
        if not isinstance(value, kind):
            raise ConfigError(f"{where} must be a {'list' if kind is list else 'mapping'} (got {value!r})")
        return value
    if hint in (bool, int, float, str):
        return _check_type("", where, value, hint())
    return value


def check_options(record: type, values: dict[str, Any], where: str, other: tuple[type, str] | None = None) -> dict[str, Any]:
    """Check a domain's options mapping against its typed options record.

    Parameters
    ----------
    record : dataclass type
        The domain's declaration (field names, types, defaults and their meaning in the docstring).
    values : dict
        The user's options (``model.options`` or ``data.transform``): only the keys set.
    where : str
        Their place in the config, for messages (``model.options``).
    other : (dataclass type, str), optional
        The other options record of the domain and its place: a key that belongs there is named so.

    Returns
    -------
    dict
        The same keys with values converted to the declared types (``"yes"`` -> True, ``"3"`` -> 3).

    Raises
    ------
    ConfigError
        An unknown key (with the closest known one) or a value of the wrong type or outside its choices.
    """
    fields = {f.name: f for f in dataclasses.fields(record)}
    hints = typing.get_type_hints(record)
    out = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            if other is not None and key in {f.name for f in dataclasses.fields(other[0])}:
                hint = f"it is set as '{other[1]}.{key}'; "
            raise ConfigError(f"unknown option '{where}.{key}'; {hint}known: {', '.join(fields) or '(none)'}")
        out[key] = _check_hinted(f"{where}.{key}", value, hints[key])
    return out


def undeclared_options(record: type | None, values: dict[str, Any]) -> list[str]:
    """The keys of ``values`` that the options ``record`` does not declare (none without a record)."""
    if record is None:
        return []
    names = {f.name for f in dataclasses.fields(record)}
    return [key for key in values if key not in names]


def check_domain_options(cfg: Config, dom: Any, saved: dict[str, Any] | None = None) -> Config:
    """Check (and type) ``model.options`` and ``data.transform`` against the domain's options records, in place.

    Parameters
    ----------
    cfg : Config
        The resolved config.
    dom : Domain
        Its domain (``model_options`` / ``transform_options`` records).
    saved : dict, optional
        The config a run saved (resuming): keys it holds that the records no longer declare (options of
        older code) are kept unchecked with a :class:`~physgan.errors.PhysganWarning` naming them, as
        long as they keep the saved value; the factories ignore them. A new config's unknown key is an error.
    """
    for record, section, attr, where, other in (
        (dom.model_options, cfg.model, "options", "model.options", (dom.transform_options, "data.transform")),
        (dom.transform_options, cfg.data, "transform", "data.transform", (dom.model_options, "model.options")),
    ):
        if record is None:
            continue
        values = dict(getattr(section, attr))
        old = ((saved or {}).get(where.split(".")[0]) or {}).get(attr) or {}
        kept = {k: values.pop(k) for k in undeclared_options(record, values) if k in old and old[k] == values[k]}
        if kept:
            warnings.warn(
                f"domain '{dom.name}': the run's {where} hold {', '.join(sorted(kept))}, which this version no longer "
                "declares: ignored",
                PhysganWarning,
                stacklevel=3,
            )
        try:
            checked = check_options(record, values, where, other if other[0] is not None else None)
        except ConfigError as err:
            raise ConfigError(f"domain '{dom.name}': {err}") from None
        setattr(section, attr, {**checked, **kept})
    return cfg


def merge_dict(cfg: Config, values: dict[str, Any] | None) -> Config:
    """Merge a nested dict into ``cfg`` in place (unknown keys and bad types are errors)."""
    if not values:
        return cfg
    if not isinstance(values, dict):
        raise ConfigError(f"config must be a mapping of sections, got {type(values).__name__}")
    for key, value in values.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{key}' must be a mapping (got {value!r})")
            _merge_section(getattr(cfg, key), key, value)
        elif key in ("domain", "preset"):
            setattr(cfg, key, None if value is None else str(value))
        else:
            close = difflib.get_close_matches(key, [*_SECTIONS, "domain", "preset"], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config section '{key}'{hint}")
    return cfg


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a config from a (resolved) nested dict, e.g. one read from a run."""
    return merge_dict(Config(), values)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Config, overrides: list[str] | None) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars/lists)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value, e.g. train.steps=500")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        value = _parse_value(text)
        nested: dict[str, Any] = {}
        cur = nested
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
        if len(parts) == 1 and parts[0] not in ("domain", "preset"):
            raise ConfigError(f"override '{item}' needs a section, e.g. train.{parts[0]}=...")
        merge_dict(cfg, nested)
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a nested dict (clear errors)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from err
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections (data, model, train)")
    return values


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from physgan.io.atomic import atomic_output

    with atomic_output(path, overwrite=True) as tmp:
        Path(tmp).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def resolve_config(
    domain: str = "array",
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    recipe: str | None = None,
    base: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults, recipe, domain preset, YAML file and overrides; validate.

    Parameters
    ----------
    domain : str
        Registered domain name.
    preset : str, optional
        A preset of the domain (``quick``, ``gpu``...); default: the domain's
        ``default`` preset if it has one.
    config_file : path, optional
        YAML with sections ``data``, ``model``, ``train``.
    overrides : list of str
        ``section.key=value`` items (CLI ``--set``).
    recipe : str, optional
        Named recipe (``gulrajani2017``, ``progan``, ``arjovsky2017``, ``goodfellow2014``).
    base : dict, optional
        A run's saved config (resuming): it replaces the defaults, so the run keeps its own
        settings (e.g. its step target); only a recipe, preset, file or override named now changes them.
    values : dict, optional
        Nested ``{section: {key: value}}`` of typed values (the library's way to set what ``--set``
        sets: no YAML parsing, so a path ``on`` stays ``"on"``). Applied after the file, before ``overrides``.

    Returns
    -------
    Config
        Validated configuration.
    """
    from physgan.domains.base import get_domain

    dom = get_domain(domain)
    file_values = load_config(config_file) if config_file else {}
    cfg = Config(domain=domain) if base is None else config_from_dict(base)
    values = dict(values or {})
    preset = preset or _override_value(overrides, "preset") or values.get("preset") or file_values.get("preset")
    if preset is None and base is None and "default" in dom.presets:
        preset = "default"
    preset_values, preset_recipe = preset_settings(dom, preset) if preset is not None else ({}, None)
    # the recipe: named now (argument, override, values or file: the one applied last wins), else the preset's,
    # else the default (fresh runs only: a resumed run keeps its own unless one is named now)
    named = [_section_value(overrides_dict, "train", "recipe") for overrides_dict in (values, file_values)]
    recipe = recipe or _override_value(overrides, "train.recipe") or named[0] or named[1] or preset_recipe
    if recipe is None and base is None:
        recipe = "gulrajani2017"
    if recipe is not None:
        merge_dict(cfg, {"train": {"recipe": recipe, **recipe_settings(recipe)}})
    if preset is not None:
        merge_dict(cfg, preset_values)
        cfg.preset = preset
    merge_dict(cfg, {k: v for k, v in file_values.items() if k != "domain"})
    merge_dict(cfg, {k: v for k, v in values.items() if k != "domain"})
    apply_overrides(cfg, overrides)
    cfg.domain = dom.name
    check_domain_options(cfg, dom, saved=base)
    return cfg.validate()


def _override_value(overrides: list[str] | None, key: str) -> Any:
    """The value ``key`` gets from ``section.key=value`` strings: the last one wins, as when they are applied."""
    for item in reversed(overrides or []):
        if item.split("=", 1)[0].strip() == key:
            return _parse_value(item.split("=", 1)[1])
    return None


def _section_value(values: dict[str, Any], section: str, key: str) -> Any:
    part = values.get(section)
    return part.get(key) if isinstance(part, dict) else None
