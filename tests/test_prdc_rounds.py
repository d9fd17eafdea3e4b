"""PRDC's fast paths (shared k-NN lists, sparse pairs, many rounds at once) agree with the definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgan.errors import ConfigError
from physgan.metrics.bootstrap import split_halves, with_floor
from physgan.metrics.prdc import PRDC, manifold, neighbour_lists, prdc_rounds
from physgan.train.diagnostics import manifold_scores


def oracle(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """The four definitions, brute force in float64 (closed balls)."""
    a, b = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    daa, dbb, dab = torch.cdist(a, a), torch.cdist(b, b), torch.cdist(a, b)
    r = torch.sort(daa, 1).values[:, k]  # column 0: the row itself
    s = torch.sort(dbb, 1).values[:, k]
    within_r = dab <= r[:, None]
    return {
        "precision": float(within_r.any(0).double().mean()),
        "recall": float((dab <= s[None, :]).any(1).double().mean()),
        "density": float(within_r.sum(0).double().mean() / k),
        "coverage": float((dab.min(1).values <= r).double().mean()),
    }


def sets(n_real=300, n_fake=260, d=4, seed=0, spread=1.3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) * spread + 0.3


def halves(n, n_rounds, seed):
    rng = np.random.default_rng(seed)
    return [np.sort(rng.permutation(n)[: n // 2]) for _ in range(n_rounds)]


@pytest.mark.parametrize("neighbours, budget", [(16, 10**9), (5, 10**9), (16, 0), (8, 500)])
def test_rounds_equal_the_definitions_on_each_subset(neighbours, budget):
    """Exact agreement whatever the list length (short lists force the exact re-search of many rows)
    and the pair budget (0: every tile evaluated round by round)."""
    real, fake = sets()
    rounds = [(None, None)] + list(zip(halves(len(real), 6, 1), halves(len(fake), 6, 2)))
    got = prdc_rounds(torch.as_tensor(real), torch.as_tensor(fake), rounds, k=5, block=64,
                      neighbours=neighbours, pair_budget=budget)  # fmt: skip
    for (ia, ib), res in zip(rounds, got):
        a = real if ia is None else real[ia]
        b = fake if ib is None else fake[ib]
        assert res == pytest.approx(oracle(a, b), abs=1e-12)


def test_broad_fakes_and_duplicates():
    """Fakes ten times broader than the reals (every fake ball holds many reals: dense tiles) and
    duplicated rows (ties at distance 0: closed balls keep a sample inside its own manifold)."""
    rng = np.random.default_rng(3)
    real = np.repeat(rng.standard_normal((60, 3)), 3, axis=0)
    fake = rng.standard_normal((150, 3)) * 10
    rounds = [(None, None), (np.arange(0, 180, 2), np.arange(0, 150, 3))]
    for budget in (10**9, 100):
        got = prdc_rounds(torch.as_tensor(real), torch.as_tensor(fake), rounds, block=50, pair_budget=budget)
        assert got[0] == pytest.approx(oracle(real, fake), abs=1e-12)
        assert got[1] == pytest.approx(oracle(real[::2], fake[::3]), abs=1e-12)
    same = manifold(real, real.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_rounds_with_repeated_rows_are_refused():
    real, fake = sets(40, 40)
    with pytest.raises(ConfigError, match="distinct rows"):
        prdc_rounds(torch.as_tensor(real), torch.as_tensor(fake), [(np.array([0, 0, 1, 2, 3, 4, 5, 6]), None)])


def test_neighbour_lists_are_the_nearest_other_rows():
    x = torch.as_tensor(np.random.default_rng(4).standard_normal((97, 5)))
    d2, idx = neighbour_lists(x, 7, block=20)
    full = torch.cdist(x, x) ** 2
    full.fill_diagonal_(float("inf"))
    want = torch.sort(full, 1)
    assert torch.allclose(d2, want.values[:, :7], atol=1e-9)
    assert torch.equal(torch.gather(full, 1, idx), d2) or torch.allclose(torch.gather(full, 1, idx), d2, atol=1e-9)
    assert not (idx == torch.arange(97)[:, None]).any()


def test_prdc_metric_caps_the_sets_and_agrees_with_with_floor_round_by_round():
    """PRDC through with_floor (all rounds at once, k-NN lists shared by value and floor, each set cut
    to max_samples rows) gives the plain definitions on the same rows: the kept rows for the value
    and the floor, the kept rows of each random half for the errors."""
    real, fake = sets(400, 350, seed=5)
    real2 = sets(380, 10, seed=6)[0]
    metric = PRDC(max_samples=300, seed=7, device="cpu", dtype=torch.float64, block=64)
    fast = with_floor(metric, real, fake, real2, n_boot=5, method="half", seed=11)
    ka, kb, k2 = (metric._prepare(a, "x")[0] for a in (real, fake, real2))  # the rows the metric kept
    assert len(ka) == len(kb) == len(k2) == 300
    want = oracle(real[ka], fake[kb])
    assert {k: fast[k].value for k in want} == pytest.approx(want, abs=1e-12)
    floor = oracle(real[ka], real2[k2])
    assert {k: fast[k].floor for k in floor} == pytest.approx(floor, abs=1e-12)
    rng = np.random.default_rng(11)  # with_floor's draws: the value's rounds (real, fake), then the floor's
    vals = []
    for _ in range(5):
        ia = np.sort(rng.permutation(len(real))[: len(real) // 2])
        ib = np.sort(rng.permutation(len(fake))[: len(fake) // 2])
        vals.append(oracle(real[np.intersect1d(ia, ka)], fake[np.intersect1d(ib, kb)])["density"])
    assert fast["density"].error == pytest.approx(float(np.std(vals, ddof=1)), abs=1e-12)


def test_plain_metric_and_rounds_metric_give_the_same_floor_results():
    """with_floor draws the same rows for a metric with and without ``rounds`` (halves of real as floor)."""
    real, fake = sets(240, 200, seed=8)

    class Slow:
        def __call__(self, a, b):
            return manifold(a, b)

    fast = with_floor(PRDC(max_samples=None, device="cpu", dtype=torch.float64), real, fake, n_boot=4, method="half", seed=2)
    slow = with_floor(Slow(), real, fake, n_boot=4, method="half", seed=2)
    for key in fast:
        assert fast[key].to_dict() == pytest.approx(slow[key].to_dict(), abs=1e-12)
    a, b = split_halves(real, np.random.default_rng(2))
    assert fast["recall"].floor == pytest.approx(oracle(a, b)["recall"], abs=1e-12)


def test_training_diagnostics_use_the_same_definitions():
    real, fake = sets(120, 90, seed=9)
    got = manifold_scores(torch.as_tensor(real), torch.as_tensor(fake), k=5)
    want = oracle(real, fake)
    assert got == pytest.approx({k: want[k] for k in ("precision", "recall", "coverage")}, abs=1e-12)
