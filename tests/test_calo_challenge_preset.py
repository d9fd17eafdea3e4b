"""The ``calochallenge`` preset: dataset 2's measured recipe, trained and sampled end to end through the CLI."""

from __future__ import annotations

import numpy as np
import torch

from physgan.cli import main
from physgan.domains.calo import CHALLENGE_G_OPTIONS, PRESETS
from physgan.domains.calo.geometry import calochallenge_geometry
from physgan.domains.calo.model import SHIFT_VAR_BINS
from physgan.domains.calo.transform import unpack_hit_patterns
from physgan.run import load_run


def test_calochallenge_preset_trains_on_dataset_2_with_its_recipe_and_samples_showers(tmp_path):
    data, run_dir = tmp_path / "ds2.h5", tmp_path / "run"
    assert main(["data", "make", "calo", "--geometry", "calochallenge-ds2", "--particle", "e-", "--energy", "1:1000",
                 "--n", "64", "--seed", "0", "--out", str(data)]) == 0
    assert main(["train", "calo", "--data", str(data), "--run", str(run_dir), "--preset", "calochallenge",
                 "--steps", "2", "--set=train.batch_size=16", "--set=train.val_every=0", "--quiet"]) == 0
    run = load_run(run_dir, "last", device="cpu")
    options = run.config.model.options
    for key, value in CHALLENGE_G_OPTIONS.items():  # the recipe reached the trained model
        assert options[key] == value, key
    assert PRESETS["calochallenge"]["train"]["steps"] == 4000 and run.step == 2
    ds2 = calochallenge_geometry("ds2")
    # trained on the showers as the readout sees them, and the hit level's spread learned from the training forwards
    assert run.transform.stats["readout_threshold_mev"] == ds2.voxel_threshold_mev
    var = run.G.occupancy_shift_var.numpy()
    assert var.shape == (run.G.n_groups, SHIFT_VAR_BINS) and np.isfinite(var).all() and (var > 0).all()
    # the saved (EMA) generator's tables are its own shifts' (the loop calibrated it before saving), not the inherited
    # ones of the training generator
    run.G.calibrate_statistics()
    np.testing.assert_allclose(run.G.occupancy_shift_var.numpy(), var, rtol=1e-5, atol=1e-7)
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert not np.allclose(state["G"]["occupancy_shift_var"].numpy(), var)
    x = run.sample(64, {"energy": 5.0e4}, seed=0)
    assert x.shape == (64, ds2.n_features) and np.isfinite(x).all() and (x >= 0).all()
    # empty_draw_patterns: which layers are empty is a training shower's pattern; share_cap: no layer holds more of the
    # shower than the largest share the data hold at any energy (the cap acts on the groups' energies before the cells'
    # readout threshold, which can move a share a little: 5 % slack)
    layers = np.stack([x[:, ds2.layer_slice(i)].sum(axis=1) for i in range(ds2.n_layers)], axis=1)
    bank = {tuple(row) for row in unpack_hit_patterns(run.transform.stats["group_hit_pattern_bits"], ds2.n_layers).tolist()}
    assert {tuple(row) for row in (layers > 0).tolist()} <= bank
    cap = np.exp(np.max(run.transform.stats["group_share_max_log"], axis=0))
    assert (layers / layers.sum(axis=1, keepdims=True) <= cap * 1.05 + 1e-6).all()
    totals = x.sum(axis=1)
    assert (totals > 0).all() and (totals < 1.5 * 5.0e4).all()  # a shower of a 50 GeV electron, in MeV
    again = run.sample(64, {"energy": 5.0e4}, seed=0)
    np.testing.assert_array_equal(x, again)  # the seed fixes the showers
