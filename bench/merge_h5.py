"""Concatenate HDF5 sample files of one layout, dataset by dataset, into one file (written atomically).

Used by ``bench/gpu_figures.sh`` to simulate a large training file in parallel parts on a many-core GPU node::

    python -m bench.merge_h5 OUT PART [PART ...]

Every top-level dataset of the first part is concatenated along its first axis over the parts (their other axes must
agree); the root and dataset attributes are the first part's. The rows are not shuffled: the parts are independent
draws from one simulator, so their order carries no information.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np


def merge_h5(out: Path, parts: list[Path]) -> Path:
    """Write ``out`` from ``parts`` (see the module docstring); returns ``out``."""
    if not parts:
        raise SystemExit("merge_h5: no parts given")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    srcs = [h5py.File(p, "r") for p in parts]
    try:
        names = list(srcs[0].keys())
        for p, s in zip(parts, srcs):
            if list(s.keys()) != names:
                raise SystemExit(f"merge_h5: {p} holds datasets {list(s.keys())}, {parts[0]} holds {names}")
        with h5py.File(tmp, "w") as f:
            f.attrs.update(dict(srcs[0].attrs))
            for name in names:
                d = f.create_dataset(name, data=np.concatenate([s[name][...] for s in srcs]))
                d.attrs.update(dict(srcs[0][name].attrs))
        os.replace(tmp, out)
    finally:
        for s in srcs:
            s.close()
        tmp.unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    merge_h5(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
