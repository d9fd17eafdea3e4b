"""The training loop of physgan: one function, read top to bottom.

Launch commands::

    physgan train calo --data calo.h5 --run runs/calo-001               # one process
    physgan train calo --data calo.h5 --run runs/calo-001 --resume auto # continue
    torchrun --standalone --nproc-per-node 2 -m physgan train calo --data calo.h5 --run-dir runs/calo-ddp

Order of business: devices and processes -> run directory -> data (split,
transform, condition normalisation, sampler) -> networks and optimisers ->
resume -> distributed wrappers -> loop (critic steps, generator step, EMA,
stats and diagnostics, validation, checkpoints, preemption, divergence) -> final
checkpoint. The loss formulas live in :mod:`physgan.train.losses`; the training
diagnostics (gradient norms, mode collapse, warnings) in
:mod:`physgan.train.diagnostics`; the physics in the domain. SIGTERM/SIGUSR1
checkpoint and exit cleanly (exit code 0).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import physgan
from physgan.config import Config, config_from_dict, config_to_dict, save_config
from physgan.device import autocast, resolve_device
from physgan.domains.base import get_domain, model_spec
from physgan.domains.checks import check_training_data
from physgan.errors import CheckpointError, ConfigError, PhysganError
from physgan.io.atomic import atomic_output
from physgan.io.hdf5 import open_source
from physgan.io.loader import Prepare, make_sampler, split_training_data
from physgan.sampling import generate_batch
from physgan.train.checkpoint import (
    latest_checkpoint,
    latest_intact_checkpoint,
    prune_snapshots,
    rng_state,
    save_checkpoint,
)
from physgan.train.conditions import ConditionNormaliser
from physgan.train.diagnostics import SampleDiagnostics, TrainingMonitor, format_summary, grad_norm, summarise_stats
from physgan.train.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    check_consistency,
    cleanup_distributed,
    init_distributed,
    launch_rank,
)
from physgan.train.ema import update_ema
from physgan.train.losses import Objective, make_objective
from physgan.train.moments import conditional_moment_loss
from physgan.train.resume import check_same_data, data_identity, resume_point
from physgan.train.runlock import RunLock
from physgan.train.signals import StopFlag
from physgan.train.state import TrainState, latent_seed
from physgan.train.stats import Progress, RunLog, StatsWriter

__all__ = ["train", "TrainResult", "TrainingDiverged", "build_models", "validation_metrics"]

#: a penalty above this (or any non-finite loss/weight) counts as divergence
_GP_EXPLODED = 1e4
#: at most this many held-out samples (and this many sample elements in all) feed the per-tick sample diagnostics
_DIAG_SAMPLES, _DIAG_ELEMENTS = 512, 2**24


class TrainingDiverged(PhysganError):
    """Losses or weights became non-finite (or the penalty exploded) too often."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    stopped_by: str | None = None  # signal name if preempted
    best_score: float | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    rollbacks: int = 0


def build_models(domain, header, transform, cfg: Config, normaliser: ConditionNormaliser):
    """G and D from the domain's factories for this data and config."""
    spec = model_spec(
        transform.model_shape(header.sample_shape),
        header.condition_names,
        cfg.model,
        normaliser.state_dict(),
        transform.stats,
        header.attrs,
    )
    return domain.build_generator(spec), domain.build_critic(spec), spec


def validation_metrics(domain, G, transform, normaliser, val, z_val, attrs, precision: str, batch: int = 512) -> dict[str, float]:
    """The domain's physics metrics of the (EMA) generator on the fixed held-out batch."""
    x_val, c_val = val
    dev = z_val.device
    fakes = []
    for s in range(0, len(x_val), batch):
        c = torch.as_tensor(c_val[s : s + batch], device=dev)
        fakes.append(generate_batch(G, transform, normaliser, c, z_val[s : s + batch], precision).cpu().numpy())
    fake = np.concatenate(fakes)
    if not np.isfinite(fake).all():
        return {"score": float("inf"), "nonfinite_fraction": float((~np.isfinite(fake)).mean())}
    metrics = dict(domain.physics_metrics((x_val, c_val), (fake, c_val), attrs)) if domain.physics_metrics else {}
    metrics["score"] = float(domain.score(metrics)) if domain.score else float("nan")
    return metrics


def train(
    cfg: Config,
    run_dir: str | Path,
    resume: str | None = None,
    progress: bool = True,
    allow_new_data: bool = False,
    objective: Objective | None = None,
) -> TrainResult:
    """Train a conditional GAN surrogate; see the module docstring.

    Parameters
    ----------
    cfg : Config
        Resolved, validated configuration (``cfg.data.path`` is the training file).
    run_dir : path
        Run directory (created). Holds config.yaml, run.json, stats.jsonl,
        log.txt and checkpoints/.
    resume : str, optional
        ``"auto"`` (latest checkpoint of ``run_dir`` if any) or a checkpoint path.
    progress : bool
        Show progress (tqdm on a terminal, status lines otherwise).
    allow_new_data : bool
        Let a resumed run continue on a different file of the same sample shape and conditions
        (otherwise refused with :class:`CheckpointError`).
    objective : Objective, optional
        The adversarial objective to train with instead of the one ``cfg.train`` names
        (:func:`~physgan.train.losses.make_objective`): research variants and fault injection in tests.
        The saved config still records ``train.loss``.

    Returns
    -------
    TrainResult

    Notes
    -----
    A run directory this call created is removed again when training fails before it wrote any
    statistics or checkpoint (bad data, bad model options): nothing is lost, and the same
    ``--run`` can be used once the input is fixed. The run directory is locked
    (:class:`~physgan.train.runlock.RunLock`) while training: a second process on it is refused.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    lock = None
    try:
        if launch_rank() == 0:
            try:
                (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise PhysganError(f"{run_dir}: cannot create the run directory: {err.strerror or err}") from err
            lock = RunLock(run_dir).acquire()
        return _train(cfg, run_dir, resume, progress, allow_new_data, objective)
    except BaseException:
        if created and lock is not None and _holds_no_results(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _holds_no_results(run_dir: Path) -> bool:
    """No checkpoint and no statistics yet: only the set-up files of a run that never trained."""
    return latest_checkpoint(run_dir) is None and not (run_dir / "stats.jsonl").exists()


def _train(
    cfg: Config, run_dir: Path, resume: str | None, progress: bool, allow_new_data: bool, objective: Objective | None
) -> TrainResult:
    """The body of :func:`train`, top to bottom."""
    cfg.validate()
    t_cfg, d_cfg = cfg.train, cfg.data
    domain = get_domain(cfg.domain)

    # ---- devices, processes, run log, checkpoint to resume from -------------------------------
    device = resolve_device(t_cfg.device)
    dist_info: DistInfo = init_distributed(device.type)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    if t_cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    is_main = dist_info.is_main
    barrier(dist_info)
    ckpt_path, ckpt, notes = resume_point(run_dir, cfg, resume)
    prog = Progress(t_cfg.steps, initial=int(ckpt["step"]) if ckpt else 0, enabled=progress and is_main)
    runlog = RunLog(run_dir / "log.txt" if is_main else None, prog)
    for text in notes:
        runlog.notice(text)
    stale_best = run_dir / "checkpoints" / "best.pt"
    if not t_cfg.keep_best and is_main and stale_best.exists():  # else generate would read it, not the new last
        stale_best.unlink()
        runlog.notice("train.keep_best is false: removed checkpoints/best.pt of the earlier training (generate reads last.pt)")

    # ---- data: split, transform and condition normalisation, sampler --------------------------
    if not d_cfg.path:
        raise ConfigError("no training data: pass --data FILE.h5 (data.path)")
    source = open_source(d_cfg.path, d_cfg.layout)
    try:
        header, layout = source.header, source.layout.name
        identity = data_identity(d_cfg.path, header)
        changed_data = check_same_data(run_dir, ckpt.get("run", {}), identity, allow_new_data) if ckpt else None
        check = partial(check_training_data, domain, names=header.condition_names, attrs=header.attrs, path=d_cfg.path)
        split = split_training_data(source, d_cfg, t_cfg.seed, check)
    finally:
        source.close()
    if changed_data:
        runlog.notice(changed_data)
    for text in split.warnings:
        runlog.notice(f"warning: {d_cfg.path}: {text}")
    transform = domain.make_transform(dict(d_cfg.transform))
    normaliser = ConditionNormaliser(header.condition_names, domain.condition_scales)
    if ckpt:
        transform.load_state_dict(ckpt["transform"])
        normaliser = ConditionNormaliser.from_state(ckpt["conditions"])
    else:
        transform.fit(*split.fit, header.attrs)
        normaliser.fit(split.fit[1])
    split.fit = None
    val = split.val
    sampler = make_sampler(
        split, d_cfg, Prepare(transform, normaliser, device), t_cfg.batch_size, t_cfg.seed, dist_info.rank, dist_info.world_size
    )

    # ---- networks, optimisers, objective, diagnostics; resume -------------------------------
    torch.manual_seed(t_cfg.seed)  # identical initial weights on every rank
    G, D, spec = build_models(domain, header, transform, cfg, normaliser)
    G, D = G.to(device), D.to(device)
    objective = objective or make_objective(t_cfg.loss, t_cfg.gp_lambda, t_cfg.drift, t_cfg.clip, t_cfg.gp_every)
    moments = None
    if t_cfg.moment_weight > 0:
        if domain.moment_features is None:
            raise ConfigError(f"train.moment_weight={t_cfg.moment_weight}: domain '{cfg.domain}' defines no summaries to match")
        moments = domain.moment_features(spec).to(device)
    sample_diag, z_diag = _sample_diagnostics(val, header, domain, G, t_cfg.seed, device) if is_main else (None, None)
    warmup = t_cfg.diag_warmup if t_cfg.diag_warmup >= 0 else min(t_cfg.steps // 10, 5000)
    ts = TrainState(
        G,
        D,
        copy.deepcopy(G).eval().requires_grad_(False),
        _optimizer(t_cfg, G.parameters(), t_cfg.lr_g),
        _optimizer(t_cfg, D.parameters(), t_cfg.lr_d),
        sampler,
        torch.Generator(device=device).manual_seed(latent_seed(t_cfg.seed, dist_info)),
        TrainingMonitor(sample_diag.thresholds if sample_diag else None, warmup_steps=warmup),
    )
    if ckpt:
        note = ts.resume(ckpt, dist_info, t_cfg.seed)
        if note:
            runlog.log(note)
        runlog.log(f"resumed from {ckpt_path} at step {ts.step}")
        if ts.step >= t_cfg.steps:
            runlog.notice(
                f"the run is already at step {ts.step}, at or past train.steps = {t_cfg.steps}: nothing to train (pass a larger --steps)"
            )

    # ---- run files -------------------------------------------------------------------------
    info = _run_info(cfg, layout, identity, header, split, spec, G, transform, normaliser)
    saved = {  # what every checkpoint holds beside the training state
        "config": config_to_dict(cfg),
        "transform": transform.state_dict(),
        "conditions": normaliser.state_dict(),
        "run": info,
        "physgan_version": physgan.__version__,
        "torch_version": str(torch.__version__),
    }
    if is_main:
        save_config(cfg, run_dir / "config.yaml")
        with atomic_output(run_dir / "run.json", overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(info, indent=2, default=str))
    stats = StatsWriter(run_dir, enabled=is_main)

    # ---- distributed wrappers (single process: the modules themselves); validation batch -----
    G_train = DDP(G, device_ids=[device.index] if device.type == "cuda" else None) if dist_info.enabled else G
    D_train = DDP(D, device_ids=[device.index] if device.type == "cuda" else None) if dist_info.enabled else D
    if t_cfg.compile:
        G_train = torch.compile(G_train)  # one backward through G: compiles; the critic stays eager (double backward)
    n_val = len(val[0])
    z_val = None
    if n_val:
        z_val = torch.randn((n_val, *G.latent_shape(1)), generator=torch.Generator().manual_seed(t_cfg.seed + 7919)).to(device)

    # ---- the loop --------------------------------------------------------------------------
    stop = StopFlag()
    acc: dict[str, torch.Tensor] = {}
    acc_n = 0
    acc_k: dict[str, int] = {}
    bad = torch.zeros((), device=device, dtype=torch.bool)
    t_tick = time.time()
    first_step_logged = False
    if ts.step == 0 and is_main:
        runlog.log(
            f"training {cfg.domain} on {d_cfg.path}: {split.n_total} samples of shape {header.sample_shape}, conditions "
            f"{header.condition_names}, {'in memory' if split.in_memory else 'streamed'} on {device}, "
            f"{sum(p.numel() for p in G.parameters())} G / {sum(p.numel() for p in D.parameters())} D parameters"
        )
    prog.start()
    try:
        while ts.step < t_cfg.steps:
            if t_cfg.lr_final != 1.0:  # the linear decay (a constant rate is left as the optimisers hold it)
                set_learning_rates(ts, t_cfg)
            st, bad_d, held = _critic_steps(ts, G_train, D_train, objective, t_cfg, device)
            st_g, bad_g = _generator_step(ts, G_train, objective, moments, t_cfg, device, held)
            bad |= bad_d | bad_g
            update_ema(ts.G_ema, G, t_cfg.ema_beta, ts.step)
            ts.G_ema._calibration_current = False  # the update copied G's buffers over any calibration
            ts.step += 1
            prog.heartbeat(ts.step)
            for k, v in {**st, **st_g}.items():
                acc[k] = acc.get(k, 0.0) + v.detach().float()
                acc_k[k] = acc_k.get(k, 0) + 1  # per key: a lazy penalty is not in every step's statistics
            acc_n += 1

            # ---- once per tick: divergence check, stats, status (the only host syncs) ---------
            tick = ts.step % t_cfg.log_every == 0 or ts.step == t_cfg.steps
            if not first_step_logged and is_main and not tick:  # progress from the first step (slow 3-D steps)
                runlog.log(f"step {ts.step}: first step took {time.time() - t_tick:.1f} s; status every {t_cfg.log_every} steps")
            first_step_logged = True
            if tick:
                if bool(bad) or not all(torch.isfinite(p).all() for net in (G, D) for p in net.parameters()):
                    _roll_back(ts, run_dir, t_cfg, dist_info, runlog)
                    bad.zero_()
                    acc, acc_k, acc_n = {}, {}, 0
                    continue
                means = {k: float(v) / acc_k[k] for k, v in acc.items()}
                means["Timing/steps_per_s"] = acc_n / max(time.time() - t_tick, 1e-9)
                if device.type == "cuda":
                    means["Resources/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                if sample_diag is not None:  # diversity and coverage of the (non-EMA) generator on the fixed batch
                    c_b = torch.as_tensor(sample_diag.cond_b, device=device)
                    means.update(sample_diag.stats(generate_batch(G, transform, normaliser, c_b, z_diag, t_cfg.precision).cpu().numpy()))
                if is_main:
                    for msg in ts.monitor.check(ts.step, means, emit=False):
                        runlog.log(f"warning: {msg}")
                stats.write(ts.step, means)
                prog.update(ts.step, {k: v for k, v in means.items() if k.startswith("Loss/")})
                acc, acc_k, acc_n, t_tick = {}, {}, 0, time.time()

            # ---- validation on the fixed held-out batch (EMA generator) ----------------------
            if is_main and n_val and t_cfg.val_every and (ts.step % t_cfg.val_every == 0 or ts.step == t_cfg.steps):
                calibrate_statistics(ts.G_ema)
                metrics = validation_metrics(domain, ts.G_ema, transform, normaliser, val, z_val, header.attrs, t_cfg.precision)
                stats.write(ts.step, {f"Val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
                better = metrics["score"] < ts.best_score
                runlog.log(f"step {ts.step}: validation score {metrics['score']:.4g}" + (" (best so far)" if better else ""))
                ts.last_metrics = metrics
                if better:
                    ts.best_score = metrics["score"]
                    if t_cfg.keep_best:
                        _checkpoint(ts, saved, run_dir, "best", t_cfg, dist_info)

            # ---- checkpoints and preemption ---------------------------------------------------
            if ts.step % t_cfg.ckpt_every == 0 or ts.step == t_cfg.steps:
                _checkpoint(ts, saved, run_dir, "snapshot", t_cfg, dist_info)
            if stop.agreed(dist_info, device):
                _checkpoint(ts, saved, run_dir, None, t_cfg, dist_info)
                _write_diagnostics(run_dir, stats, sample_diag, ts.monitor, runlog, is_main)
                runlog.log(f"{stop.requested} received: checkpoint written at step {ts.step}; exiting (continue with --resume auto)")
                return _result(run_dir, ts, stop.requested)
        _checkpoint(ts, saved, run_dir, None, t_cfg, dist_info)
        _write_diagnostics(run_dir, stats, sample_diag, ts.monitor, runlog, is_main)
        if dist_info.enabled:
            runlog.log(f"parameters identical across {dist_info.world_size} ranks")
        runlog.log(f"finished {ts.step} steps; checkpoints in {run_dir / 'checkpoints'}")
        return _result(run_dir, ts, None)
    finally:
        stop.restore()
        prog.close()
        stats.close()
        if hasattr(sampler, "close"):
            sampler.close()
        runlog.close()
        barrier(dist_info)
        if dist_info.enabled:
            # the DDP wrappers hold the process group and sit in reference cycles: left to the cyclic collector, they
            # (and the group's gloo worker threads) could be freed during interpreter shutdown, where freeing a tensor
            # has no Python to take the GIL from: a finished rank then aborted at exit ("terminate called without an
            # active exception", SIGABRT), now and then. Freed here, the group really ends in cleanup_distributed.
            G_train = D_train = None
            gc.collect()
        cleanup_distributed()


# ---------------------------------------------------------------------------------------------
# the steps of _train, in the order it takes them
# ---------------------------------------------------------------------------------------------
def _optimizer(t_cfg, params, lr: float) -> torch.optim.Optimizer:
    if t_cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=tuple(t_cfg.betas))


def _sample_diagnostics(val, header, domain, G, seed: int, device: torch.device):
    """The fixed held-out batch and latents of the per-tick diversity/coverage diagnostics (None when too few)."""
    n_diag = min(_DIAG_SAMPLES, len(val[0]), max(64, _DIAG_ELEMENTS // max(1, int(np.prod(header.sample_shape)))))
    if n_diag < 12:
        return None, None
    sample_diag = SampleDiagnostics(val[0][:n_diag], val[1][:n_diag], domain.features, header.attrs, seed=seed)
    zg = torch.Generator().manual_seed(seed + 15485863)
    return sample_diag, torch.randn((sample_diag.n_fake, *G.latent_shape(1)), generator=zg).to(device)


def _run_info(cfg: Config, layout: str, identity, header, split, spec, G, transform, normaliser) -> dict[str, Any]:
    """run.json: what the run was trained on and how its samples map to model space."""
    return {
        "physgan_version": physgan.__version__,
        "domain": cfg.domain,
        "layout": layout,
        "data": str(Path(cfg.data.path).resolve()),
        "data_identity": identity,
        "n_train": int(split.n_total - len(split.val[0])) if split.in_memory else int(split.n_total),
        "sample_shape": list(header.sample_shape),
        "model_shape": list(spec.sample_shape),
        "latent_shape": list(G.latent_shape(1)),
        "condition_names": header.condition_names,
        "condition_units": header.condition_units,
        "sample_units": header.sample_units,
        "non_negative": header.non_negative,
        "sample_dtype": header.dtype,
        "condition_dtype": header.condition_dtype,
        "attrs": {k: v for k, v in header.attrs.items() if isinstance(v, (str, int, float, bool, list))},
        "transform": transform.state_dict(),
        "conditions": normaliser.state_dict(),
    }


def _critic_steps(
    ts: TrainState, G_train, D_train, objective: Objective, t_cfg, device
) -> tuple[dict[str, torch.Tensor], torch.Tensor, tuple | None]:
    """``n_critic`` critic updates; fakes made under no_grad with the real batch's conditions.

    With ``train.reuse_fake`` the last update's fakes are made by ``G_train`` with their graph kept, and handed back
    as ``(real, c, fake)`` for :func:`_generator_step` (one generator forward per step fewer: a 3-D micro step
    spends ~10 % of its time in it, RESULTS §12.28); otherwise the third value is None.
    Returns the last update's statistics (the penalty's from the last update that had one) and whether any loss was
    non-finite or the penalty exploded.
    """
    G, D = ts.G, ts.D
    D.requires_grad_(True)
    bad = torch.zeros((), device=device, dtype=torch.bool)
    held, gp_stats = None, {}
    for i in range(t_cfg.n_critic):
        real, c = ts.sampler.next()
        z = torch.randn((real.shape[0], *G.latent_shape(1)), device=device, generator=ts.zgen)
        if t_cfg.reuse_fake and i == t_cfg.n_critic - 1:
            with autocast(t_cfg.precision, device):
                fake_g = G_train(z, c)
            held, fake = (real, c, fake_g), fake_g.detach()
        else:
            with torch.no_grad(), autocast(t_cfg.precision, device):
                fake = G(z, c)
        with autocast(t_cfg.precision, device):
            loss_d, st = objective.critic_loss(D_train, real, fake.float(), c, generator=ts.zgen, update=ts.step * t_cfg.n_critic + i)
        ts.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        st["Grad/D_norm"] = grad_norm(D)  # on device; read at the tick
        ts.opt_d.step()
        st.update({k: torch.as_tensor(v) for k, v in objective.after_critic_step(D).items()})
        bad |= ~torch.isfinite(loss_d.detach())
        if "Loss/GP" in st:
            bad |= st["Loss/GP"] > _GP_EXPLODED
            gp_stats = {k: v for k, v in st.items() if k in ("Loss/GP", "Grad/x_norm")}
    return {**gp_stats, **st}, bad, held


def _generator_step(
    ts: TrainState, G_train, objective: Objective, moments, t_cfg, device, held: tuple | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One generator update through the frozen, unwrapped critic, at the next batch's conditions.

    Only the conditions are drawn (the real rows are read only to match summary moments). ``held`` (``real, c,
    fake``, from :func:`_critic_steps` with ``train.reuse_fake``): the update goes through those fakes instead.
    """
    G, D = ts.G, ts.D
    D.requires_grad_(False)
    if moments is not None and ts.step < t_cfg.moment_start:
        moments = None  # off until the generator is near the data (an untrained one's summaries are 100s of spreads off)
    if held is not None:
        real, c, fake = held
    else:
        if moments is not None:
            real, c = ts.sampler.next()
        else:
            real, c = None, ts.sampler.next_conditions()
        z = torch.randn((c.shape[0], *G.latent_shape(1)), device=device, generator=ts.zgen)
        with autocast(t_cfg.precision, device):
            fake = G_train(z, c)
    with autocast(t_cfg.precision, device):
        loss_g, st = objective.generator_loss(D, fake, c)
    take = getattr(G, "take_auxiliary_loss", None)  # a generator's own term from this forward (optional)
    aux = take() if take is not None else None
    if aux is not None:
        loss_g = loss_g + aux
        st["Loss/G_aux"] = aux.detach()
    if moments is not None:  # the summaries' means at these conditions (physgan.train.moments)
        loss_m = conditional_moment_loss(moments(fake.float()), moments(real.float()), c.float(), t_cfg.moment_degree)
        loss_g = loss_g + t_cfg.moment_weight * loss_m
        st["Loss/moments"] = loss_m.detach()
    ts.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    st["Grad/G_norm"] = grad_norm(G)
    ts.opt_g.step()
    return st, ~torch.isfinite(loss_g.detach())


def _roll_back(ts: TrainState, run_dir: Path, t_cfg, dist_info: DistInfo, runlog: RunLog) -> None:
    """Divergence: back to the newest intact checkpoint with lower learning rates and fresh latents (or give up)."""
    ts.rollbacks += 1
    if ts.rollbacks > t_cfg.max_rollbacks:
        raise TrainingDiverged(
            f"{run_dir}: training diverged (non-finite loss/weights or exploding penalty) {ts.rollbacks} times; "
            f"gave up at step {ts.step}. Last good checkpoint: {latest_checkpoint(run_dir)}. "
            "Try a lower learning rate (train.lr_g/lr_d) or a larger gp_lambda."
        )
    found = latest_intact_checkpoint(run_dir)
    if found is None:
        raise TrainingDiverged(f"{run_dir}: training diverged at step {ts.step} before any checkpoint was written")
    good, good_state, _ = found
    note = ts.load_state_dict(good_state, dist_info, t_cfg.seed)
    if note:
        runlog.log(note)
    ts.step = int(good_state["step"])
    factor = set_learning_rates(ts, t_cfg)
    ts.zgen.manual_seed(latent_seed(t_cfg.seed, dist_info, 104729 * ts.rollbacks))
    runlog.log(
        f"divergence detected: rolled back to {good.name} (step {ts.step}), learning rates x{factor:g} "
        f"(rollback {ts.rollbacks}/{t_cfg.max_rollbacks})"
    )


def learning_rate_factor(step: int, rollbacks: int, t_cfg) -> float:
    """The factor on ``lr_g`` / ``lr_d`` at generator step ``step``: ``lr_decay_on_rollback`` per rollback times the
    linear schedule from 1 at step 0 to ``lr_final`` at ``train.steps`` (a function of the step, so a resumed run
    continues it exactly)."""
    frac = min(max(step / max(t_cfg.steps, 1), 0.0), 1.0)
    return t_cfg.lr_decay_on_rollback**rollbacks * (1.0 - (1.0 - t_cfg.lr_final) * frac)


def set_learning_rates(ts: TrainState, t_cfg) -> float:
    """Set both optimisers' learning rates for ``ts.step`` (:func:`learning_rate_factor`); returns the factor."""
    factor = learning_rate_factor(ts.step, ts.rollbacks, t_cfg)
    for opt, base_lr in ((ts.opt_g, t_cfg.lr_g), (ts.opt_d, t_cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = base_lr * factor
    return factor


def calibrate_statistics(model: torch.nn.Module) -> None:
    """Let a generator set its own sampling statistics (``calibrate_statistics()``, where it has one) before it is
    validated or saved: the EMA generator inherits the training generator's buffers, which describe the training
    generator's outputs, not its own (the calorimeter's hit-shift tables; bench/RESULTS.md §13, twenty-third session;
    the N-body generator's mean density and power, physgan.domains.nbody.calibration). A model calibrated since its last
    EMA update (the loop clears ``_calibration_current`` there) is not calibrated again: a validation and a checkpoint at
    one step, or weights restored by a rollback together with the buffers they were saved with."""
    hook = getattr(model, "calibrate_statistics", None)
    if not callable(hook) or getattr(model, "_calibration_current", False):
        return
    hook()
    model._calibration_current = True


def _checkpoint(ts: TrainState, saved: dict[str, Any], run_dir: Path, tag: str | None, t_cfg, dist_info: DistInfo) -> None:
    """Write ``last.pt`` (and a step snapshot or ``best.pt`` by ``tag``); every rank takes part in a distributed run."""
    calibrate_statistics(ts.G_ema)
    per_rank = None
    if dist_info.enabled and tag != "best":  # raises if the ranks drifted apart
        check_consistency(ts.G, dist_info)
        check_consistency(ts.D, dist_info)
        # each rank's own latent/global random state, so a resumed rank continues its own stream
        per_rank = all_gather_objects({"zgen": ts.zgen.get_state(), "rng": rng_state()}, dist_info)
    if not dist_info.is_main:
        return
    ckdir = run_dir / "checkpoints"
    state = {**ts.state_dict(), **saved}
    if per_rank is not None:
        state["rank_rng"] = per_rank
    save_checkpoint(state, ckdir / "last.pt")
    if tag == "snapshot" and t_cfg.keep_snapshots > 0:
        save_checkpoint(state, ckdir / f"step-{ts.step:07d}.pt")
        prune_snapshots(ckdir, t_cfg.keep_snapshots)
    if tag == "best":
        save_checkpoint(state, ckdir / "best.pt")


def _write_diagnostics(run_dir: Path, stats: StatsWriter, sample_diag, monitor, runlog: RunLog, is_main: bool) -> None:
    """diagnostics.json (summary, noise floor, warnings) and its summary in the log."""
    if not is_main or not stats.path.is_file():
        return
    summary = summarise_stats(stats.path, sample_diag.state() if sample_diag else None, monitor.events)
    with atomic_output(run_dir / "diagnostics.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, default=str))
    runlog.log(format_summary(summary))


def _result(run_dir: Path, ts: TrainState, stopped_by: str | None) -> TrainResult:
    best = ts.best_score if math.isfinite(ts.best_score) else None
    return TrainResult(run_dir, ts.step, stopped_by, best, ts.last_metrics, ts.rollbacks)


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config saved in a run directory."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a physgan run directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text()))
