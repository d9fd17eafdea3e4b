"""Gradient penalty and objectives: each property the WGAN-GP paper requires."""

from __future__ import annotations

import math

import pytest
import torch

from physgan.train.losses import (
    Minimax,
    NonSaturating,
    WassersteinClip,
    WassersteinGP,
    gradient_norms,
    gradient_penalty,
    interpolate,
    make_objective,
)


def test_epsilon_is_per_sample_not_per_batch_or_element():
    real = torch.zeros(16, 3, 4, 5)
    fake = torch.ones(16, 3, 4, 5)
    x_hat = interpolate(real, fake, torch.Generator().manual_seed(0))
    per_sample = x_hat.flatten(1)
    # one value per sample (constant over every element of the sample)...
    assert torch.allclose(per_sample.min(1).values, per_sample.max(1).values)
    # ...and different values across samples, all in [0, 1]
    assert per_sample[:, 0].unique().numel() == 16
    assert ((per_sample >= 0) & (per_sample <= 1)).all()


def test_interpolates_are_a_leaf_detached_from_the_generator():
    w = torch.nn.Parameter(torch.ones(1))
    fake = w * torch.ones(4, 2)
    x_hat = interpolate(torch.zeros(4, 2), fake)
    assert x_hat.is_leaf and x_hat.requires_grad
    x_hat.sum().backward()
    assert w.grad is None  # no path from the penalty to the generator


@pytest.mark.parametrize("shape", [(5, 7), (5, 2, 6, 6), (5, 2, 3, 4, 4)])
def test_gradient_norm_is_per_sample_over_all_non_batch_dims(shape):
    g = torch.randn(shape)
    expected = torch.stack([g[i].pow(2).sum().sqrt() for i in range(shape[0])])
    assert torch.allclose(gradient_norms(g), expected, atol=1e-5)
    assert gradient_norms(g).dtype == torch.float32
    # bf16 gradients still give a float32 norm
    assert gradient_norms(g.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("shape", [(8, 6), (8, 2, 5, 5), (8, 1, 3, 4, 5)])
def test_penalty_zero_for_one_lipschitz_linear_critic(shape):
    w = torch.randn(shape[1:])
    w = w / w.norm()  # |grad_x <w, x>| = 1 everywhere, in particular along the line

    def critic(x, c):
        return (x * w).flatten(1).sum(1) + 0 * c.sum(1)

    gp, norms = gradient_penalty(critic, torch.randn(shape), torch.randn(shape), torch.randn(shape[0], 2))
    assert torch.allclose(norms, torch.ones(shape[0]), atol=1e-5)
    assert gp.item() == pytest.approx(0.0, abs=1e-8)


def test_penalty_of_a_two_lipschitz_critic_is_one():
    def critic(x, c):
        return 2 * x.sum(1) / math.sqrt(x.shape[1])

    gp, _ = gradient_penalty(critic, torch.randn(6, 9), torch.randn(6, 9), torch.zeros(6, 0))
    assert gp.item() == pytest.approx(1.0, abs=1e-5)


def test_penalty_differentiates_wrt_interpolates_only_and_keeps_condition():
    seen = {}

    def critic(x, c):
        seen["x"], seen["c"] = x, c
        return (x**2).flatten(1).sum(1)

    real = torch.randn(4, 3, requires_grad=True)
    fake = torch.randn(4, 3, requires_grad=True)
    cond = torch.randn(4, 2)
    gp, _ = gradient_penalty(critic, real, fake, cond)
    assert seen["x"].is_leaf and seen["x"] is not real and seen["x"] is not fake
    assert seen["c"] is cond  # the real batch's condition reaches the critic unchanged
    gp.backward()
    assert real.grad is None and fake.grad is None


def test_penalty_finite_where_gradient_vanishes():
    lin = torch.nn.Linear(3, 1)

    def critic(x, c):
        return 0 * lin(x).squeeze(1) + lin.bias  # gradient w.r.t. x is exactly zero

    gp, _ = gradient_penalty(critic, torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4, 0))
    gp.backward()
    assert gp.item() == pytest.approx(1.0, abs=1e-5)
    assert all(torch.isfinite(p.grad).all() for p in lin.parameters() if p.grad is not None)


def _mlp_critic_and_batch():
    """A small conditional MLP critic and a real / fake / condition batch (seeded)."""
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Linear(5 + 1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def critic(x, c):
        return D(torch.cat([x, c], 1)).squeeze(1)

    return critic, torch.randn(8, 5), torch.randn(8, 5), torch.randn(8, 1)


def test_fused_critic_loss_equals_separate_terms():
    critic, real, fake, cond = _mlp_critic_and_batch()
    obj = WassersteinGP(gp_lambda=10.0)
    loss, stats = obj.critic_loss(critic, real, fake, cond, generator=torch.Generator().manual_seed(3))
    gp, _ = gradient_penalty(critic, real, fake, cond, generator=torch.Generator().manual_seed(3))
    expected = critic(fake, cond).mean() - critic(real, cond).mean() + 10.0 * gp
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["Loss/GP"].item() == pytest.approx(gp.item(), rel=1e-5)


def test_critic_sees_same_condition_for_real_fake_interpolate():
    calls = []

    def critic(x, c):
        calls.append((x, c))
        return x.sum(1)

    cond = torch.arange(4.0).unsqueeze(1)
    WassersteinGP().critic_loss(critic, torch.randn(4, 2), torch.randn(4, 2), cond)
    (x_rf, c_rf), (x_hat, c_hat) = calls
    assert torch.equal(c_rf, torch.cat([cond, cond])) and c_hat is cond
    assert x_hat.is_leaf and x_hat.requires_grad and x_rf.shape[0] == 8


def test_classic_losses_at_an_undecided_critic():
    def undecided(x, c):
        return torch.zeros(x.shape[0])

    x = torch.randn(4, 2)
    c = torch.zeros(4, 0)
    loss_d, _ = Minimax().critic_loss(undecided, x, x, c)
    assert loss_d.item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert Minimax().generator_loss(undecided, x, c)[0].item() == pytest.approx(-math.log(2), rel=1e-6)
    assert NonSaturating().generator_loss(undecided, x, c)[0].item() == pytest.approx(math.log(2), rel=1e-6)


def test_weight_clipping_clamps_and_reports_fraction():
    lin = torch.nn.Linear(10, 10)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.bias.fill_(0.001)
    stats = WassersteinClip(clip=0.01).after_critic_step(lin)
    assert lin.weight.abs().max().item() == pytest.approx(0.01)
    assert float(stats["Clip/fraction"]) == pytest.approx(100 / 110)


def test_make_objective_names():
    assert make_objective("wgan-gp").name == "wgan-gp"
    assert make_objective("wgan-clip").name == "wgan-clip"
    assert make_objective("minimax").logits and make_objective("nonsaturating").logits


def test_wgan_gp_loss_penalty_is_the_tested_gradient_penalty():
    """The objective computes its penalty through :func:`gradient_penalty`'s mechanism: same draws, same value."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def D(x, c):
        return critic(x).squeeze(1) * (1 + c.sum(1))

    real, fake, cond = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 2)
    _, stats = WassersteinGP(10.0).critic_loss(D, real, fake, cond, generator=torch.Generator().manual_seed(3))
    gp, norms = gradient_penalty(D, real, fake, cond, generator=torch.Generator().manual_seed(3))
    assert gp.item() > 0
    assert torch.equal(stats["Loss/GP"], gp.detach())
    assert torch.equal(stats["Grad/x_norm"], norms.mean())


def test_lazy_penalty_is_due_on_every_kth_update_at_k_times_the_weight():
    critic, real, fake, cond = _mlp_critic_and_batch()
    full, _ = WassersteinGP(10.0).critic_loss(critic, real, fake, cond, generator=torch.Generator().manual_seed(3))
    lazy = WassersteinGP(10.0, gp_every=3)
    w_only = critic(fake, cond).mean() - critic(real, cond).mean()
    due = []
    for update in range(6):
        gen = torch.Generator().manual_seed(3)
        loss, stats = lazy.critic_loss(critic, real, fake, cond, generator=gen, update=update)
        due.append("Loss/GP" in stats)
        # the interpolates are drawn whether or not the penalty is due: the latent stream does not depend on the phase
        assert torch.equal(gen.get_state(), _after_one_interpolate(real))
        if due[-1]:  # -W + 3 lambda gp: three times the full loss's penalty term
            assert (loss - w_only).item() == pytest.approx(3 * (full - w_only).item(), rel=1e-5)
            assert (full - w_only).item() > 0
        else:
            assert loss.item() == pytest.approx(w_only.item(), rel=1e-6) and "Grad/x_norm" not in stats
    assert due == [False, False, True, False, False, True]


def _after_one_interpolate(real):
    gen = torch.Generator().manual_seed(3)
    interpolate(real, real, gen)
    return gen.get_state()
