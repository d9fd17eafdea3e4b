"""Generation sharded over the processes of a torchrun/Slurm job: one HDF5 file per rank, joined at the end.

Launch::

    torchrun --standalone --nproc-per-node 8 -m physgan generate runs/calo-001 --n-samples 100000000 --out fake.h5
    torchrun ... -m physgan generate runs/calo-001 --n-samples 100000000 --out fake.h5 --merge   # one real file

(under torchrun write ``--n-samples``: torchrun's own parser takes ``--n`` for an abbreviation of its options).

Each rank ``r`` of ``W`` generates its share (``n // W``, the first ``n % W`` ranks one more) with its
own seed (:func:`rank_seed`) into ``fake.rank-0000r-of-0000W.h5`` through :meth:`physgan.run.Run.generate`
(streamed in batches, the run's layout, written atomically), so no process ever holds more than one
batch. When every rank has finished, rank 0 writes ``fake.h5``:

* by default an HDF5 *virtual dataset* file: every per-sample dataset of the layout is a
  :class:`h5py.VirtualLayout` over the shards (sources named relative to ``fake.h5``, so the folder
  can be moved as a whole; the shards must stay beside it). Float datasets get NaN as fill value, so
  a missing shard reads as NaN and physgan's reader stops with a :class:`~physgan.errors.DataError`
  instead of returning zeros;
* with ``merge=True`` a real file, copied dataset by dataset in blocks of rows (exact bytes, any
  layout); the shards are then removed.

The final file appears only after all shards completed (the ranks exchange their status in a
collective after generating). If any rank fails, every rank removes the shard it wrote, no final file
is written and every rank raises, so the job exits non-zero.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from physgan.errors import PhysganError
from physgan.io.atomic import atomic_output, check_writable

__all__ = [
    "shard_path",
    "shard_counts",
    "rank_seed",
    "per_sample_datasets",
    "write_virtual",
    "merge_shards",
    "generate_sharded",
]

#: collectives wait at most this long for the slowest rank (generation of 10^8 samples takes hours)
TIMEOUT = datetime.timedelta(hours=48)
#: rows per block when merging shards
MERGE_BLOCK_BYTES = 64 << 20


def shard_path(out: str | os.PathLike, rank: int, world_size: int) -> Path:
    """``fake.h5`` -> ``fake.rank-00003-of-00008.h5`` (beside ``out``).

    Parameters
    ----------
    out : path
        The final output file.
    rank, world_size : int
        This shard's rank and the number of ranks.

    Returns
    -------
    Path
    """
    out = Path(out)
    stem, suffix = (out.stem, out.suffix) if out.suffix else (out.name, ".h5")
    return out.with_name(f"{stem}.rank-{rank:05d}-of-{world_size:05d}{suffix}")


def shard_counts(n: int, world_size: int) -> np.ndarray:
    """Samples per rank: ``n // W`` each, the first ``n % W`` ranks one more (sums to ``n``)."""
    if n < 0 or world_size < 1:
        raise PhysganError(f"cannot split {n} samples over {world_size} ranks")
    counts = np.full(world_size, n // world_size, dtype=np.int64)
    counts[: n % world_size] += 1
    return counts


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank ``rank`` derived from the job's ``seed`` (distinct streams per rank).

    Uses :class:`numpy.random.SeedSequence` with the rank as spawn key, so the streams of different
    ranks are statistically independent (not merely offset) and rank 0 differs from the plain seed.

    Returns
    -------
    int
        A non-negative 63-bit integer (fits ``torch.Generator.manual_seed``).
    """
    words = np.random.SeedSequence(int(seed), spawn_key=(int(rank),)).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


def per_sample_datasets(path: str | os.PathLike) -> tuple[list[str], int]:
    """The datasets of a physgan file that hold one row per sample, and the number of samples.

    Those the layout's :class:`~physgan.io.layout.Header` lists (``datasets``) and every other dataset
    whose first axis has ``n`` rows.

    Returns
    -------
    names : list of str
        Dataset paths inside the file (no leading ``/``).
    n : int
        Number of samples.
    """
    from physgan.io.hdf5 import open_source

    src = open_source(path)
    n, names = src.header.n, [d.lstrip("/") for d in src.header.datasets]
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: names.append(name)
            if isinstance(obj, h5py.Dataset) and obj.shape[:1] == (n,) and name not in names
            else None
        )
    return names, n


def _check_shards(shards: list[Path]) -> tuple[list[str], list[int]]:
    """Per-sample dataset names (of the first shard) and samples per shard; shapes and dtypes must agree."""
    if not shards:
        raise PhysganError("no shard files to join")
    names, _ = per_sample_datasets(shards[0])
    sizes = []
    with h5py.File(shards[0], "r") as f0:
        ref = {name: (f0[name].shape[1:], f0[name].dtype) for name in names}
    for shard in shards:
        _, k = per_sample_datasets(shard)
        with h5py.File(shard, "r") as f:
            for name, (shape, dtype) in ref.items():
                if name not in f or f[name].shape != (k, *shape) or f[name].dtype != dtype:
                    got = f[name].shape if name in f else "missing"
                    raise PhysganError(f"{shard}: dataset '{name}' is {got}, expected {(k, *shape)} {dtype} like {shards[0].name}")
        sizes.append(k)
    return names, sizes


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for key, value in src.attrs.items():
        dst.attrs[key] = value


def _copy_skeleton(f0: h5py.File, out: h5py.File, skip: set[str]) -> None:
    """Groups, attributes and the datasets not in ``skip`` of the first shard."""
    _copy_attrs(f0, out)

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            _copy_attrs(obj, out.require_group(name))
        elif name not in skip:
            f0.copy(obj, out, name=name)

    f0.visititems(visit)


def _fill(dtype: np.dtype) -> Any:
    return np.nan if np.issubdtype(dtype, np.floating) else None


def write_virtual(out: str | os.PathLike, shards: list[Path], attrs: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write ``out`` as an HDF5 virtual-dataset file over the shard files (atomically).

    Parameters
    ----------
    out : path
        The file to write.
    shards : list of Path
        Complete shard files in one physgan layout, in sample order (beside ``out``).
    attrs : mapping, optional
        Root attributes to set on ``out`` (after those of the first shard).
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Path

    References
    ----------
    The HDF Group, "Virtual Dataset (VDS)", RFC HDF5-2014 / HDF5 1.10 documentation.
    """
    out = Path(out)
    names, sizes = _check_shards(shards)
    total = int(sum(sizes))
    with atomic_output(out, overwrite=overwrite) as tmp, h5py.File(shards[0], "r") as f0, h5py.File(tmp, "w") as fo:
        _copy_skeleton(f0, fo, set(names))
        for name in names:
            ds0 = f0[name]
            layout = h5py.VirtualLayout(shape=(total, *ds0.shape[1:]), dtype=ds0.dtype)
            start = 0
            for shard, k in zip(shards, sizes):
                rel = os.path.relpath(shard, out.parent)
                layout[start : start + k] = h5py.VirtualSource(rel, name, shape=(k, *ds0.shape[1:]), dtype=ds0.dtype)
                start += k
            vds = fo.create_virtual_dataset(name, layout, fillvalue=_fill(ds0.dtype))
            _copy_attrs(ds0, vds)
        fo.attrs["shards"] = [os.path.relpath(s, out.parent) for s in shards]
        for key, value in dict(attrs or {}).items():
            fo.attrs[key] = value
    return out


def merge_shards(out: str | os.PathLike, shards: list[Path], attrs: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write ``out`` as one real file holding the shards' samples in order, copied in blocks (atomically).

    Every per-sample dataset keeps its dtype, chunking along the sample axis, compression and
    attributes; other datasets and all attributes come from the first shard. At most
    ``MERGE_BLOCK_BYTES`` of one dataset are in memory at a time.

    Parameters
    ----------
    out : path
        The merged file.
    shards : list of Path
        Complete shard files in one layout, in sample order.
    attrs : mapping, optional
        Root attributes to set on ``out``.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
    """
    names, sizes = _check_shards(shards)
    total = int(sum(sizes))
    with atomic_output(out, overwrite=overwrite) as tmp, h5py.File(shards[0], "r") as f0, h5py.File(tmp, "w") as fo:
        _copy_skeleton(f0, fo, set(names))
        for name in names:
            ds0 = f0[name]
            chunks = (min(ds0.chunks[0], total), *ds0.chunks[1:]) if ds0.chunks else None
            dst = fo.create_dataset(
                name, shape=(total, *ds0.shape[1:]), dtype=ds0.dtype, chunks=chunks, compression=ds0.compression,
                compression_opts=ds0.compression_opts,
            )
            _copy_attrs(ds0, dst)
            row_bytes = max(1, int(np.prod(ds0.shape[1:], dtype=np.int64)) * ds0.dtype.itemsize)
            rows = max(1, MERGE_BLOCK_BYTES // row_bytes)
            if chunks:
                rows = max(chunks[0], rows // chunks[0] * chunks[0])
            start = 0
            for shard, k in zip(shards, sizes):
                with h5py.File(shard, "r") as fs:
                    src = fs[name]
                    for s in range(0, k, rows):
                        e = min(k, s + rows)
                        dst[start + s : start + e] = src[s:e]
                start += k
        fo.attrs["merged_from"] = len(shards)
        for key, value in dict(attrs or {}).items():
            fo.attrs[key] = value
    return Path(out)


def _all_ok(ok: bool, dist) -> bool:
    """True when every rank reports ``ok`` (a collective every rank must reach)."""
    import torch

    flag = torch.tensor([0 if ok else 1], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) == 0


def generate_sharded(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    n: int,
    cond: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 4096,
    checkpoint: str = "best",
    device: str = "auto",
    overwrite: bool = False,
    compression: str | None = None,
    progress: bool = True,
    allow_extrapolation: bool = False,
    latent_scale: int = 1,
    merge: bool = False,
) -> Path:
    """Generate ``n`` samples over all ranks of a torchrun/Slurm job into ``out`` (see the module docstring).

    Call it on every rank. Starts a gloo process group for the control messages when none exists
    (and ends it again); generation itself runs on ``device`` (``auto``/``cuda``: this rank's GPU,
    ``cuda:LOCAL_RANK``).

    Parameters
    ----------
    run_dir : path
        Trained run directory (or checkpoint file), as :func:`physgan.run.load_run`.
    out : path
        Final file: a virtual-dataset file over the shards, or a merged file with ``merge``.
    n : int
        Total number of samples (over all ranks).
    cond : mapping, optional
        Condition spec per name, as :meth:`physgan.run.Run.conditions` (drawn per rank).
    seed : int
        Job seed; rank ``r`` uses :func:`rank_seed` ``(seed, r)`` for its latents and conditions.
    batch_size, checkpoint, device, overwrite, compression, progress, allow_extrapolation, latent_scale
        As :meth:`physgan.run.Run.generate` / :func:`physgan.run.load_run` (progress: rank 0 only).
    merge : bool
        Write one real file and remove the shards instead of a virtual-dataset file.

    Returns
    -------
    Path
        ``out`` (on every rank).

    Raises
    ------
    PhysganError
        On every rank when any rank failed; no ``out`` is written and the shards are removed.
    """
    import torch
    import torch.distributed as dist

    from physgan.run import load_run
    from physgan.train.distributed import launcher_env

    rank, local_rank, world = launcher_env()
    out = Path(out)
    own_group = not dist.is_initialized()
    if own_group:
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        dist.init_process_group("gloo", timeout=TIMEOUT)
    shards = [shard_path(out, r, world) for r in range(world)]
    counts = shard_counts(n, world)
    mine = shards[rank]
    wrote = False
    error: BaseException | None = None
    try:
        try:
            if n < 1:
                raise PhysganError("--n must be >= 1")
            check_writable(out, overwrite)
            dev = device
            if world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
                dev = f"cuda:{local_rank}"
            run = load_run(run_dir, checkpoint=checkpoint, device=dev)
            if counts[rank] > 0:
                check_writable(mine, overwrite)
                wrote = True  # from here on, a shard of ours may exist
                run.generate(
                    mine, int(counts[rank]), cond, seed=rank_seed(seed, rank), batch_size=batch_size, overwrite=overwrite,
                    compression=compression, progress=progress and rank == 0, allow_extrapolation=allow_extrapolation,
                    latent_scale=latent_scale,
                )
        except Exception as err:  # reported to the other ranks before re-raising
            error = err
        all_ok = _all_ok(error is None, dist)
        if not all_ok:
            if wrote and error is None:
                mine.unlink(missing_ok=True)
            if error is not None:
                raise error
            raise PhysganError(f"{out}: another rank failed; removed this rank's shard {mine.name}; no output written")
        # all shards complete: rank 0 joins them
        final_error: BaseException | None = None
        if rank == 0:
            try:
                done = [s for s, k in zip(shards, counts) if k > 0]
                attrs = {"seed": int(seed), "n_ranks": int(world), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                if merge:
                    merge_shards(out, done, attrs, overwrite=overwrite)
                    for s in done:
                        s.unlink(missing_ok=True)
                else:
                    write_virtual(out, done, attrs, overwrite=overwrite)
            except Exception as err:
                final_error = err
        if not _all_ok(final_error is None, dist):
            if counts[rank] > 0:
                mine.unlink(missing_ok=True)
            if final_error is not None:
                raise final_error
            raise PhysganError(f"{out}: rank 0 could not write the joined file; shards removed")
        return out
    finally:
        if own_group:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
