"""``evaluate``: read the sets, build their representations, run every registered metric with its floor.

The loop is over :func:`physgan.metrics.registered` in registration order: each metric
compares the representation its ``inputs`` names (:class:`~physgan.evaluation.inputs.Representations`),
gets its error and noise floor from :func:`~physgan.metrics.bootstrap.with_floor` by its
``error_method``, and adds the numbers it reports to the :class:`~physgan.evaluation.result.Evaluation`.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from physgan.device import resolve_device
from physgan.errors import ConfigError
from physgan.evaluation import inputs as sets
from physgan.evaluation.result import Evaluation, MetricEntry, normalise_thresholds
from physgan.metrics import Metric, PerKey, registered, with_floor

__all__ = ["evaluate"]


class Stopwatch:
    """Wall and CPU seconds per stage, announced through ``say`` (start, then its time)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # process CPU seconds (all threads): the work, whatever else loads the machine
        self._start = (time.perf_counter(), time.process_time())
        self._open: tuple[str, float, float] | None = None

    def start(self, stage: str, what: str | None = "running") -> None:
        if what:
            self.say(f"{stage}: {what}")
        self._open = (stage, time.perf_counter(), time.process_time())

    def stop(self) -> None:
        stage, wall, cpu = self._open
        self.wall[stage], self.cpu[stage] = time.perf_counter() - wall, time.process_time() - cpu
        self.say(f"{stage}: {self.wall[stage]:.1f} s")

    def total(self) -> None:
        self._open = ("total", *self._start)
        self.stop()


def _progress_printer(progress: bool | Any) -> Callable[[str], None]:
    """A function printing one progress line (to stderr, or to the callable given)."""
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(f"evaluate: {line}", file=sys.stderr, flush=True)
    return lambda line: None


def _entries(metric: Metric, res: dict[str, Any]) -> list[MetricEntry]:
    """The metric's reported numbers as entries, under its report names."""
    out = []
    for key, (name, rec) in metric.report_names(res).items():
        r = res[key]
        if isinstance(rec, PerKey):
            better, description = (rec.direction(key) if rec.direction else "lower"), ""
        else:
            better, description = rec.better, rec.description
        out.append(MetricEntry(name, r.value, r.error, r.floor, r.floor_error, rec.group, better, description))
    return out


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
    clock = Stopwatch(_progress_printer(progress))
    rules = normalise_thresholds(thresholds)
    options = {k: dict(v) for k, v in (options or {}).items()}
    dev = resolve_device(device)
    if n_boot < 2:
        raise ConfigError(f"n_boot must be >= 2, got {n_boot}")
    clock.start("load", what=None)
    r, f, r2, t = sets.read_sets(real, fake, real2, train, max_samples, seed)
    clock.stop()
    name, dom = sets.resolve_domain(domain, r, f)
    clock.start("features", "high-level features and low-level representation")
    reps = sets.Representations(r, f, r2, t, name, dom, options, seed, dev)
    clock.stop()

    results: dict[str, MetricEntry] = {}
    used: dict[str, dict[str, Any]] = {}  # each metric's options, defaults filled (the caps go into the report)
    for metric in registered().values():
        if metric.inputs is None or not reps.available(metric.inputs):
            continue
        own, for_inputs = metric.split_options(options.get(metric.options_key or metric.name))
        used[metric.name] = own
        if metric.inputs == "train_distances":  # the search is a stage of its own
            clock.start("memorisation_search", "nearest-training-sample search")
        a, b, a2 = reps.get(metric.inputs, for_inputs)
        if metric.inputs == "train_distances":
            clock.stop()
        context = {"seed": seed, "device": dev, "cache": {}, "names": reps.names}
        if "edges" in metric.context:
            context["edges"] = reps.edges
        fn = metric.bind(own, context) if metric.function is not None else reps.domain_metric()
        clock.start(metric.name)
        res = with_floor(fn, a, b, a2, method=metric.error_method, n_boot=n_boot, seed=seed)
        clock.stop()
        results.update((e.name, e) for e in _entries(metric, res if isinstance(res, dict) else {"value": res}))
    clock.total()
    ev = Evaluation(name, results, _info(reps, used, seed, n_boot, dev, clock), rules)
    ev._real, ev._fake, ev._domain_obj = r, f, dom
    ev._domain_features = reps.domain_features[:2]
    ev._feat_real = dict(zip(reps.names, reps.features[0].T))
    ev._feat_fake = dict(zip(reps.names, reps.features[1].T))
    if run is not None:
        ev.add_training(run)
    return ev


def _info(reps: sets.Representations, used: dict[str, dict[str, Any]], seed: int, n_boot: int, dev, clock: Stopwatch) -> dict:
    """The evaluation's settings, sizes, caps and timings (``metrics.json``, the report's last table)."""
    import physgan

    r, f, r2, t = reps.real, reps.fake, reps.real2, reps.train
    prdc_cap = used["prdc"].get("max_samples")
    return {
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
        "features": reps.names,
        "fpd_kpd_features_dropped": reps.scaling.dropped,
        "fpd_kpd_dimension": reps.scaling.n_components,
        "memorisation_search": reps.memorisation_search,
        "classifier_max_samples": used["classifier_high"]["max_samples"],
        "prdc_space": {
            "n_real": min(len(r), prdc_cap or len(r)),
            "n_fake": min(len(f), prdc_cap or len(f)),
            "dim": reps.prdc_scaling.n_components,
            "variance_kept": round(reps.prdc_scaling.variance_kept, 4),
        },
        "timings_s": {k: round(v, 3) for k, v in clock.wall.items()},
        "timings_cpu_s": {k: round(v, 3) for k, v in clock.cpu.items()},
    }
