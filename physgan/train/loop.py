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
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
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
from physgan.io.hdf5 import open_source
from physgan.io.loader import BlockStreamer, DeviceSampler, block_starts, split_indices
from physgan.sampling import generate_batch
from physgan.train.checkpoint import (
    latest_checkpoint,
    latest_intact_checkpoint,
    prune_snapshots,
    rng_state,
    save_checkpoint,
    set_rng_state,
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
from physgan.train.stats import Progress, StatsWriter

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
    """The body of :func:`train`."""
    cfg.validate()
    t_cfg, d_cfg = cfg.train, cfg.data
    domain = get_domain(cfg.domain)

    # ---- devices, processes, seeds ---------------------------------------------------------
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
    log_file = open(run_dir / "log.txt", "a") if is_main else None

    def log(text: str) -> None:
        prog.message(text)
        if log_file:
            log_file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
            log_file.flush()

    def notice(text: str) -> None:
        """A line the user must see even with --quiet (resume decisions): log.txt and stderr."""
        log(text)
        if is_main and not prog.enabled:
            print(f"physgan: {text}", file=sys.stderr, flush=True)

    for text in notes:
        notice(text)

    # ---- data: split, transform, condition normalisation, sampler ---------------------------
    if not d_cfg.path:
        raise ConfigError("no training data: pass --data FILE.h5 (data.path)")
    source = open_source(d_cfg.path, d_cfg.layout)
    header = source.header
    identity = data_identity(d_cfg.path, header)
    if ckpt:
        try:
            changed_data = check_same_data(run_dir, ckpt.get("run", {}), identity, allow_new_data)
        except PhysganError:
            source.close()
            raise
        if changed_data:
            notice(changed_data)
    n_total = header.n
    sample_bytes = 4 * int(np.prod(header.sample_shape)) * n_total
    in_memory = d_cfg.in_memory == "yes" or (d_cfg.in_memory == "auto" and sample_bytes <= d_cfg.memory_limit_gb * 2**30)
    if in_memory:
        train_idx, val_idx = split_indices(n_total, d_cfg.val_fraction, t_cfg.seed)
        from physgan.io.hdf5 import read_all

        x_all, c_all = read_all(source)
        physics_warnings = check_training_data(domain, x_all, c_all, header.condition_names, header.attrs, d_cfg.path)
        x_tr, c_tr = x_all[train_idx], c_all[train_idx]
        val_rows = val_idx[: d_cfg.val_size]
        val = (x_all[val_rows], c_all[val_rows])
        fit_x, fit_c = x_tr[:50000], c_tr[:50000]
        del x_all, c_all
    else:
        rows = d_cfg.block_rows or max(header.chunk_rows, 1) * max(1, 4096 // max(header.chunk_rows, 1))
        starts = block_starts(n_total, rows)
        rng = np.random.default_rng(t_cfg.seed)
        n_val_blocks = min(len(starts) - 1, max(1, round(len(starts) * d_cfg.val_fraction))) if d_cfg.val_fraction > 0 else 0
        perm = rng.permutation(len(starts))
        val_starts, train_starts = np.sort(starts[perm[:n_val_blocks]]), np.sort(starts[perm[n_val_blocks:]])
        vx, vc = zip(*[source.read(s, s + rows) for s in val_starts]) if n_val_blocks else ([], [])
        val = (
            (np.concatenate(vx)[: d_cfg.val_size], np.concatenate(vc)[: d_cfg.val_size])
            if n_val_blocks
            else (np.zeros((0,)), np.zeros((0,)))
        )
        fx, fc = zip(*[source.read(s, s + rows) for s in train_starts[: max(1, 50000 // rows)]])
        fit_x, fit_c = np.concatenate(fx), np.concatenate(fc)
        physics_warnings = check_training_data(domain, fit_x, fit_c, header.condition_names, header.attrs, d_cfg.path)
    source.close()
    for text in physics_warnings:
        notice(f"warning: {d_cfg.path}: {text}")

    transform = domain.make_transform(dict(d_cfg.transform))
    normaliser = ConditionNormaliser(header.condition_names, domain.condition_scales)
    if ckpt:
        transform.load_state_dict(ckpt["transform"])
        normaliser = ConditionNormaliser.from_state(ckpt["conditions"])
    else:
        transform.fit(fit_x, fit_c, header.attrs)
        normaliser.fit(fit_c)
    del fit_x, fit_c

    def prepare(x: np.ndarray, c: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xt = torch.as_tensor(x, device=device)
        ct = torch.as_tensor(c, device=device)
        return transform.forward(xt, ct).float(), normaliser(ct).float()

    if in_memory:
        parts = [prepare(x_tr[s : s + 8192], c_tr[s : s + 8192]) for s in range(0, len(x_tr), 8192)]
        x_model = torch.cat([p[0] for p in parts])
        c_model = torch.cat([p[1] for p in parts])
        del parts, x_tr, c_tr
        sampler = DeviceSampler(
            x_model, c_model, t_cfg.batch_size, seed=t_cfg.seed, rank=dist_info.rank, world_size=dist_info.world_size
        )
    else:
        sampler = BlockStreamer(
            open_source(d_cfg.path, d_cfg.layout),
            train_starts,
            rows,
            t_cfg.batch_size,
            seed=t_cfg.seed,
            prepare=prepare,
            shuffle_blocks=d_cfg.shuffle_blocks,
            workers=d_cfg.workers,
            rank=dist_info.rank,
            world_size=dist_info.world_size,
            prefetch=d_cfg.prefetch,
        )

    # ---- networks, optimisers, objective -----------------------------------------------------
    torch.manual_seed(t_cfg.seed)  # identical initial weights on every rank
    G, D, spec = build_models(domain, header, transform, cfg, normaliser)
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    objective = objective or make_objective(t_cfg.loss, t_cfg.gp_lambda, t_cfg.drift, t_cfg.clip)
    moments = None
    if t_cfg.moment_weight > 0:
        if domain.moment_features is None:
            raise ConfigError(f"train.moment_weight={t_cfg.moment_weight}: domain '{cfg.domain}' defines no summaries to match")
        moments = domain.moment_features(spec).to(device)

    def make_opt(params, lr):
        if t_cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        return torch.optim.Adam(params, lr=lr, betas=tuple(t_cfg.betas))

    opt_g, opt_d = make_opt(G.parameters(), t_cfg.lr_g), make_opt(D.parameters(), t_cfg.lr_d)
    zgen = torch.Generator(device=device).manual_seed(t_cfg.seed * dist_info.world_size + dist_info.rank)
    step, best_score, rollbacks = 0, math.inf, 0
    history_metrics: dict[str, float] = {}

    # ---- diagnostics: fixed real batch and latents (mode collapse), health warnings -------
    sample_diag, z_diag = None, None
    n_diag = min(_DIAG_SAMPLES, len(val[0]), max(64, _DIAG_ELEMENTS // max(1, int(np.prod(header.sample_shape)))))
    if is_main and n_diag >= 12:
        sample_diag = SampleDiagnostics(val[0][:n_diag], val[1][:n_diag], domain.features, header.attrs, seed=t_cfg.seed)
        zg = torch.Generator().manual_seed(t_cfg.seed + 15485863)
        z_diag = torch.randn((sample_diag.n_fake, *G.latent_shape(1)), generator=zg).to(device)
    warmup = t_cfg.diag_warmup if t_cfg.diag_warmup >= 0 else min(t_cfg.steps // 10, 5000)
    monitor = TrainingMonitor(sample_diag.thresholds if sample_diag else None, warmup_steps=warmup)

    def load_state(state: dict[str, Any]) -> None:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sampler.load_state_dict(state["sampler"])
        per_rank = state.get("rank_rng")
        if not dist_info.enabled:
            zgen.set_state(state["zgen"])
            set_rng_state(state["rng"])
        elif per_rank is not None and len(per_rank) == dist_info.world_size:  # each rank continues its own stream
            zgen.set_state(per_rank[dist_info.rank]["zgen"])
            set_rng_state(per_rank[dist_info.rank]["rng"])
        else:  # saved by another world size (or by a best-only save): fresh, distinct streams per rank
            zgen.manual_seed(t_cfg.seed * dist_info.world_size + dist_info.rank + 7919 * (int(state["step"]) + 1))
            log(f"rank {dist_info.rank}: the checkpoint holds no random state for {dist_info.world_size} ranks; latents reseeded")
        monitor.load_state_dict(state.get("diagnostics", {}))

    if ckpt:
        load_state(ckpt)
        step, best_score, rollbacks = int(ckpt["step"]), float(ckpt.get("best_score", math.inf)), int(ckpt.get("rollbacks", 0))
        log(f"resumed from {ckpt_path} at step {step}")
        if step >= t_cfg.steps:
            notice(f"the run is already at step {step}, at or past train.steps = {t_cfg.steps}: nothing to train (pass a larger --steps)")

    # ---- run files -------------------------------------------------------------------------
    run_info = {
        "physgan_version": physgan.__version__,
        "domain": cfg.domain,
        "layout": source.layout.name,
        "data": str(Path(d_cfg.path).resolve()),
        "data_identity": identity,
        "n_train": int(n_total - len(val[0])) if in_memory else int(n_total),
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
    if is_main:
        save_config(cfg, run_dir / "config.yaml")
        from physgan.io.atomic import atomic_output

        with atomic_output(run_dir / "run.json", overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(run_info, indent=2, default=str))
    stats = StatsWriter(run_dir, enabled=is_main)

    def state_dict() -> dict[str, Any]:
        return {
            "G": G.state_dict(),
            "D": D.state_dict(),
            "G_ema": G_ema.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sampler": sampler.state_dict(),
            "zgen": zgen.get_state(),
            "rng": rng_state(),
            "step": step,
            "best_score": best_score,
            "rollbacks": rollbacks,
            "diagnostics": monitor.state_dict(),
            "config": config_to_dict(cfg),
            "transform": transform.state_dict(),
            "conditions": normaliser.state_dict(),
            "run": run_info,
            "physgan_version": physgan.__version__,
            "torch_version": str(torch.__version__),
        }

    def checkpoint(tag: str | None = None) -> None:
        per_rank = None
        if dist_info.enabled and tag != "best":  # every rank takes part; raises if the ranks drifted apart
            check_consistency(G, dist_info)
            check_consistency(D, dist_info)
            # each rank's own latent/global random state, so a resumed rank continues its own stream
            per_rank = all_gather_objects({"zgen": zgen.get_state(), "rng": rng_state()}, dist_info)
        if not is_main:
            return
        ckdir = run_dir / "checkpoints"
        state = state_dict()
        if per_rank is not None:
            state["rank_rng"] = per_rank
        save_checkpoint(state, ckdir / "last.pt")
        if tag == "snapshot" and t_cfg.keep_snapshots > 0:
            save_checkpoint(state, ckdir / f"step-{step:07d}.pt")
            prune_snapshots(ckdir, t_cfg.keep_snapshots)
        if tag == "best":
            save_checkpoint(state, ckdir / "best.pt")

    def write_diagnostics() -> None:
        """diagnostics.json (summary, noise floor, warnings) and its summary in the log."""
        if not is_main or not stats.path.is_file():
            return
        summary = summarise_stats(stats.path, sample_diag.state() if sample_diag else None, monitor.events)
        from physgan.io.atomic import atomic_output

        with atomic_output(run_dir / "diagnostics.json", overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2, default=str))
        log(format_summary(summary))

    # ---- distributed wrappers (single process: the modules themselves) ---------------------
    G_train = DDP(G, device_ids=[device.index] if device.type == "cuda" else None) if dist_info.enabled else G
    D_train = DDP(D, device_ids=[device.index] if device.type == "cuda" else None) if dist_info.enabled else D
    if t_cfg.compile:
        G_train = torch.compile(G_train)  # one backward through G: compiles; the critic stays eager (double backward)

    # fixed held-out batch and latents for validation
    n_val = len(val[0])
    z_val = (
        torch.randn((n_val, *G.latent_shape(1)), generator=torch.Generator().manual_seed(t_cfg.seed + 7919)).to(device)
        if n_val
        else None
    )

    # ---- the loop --------------------------------------------------------------------------
    stop = StopFlag()
    acc: dict[str, torch.Tensor] = {}
    acc_n = 0
    bad = torch.zeros((), device=device, dtype=torch.bool)
    t_tick = time.time()
    first_step_logged = False
    if step == 0 and is_main:
        log(
            f"training {cfg.domain} on {d_cfg.path}: {n_total} samples of shape {header.sample_shape}, conditions "
            f"{header.condition_names}, {'in memory' if in_memory else 'streamed'} on {device}, "
            f"{sum(p.numel() for p in G.parameters())} G / {sum(p.numel() for p in D.parameters())} D parameters"
        )
    prog.start()
    try:
        while step < t_cfg.steps:
            # critic: n_critic steps; fakes made under no_grad with the real batch's conditions
            D.requires_grad_(True)
            for _ in range(t_cfg.n_critic):
                real, c = sampler.next()
                z = torch.randn((real.shape[0], *G.latent_shape(1)), device=device, generator=zgen)
                with torch.no_grad(), autocast(t_cfg.precision, device):
                    fake = G(z, c)
                with autocast(t_cfg.precision, device):
                    loss_d, st = objective.critic_loss(D_train, real, fake.float(), c, generator=zgen)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                st["Grad/D_norm"] = grad_norm(D)  # on device; read at the tick
                opt_d.step()
                st.update({k: torch.as_tensor(v) for k, v in objective.after_critic_step(D).items()})
                bad |= ~torch.isfinite(loss_d.detach())
                if "Loss/GP" in st:
                    bad |= st["Loss/GP"] > _GP_EXPLODED
            # generator: one step through the frozen, unwrapped critic
            D.requires_grad_(False)
            real, c = sampler.next()
            z = torch.randn((c.shape[0], *G.latent_shape(1)), device=device, generator=zgen)
            with autocast(t_cfg.precision, device):
                fake = G_train(z, c)
                loss_g, st_g = objective.generator_loss(D, fake, c)
            if moments is not None:  # the summaries' means at these conditions (physgan.train.moments)
                loss_m = conditional_moment_loss(moments(fake.float()), moments(real.float()), c.float(), t_cfg.moment_degree)
                loss_g = loss_g + t_cfg.moment_weight * loss_m
                st_g["Loss/moments"] = loss_m.detach()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            st_g["Grad/G_norm"] = grad_norm(G)
            opt_g.step()
            bad |= ~torch.isfinite(loss_g.detach())
            update_ema(G_ema, G, t_cfg.ema_beta, step)
            step += 1
            prog.heartbeat(step)
            for k, v in {**st, **st_g}.items():
                acc[k] = acc.get(k, 0.0) + v.detach().float()
            acc_n += 1

            # ---- once per tick: divergence check, stats, status (the only host syncs) ---------
            tick = step % t_cfg.log_every == 0 or step == t_cfg.steps
            if not first_step_logged and is_main and not tick:  # progress from the first step (slow 3-D steps)
                log(f"step {step}: first step took {time.time() - t_tick:.1f} s; status every {t_cfg.log_every} steps")
            first_step_logged = True
            if tick:
                if bool(bad) or not all(torch.isfinite(p).all() for net in (G, D) for p in net.parameters()):
                    rollbacks += 1
                    if rollbacks > t_cfg.max_rollbacks:
                        raise TrainingDiverged(
                            f"{run_dir}: training diverged (non-finite loss/weights or exploding penalty) {rollbacks} times; "
                            f"gave up at step {step}. Last good checkpoint: {latest_checkpoint(run_dir)}. "
                            "Try a lower learning rate (train.lr_g/lr_d) or a larger gp_lambda."
                        )
                    found = latest_intact_checkpoint(run_dir)
                    if found is None:
                        raise TrainingDiverged(f"{run_dir}: training diverged at step {step} before any checkpoint was written")
                    good, good_state, _ = found
                    load_state(good_state)
                    step = int(good_state["step"])
                    factor = t_cfg.lr_decay_on_rollback**rollbacks
                    for opt, base_lr in ((opt_g, t_cfg.lr_g), (opt_d, t_cfg.lr_d)):
                        for group in opt.param_groups:
                            group["lr"] = base_lr * factor
                    zgen.manual_seed(t_cfg.seed * dist_info.world_size + dist_info.rank + 104729 * rollbacks)
                    log(
                        f"divergence detected: rolled back to {good.name} (step {step}), learning rates x{factor:g} "
                        f"(rollback {rollbacks}/{t_cfg.max_rollbacks})"
                    )
                    bad.zero_()
                    acc, acc_n = {}, 0
                    continue
                means = {k: float(v) / acc_n for k, v in acc.items()}
                dt = time.time() - t_tick
                means["Timing/steps_per_s"] = acc_n / max(dt, 1e-9)
                if device.type == "cuda":
                    means["Resources/peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                if sample_diag is not None:  # diversity and coverage of the (non-EMA) generator on the fixed batch
                    c_b = torch.as_tensor(sample_diag.cond_b, device=device)
                    means.update(sample_diag.stats(generate_batch(G, transform, normaliser, c_b, z_diag, t_cfg.precision).cpu().numpy()))
                if is_main:
                    for msg in monitor.check(step, means, emit=False):
                        log(f"warning: {msg}")
                stats.write(step, means)
                prog.update(step, {k: v for k, v in means.items() if k.startswith("Loss/")})
                acc, acc_n, t_tick = {}, 0, time.time()

            # ---- validation on the fixed held-out batch (EMA generator) ----------------------
            if is_main and n_val and t_cfg.val_every and (step % t_cfg.val_every == 0 or step == t_cfg.steps):
                metrics = validation_metrics(domain, G_ema, transform, normaliser, val, z_val, header.attrs, t_cfg.precision)
                history_metrics = metrics
                stats.write(step, {f"Val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
                log(
                    f"step {step}: validation score {metrics['score']:.4g}"
                    + (" (best so far)" if metrics["score"] < best_score else "")
                )
                if metrics["score"] < best_score:
                    best_score = metrics["score"]
                    checkpoint("best")

            # ---- checkpoints and preemption ---------------------------------------------------
            if step % t_cfg.ckpt_every == 0 or step == t_cfg.steps:
                checkpoint("snapshot")
            stop_now = stop.requested is not None
            if dist_info.enabled:  # all ranks stop at the same step, or the collectives would hang
                flag = torch.tensor([float(stop_now)], device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop_now = bool(flag.item())
            if stop_now:
                stop.requested = stop.requested or "SIGTERM"
                checkpoint()
                write_diagnostics()
                log(f"{stop.requested} received: checkpoint written at step {step}; exiting (continue with --resume auto)")
                return TrainResult(
                    run_dir, step, stop.requested, best_score if math.isfinite(best_score) else None, history_metrics, rollbacks
                )
        checkpoint()
        write_diagnostics()
        if dist_info.enabled:
            log(f"parameters identical across {dist_info.world_size} ranks")
        log(f"finished {step} steps; checkpoints in {run_dir / 'checkpoints'}")
        return TrainResult(run_dir, step, None, best_score if math.isfinite(best_score) else None, history_metrics, rollbacks)
    finally:
        stop.restore()
        prog.close()
        stats.close()
        if hasattr(sampler, "close"):
            sampler.close()
        if log_file:
            log_file.close()
        barrier(dist_info)
        cleanup_distributed()


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config saved in a run directory."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a physgan run directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text()))
