"""Adversarial objectives: the Wasserstein loss with gradient penalty and the classics.

An objective turns critic outputs into losses for one training phase:

* ``critic_loss(D, real, fake, c, generator, update)`` -> (loss, stats); ``update`` counts the run's critic updates
  (the lazy penalty of :class:`WassersteinGP` is due on every ``gp_every``-th)
* ``generator_loss(D, fake, c)`` -> (loss, stats)
* ``after_critic_step(D)``: e.g. weight clipping

The trainer knows nothing about the formulas. Conditions ``c`` are those of the
real batch; the fakes were generated with the same ``c``, so every interpolate
of the gradient penalty lies inside one conditional slice.

References
----------
.. [1] I. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017,
   arXiv:1704.00028 (Algorithm 1: lambda = 10, n_critic = 5, Adam 1e-4, (0, 0.9)).
.. [2] M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein GAN", ICML 2017,
   arXiv:1701.07875 (weight clipping, RMSProp 5e-5, c = 0.01).
.. [3] I. Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014
   (minimax and non-saturating generator losses).
.. [4] T. Karras et al., "Progressive Growing of GANs", ICLR 2018 (drift term).
.. [5] T. Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020, arXiv:1912.04958
   (lazy regularisation: a penalty on every k-th update at k times the weight).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "interpolate",
    "gradient_norms",
    "gradient_penalty",
    "penalty_at",
    "Objective",
    "WassersteinGP",
    "WassersteinClip",
    "Minimax",
    "NonSaturating",
    "make_objective",
]

Critic = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def interpolate(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random points on the lines between real and fake samples.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per
    sample (shape ``(B, 1, ..., 1)``), broadcast over the sample's elements.
    The fakes are detached, so no gradient of the penalty reaches the generator.
    The result is a leaf that requires grad.
    """
    eps_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    return (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)


def gradient_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms over all non-batch dimensions, in float32.

    The small constant inside the square root keeps the norm differentiable
    where the gradient vanishes.
    """
    return torch.sqrt(grad.float().flatten(1).pow(2).sum(dim=1) + 1e-12)


def penalty_at(critic: Critic, x_hat: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[(||grad_x D(x_hat, c)|| - 1)^2]`` at given points ``x_hat`` (a leaf that requires grad).

    The critic output is taken in float32 (under bf16 autocast too) and the graph is kept
    (``create_graph``), so the penalty trains the critic.

    Returns
    -------
    penalty : Tensor
        Scalar mean penalty (float32).
    norms : Tensor
        Per-sample gradient norms (detached), for diagnostics.
    """
    out = critic(x_hat, cond).float()
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = gradient_norms(grad)
    return (norms - 1.0).pow(2).mean(), norms.detach()


def gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """WGAN-GP penalty ``E[(||grad_x D(x_hat, c)|| - 1)^2]`` at random interpolates of ``real`` and ``fake``.

    Parameters
    ----------
    critic : callable
        ``D(x, c) -> (B,)``.
    real, fake : Tensor
        Batches of the same shape; ``fake`` generated with conditions ``cond``.
    cond : Tensor
        The real batch's (normalised) conditions, passed to the critic unchanged.
    generator : torch.Generator, optional
        Source of the interpolation weights.

    Returns
    -------
    penalty : Tensor
        Scalar mean penalty (float32).
    norms : Tensor
        Per-sample gradient norms (detached), for diagnostics.
    """
    return penalty_at(critic, interpolate(real, fake, generator), cond)


class Objective:
    """Base class: Wasserstein-style critic and generator losses."""

    name = "base"
    #: whether the critic output is a logit (classic GANs) or a score (WGAN)
    logits = False

    def critic_loss(self, D: Critic, real, fake, cond, generator=None, update: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover

    def generator_loss(self, D: Critic, fake, cond) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover

    def after_critic_step(self, D: nn.Module) -> dict[str, torch.Tensor]:
        """Called after each critic optimiser step (weight clipping lives here)."""
        return {}


class WassersteinGP(Objective):
    """Wasserstein loss with gradient penalty (default), optional ProGAN drift.

    Critic loss: ``E[D(fake)] - E[D(real)] + lambda * GP + drift * E[D(real)^2]``.
    Real and fake batches share one critic forward; the interpolates get their
    own, so the double backward of the penalty covers only them (measured
    1.4-1.8x faster than one fused forward of all three on CPU; see
    bench/RESULTS.md). The Wasserstein terms and the penalty share one
    backward, which keeps DistributedDataParallel's gradient reduction correct.
    """

    name = "wgan-gp"

    def __init__(self, gp_lambda: float = 10.0, drift: float = 0.0, gp_every: int = 1):
        self.gp_lambda = gp_lambda
        self.drift = drift
        self.gp_every = max(1, int(gp_every))

    def penalty_due(self, update: int) -> bool:
        """Whether critic update number ``update`` (0, 1, ... over the run) carries the penalty: the last of every
        ``gp_every`` (with two critic updates per generator step and ``gp_every = 2``, each step's second one)."""
        return (int(update) + 1) % self.gp_every == 0

    def critic_loss(self, D, real, fake, cond, generator=None, update: int = 0):
        """Wasserstein loss; the penalty at weight ``gp_lambda * gp_every`` when :meth:`penalty_due`, so its mean
        weight is ``gp_lambda``. Lazy because its double backward is the costly part: 177 of the 274 ms of a 64^3
        micro critic loss and backward (RESULTS §12.28). The interpolates are drawn either way (the random streams
        do not depend on ``gp_every``'s phase)."""
        b = real.shape[0]
        fake = fake.detach()
        x_hat = interpolate(real, fake, generator)  # drawn before the critic forwards (a critic may draw too)
        out = D(torch.cat([real, fake]), torch.cat([cond, cond])).float()
        d_real, d_fake = out[:b], out[b:]
        w_dist = d_real.mean() - d_fake.mean()
        loss = -w_dist
        stats = {"Loss/W": w_dist.detach()}
        if self.penalty_due(update):
            gp, norms = penalty_at(D, x_hat, cond)
            loss = loss + self.gp_lambda * self.gp_every * gp
            stats.update({"Loss/GP": gp.detach(), "Grad/x_norm": norms.mean()})
        if self.drift:
            loss = loss + self.drift * d_real.pow(2).mean()
        stats["Loss/D"] = loss.detach()
        return loss, stats

    def generator_loss(self, D, fake, cond):
        loss = -D(fake, cond).float().mean()
        return loss, {"Loss/G": loss.detach()}


class WassersteinClip(WassersteinGP):
    """Original WGAN: Wasserstein loss, critic weights clipped to ``[-c, c]``."""

    name = "wgan-clip"

    def __init__(self, clip: float = 0.01):
        super().__init__(gp_lambda=0.0)
        self.clip = clip

    def critic_loss(self, D, real, fake, cond, generator=None, update: int = 0):
        b = real.shape[0]
        out = D(torch.cat([real, fake.detach()]), torch.cat([cond, cond])).float()
        w_dist = out[:b].mean() - out[b:].mean()
        loss = -w_dist
        return loss, {"Loss/D": loss.detach(), "Loss/W": w_dist.detach()}

    @torch.no_grad()
    def after_critic_step(self, D: nn.Module) -> dict[str, torch.Tensor]:
        """Clamp every critic weight to ``[-c, c]``; report the clipped fraction (a device tensor: no host sync)."""
        params = list(D.parameters())
        n_clipped = sum((p.abs() >= self.clip).sum() for p in params)
        n_total = sum(p.numel() for p in params)
        for p in params:
            p.clamp_(-self.clip, self.clip)
        return {"Clip/fraction": n_clipped.float() / max(n_total, 1)}


class Minimax(Objective):
    """Goodfellow's value function with a logit critic (log-sigmoid forms).

    Critic maximises ``E[log D(x)] + E[log(1 - D(G(z)))]``; the generator
    minimises ``E[log(1 - D(G(z)))]`` (saturates when D wins).
    """

    name = "minimax"
    logits = True

    def critic_loss(self, D, real, fake, cond, generator=None, update: int = 0):
        b = real.shape[0]
        out = D(torch.cat([real, fake.detach()]), torch.cat([cond, cond])).float()
        d_real, d_fake = out[:b], out[b:]
        # -log sigmoid(d_real) - log(1 - sigmoid(d_fake)) = softplus(-d_real) + softplus(d_fake)
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        stats = {
            "Loss/D": loss.detach(),
            "D/real": torch.sigmoid(d_real).mean().detach(),
            "D/fake": torch.sigmoid(d_fake).mean().detach(),
        }
        return loss, stats

    def generator_loss(self, D, fake, cond):
        # minimise log(1 - sigmoid(d)) = -softplus(d)
        loss = -F.softplus(D(fake, cond).float()).mean()
        return loss, {"Loss/G": loss.detach()}


class NonSaturating(Minimax):
    """Same critic as :class:`Minimax`; the generator maximises ``E[log D(G(z))]``."""

    name = "nonsaturating"

    def generator_loss(self, D, fake, cond):
        loss = F.softplus(-D(fake, cond).float()).mean()
        return loss, {"Loss/G": loss.detach()}


def make_objective(name: str, gp_lambda: float = 10.0, drift: float = 0.0, clip: float = 0.01, gp_every: int = 1) -> Objective:
    """Objective by config name (``wgan-gp``, ``wgan-clip``, ``minimax``, ``nonsaturating``)."""
    if name == "wgan-gp":
        return WassersteinGP(gp_lambda, drift, gp_every)
    if name == "wgan-clip":
        return WassersteinClip(clip)
    if name == "minimax":
        return Minimax()
    if name == "nonsaturating":
        return NonSaturating()
    from physgan.errors import ConfigError

    raise ConfigError(f"unknown loss '{name}'")
