"""Phase fractions that follow the condition exactly: a per-sample logit shift and a fraction-keeping hardening.

A conditional GAN learns the map *condition -> phase fraction* only as well as its
critic measures it, and a critic's projection term is a weak, noisy judge of a
scalar like porosity (measured in ``bench/micro_conditioning.py``: slope 0.885 and
scatter 0.033 before this module). Phase fractions are bookkeeping, not texture, so
they are built in, as the calorimeter generator builds in its energy sum:

* :func:`fraction_targets` finds the conditioned fractions by column name
  (``porosity`` = fraction of phase 0, ``fraction_<k>`` = fraction of phase k);
* :func:`match_fractions` adds to each sample's logits a per-phase shift ``b_k``
  solved (safeguarded Newton, bracketed, vectorised over the batch) so that the
  spatial mean of ``softmax(logits + b)_k`` equals the target ``t_k``. The solve
  runs without autograd; one more Newton step taken *with* autograd from the
  solution gives the implicit-function gradient (the residual is zero there, so
  the step's derivative is ``-(df/dlogits) / (df/db)``). With P phases and all P
  fractions given, the last one is implied by the others and is not solved for;
* :func:`harden` turns soft phase probabilities into labels. Each voxel's score is
  its log-probability blended with its neighbours' (weight 0.4, :func:`vote_scores`),
  so a voxel that disagrees with every neighbour is outvoted (per-voxel thresholding
  leaves about twice the real data's one-voxel islands and chords). For two phases
  the ``round(mean p_0 * N)`` voxels with the highest phase-0 score become phase 0,
  so the hard fraction equals the soft one to within half a voxel; for more phases
  it is the argmax of the scores.

Neither step changes a one-hot input: real data round-trip unchanged.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

__all__ = ["NEIGHBOUR_WEIGHT", "fraction_targets", "solve_shift", "match_fractions", "vote_scores", "harden"]

_FRACTION = re.compile(r"^fraction_(\d+)$")
_EPS = 1e-6
_LOGP_FLOOR = 4.54e-5  # exp(-10)
#: weight of the neighbours' vote in :func:`harden` (chosen in bench/micro_conditioning.py, see RESULTS.md)
NEIGHBOUR_WEIGHT = 0.4


def fraction_targets(condition_names: list[str], n_phases: int, keep_all: bool = False) -> dict[int, int]:
    """Phases whose fraction is a condition: ``{phase: condition column}``.

    ``porosity`` is the fraction of phase 0 and ``fraction_<k>`` the fraction of
    phase ``k`` (names written by ``physgan data make|import micro``). When every
    phase has a column, the last phase is left out (its fraction is implied) unless
    ``keep_all``.

    Parameters
    ----------
    condition_names : list of str
        Condition columns of the data, in order.
    n_phases : int
        Number of phases P.
    keep_all : bool
        Keep every phase even when all P have a column.

    Returns
    -------
    dict
        ``{phase index: column index}``, phases ascending.
    """
    out: dict[int, int] = {}
    for j, name in enumerate(condition_names):
        m = _FRACTION.match(name)
        phase = 0 if name == "porosity" else int(m.group(1)) if m else None
        if phase is not None and phase < n_phases and phase not in out:
            out[phase] = j
    if len(out) == n_phases and not keep_all:
        out.pop(max(out))
    return dict(sorted(out.items()))


def _mean_sigmoid(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial mean of ``sigmoid(a + b)`` and of its derivative, per sample (``a`` (B, N), ``b`` (B,))."""
    p = torch.sigmoid(a + b[:, None])
    return p.mean(dim=1), (p * (1 - p)).mean(dim=1)


def solve_shift(a: torch.Tensor, t: torch.Tensor, iters: int = 60, tol: float = 3e-7) -> torch.Tensor:
    """Per-sample ``b`` with ``mean_x sigmoid(a[:, x] + b) = t`` (bracketed Newton; no autograd).

    Parameters
    ----------
    a : Tensor (B, N)
        Per-voxel log-odds of the phase against all others.
    t : Tensor (B,)
        Target fractions in (0, 1) (clamped to ``[1e-6, 1 - 1e-6]``).
    iters : int
        At most this many Newton/bisection iterations.
    tol : float
        Stop when every ``|mean sigmoid(a + b) - t| < tol``.

    Returns
    -------
    Tensor (B,)
    """
    with torch.no_grad():
        a = a.detach().float()
        t = t.detach().float().clamp(_EPS, 1 - _EPS)
        logit_t = torch.log(t) - torch.log1p(-t)
        # mean sigmoid(a + b) lies between sigmoid(min a + b) and sigmoid(max a + b): a bracket
        lo = logit_t - a.amax(dim=1)
        hi = logit_t - a.amin(dim=1)
        b = (logit_t - a.mean(dim=1)).clamp(lo, hi)
        for _ in range(iters):
            m, dm = _mean_sigmoid(a, b)
            f = m - t
            done = f.abs() < tol
            if bool(done.all()):
                break
            lo = torch.where(f < 0, b, lo)
            hi = torch.where(f >= 0, b, hi)
            newton = b - f / dm.clamp_min(1e-30)
            ok = (newton >= lo) & (newton <= hi) & torch.isfinite(newton)
            b = torch.where(done, b, torch.where(ok, newton, 0.5 * (lo + hi)))
        return b


def _log_odds(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``logit_k - logsumexp(others)`` flattened to (B, N)."""
    if logits.shape[1] == 2:
        return (logits[:, k] - logits[:, 1 - k]).flatten(1)
    others = torch.cat([logits[:, :k], logits[:, k + 1 :]], dim=1)
    return (logits[:, k] - torch.logsumexp(others, dim=1)).flatten(1)


def match_fractions(logits: torch.Tensor, targets: torch.Tensor, phases: list[int], sweeps: int = 12) -> torch.Tensor:
    """Shift ``logits`` (B, P, ...) per sample so that ``softmax`` has the target mean fractions.

    Parameters
    ----------
    logits : Tensor (B, P, *spatial)
        Generator output before the softmax.
    targets : Tensor (B, len(phases))
        Requested fraction of each phase in ``phases``.
    phases : list of int
        Constrained phases (at most P - 1 of them; see :func:`fraction_targets`).
    sweeps : int
        Coordinate sweeps over the phases when more than one is constrained (one is exact).

    Returns
    -------
    Tensor
        ``logits + b`` (differentiable in ``logits`` and ``targets`` through the implicit gradient).
    """
    if not phases:
        return logits
    shape = (logits.shape[0], logits.shape[1]) + (1,) * (logits.ndim - 2)
    b = logits.new_zeros(logits.shape[0], logits.shape[1])
    with torch.no_grad():
        for _ in range(1 if len(phases) == 1 else sweeps):
            for j, k in enumerate(phases):
                a = _log_odds(logits.detach() + b.view(shape), k)
                b[:, k] = b[:, k] + solve_shift(a, targets[:, j])
    # one Newton step per phase with autograd, from the solution: the implicit gradient
    shifts = []
    for j, k in enumerate(phases):
        frozen = b.clone()
        frozen[:, k] = 0
        a = _log_odds(logits + frozen.view(shape), k)
        m, dm = _mean_sigmoid(a, b[:, k])
        shifts.append((k, b[:, k] - (m - targets[:, j]) / dm.clamp_min(1e-12)))
    cols = [torch.zeros_like(b[:, 0])] * logits.shape[1]
    for k, s in shifts:
        cols[k] = s
    return logits + torch.stack(cols, dim=1).view(shape)


def _neighbour_mean(v: torch.Tensor) -> torch.Tensor:
    """Mean of the 8 (2-D) or 26 (3-D) neighbours of every voxel of ``v`` (B, C, *spatial), edges replicated."""
    nd = v.ndim - 2
    pool = F.avg_pool2d if nd == 2 else F.avg_pool3d
    n = 3**nd
    box = pool(F.pad(v, (1, 1) * nd, mode="replicate"), 3, stride=1)
    return (box * n - v) / (n - 1)


def vote_scores(prob: torch.Tensor, neighbour_weight: float = NEIGHBOUR_WEIGHT) -> torch.Tensor:
    """Per-phase scores ``(1 - w) log p + w mean_neighbours(log p)`` (log p clamped at -10).

    With ``w < 0.5`` a one-hot input keeps its labels (own phase >= -10 w, others <= -10 (1 - w));
    for soft outputs a voxel that disagrees with all its neighbours is outvoted: the
    one-voxel islands and chords of per-voxel thresholding disappear (``bench/micro_conditioning.py``).
    """
    logp = torch.log(prob.float().clamp_min(_LOGP_FLOOR))
    if neighbour_weight <= 0:
        return logp
    return (1 - neighbour_weight) * logp + neighbour_weight * _neighbour_mean(logp)


def harden(prob: torch.Tensor, neighbour_weight: float = NEIGHBOUR_WEIGHT) -> torch.Tensor:
    """Phase labels (B, *spatial) from probabilities (B, P, *spatial), keeping each sample's soft fraction.

    Scores are :func:`vote_scores` (``neighbour_weight = 0``: the probabilities alone).
    Two phases: the ``round(mean p_0 * N)`` voxels of largest score ``s_0 - s_1`` become
    phase 0, the rest phase 1 (hard fraction = soft fraction within 0.5 / N). More
    phases: argmax of the scores. One-hot inputs are returned unchanged for ``w < 0.5``.
    """
    if not 0 <= neighbour_weight < 0.5:
        raise ValueError(f"neighbour_weight must be in [0, 0.5), got {neighbour_weight}")
    score = vote_scores(prob, neighbour_weight)
    if prob.shape[1] != 2:
        return score.argmax(dim=1)
    s0 = (score[:, 0] - score[:, 1]).flatten(1)
    n = s0.shape[1]
    k = torch.round(prob[:, 0].double().flatten(1).mean(dim=1) * n).long()
    order = torch.argsort(s0, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=s0.device).expand_as(order))
    labels = (rank >= k[:, None]).long()
    return labels.view(prob.shape[0], *prob.shape[2:])
