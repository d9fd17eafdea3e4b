"""bench.calo_auc_drivers: the family that differs is the one the classifier uses."""

from __future__ import annotations

import numpy as np
import pytest

from bench.calo_auc_drivers import drivers


@pytest.mark.slow  # 13 classifier trainings, ~9 s of CPU
def test_the_shifted_family_drives_the_auc():
    rng = np.random.default_rng(0)
    names = ["e_tot_over_e_inc", "ec_x_0", "width_x_0", "width_y_0", "sparsity_0", "shower_depth", "e_ratio", "log10_energy"]
    real = rng.normal(size=(400, len(names)))
    fake = rng.normal(size=(400, len(names)))
    fake[:, 2:4] += 2.0  # only the widths differ
    res = drivers(real, fake, names, seed=0)
    assert res["all"]["auc"] > 0.8
    assert res["widths"]["n"] == 2 and res["widths"]["alone"] > 0.8 and res["widths"]["without"] < 0.65
    for fam in ("energies", "centres", "sparsity", "depth", "e_ratio"):
        assert res[fam]["alone"] < 0.65 and res[fam]["without"] > 0.8
