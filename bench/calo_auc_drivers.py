"""Which high-level calorimeter features the classifier two-sample test uses to tell generated showers from real ones.

::

    python -m bench.calo_auc_drivers --real qs/data/heldout.h5 --fake ab/<arm>/fake.npy [--floor qs/data/train.h5]

``fake.npy`` is what ``python -m bench.calo_ab`` saves: one generated shower per shower of ``--real``, at its
condition. The classifier of :func:`physgan.evaluation.evaluate` (:func:`physgan.metrics.classifier_test`, same
options) is trained on the high-level features plus ``log10(E_inc)``: once on all of them, then once without each
feature family (energies, centres, widths, sparsity, depth, E_ratio), and once on each family alone. A family whose
removal lowers the AUC most is what the generator gets wrong *jointly with the rest*; a family whose AUC alone is
high is wrong on its own. With ``--floor`` the same is done for the first ``len(real)`` showers of a second real file
(the noise floor). Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import re

import numpy as np

FAMILIES = {
    "energies": r"^e_(tot|layer|extra)",
    "centres": r"^ec_",
    "widths": r"^width_",
    "sparsity": r"^sparsity_",
    "depth": r"^shower_depth",
    "e_ratio": r"^e_ratio$",
}


def feature_table(x: np.ndarray, c: np.ndarray, attrs: dict) -> tuple[list[str], np.ndarray]:
    """High-level features of showers ``x`` (MeV) at conditions ``c`` and ``log10(E_inc)``, as names and a matrix."""
    from physgan.domains.base import feature_matrix
    from physgan.domains.calo.features import shower_features

    feats = shower_features(x, c, attrs)
    return feature_matrix(feats, {"log10_energy": np.log10(np.asarray(c, dtype=np.float64)[:, 0])})


def drivers(real: np.ndarray, fake: np.ndarray, names: list[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """AUC of all features, without each family, and of each family alone (condition column always kept)."""
    from physgan.metrics import CLASSIFIER_MAX_SAMPLES, classifier_test

    def auc(cols: list[int]) -> float:
        return float(classifier_test(real[:, cols], fake[:, cols], seed=seed, n_boot=0, max_samples=CLASSIFIER_MAX_SAMPLES)["auc"])

    cond = [names.index("log10_energy")]
    out = {"all": {"auc": auc(list(range(len(names))))}}
    for fam, pat in FAMILIES.items():
        cols = [j for j, n in enumerate(names) if re.search(pat, n)]
        if not cols:
            continue
        rest = [j for j in range(len(names)) if j not in cols]
        out[fam] = {"n": len(cols), "without": auc(rest), "alone": auc(cols + cond)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", required=True, help="held-out HDF5 file (the arm's evaluation file)")
    p.add_argument("--fake", required=True, help="fake.npy saved by bench.calo_ab (same conditions as --real)")
    p.add_argument("--floor", help="a second real HDF5 file: the same table for real vs real")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from physgan.io.hdf5 import open_source, read_all

    torch.set_num_threads(1)
    src = open_source(args.real)
    x_real, c_real = read_all(src)
    attrs = dict(src.header.attrs)
    src.close()
    x_fake = np.load(args.fake)
    if x_fake.shape != x_real.shape:
        raise SystemExit(f"{args.fake}: shape {x_fake.shape}, expected {x_real.shape} (one shower per held-out shower)")
    names, hr = feature_table(x_real, c_real, attrs)
    _, hf = feature_table(x_fake, c_real, attrs)
    rows = {"generated": drivers(hr, hf, names, args.seed)}
    if args.floor:
        src = open_source(args.floor)
        x2, c2 = read_all(src)
        src.close()
        _, h2 = feature_table(x2[: len(x_real)], c2[: len(x_real)], attrs)
        rows["floor"] = drivers(hr, h2, names, args.seed)
    for label, res in rows.items():
        print(f"{label}: AUC all features {res['all']['auc']:.3f}")
        for fam, r in res.items():
            if fam != "all":
                print(f"  {fam:9s} ({r['n']:2d} columns)  AUC without {r['without']:.3f}   alone (+ log10 E) {r['alone']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
