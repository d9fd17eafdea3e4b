"""Conditional moment matching (physgan.train.moments): unbiased, conditional, and it moves a generator."""

from __future__ import annotations

import pytest
import torch

from physgan.train.moments import condition_basis, conditional_moment_loss


def test_condition_basis_holds_intercept_slopes_and_curvature():
    c = torch.tensor([[2.0, 3.0], [1.0, -1.0]])
    assert condition_basis(c, 0).tolist() == [[1.0], [1.0]]
    assert condition_basis(c, 1).tolist() == [[1.0, 2.0, 3.0], [1.0, 1.0, -1.0]]
    assert condition_basis(c, 2).tolist() == [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0], [1.0, 1.0, -1.0, 1.0, -1.0, 1.0]]
    with pytest.raises(ValueError, match="degree"):
        condition_basis(c, 3)


def test_loss_is_unbiased_zero_for_identical_distributions_and_sees_a_wrong_slope():
    g = torch.Generator().manual_seed(0)
    n_rep, b = 2000, 32
    c = torch.rand(n_rep, b, 1, generator=g) * 2 - 1
    real = 0.5 * c + torch.randn(n_rep, b, 3, generator=g)
    same = 0.5 * c + torch.randn(n_rep, b, 3, generator=g)
    steep = 0.8 * c + torch.randn(n_rep, b, 3, generator=g)  # right mean over the batch, wrong slope
    ls = torch.stack([conditional_moment_loss(same[i], real[i], c[i], degree=1) for i in range(n_rep)])
    lw = torch.stack([conditional_moment_loss(steep[i], real[i], c[i], degree=1) for i in range(n_rep)])
    l0 = torch.stack([conditional_moment_loss(steep[i], real[i], c[i], degree=0) for i in range(n_rep)])
    se = float(ls.std()) / n_rep**0.5
    assert abs(float(ls.mean())) < 4 * se  # a squared batch mean would sit at ~2 var / (b/2) > 0
    # E[(0.3 c) c] = 0.3 E[c^2] = 0.1 per summary in the slope column, 0 in the intercept; 3 summaries
    assert float(lw.mean()) == pytest.approx(3 * 0.1**2, rel=0.25)
    assert abs(float(l0.mean())) < 4 * float(l0.std()) / n_rep**0.5  # the intercept alone cannot see it


def test_gradient_moves_a_conditional_generator_to_the_data_slope():
    g = torch.Generator().manual_seed(1)
    theta = torch.zeros(2, requires_grad=True)  # fake summary = theta0 + theta1 * c + noise
    opt = torch.optim.Adam([theta], lr=0.02)
    for _ in range(1500):
        c = torch.rand(32, 1, generator=g) * 2 - 1
        real = 1.0 - 0.7 * c + 0.5 * torch.randn(32, 1, generator=g)
        fake = theta[0] + theta[1] * c + 0.5 * torch.randn(32, 1, generator=g)
        loss = conditional_moment_loss(fake, real, c, degree=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert theta.detach().tolist() == pytest.approx([1.0, -0.7], abs=0.1)


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="disagree"):
        conditional_moment_loss(torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="at least 2"):
        conditional_moment_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1))


def test_trainer_adds_the_term_for_a_domain_with_summaries_and_refuses_one_without(tmp_path):
    import json
    import math

    from physgan.config import resolve_config
    from physgan.domains.nbody.make import make_dataset
    from physgan.errors import ConfigError
    from physgan.train.loop import train

    data = tmp_path / "lss.h5"
    make_dataset(
        data, sim_kind="lognormal", dim=2, grid=16, box=32.0, omega_m=(0.25, 0.35), sigma8=(0.7, 0.9), n=64, seed=0, progress=False
    )
    small = ["train.steps=2", "train.batch_size=8", "train.n_critic=1", "train.log_every=1", "train.val_every=0", "data.val_size=8"]
    cfg = resolve_config("nbody", overrides=[f"data.path={data}", *small, "train.moment_weight=1", "train.moment_degree=2"])
    train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    vals = [r["Loss/moments"] for r in rows if "Loss/moments" in r]
    assert len(vals) == 2 and all(math.isfinite(v) for v in vals) and any(v != 0.0 for v in vals)
    arr = tmp_path / "ring.h5"
    from physgan.io.hdf5 import write_samples
    from physgan.sim.toy import sample_modes

    x, c = sample_modes(64, "ring", radius_range=(1.5, 2.5), seed=0)
    write_samples(arr, x, c, ["radius"], "array", attrs={"domain": "array"})
    cfg = resolve_config("array", overrides=[f"data.path={arr}", *small, "train.moment_weight=1"])
    with pytest.raises(ConfigError, match="moment_weight"):
        train(cfg, tmp_path / "run2", progress=False)
