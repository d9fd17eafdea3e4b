"""From latents and physical conditions to physical samples: written once for validation and for loaded runs."""

from __future__ import annotations

import torch

from physgan.device import autocast

__all__ = ["generate_batch"]


@torch.no_grad()
def generate_batch(G, transform, normaliser, c_phys: torch.Tensor, z: torch.Tensor, precision: str = "auto") -> torch.Tensor:
    """Physical samples of generator ``G`` for physical conditions ``c_phys`` and latents ``z``.

    Parameters
    ----------
    G : nn.Module
        ``G(z, c_normalised) -> model-space samples``. A generator may offer ``G.sample_model(z, c)``:
        the same samples without the parts ``transform.inverse`` drops (e.g. calo's summary coordinates);
        it is used when present. A generator may also offer ``G.sample_physical(z, c, c_phys, transform)``: the
        physical samples themselves, equal to ``transform.inverse(G.sample_model(z, c), c_phys)`` to rounding, made
        without the model-space map and its inverse (calo: a log and an exp of every cell); it is used first.
    transform
        The run's fitted transform (``inverse(y, c_phys)`` back to physical units).
    normaliser : callable
        Physical -> normalised conditions (the run's :class:`~physgan.train.conditions.ConditionNormaliser`).
    c_phys : Tensor, shape (B, k)
        Physical conditions, float32 on ``z``'s device.
    z : Tensor
        Latents, shape ``(B, *G.latent_shape(...))``.
    precision : str
        ``train.precision`` of the run: the generator runs in bf16 where :func:`physgan.device.uses_bf16`.

    Returns
    -------
    Tensor
        Float32 physical samples on ``z``'s device.
    """
    physical = getattr(G, "sample_physical", None)
    with autocast(precision, z.device):
        if physical is not None:
            return physical(z, normaliser(c_phys), c_phys, transform).float()
        y = getattr(G, "sample_model", G)(z, normaliser(c_phys))
    return transform.inverse(y.float(), c_phys)
