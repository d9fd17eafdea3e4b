"""Batches for training: whole dataset on the device, or chunk-aligned streaming.

* :class:`DeviceSampler`: the (transformed) training set lives on the device;
  each epoch is one ``randperm`` drawn from a seeded generator; ranks take
  interleaved slices. Its position (epoch, cursor, generator state) is part of
  every checkpoint, so a resumed run sees exactly the same batches.
* :class:`BlockStreamer`: files larger than memory are read in chunk-aligned
  contiguous blocks (fast sequential HDF5 reads), the block order is shuffled
  per epoch, several blocks are mixed in a shuffle buffer, and reads happen in
  DataLoader worker processes, each opening the file lazily (never before the
  fork). Resume restarts at the current shuffle buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from physgan.io.hdf5 import SampleSource

__all__ = [
    "split_indices",
    "DeviceSampler",
    "BlockStreamer",
    "block_starts",
    "TrainingSplit",
    "split_training_data",
    "Prepare",
    "make_sampler",
]

#: rows of the training data the transform and the condition normalisation are fitted on
FIT_ROWS = 50000


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (train, held-out) index arrays."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    n_val = min(n_val, n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class DeviceSampler:
    """Random batches from tensors already on the device.

    Parameters
    ----------
    x, c : Tensor
        Training samples (model space) and normalised conditions, same length.
    batch_size : int
        Rows per batch (per rank).
    seed : int
        Seed of the shuffling generator (the same on every rank).
    rank, world_size : int
        This process's slice of each epoch's permutation.
    """

    def __init__(self, x: torch.Tensor, c: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.x, self.c = x, c
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.cursor = 0
        self._epoch_state = self.gen.get_state()
        self._order = self._new_order()
        if len(self._order) < batch_size:
            from physgan.errors import ConfigError

            raise ConfigError(
                f"batch size {batch_size} is larger than the {len(self._order)} training samples this process sees; lower train.batch_size"
            )

    def _new_order(self) -> torch.Tensor:
        self._epoch_state = self.gen.get_state()
        perm = torch.randperm(len(self.x), generator=self.gen)
        return perm[self.rank :: self.world_size].to(self.x.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch ``(x, c)``."""
        rows = self._next_rows()
        return self.x[rows], self.c[rows]

    def next_conditions(self) -> torch.Tensor:
        """The conditions of the next batch only (the position advances as with :meth:`next`)."""
        return self.c[self._next_rows()]

    def _next_rows(self) -> torch.Tensor:
        if self.cursor + self.batch_size > len(self._order):
            self.epoch += 1
            self.cursor = 0
            self._order = self._new_order()
        rows = self._order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "epoch_state": self._epoch_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["epoch_state"])
        self._order = self._new_order()
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def block_starts(n_rows: int, block_rows: int) -> np.ndarray:
    """Start rows of consecutive blocks covering ``range(n_rows)``."""
    return np.arange(0, n_rows, block_rows, dtype=np.int64)


class _BlockDataset(torch.utils.data.Dataset):
    """Map-style dataset whose items are whole blocks ``(x, c)`` of a file."""

    def __init__(self, source: SampleSource, starts: np.ndarray, block_rows: int):
        self.source, self.starts, self.block_rows = source, starts, block_rows

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = int(self.starts[i])
        return self.source.read(s, s + self.block_rows)


class BlockStreamer:
    """Shuffled batches streamed from a file in chunk-aligned blocks.

    Parameters
    ----------
    source : SampleSource
        The training file.
    starts : array of int
        Start rows of this split's blocks (each ``block_rows`` long, the last may be shorter).
    block_rows : int
        Rows per block (a multiple of the file's chunk rows).
    batch_size : int
        Rows per batch.
    seed : int
        Shuffling seed.
    prepare : callable
        ``(x numpy, c numpy) -> (x tensor, c tensor)`` on the device (transform + normalise).
    shuffle_blocks : int
        Blocks mixed in one shuffle buffer.
    workers : int
        DataLoader worker processes reading blocks.
    rank, world_size : int
        This process's share of blocks.
    prefetch : bool
        Read the next shuffle buffer's blocks in a background thread while the current one is
        consumed (h5py reads overlap the training step's torch work, which releases the GIL). The
        blocks, their order and every random draw are the same as without prefetching, so batches
        are identical; the cost is one more buffer of raw rows in memory. With ``workers > 0`` the
        workers read and nothing is prefetched (forking from a background thread is unsafe).
    """

    def __init__(
        self,
        source: SampleSource,
        starts: np.ndarray,
        block_rows: int,
        batch_size: int,
        seed: int,
        prepare: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
        shuffle_blocks: int = 8,
        workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        prefetch: bool = True,
    ):
        self.source, self.starts, self.block_rows = source, np.asarray(starts), block_rows
        self.prefetch = bool(prefetch) and workers == 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[tuple[int, int], Future] | None = None  # ((epoch, group), future of raw blocks)
        self.batch_size, self.prepare = batch_size, prepare
        self.shuffle_blocks, self.workers = shuffle_blocks, workers
        self.rank, self.world_size = rank, world_size
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.group = 0  # index of the next shuffle buffer within the epoch
        self._epoch_state = self.gen.get_state()
        self._blocks = self._new_epoch_blocks()
        self._buffer: tuple[torch.Tensor, torch.Tensor] | None = None
        self._buf_pos = 0
        self._group_state = self.gen.get_state()

    def _new_epoch_blocks(self) -> np.ndarray:
        self._epoch_state = self.gen.get_state()
        order = torch.randperm(len(self.starts), generator=self.gen).numpy()
        mine = self.starts[order][self.rank :: self.world_size]
        return mine if len(mine) else self.starts[order][:1]

    def _load_group(self) -> None:
        first = self.group * self.shuffle_blocks
        if first >= len(self._blocks):
            self.epoch += 1
            self.group = 0
            self._blocks = self._new_epoch_blocks()
            first = 0
        chosen = self._blocks[first : first + self.shuffle_blocks]
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == (self.epoch, self.group):
            x_raw, c_raw = pending[1].result()
        else:
            x_raw, c_raw = self._read(chosen)
        nxt = (self.group + 1) * self.shuffle_blocks
        if self.prefetch and nxt < len(self._blocks):  # the next buffer of this epoch (a new epoch draws its order later)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="physgan-prefetch")
            future = self._pool.submit(self._read, self._blocks[nxt : nxt + self.shuffle_blocks])
            self._pending = ((self.epoch, self.group + 1), future)
        x, c = self.prepare(x_raw, c_raw)
        del x_raw, c_raw
        self._group_state = self.gen.get_state()
        perm = torch.randperm(len(x), generator=self.gen).to(x.device)
        self._buffer = (x[perm], c[perm])
        self._buf_pos = 0
        self.group += 1

    def _read(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw rows of the blocks ``chosen``, concatenated in that order."""
        ds = _BlockDataset(self.source, chosen, self.block_rows)
        if self.workers == 0:
            parts = [ds[i] for i in range(len(ds))]
        else:
            loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.workers)
            parts = list(loader)
        xs, cs = zip(*[(np.asarray(x), np.asarray(c)) for x, c in parts])
        return np.concatenate(xs), np.concatenate(cs)

    def close(self) -> None:
        """Stop the prefetch thread (waits for a read in flight)."""
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._buffer is None or self._buf_pos + self.batch_size > len(self._buffer[0]):
            self._load_group()
            if len(self._buffer[0]) < self.batch_size:
                from physgan.errors import ConfigError

                raise ConfigError(
                    f"a shuffle buffer holds only {len(self._buffer[0])} rows < batch size {self.batch_size}: raise data.shuffle_blocks"
                )
        x, c = self._buffer
        sl = slice(self._buf_pos, self._buf_pos + self.batch_size)
        self._buf_pos += self.batch_size
        return x[sl], c[sl]

    def next_conditions(self) -> torch.Tensor:
        """The conditions of the next batch (the rows are read with them: a buffer is prepared whole)."""
        return self.next()[1]

    def state_dict(self) -> dict[str, Any]:
        # resume restarts the current shuffle buffer (group - 1) of the same epoch
        return {"epoch": self.epoch, "group": max(self.group - 1, 0), "epoch_state": self._epoch_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["epoch_state"])
        self._blocks = self._new_epoch_blocks()
        self.epoch, self.group = int(state["epoch"]), int(state["group"])
        self._buffer = None
        self._pending = None  # a read in flight for another position is dropped


@dataclass
class TrainingSplit:
    """A training file split for training: the held-out rows, the rows to fit on, and where the training rows are.

    Attributes
    ----------
    n_total : int
        Rows in the file.
    in_memory : bool
        The training rows are read whole (``train``) rather than streamed in blocks (``train_starts``).
    val : (x, c)
        Held-out rows (at most ``data.val_size``), physical units.
    fit : (x, c)
        At most :data:`FIT_ROWS` training rows to fit the transform and the condition normalisation on.
    train : (x, c) or None
        In memory: every training row (released by :func:`make_sampler`).
    train_starts : array of int or None
        Streamed: start rows of the training blocks, each ``block_rows`` long.
    block_rows : int
    warnings : list of str
        The domain's findings on the data it was shown (all rows in memory, the fit rows when streamed).
    """

    n_total: int
    in_memory: bool
    val: tuple[np.ndarray, np.ndarray]
    fit: tuple[np.ndarray, np.ndarray]
    train: tuple[np.ndarray, np.ndarray] | None = None
    train_starts: np.ndarray | None = None
    block_rows: int = 0
    warnings: tuple[str, ...] = ()


def split_training_data(
    source: SampleSource, d_cfg: Any, seed: int, check: Callable[[np.ndarray, np.ndarray], list[str]]
) -> TrainingSplit:
    """Split an open training file into held-out and training rows (seeded), reading what training needs.

    Parameters
    ----------
    source : SampleSource
        The open training file (left open).
    d_cfg : DataConfig
        ``in_memory``, ``memory_limit_gb``, ``val_fraction``, ``val_size``, ``block_rows``.
    seed : int
        Seeds the split (rows in memory, blocks when streamed).
    check : callable
        ``(x, c) -> [warning]``: the domain's physics checks of the data (may raise on bad data).
    """
    header = source.header
    n_total = header.n
    sample_bytes = 4 * int(np.prod(header.sample_shape)) * n_total
    in_memory = d_cfg.in_memory == "yes" or (d_cfg.in_memory == "auto" and sample_bytes <= d_cfg.memory_limit_gb * 2**30)
    if in_memory:
        from physgan.io.hdf5 import read_all

        train_idx, val_idx = split_indices(n_total, d_cfg.val_fraction, seed)
        x_all, c_all = read_all(source)
        warnings = check(x_all, c_all)
        x_tr, c_tr = x_all[train_idx], c_all[train_idx]
        val_rows = val_idx[: d_cfg.val_size]
        val = (x_all[val_rows], c_all[val_rows])
        del x_all, c_all
        return TrainingSplit(n_total, True, val, (x_tr[:FIT_ROWS], c_tr[:FIT_ROWS]), (x_tr, c_tr), warnings=tuple(warnings))
    rows = d_cfg.block_rows or max(header.chunk_rows, 1) * max(1, 4096 // max(header.chunk_rows, 1))
    starts = block_starts(n_total, rows)
    rng = np.random.default_rng(seed)
    n_val_blocks = min(len(starts) - 1, max(1, round(len(starts) * d_cfg.val_fraction))) if d_cfg.val_fraction > 0 else 0
    perm = rng.permutation(len(starts))
    val_starts, train_starts = np.sort(starts[perm[:n_val_blocks]]), np.sort(starts[perm[n_val_blocks:]])
    if n_val_blocks:
        vx, vc = zip(*[source.read(s, s + rows) for s in val_starts])
        val = (np.concatenate(vx)[: d_cfg.val_size], np.concatenate(vc)[: d_cfg.val_size])
    else:
        val = (np.zeros((0,)), np.zeros((0,)))
    fx, fc = zip(*[source.read(s, s + rows) for s in train_starts[: max(1, FIT_ROWS // rows)]])
    fit = (np.concatenate(fx), np.concatenate(fc))
    return TrainingSplit(n_total, False, val, fit, train_starts=train_starts, block_rows=rows, warnings=tuple(check(*fit)))


class Prepare:
    """Physical rows to model space on the device: ``(x, c) -> (transform(x, c), normalised c)``, float32."""

    def __init__(self, transform: Any, normaliser: Any, device: torch.device):
        self.transform, self.normaliser, self.device = transform, normaliser, device

    def __call__(self, x: np.ndarray, c: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xt = torch.as_tensor(x, device=self.device)
        ct = torch.as_tensor(c, device=self.device)
        return self.transform.forward(xt, ct).float(), self.normaliser(ct).float()


def make_sampler(
    split: TrainingSplit, d_cfg: Any, prepare: Prepare, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
) -> DeviceSampler | BlockStreamer:
    """The batch source of a split: the prepared training rows on the device, or a streamer over its blocks.

    In memory, the training rows are prepared in chunks of 8192 and ``split.train`` is released.
    """
    if split.in_memory:
        x_tr, c_tr = split.train
        split.train = None
        parts = [prepare(x_tr[s : s + 8192], c_tr[s : s + 8192]) for s in range(0, len(x_tr), 8192)]
        del x_tr, c_tr
        x_model, c_model = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        del parts
        return DeviceSampler(x_model, c_model, batch_size, seed=seed, rank=rank, world_size=world_size)
    from physgan.io.hdf5 import open_source

    return BlockStreamer(
        open_source(d_cfg.path, d_cfg.layout),
        split.train_starts,
        split.block_rows,
        batch_size,
        seed=seed,
        prepare=prepare,
        shuffle_blocks=d_cfg.shuffle_blocks,
        workers=d_cfg.workers,
        rank=rank,
        world_size=world_size,
        prefetch=d_cfg.prefetch,
    )
