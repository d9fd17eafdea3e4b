"""Data loading: physgan's streaming loader against a naive per-index h5py Dataset and a raw sequential read.

::

    python -m bench.loader [--device cpu|cuda] [--quick] [--warm] [--rows N]

Writes an ``array``-layout file of ``--rows`` calorimeter-sized samples (507 float32 + 1 condition,
chunked as physgan writes them), then times, interleaved in one process, with the file evicted from
the page cache before every timed call (``posix_fadvise(DONTNEED)``; ``--warm`` keeps it cached):

* ``raw``: one sequential pass with plain h5py slices of 64 MiB (no checks, no shuffling);
* ``physgan``: :class:`physgan.io.loader.BlockStreamer` (what ``data.in_memory=no`` trains from:
  chunk-aligned blocks, shuffled block order, an 8-block shuffle buffer, NaN/negativity checks,
  batches as torch tensors on ``--device``), one pass over the file; also with 2 worker processes;
* ``naive``: a map-style :class:`torch.utils.data.Dataset` reading one index at a time from h5py
  through a shuffling :class:`~torch.utils.data.DataLoader` (a sample of the pass: it is slow).

The loader is allowed ``8 blocks x 4096 rows`` of memory (about 66 MB) against a file several times
larger, i.e. the file does not fit the memory the loader may use. Reported: samples/s and MB/s,
ratios, load, peak RSS.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from bench._util import MemWatch, add_common_args, env_info, interleave, load, markdown_table, median, setup
from bench.train_throughput import WORKDIR

FEATURES = 507


def make_file(rows: int) -> Path:
    from physgan.io.hdf5 import SampleWriter
    from physgan.io.layout import Header, default_chunk_rows

    WORKDIR.mkdir(parents=True, exist_ok=True)
    path = WORKDIR / f"loader-{rows}.h5"
    if path.is_file():
        return path
    header = Header(n=rows, sample_shape=(FEATURES,), condition_names=["energy"], condition_units=["GeV"],
                    attrs={"domain": "array"}, chunk_rows=default_chunk_rows((FEATURES,)), non_negative=True)
    rng = np.random.default_rng(0)
    with SampleWriter(path, "array", header) as w:
        for s in range(0, rows, 16384):
            k = min(16384, rows - s)
            w.append(rng.exponential(1.0, (k, FEATURES)).astype(np.float32), rng.uniform(1, 100, (k, 1)))
    return path


def evict(path: Path) -> None:
    """Drop the file's pages from the OS page cache (needs no privileges for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def raw_pass(path: Path) -> int:
    with h5py.File(path, "r") as f:
        ds, cs = f["samples"], f["conditions/energy"]
        rows = max(1, (64 << 20) // (FEATURES * 4))
        n = ds.shape[0]
        for s in range(0, n, rows):
            x = ds[s : s + rows]
            c = cs[s : s + rows]
            assert x.shape[0] == c.shape[0]
    return n


class NaiveDataset(torch.utils.data.Dataset):
    """One sample per ``__getitem__``, read with h5py (the file opened lazily, once per process)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.f = None
        with h5py.File(self.path, "r") as f:
            self.n = f["samples"].shape[0]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.f is None:
            self.f = h5py.File(self.path, "r")
        return torch.from_numpy(self.f["samples"][i]), torch.tensor([self.f["conditions/energy"][i]])


def naive_pass(path: Path, batch: int, n_batches: int, device: torch.device) -> int:
    loader = torch.utils.data.DataLoader(NaiveDataset(path), batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    got = 0
    for i, (x, c) in enumerate(loader):
        x, c = x.to(device), c.to(device)
        got += len(x)
        if i + 1 == n_batches:
            break
    return got


def physgan_pass(path: Path, batch: int, device: torch.device, workers: int, prefetch: bool = True) -> int:
    from physgan.io.hdf5 import open_source
    from physgan.io.loader import BlockStreamer, block_starts

    src = open_source(path)
    chunk = src.header.chunk_rows
    rows = chunk * max(1, 4096 // chunk)

    def prepare(x: np.ndarray, c: np.ndarray):
        return torch.as_tensor(x, device=device), torch.as_tensor(c, device=device)

    streamer = BlockStreamer(
        src, block_starts(src.header.n, rows), rows, batch, seed=0, prepare=prepare, workers=workers, prefetch=prefetch
    )
    n_batches = (src.header.n - rows) // batch  # about one pass (the last partial buffer is skipped)
    got = 0
    for _ in range(n_batches):
        x, _ = streamer.next()
        got += len(x)
    streamer.close()
    return got


def main(argv: list[str] | None = None) -> int:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--rows", type=int, default=None, help="samples in the file (default 200000, 50000 with --quick)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--warm", action="store_true", help="do not evict the file from the page cache before each timing")
    args = p.parse_args(argv)
    device = setup(args)
    print(env_info(device))
    rows = args.rows or (50_000 if args.quick else 200_000)
    path = make_file(rows)
    size_mb = path.stat().st_size / 1e6
    naive_batches = 10 if args.quick else 40

    def cold(fn):
        def call():
            if not args.warm:
                evict(path)
            t0 = time.perf_counter()
            n = fn()
            counts[fn] = n
            return time.perf_counter() - t0

        return call

    counts: dict = {}
    fns = {
        "raw": lambda: raw_pass(path),
        "physgan": lambda: physgan_pass(path, args.batch, device, 0),
        "physgan, no prefetch": lambda: physgan_pass(path, args.batch, device, 0, prefetch=False),
        "physgan 2 workers": lambda: physgan_pass(path, args.batch, device, 2),
        "naive": lambda: naive_pass(path, args.batch, naive_batches, device),
    }
    cands = {k: cold(fn) for k, fn in fns.items()}
    with MemWatch(device) as mem:
        times = interleave(cands, args.rounds, device, warmup=1)
    n_of = {k: counts[fns[k]] for k in fns}
    rate = {k: n_of[k] / median(times[k]) for k in fns}
    rows_out = []
    for k, ts in times.items():
        per_raw = [n_of[k] / t / (n_of["raw"] / r) for t, r in zip(ts, times["raw"])]
        per_naive = [n_of[k] / t / (n_of["naive"] / r) for t, r in zip(ts, times["naive"])]
        rows_out.append([k, n_of[k], rate[k], rate[k] * (FEATURES + 1) * 4 / 1e6, median(per_raw), median(per_naive), load()])
    print(markdown_table(["loader", "samples read", "samples/s", "MB/s", "x raw", "x naive", "load"], rows_out))
    print(f"- file {path} ({size_mb:.0f} MB, {rows} x {FEATURES} float32), batch {args.batch}, "
          f"{'warm page cache' if args.warm else 'evicted from the page cache before each timing'}; {mem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
