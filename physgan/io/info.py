"""``physgan data info``: schema, conditions and ranges, sample statistics, problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from physgan.errors import DataError
from physgan.io.hdf5 import SampleSource, open_source

__all__ = ["FileInfo", "inspect_file", "format_info"]


@dataclass
class FileInfo:
    path: str
    layout: str
    n: int
    sample_shape: tuple[int, ...]
    dtype: str
    sample_units: str
    conditions: list[dict[str, Any]]
    stats: dict[str, float]
    attrs: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    domain: str = "array"
    inferred: list[str] = field(default_factory=list)


def inspect_file(path: str, layout: str | None = None, block_rows: int = 4096) -> FileInfo:
    """Scan a whole sample file (in blocks) and collect its statistics and every problem.

    Structural problems (not HDF5, missing datasets, mismatched N) raise
    :class:`DataError`; value problems (NaN/Inf, negative energies) and the
    domain's physics checks (:mod:`physgan.domains.checks`: energies <= 0,
    deposits above the incident energy, all-zero samples) are listed in
    ``problems`` (training refuses them) or ``warnings`` (constant conditions,
    some empty samples) with the first offending index and the count.
    """
    from physgan.domains.checks import PhysicsScan, domain_for_file

    src: SampleSource = open_source(path, layout)
    h = src.header
    domain = domain_for_file(h, src.layout.name)
    physics = PhysicsScan(domain, h.condition_names, h.attrs)
    k = len(h.condition_names)
    cmin, cmax = np.full(k, np.inf), np.full(k, -np.inf)
    csum, csum2 = np.zeros(k), np.zeros(k)
    smin, smax, ssum, ssum2, nzero, nval = np.inf, -np.inf, 0.0, 0.0, 0, 0
    bad: dict[str, list] = {}
    rows = max(h.chunk_rows, 1) * max(1, block_rows // max(h.chunk_rows, 1))
    for start in range(0, h.n, rows):
        x, c = src.read(start, start + rows, check=False)
        physics.add(start, x, c)
        flat = x.reshape(len(x), -1)
        finite = np.isfinite(flat)
        for label, mask in (("non-finite sample values (NaN/Inf)", ~finite.all(1)),):
            if mask.any():
                rec = bad.setdefault(label, [start + int(np.argmax(mask)), 0])
                rec[1] += int(mask.sum())
        if h.non_negative:
            neg = (np.where(finite, flat, 0) < 0).any(1)
            if neg.any():
                rec = bad.setdefault("negative sample values (must be >= 0)", [start + int(np.argmax(neg)), 0])
                rec[1] += int(neg.sum())
        if k:
            cfin = np.isfinite(c)
            if not cfin.all():
                rows_bad = ~cfin.all(1)
                rec = bad.setdefault("non-finite conditions", [start + int(np.argmax(rows_bad)), 0])
                rec[1] += int(rows_bad.sum())
            cc = np.where(cfin, c, np.nan)
            cmin = np.fmin(cmin, np.nanmin(cc, 0))
            cmax = np.fmax(cmax, np.nanmax(cc, 0))
            csum += np.nansum(cc, 0)
            csum2 += np.nansum(cc.astype(np.float64) ** 2, 0)
        v = flat[finite].astype(np.float64)
        if v.size:
            smin, smax = min(smin, v.min()), max(smax, v.max())
            ssum += v.sum()
            ssum2 += (v**2).sum()
            nzero += int((v == 0).sum())
            nval += v.size
    src.close()
    problems = [f"{label}: {count} samples, first at index {first}" for label, (first, count) in bad.items()]
    found = physics.problems()
    problems += [text for text, fatal in found if fatal]
    mean = ssum / max(nval, 1)
    stats = {
        "min": float(smin),
        "max": float(smax),
        "mean": float(mean),
        "std": float(np.sqrt(max(ssum2 / max(nval, 1) - mean**2, 0))),
        "zero_fraction": nzero / max(nval, 1),
    }
    conds = []
    for j, (name, unit) in enumerate(zip(h.condition_names, h.condition_units)):
        m = csum[j] / h.n
        conds.append(
            {
                "name": name,
                "units": unit,
                "min": float(cmin[j]),
                "max": float(cmax[j]),
                "mean": float(m),
                "std": float(np.sqrt(max(csum2[j] / h.n - m**2, 0))),
            }
        )
    warnings = [text for text, fatal in found if not fatal]
    return FileInfo(
        str(path), src.layout.name, h.n, h.sample_shape, h.dtype, h.sample_units, conds, stats, h.attrs, problems, warnings,
        domain.name, sorted(set(h.attrs) - src.file_attrs),
    )


def format_info(info: FileInfo) -> str:
    """Human-readable report of :func:`inspect_file`."""
    lines = [
        f"file:        {info.path}",
        f"layout:      {info.layout} (domain {info.domain})",
        f"samples:     {info.n} x {info.sample_shape} ({info.dtype}{', ' + info.sample_units if info.sample_units else ''})",
        f"values:      min {info.stats['min']:.6g}  max {info.stats['max']:.6g}  mean {info.stats['mean']:.6g}  "
        f"std {info.stats['std']:.6g}  zeros {100 * info.stats['zero_fraction']:.1f} %",
        f"conditions:  {len(info.conditions) or 'none'}",
    ]
    for c in info.conditions:
        lines.append(
            f"  {c['name']:<16} [{c['min']:.6g}, {c['max']:.6g}] {c['units']}   mean {c['mean']:.6g}  std {c['std']:.6g}"
        )
    stored = {k: v for k, v in info.attrs.items() if k not in info.inferred}
    inferred = {k: v for k, v in info.attrs.items() if k in info.inferred}
    for title, attrs in (("attributes:", stored), ("inferred (not stored in the file; assumed by the layout):", inferred)):
        if attrs:
            lines.append(title)
            for k, v in sorted(attrs.items()):
                text = str(v)
                lines.append(f"  {k} = {text if len(text) < 100 else text[:97] + '...'}")
    lines.append("problems:    " + ("none" if not info.problems else str(len(info.problems))))
    lines += [f"  - {p}" for p in info.problems]
    if info.warnings:
        lines.append(f"warnings:    {len(info.warnings)}")
        lines += [f"  - {w}" for w in info.warnings]
    return "\n".join(lines)


def _raise_first(info: FileInfo) -> None:
    if info.problems:
        raise DataError(info.path, "; ".join(info.problems))
