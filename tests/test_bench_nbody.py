"""Tiny checks of the N-body benchmark's helpers (no training, no subprocess)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench.nbody_benchmark import (
    GOALS,
    _check_points,
    _training_fields,
    compare,
    default_eval_train,
    default_held_out,
    merge_files,
    paired_pm_ratio,
    parse_args,
    parse_points,
    parse_values,
    response,
    training_fit_ratio,
    verdict,
)
from physgan.domains.nbody.spectral import fit_amplitude_response, fitted_power
from physgan.io.hdf5 import open_source, read_all, write_samples


def test_grid_and_held_out_points():
    om, s8 = parse_values("0.35,0.25,0.30", "omega-m"), parse_values("0.7,0.8,0.9", "sigma8")
    assert om == [0.25, 0.30, 0.35]
    held = default_held_out(om, s8)
    assert held == [(0.275, 0.75), (0.275, 0.85), (0.325, 0.75), (0.325, 0.85)]
    grid = [(a, b) for a in om for b in s8]
    train = default_eval_train(om, s8)
    assert train == [(0.30, 0.8), (0.25, 0.9)] and all(p in grid for p in train)
    _check_points(grid, train, held)  # valid: no exit
    with pytest.raises(SystemExit, match="training cosmology"):
        _check_points(grid, train, [(0.30, 0.8)])
    with pytest.raises(SystemExit, match="strictly inside"):
        _check_points(grid, train, [(0.40, 0.8)])
    with pytest.raises(SystemExit, match="omega_m:sigma8"):
        parse_points("0.3-0.8", "held-out")
    assert parse_points("0.275:0.75, 0.325:0.85", "held-out") == [(0.275, 0.75), (0.325, 0.85)]


def test_verdict_flags_floor_above_goal():
    assert verdict(0.01, 0.02, 0.05) == "pass"
    assert verdict(-0.06, 0.01, 0.05) == "FAIL"
    assert verdict(0.01, 0.07, 0.05) == "pass (floor>goal)"
    assert verdict(None, None, 0.05) == "n/a"


def _lognormal_like(n: int, grid: int, seed: int, amp: float = 1.0) -> np.ndarray:
    g = np.random.default_rng(seed).normal(size=(n, grid, grid)) * 0.5 * amp
    return np.exp(g - g.var() / 2)


def test_particle_mesh_runs_are_read_against_goal_2():
    from bench.nbody_benchmark import GOALS_PM, goals_for

    pm, ln = goals_for("pm"), goals_for("lognormal")
    assert ln == GOALS and pm == GOALS_PM
    assert pm["pk_max_dev"] == pm["pk_max_dev_held_out"] == 0.10 and pm["pdf_separation"] == 0.02 and pm["peak_count_dev"] == 0.10
    assert ln["pk_max_dev"] == 0.05 and ln["pdf_separation"] == 0.01 and ln["peak_count_dev"] == 0.05
    assert verdict(0.08, 0.04, pm["pk_max_dev"]) == "pass" and verdict(0.08, 0.04, ln["pk_max_dev"]) == "FAIL"


def test_compare_identical_and_scaled_sets():
    real, real2 = _lognormal_like(40, 16, 0), _lognormal_like(40, 16, 1)
    attrs = {"box_size": 32.0}
    same = compare(real, real.copy(), real2, attrs)
    assert same["pk_max_dev"] == pytest.approx(0.0, abs=1e-12)
    assert same["pdf_separation"] == pytest.approx(0.0, abs=1e-12)
    assert same["peak_count_dev"] == pytest.approx(0.0, abs=1e-12)
    assert same["pk_max_dev_floor"] > 0  # independent sets differ by noise
    assert same["pk_amplitude"] == pytest.approx(1.0, abs=1e-12) and same["pk_amplitude_err"] > 0
    assert "pk_amplitude_train" not in same
    with_train = compare(real, real.copy(), real2, attrs, train=real2)
    assert with_train["pk_amplitude_train"] == pytest.approx(with_train["pk_amplitude_floor"], abs=1e-12)
    # a field with twice the Gaussian amplitude has ~4x the power at every k and another PDF
    louder = compare(real, _lognormal_like(40, 16, 2, amp=2.0), real2, attrs)
    assert louder["pk_max_dev"] > 1.0 and louder["pk_amplitude"] > 2.0
    assert louder["pdf_separation"] > GOALS["pdf_separation"]
    used = np.asarray(louder["pk"]["used"])
    k = np.asarray(louder["pk"]["k"])
    assert used.any() and np.all(k[used] <= louder["k_nyquist"] / 2 + 1e-12)


def test_training_data_fit_reads_the_fields_it_was_fitted_on_and_feeds_the_response():
    """The training-data reference: a density-power fit made on a set reads 1 against that set, scales with the fit,
    and two cosmologies' references give the response a surrogate reproducing its training data would get."""
    real, real2 = _lognormal_like(40, 16, 0), _lognormal_like(40, 16, 1)
    attrs = {"box_size": 32.0}
    c = np.tile([0.3, 0.8], (len(real), 1))  # one condition: the fit is the set's own mean power per shell
    power = fitted_power(fit_amplitude_response(real, c, n_nodes=14, degree=2, statistic="mean"), c[:1])[0]
    ratio = training_fit_ratio(real, power)
    assert ratio.shape == (4,)  # shells 1..n/4: k <= k_N/2
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-4)
    assert not np.allclose(training_fit_ratio(real2, power), 1.0, rtol=1e-3)  # another set's power differs by its noise
    a = compare(real, real.copy(), real2, attrs, fit_power=power)
    b = compare(real, real.copy(), real2, attrs, fit_power=1.25 * power)
    assert a["pk_amplitude_fit"] == pytest.approx(1.0, rel=1e-4) and b["pk_amplitude_fit"] == pytest.approx(1.25, rel=1e-4)
    for r, om in ((a, 0.3), (b, 0.35)):
        r.update({"omega_m": om, "sigma8": 0.8})
    (pair,) = response([a, b])
    assert pair["response_dev_fit"] == pytest.approx(0.2, rel=1e-3)  # (1 / 1.25) - 1
    assert "response_dev_fit" not in response([a, compare(real, real.copy(), real2, attrs) | {"omega_m": 0.35, "sigma8": 0.8}])[0]


def test_training_set_size_defaults_by_simulator():
    # lognormal: 2000 per grid point (heavy-tailed density power, RESULTS §11 thirtieth session); pm keeps 1000
    assert parse_args([]).n_per_cosmology == 2000
    assert parse_args(["--sim", "pm"]).n_per_cosmology == 1000
    assert parse_args(["--n-per-cosmology", "64"]).n_per_cosmology == 64


def test_merge_files_keeps_every_row(tmp_path):
    parts = []
    for i, (om, s8) in enumerate([(0.25, 0.7), (0.3, 0.8)]):
        x = np.full((5, 4, 4), i + 1.0, np.float32)
        c = np.tile([om, s8], (5, 1))
        p = tmp_path / f"p{i}.h5"
        attrs = {"domain": "nbody", "box_size": 8.0, "provenance": f'{{"seed": {i}}}'}
        write_samples(p, x, c, ["omega_m", "sigma8"], attrs=attrs, non_negative=True)
        parts.append(p)
    out = merge_files(parts, tmp_path / "train.h5", seed=0)
    src = open_source(out)
    x, c = read_all(src)
    assert src.header.attrs["domain"] == "nbody" and '"merged_from"' in src.header.attrs["provenance"]
    src.close()
    assert x.shape == (10, 4, 4)
    # each row keeps its own condition: value 1 <-> omega_m 0.25, value 2 <-> omega_m 0.3
    np.testing.assert_allclose(c[:, 0], np.where(x[:, 0, 0] == 1.0, 0.25, 0.3), rtol=1e-6)
    assert not np.array_equal(x[:, 0, 0], np.sort(x[:, 0, 0]))  # rows were shuffled
    # the benchmark reads a training cosmology's own fields back (pk_amplitude_train)
    sets = _training_fields(out, [(0.3, 0.8), (0.35, 0.9)])
    np.testing.assert_array_equal(sets[(0.3, 0.8)], np.full((5, 4, 4), 2.0, np.float32))
    assert sets[(0.35, 0.9)].shape == (0, 4, 4) and _training_fields(out, []) == {}


def test_paired_pm_ratio_alternates_generator_and_simulator(tmp_path):
    class _Run:  # a generator that makes empty fields: only the bookkeeping of the ratio is tested
        calls = 0

        def sample(self, n, c, seed, batch_size):
            _Run.calls += 1
            return np.zeros((n, 8, 8), dtype=np.float32)

    args = argparse.Namespace(dim=2, grid=8, box=16.0)
    q = paired_pm_ratio(_Run(), args, (0.3, 0.8), tmp_path, rounds=2, batch=4)
    assert len(q["ratios"]) == 2 and _Run.calls > 2
    for g, s, r in zip(q["fast_per_s"], q["slow_per_s"], q["ratios"]):
        assert g > 0 and s > 0 and r == pytest.approx(g / s)
    assert min(q["ratios"]) <= q["median_ratio"] <= max(q["ratios"])
    assert not list(tmp_path.iterdir())  # the simulator's files are temporary
    from bench._util import paired_rates_line

    line = paired_rates_line(q, "G", "PM")
    assert line.count(" = ") == 2 and f"median {q['median_ratio']:.0f}x" in line and "goal ≥ 100x" in line


def test_make_parts_concurrent_calls_give_the_serial_files(tmp_path):
    """``--sim-jobs``: simulator calls run at once write the same files as one at a time (each is its own seeded call)."""
    import json

    from bench.nbody_benchmark import make_parts

    args = argparse.Namespace(sim="lognormal", dim=2, grid=16, box=64.0, slices_per_box=None, threads=1, sim_jobs=1)
    files = {}
    for jobs_at_once in (1, 3):
        args.sim_jobs = jobs_at_once
        d = tmp_path / f"j{jobs_at_once}"
        jobs = [(d / "eval" / f"c{i}.h5", 0.25 + 0.05 * i, 0.8, 4, 10 + i) for i in range(3)]
        times: dict = {}
        make_parts(jobs, args, times, d / "times.json")
        assert len(times) == 3 and all(k.startswith("eval_") and v["n"] == 4 for k, v in times.items())
        assert len(json.loads((d / "times.json").read_text())) == 3
        files[jobs_at_once] = [read_all(open_source(j[0]))[0] for j in jobs]
    for a, b in zip(files[1], files[3]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(files[1][0], files[1][1])
