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

Modules: :mod:`~physgan.evaluation.inputs` (the sets and their representations),
:mod:`~physgan.evaluation.runner` (the loop over the metric registry, :mod:`physgan.metrics.registry`),
:mod:`~physgan.evaluation.result` (entries, verdicts, summary), :mod:`~physgan.evaluation.command`
(the CLI); figures and HTML in :mod:`physgan.report`.

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

from physgan.evaluation.command import add_arguments, main
from physgan.evaluation.inputs import SampleSet, load_samples
from physgan.evaluation.result import (
    Evaluation,
    MetricEntry,
    check_threshold_names,
    detail_group,
    judge,
    parse_threshold,
)
from physgan.evaluation.runner import evaluate

__all__ = [
    "Evaluation",
    "MetricEntry",
    "SampleSet",
    "evaluate",
    "load_samples",
    "parse_threshold",
    "check_threshold_names",
    "judge",
    "detail_group",
    "add_arguments",
    "main",
]
