"""A trained run's generator calibrated again, with more samples than the training loop spends (``physgan calibrate``).

Some generators set statistics of their own outputs after training (``calibrate_statistics``: the N-body generator's
mean density and density power, :mod:`physgan.domains.nbody.calibration`; the calorimeter generator's hit-shift tables
and, with ``share_calibration``, its own quantile table of the layer shares; with ``ring_calibration``, its rings' hit
probit offsets and pattern weights).
The training loop does it before each validation and checkpoint with samples sized for a few tens of seconds, so what
the final checkpoint carries holds their sampling noise: on particle-mesh slabs the calibrated power moved by ~1.5 %
between calibration seeds with 2048 fields per point (bench/RESULTS.md §11, twenty-seventh session). This step spends
more once, after training, on the checkpoint that will be sampled, and rewrites only the generator's calibration
buffers in that checkpoint (atomically; its weights and the training state are untouched, so a resumed run
calibrates at its own next checkpoint as before).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from physgan.device import resolve_device
from physgan.errors import CheckpointError, ConfigError
from physgan.run import Run, resolve_checkpoint
from physgan.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["calibrate_run", "NothingToCalibrateError"]


class NothingToCalibrateError(ConfigError):
    """The run's generator has no calibration step, or was trained with it off."""


def calibrate_run(
    path: str | Path,
    checkpoint: str = "best",
    scale: int = 4,
    seed: int = 0,
    device: str = "cpu",
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Calibrate the EMA generator of a trained run with ``scale`` times the training loop's samples; save it in place.

    Parameters
    ----------
    path : path
        Run directory or checkpoint file.
    checkpoint : str
        ``best`` (falls back to ``last``), ``last`` or a file name in ``checkpoints/``, as :func:`physgan.run.load_run`.
    scale : int
        Multiplies the samples of the calibration's final estimate (N-body: 4 gives 8192 fields per point at 64^2,
        ~3.5 min on one core).
    seed : int
        Seed of the calibration's latents.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    force : bool
        Calibrate even when the checkpoint already holds a calibration with this ``scale`` and ``seed``.
    log : callable, optional
        Called with a line before the calibration starts (it can take minutes).

    Returns
    -------
    dict
        ``checkpoint`` (path), ``step``, ``scale``, ``seed``, ``wall_s``, ``skipped`` (already calibrated so),
        ``buffers`` (names of the buffers that changed) and ``report`` (the generator's own, e.g. the N-body
        calibration's rounds).

    Raises
    ------
    NothingToCalibrateError
        If the run's generator has nothing to calibrate (a domain without the step, or an option that is off).
    ConfigError
        If ``scale`` < 1.
    CheckpointError
        If the checkpoint cannot be read, or changed on disk while it was being calibrated (a run still training).
    """
    if int(scale) < 1:
        raise ConfigError(f"calibrate: scale must be >= 1, got {scale}")
    ck, run_dir = resolve_checkpoint(path, checkpoint)
    stamp = ck.stat().st_mtime_ns
    state = load_checkpoint(ck, map_location="cpu")
    step = int(state["step"])
    done = state.get("calibration") or {}
    if not force and done.get("scale") == int(scale) and done.get("seed") == int(seed) and done.get("step") == step:
        return {**done, "checkpoint": str(ck), "skipped": True}
    run = Run(run_dir, state, resolve_device(device))
    hook = getattr(run.G, "calibrate_statistics", None)
    if not callable(hook) or not getattr(run.G, "calibrated", True):
        raise NothingToCalibrateError(
            f"{ck}: the {run.domain_name} generator of this run has nothing to calibrate"
            + (
                " (it was trained with its calibration off: a model option of the domain, e.g. nbody's"
                " model.options.calibrate; train with it on to calibrate)"
                if callable(hook)
                else ""
            )
        )
    if "scale" not in inspect.signature(hook).parameters:
        raise ConfigError(f"{ck}: the {run.domain_name} generator's calibrate_statistics takes no 'scale'")
    before = {k: v.detach().cpu().clone() for k, v in run.G.state_dict().items()}
    if log is not None:
        what = f"the {run.domain_name} generator at step {step} with scale {int(scale)}"
        log(f"{ck}: calibrating {what} (N-body at 64^2: ~3.5 min on one core)")
    t0 = time.perf_counter()
    report = hook(seed=int(seed), scale=int(scale))
    wall = time.perf_counter() - t0
    after = {k: v.detach().cpu() for k, v in run.G.state_dict().items()}
    changed = sorted(k for k in after if not torch.equal(after[k], before[k]))
    if ck.stat().st_mtime_ns != stamp:
        raise CheckpointError(
            f"{ck}: the checkpoint changed on disk while it was being calibrated (is the run still training?); "
            "not overwritten: calibrate it after training has stopped"
        )
    info = {"step": step, "scale": int(scale), "seed": int(seed), "wall_s": wall, "buffers": changed}
    state["G_ema"] = after
    state["calibration"] = info
    save_checkpoint(state, ck)
    return {**info, "checkpoint": str(ck), "skipped": False, "report": report}
