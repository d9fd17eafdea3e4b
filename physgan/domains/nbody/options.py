"""Typed options of the nbody domain: ``model.options`` (:mod:`.model`) and ``data.transform`` (:mod:`.transform`).

``resolve_config`` checks a run's options against these records (an unknown key is an error naming the
closest known one); the meaning of each is documented where it is used, the defaults are the code's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NbodyModelOptions", "NbodyTransformOptions"]


@dataclass(frozen=True)
class NbodyModelOptions:
    """``model.options`` of the nbody generators and critics (see :mod:`physgan.domains.nbody.model`)."""

    arch: Literal["spectral", "conv"] | None = None  # None: spectral when the transform fitted a spectrum
    n_up: int | None = None  # conv generator upsamplings (None: model.depth)
    n_down: int | None = None  # conv critic downsamplings (None: n_up)
    output: Literal["tanh", "linear"] = "tanh"  # conv generator output
    groups: int = 4  # group-norm groups of the conv critic
    critic_width: int | None = None  # conv critic branch width (None: model.width; 0: summaries only)
    channels: int | None = None  # spectral generator channels (None: min(4, z_dim))
    spectral_hidden: int = 64
    res_blocks: int = 2
    summary_hidden: int = 64
    mf_summaries: bool = False  # summary critic: also the soft Minkowski functionals (boundary, Euler characteristic)
    # summary critic: also the soft counts of one-cell islands and holes of the excursion sets (spectral.soft_singletons), where
    # the Euler characteristic's miss on lognormal slabs sits (bench/RESULTS.md §11, thirty-first and thirty-second sessions)
    mf_singletons: bool = False
    amp_fit: bool = True  # spectral generator with amp_degree: log A starts from the data's fitted dependence on the conditions
    amp_degree: int | None = None  # spectral generator: learned log A polynomial degree (0, 1, 2) in the conditions (None: MLP)
    # spectral generator with amp_degree: the form of log A's dependence on the conditions. "quadratic": the fitted start
    # (data_stats['amp_fit']) is a quadratic and the learned part a polynomial of amp_degree in the normalised conditions;
    # "power_law": both are in the normalised logarithms of the conditions (all > 0), the fitted start of degree 1, a power
    # law per shell (data_stats['amp_fit_power_law']). Nine training points fitted with a quadratic's six terms keep the
    # heavy-tailed power's noise: a power law fitted to the same training densities got 15, 12, 15 of the 15 response pairs
    # within 5 % on three data seeds, the quadratic 15, 9, 11 (bench/RESULTS.md §11, thirty-third session)
    amp_form: Literal["quadratic", "power_law"] = "quadratic"
    # spectral generator: the learned correction b' of the mean-holding offset: a function of the conditions (runs made
    # before the option), one constant, or none (the analytic offset alone); "exact": none, and each field is shifted in log
    # density by what its residual adds to its mean density, so the ensemble mean density is the cosmic mean at every
    # condition by construction, not by a learned constant (see the generator's docstring, step 3). Neutral against the
    # presets' "constant" on lognormal slabs over two data seeds (Minkowski 8 of 12 cosmologies within 3x either way;
    # bench/RESULTS.md §11, thirty-third session)
    mean_offset: Literal["conditional", "constant", "none", "exact"] = "conditional"
    # spectral generator: remove each field's mean from the residual (it shapes the field; the mean is the offset's)
    zero_mean_residual: bool = False
    # spectral generator: the residual's modes below this |m| (training grid units) are removed, so the large-scale power is
    # the spectral amplitude's alone (0: none; >= 1 removes the mean too, as zero_mean_residual does)
    residual_highpass: float = 0.0
    # spectral generator: after training, the mean density and the density power are set to the training fields' at every
    # condition (physgan.domains.nbody.calibration; needs the transform's density power fit, made by runs since it exists).
    # Off by default: on particle-mesh slabs (raw power 5-20 % off, moving with the training seed) it brings P(k) within
    # 10 % at 5-6 of 6 cosmologies, but the fields' power is heavy-tailed and the calibration copies the noise of its own
    # sample into the generator: on lognormal slabs, within 2-4 % raw, one calibration in three still put the grid corner
    # 8 % high with the density cap and 2048 fields per point (bench/RESULTS.md §11, twenty-sixth and twenty-seventh sessions)
    calibrate: bool = False
    # spectral generator: its standardised log density is capped at the training fields' largest (data_stats['y_max'];
    # transforms fitted before it exist have none, and no cap). Without it the particle-mesh generator made fields up to
    # 1136 times the mean density where the 5400 training slabs reach 248, and their power was heavy-tailed: the top 1 %
    # of fields carried 8 % of the mean power (the simulator's: 4.5 %), which doubled the noise of every estimate of the
    # generator's mean power (bench/RESULTS.md §11, twenty-seventh session). It does not bind on lognormal slabs.
    density_cap: bool = True
    residual_conditioned: bool = True  # spectral generator: FiLM of the residual reads the conditions (False: a constant)
    # spectral generator: the local residual network (False: none, y = b + g_0: a log-Gaussian field whose spectrum and
    # its dependence on the conditions are all that is learned; the exact model class of data lognormal per cell). Not
    # for slabs: the benchmark's 2-D lognormal slabs average 4 cells, their log is not Gaussian, and without the residual
    # their density power came out 5-13 % low and chi 10-12x its floor (bench/RESULTS.md §11, twenty-ninth session)
    residual: bool = True
    # spectral generator: what the residual's FiLM reads: the condition embedding, or the spectral moments of its own
    # coloured field (log variance, "variance"; and log variance of the gradient, "moments": what a Gaussian field's
    # Minkowski functionals depend on), linearly: smooth between the training cosmologies by construction. Measured
    # against the embedding on lognormal slabs: no better (moments) or worse (variance): bench/RESULTS.md §11, 29th session
    residual_condition: Literal["embedding", "variance", "moments"] = "embedding"
    # spectral generator: the coloured field's power depends on a mode's direction as the training fields' does near the grid
    # scale (their mass assignment's window: data_stats['lattice_aniso'], physgan.domains.nbody.spectral.fit_lattice_anisotropy),
    # not only on |k|; fixed by the data, not learned (the critic's shells average over directions). Off: trained on lognormal
    # slabs over three data seeds it moved the Minkowski functionals within the run-to-run spread, 8 of 18 cosmologies within
    # 3x their floor against the default's 11 (bench/RESULTS.md §11, thirty-second session)
    lattice_anisotropy: bool = False
    # what conditional moment matching (train.moment_weight > 0) pins: every critic summary, or the soft Minkowski
    # functionals alone (light-tailed, unlike the heavy-tailed density power whose noise made the full set a negative three
    # times, bench/RESULTS.md §11; needs the transform's mf statistics, as mf_summaries does). Negative too at weights 2 and
    # 10 on lognormal slabs: a batch's estimate of the functionals' moments is noise that swamps the critic's gradient (31st session)
    moment_summaries: Literal["all", "minkowski"] = "all"


@dataclass(frozen=True)
class NbodyTransformOptions:
    """``data.transform`` of :class:`physgan.domains.nbody.transform.DensityTransform`."""

    kind: Literal["s", "log", "gauss"] = "s"
    a: float | None = None  # scale of the 's' map (None: fitted median density)
    # softening of the logs at empty cells (units of the mean density); "auto" (gauss only): the one that makes the
    # training fields' log(x + eps) symmetric (zero skewness), chosen by the fit
    eps: float | Literal["auto"] = 1e-3
