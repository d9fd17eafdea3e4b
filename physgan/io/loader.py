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
from typing import Any

import numpy as np
import torch

from physgan.io.hdf5 import SampleSource

__all__ = ["split_indices", "DeviceSampler", "BlockStreamer", "block_starts"]


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
        if self.cursor + self.batch_size > len(self._order):
            self.epoch += 1
            self.cursor = 0
            self._order = self._new_order()
        idx = self._order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return self.x[idx], self.c[idx]

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

    def state_dict(self) -> dict[str, Any]:
        # resume restarts the current shuffle buffer (group - 1) of the same epoch
        return {"epoch": self.epoch, "group": max(self.group - 1, 0), "epoch_state": self._epoch_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["epoch_state"])
        self._blocks = self._new_epoch_blocks()
        self.epoch, self.group = int(state["epoch"]), int(state["group"])
        self._buffer = None
        self._pending = None  # a read in flight for another position is dropped
