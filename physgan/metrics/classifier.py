"""Classifier two-sample test: can a small network tell generated from real samples?

A fully connected network (LeakyReLU, no dropout, no batch norm) is trained
with binary cross entropy to separate real (label 0) from generated (label 1)
samples. Each class is balanced to the smaller one and split into
train / validation / test parts (60/20/20 % by default). Inputs are
standardised with train-split statistics. Training uses Adam and early
stopping on the validation loss (the best epoch's weights are kept). The
classifier output is then calibrated on the validation split (isotonic
regression by pool-adjacent-violators, as in the CaloChallenge evaluation, or a
single temperature), and on the held-out test split we report:

* ``auc``: ROC AUC of the calibrated probabilities (0.5: indistinguishable, 1: separable),
* ``jsd``: the CaloChallenge score ``(ln 2 − BCE) / ln 2`` of the calibrated
  probabilities (an estimate of the Jensen-Shannon divergence in bits; 0 when
  indistinguishable, 1 when separable),
* ``auc_raw``: AUC of the uncalibrated outputs, ``ece``: expected calibration
  error (10 equal-width bins) of the calibrated probabilities,
* ``auc_err``, ``jsd_err``: bootstrap standard errors over the test split.

References
----------
.. [1] D. Lopez-Paz, M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
   arXiv:1610.06545.
.. [2] C. Krause, M. F. Giannelli, G. Kasieczka, B. Nachman et al., "CaloChallenge 2022:
   a community challenge for fast calorimeter simulation", arXiv:2410.21611.
.. [3] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On calibration of modern neural
   networks", ICML 2017, arXiv:1706.04599 (temperature scaling).
.. [4] B. Zadrozny, C. Elkan, "Transforming classifier scores into accurate multiclass
   probability estimates", KDD 2002 (isotonic calibration).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import rankdata
from torch import nn

from physgan.errors import ConfigError
from physgan.metrics._common import as_matrix, make_rng, resolve_device

__all__ = ["classifier_test", "roc_auc", "isotonic_fit", "jsd_score"]

_EPS = 1e-7


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties count one half)."""
    labels = np.asarray(labels).astype(bool)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        raise ConfigError("roc_auc needs both classes")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def jsd_score(prob: np.ndarray, labels: np.ndarray) -> float:
    """``(ln 2 − BCE) / ln 2`` for balanced classes (CaloChallenge's JSD-style score)."""
    p = np.clip(prob, _EPS, 1 - _EPS)
    y = np.asarray(labels, dtype=np.float64)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float((math.log(2) - bce) / math.log(2))


def isotonic_fit(scores: np.ndarray, labels: np.ndarray):
    """Fit a non-decreasing map score -> P(label=1) by pool-adjacent-violators.

    Returns a function mapping new scores to probabilities (linear interpolation
    between the fitted knots, clipped at the ends).
    """
    order = np.argsort(scores, kind="mergesort")
    x = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    # collapse equal scores first
    ux, start = np.unique(x, return_index=True)
    sums = np.add.reduceat(y, start)
    counts = np.diff(np.append(start, len(x))).astype(np.float64)
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for s, w in zip(sums, counts):
        vals.append(s / w)
        wts.append(w)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w2 = wts[-2] + wts[-1]
            v2 = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2
            n2 = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v2, w2, n2
    fitted = np.repeat(vals, sizes)

    def predict(new_scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(new_scores, dtype=np.float64), ux, fitted)

    return predict


def _temperature_fit(logits: np.ndarray, labels: np.ndarray):
    y = labels.astype(np.float64)

    def loss(log_t: float) -> float:
        z = logits / math.exp(log_t)
        return float(np.mean(np.logaddexp(0, z) - y * z))

    t = math.exp(minimize_scalar(loss, bounds=(-5, 5), method="bounded").x)
    return lambda z: 1.0 / (1.0 + np.exp(-np.asarray(z) / t))


def _ece(prob: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(prob[m].mean() - labels[m].mean())
    return float(total / len(prob))


def _mlp(d_in: int, hidden: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.LeakyReLU(0.2)]
        d_in = h
    layers.append(nn.Linear(d_in, 1))
    return nn.Sequential(*layers)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch: int = 65536) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i : i + batch]).squeeze(1) for i in range(0, len(x), batch)]).double().cpu().numpy()


def classifier_test(
    real,
    fake,
    *,
    hidden: tuple[int, ...] = (256, 256, 256),
    epochs: int = 50,
    batch_size: int = 1000,
    lr: float = 2e-4,
    patience: int = 5,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    calibration: str = "isotonic",
    max_samples: int | None = None,
    n_boot: int = 100,
    seed: int | np.random.Generator = 0,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """Train a classifier on real vs generated samples and score it on a held-out split.

    Parameters
    ----------
    real, fake : array-like, shape (N, d)
        Inputs (high-level features, or flattened, scaled low-level samples).
    hidden : tuple of int
        Widths of the hidden layers.
    epochs, batch_size, lr : int, int, float
        Adam training schedule (maximum number of epochs).
    patience : int
        Early stopping: epochs without validation-loss improvement before stopping.
    split : (float, float, float)
        Train / validation / test fractions per class.
    calibration : {'isotonic', 'temperature', 'none'}
        Calibration fitted on the validation split.
    max_samples : int, optional
        Cap of samples per class (random subset).
    n_boot : int
        Bootstrap rounds over the test split for the errors.
    seed : int or numpy.random.Generator
        Splits, initialisation, batch order and bootstrap.
    device : str or torch.device

    Returns
    -------
    dict
        ``auc``, ``auc_err``, ``jsd``, ``jsd_err``, ``auc_raw``, ``ece``,
        ``best_epoch``, ``n_train``, ``n_test`` (per class).

    References
    ----------
    Lopez-Paz & Oquab, arXiv:1610.06545; CaloChallenge, arXiv:2410.21611.
    """
    rng = make_rng(seed)
    if max_samples is not None:  # subsample before any float64 copy of large inputs
        real = real[np.sort(rng.choice(len(real), max_samples, replace=False))] if len(real) > max_samples else real
        fake = fake[np.sort(rng.choice(len(fake), max_samples, replace=False))] if len(fake) > max_samples else fake
    r = as_matrix(real, "real", min_rows=10)
    f = as_matrix(fake, "fake", min_rows=10)
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"classifier: real has {r.shape[1]} features, fake has {f.shape[1]}")
    if calibration not in ("isotonic", "temperature", "none"):
        raise ConfigError(f"classifier: unknown calibration '{calibration}'")
    if len(split) != 3 or min(split) <= 0:
        raise ConfigError(f"classifier: split must be three positive fractions, got {split}")
    n = min(len(r), len(f))
    r = r[rng.permutation(len(r))[:n]]
    f = f[rng.permutation(len(f))[:n]]
    fr = np.asarray(split, dtype=np.float64) / np.sum(split)
    n_tr = max(int(round(fr[0] * n)), 1)
    n_va = max(int(round(fr[1] * n)), 1)
    if n - n_tr - n_va < 2:
        raise ConfigError(f"classifier: {n} samples per class are too few for a train/validation/test split")

    def part(a, b):
        x = np.concatenate([r[a:b], f[a:b]])
        y = np.concatenate([np.zeros(b - a), np.ones(b - a)])
        return x, y

    x_tr, y_tr = part(0, n_tr)
    x_va, y_va = part(n_tr, n_tr + n_va)
    x_te, y_te = part(n_tr + n_va, n)
    mu = x_tr.mean(0)
    sd = x_tr.std(0)
    sd = np.where(sd > 0, sd, 1.0)

    dev = resolve_device(device)

    def tens(x):
        return torch.as_tensor((x - mu) / sd, dtype=torch.float32, device=dev)

    xt_tr, xt_va, xt_te = tens(x_tr), tens(x_va), tens(x_te)
    yt_tr = torch.as_tensor(y_tr, dtype=torch.float32, device=dev)
    yt_va = torch.as_tensor(y_va, dtype=torch.float32, device=dev)
    torch_seed = int(rng.integers(2**31 - 1))
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(torch_seed)
        model = _mlp(r.shape[1], tuple(hidden)).to(dev)
    gen = torch.Generator().manual_seed(torch_seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    best_loss, best_state, best_epoch, waited = math.inf, copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(xt_tr), generator=gen).to(dev)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(xt_tr[idx]).squeeze(1), yt_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_loss = float(loss_fn(torch.as_tensor(_logits(model, xt_va), device=dev).float(), yt_va))
        if val_loss < best_loss - 1e-6:
            best_loss, best_state, best_epoch, waited = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    z_va, z_te = _logits(model, xt_va), _logits(model, xt_te)
    if calibration == "isotonic":
        p_te = isotonic_fit(z_va, y_va)(z_te)
    elif calibration == "temperature":
        p_te = _temperature_fit(z_va, y_va)(z_te)
    else:
        p_te = 1.0 / (1.0 + np.exp(-z_te))
    auc, jsd = roc_auc(p_te, y_te), jsd_score(p_te, y_te)
    boots_auc, boots_jsd = [], []
    n_te = len(y_te) // 2
    for _ in range(n_boot):
        # stratified resampling keeps the classes balanced
        idx = np.concatenate([rng.integers(0, n_te, n_te), n_te + rng.integers(0, n_te, n_te)])
        boots_auc.append(roc_auc(p_te[idx], y_te[idx]))
        boots_jsd.append(jsd_score(p_te[idx], y_te[idx]))
    return {
        "auc": auc,
        "auc_err": float(np.std(boots_auc, ddof=1)) if n_boot > 1 else float("nan"),
        "jsd": jsd,
        "jsd_err": float(np.std(boots_jsd, ddof=1)) if n_boot > 1 else float("nan"),
        "auc_raw": roc_auc(z_te, y_te),
        "ece": _ece(p_te, y_te),
        "best_epoch": float(best_epoch),
        "n_train": float(n_tr),
        "n_test": float(n_te),
    }
