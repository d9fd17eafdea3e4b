"""Device and precision choice, written once for training, sampling and metrics.

Examples
--------
>>> resolve_device("cpu")
device(type='cpu')
>>> uses_bf16("auto", torch.device("cpu"))
False
"""

from __future__ import annotations

import contextlib

import torch

from physgan.errors import ConfigError

__all__ = ["resolve_device", "uses_bf16", "autocast"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device named by ``device``.

    Parameters
    ----------
    device : str, torch.device or None
        ``auto``/None: CUDA when available, else CPU; otherwise ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        When CUDA (or CUDA device ``N``) is asked for and not available.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device '{device}' is not a device name; use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' requested but CUDA is not available; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run with ``train.precision`` = ``precision`` computes in bf16 on ``device``.

    ``bf16``: always; ``auto``: on CUDA only; ``fp32``: never. Training, validation and sampling
    all follow this one rule, so the samples of a loaded run equal those scored during training.
    """
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """A ``torch.autocast`` context in bf16 where :func:`uses_bf16`, a no-op context otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=uses_bf16(precision, device))
