"""Physics nonsense in, nothing out: physical bounds of conditions, physics checks of data, named checkpoints.

Each domain declares its conditions' physical bounds (calo: energy > 0; nbody: Omega_m, sigma8 > 0,
z > -1; micro: porosity and fractions in [0, 1], fractions summing to at most 1). ``generate``
refuses conditions outside them even with ``--allow-extrapolation``; ``data info`` lists data
outside them (and all-zero showers, deposits above the incident energy, constant conditions);
``train`` refuses such data before any network sees it. The rows of ``docs/reliability.md`` are
written by this module (see ``reliability_table``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from reliability_table import Recorder

from physgan.cli import main
from physgan.domains.base import get_domain
from physgan.domains.checks import Bound, check_requested_conditions, check_training_data
from physgan.errors import ConfigError, DataError

CAT_PHYS = "physics: bounds and checks"
TINY = ["--set=model.width=16", "--set=model.depth=1", "--set=model.z_dim=4", "--set=model.embed_dim=4",
        "--set=train.batch_size=16", "--set=train.val_every=0", "--quiet"]


@pytest.fixture(scope="module")
def rec():
    recorder = Recorder("test_reliability_physics")
    yield recorder
    recorder.write()


@pytest.fixture(scope="module")
def calo(tmp_path_factory) -> Path:
    """A small GFlash CaloGAN file (64 showers, 1-100 GeV) and a 2-step run trained on it."""
    d = tmp_path_factory.mktemp("calo")
    assert main(["data", "make", "calo", "--n", "64", "--out", str(d / "c.h5")]) == 0
    assert main(["train", "calo", "--data", str(d / "c.h5"), "--run", str(d / "run"), "--steps", "2", *TINY]) == 0
    return d


def _variant(calo: Path, name: str, edit) -> Path:
    path = calo / name
    shutil.copy(calo / "c.h5", path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _energies(values):
    def edit(f):
        e = f["energy"][:]
        for i, v in values.items():
            e[i] = v
        f["energy"][:] = e

    return edit


def _zero_cells(f):
    for k in ("layer_0", "layer_1", "layer_2", "overflow"):
        f[k][:] = 0


def _cells_x1000(f):
    for k in ("layer_0", "layer_1", "layer_2", "overflow"):
        f[k][:] = f[k][:] * 1000.0  # GeV-scale numbers stored as MeV: deposits ~1000x the incident energy


@pytest.mark.slow
def test_generate_refuses_unphysical_conditions_even_when_extrapolating(calo, rec, capsys, tmp_path):
    with rec.case(CAT_PHYS, "`generate --cond energy=-5 | 0 | -5:10 --allow-extrapolation` (calo) -> exit 2 naming the "
                  "physical domain, no file; energy above the training range still extrapolates") as row:
        for cond in ("energy=-5", "energy=0", "energy=-5:10"):
            out = tmp_path / "g.h5"
            assert main(["generate", str(calo / "run"), "--n", "8", "--cond", cond, "--allow-extrapolation", "--out", str(out)]) == 2
            err = capsys.readouterr().err
            assert "physical domain (0, inf)" in err and "incident energy is positive" in err, err
            assert not out.exists() and not list(tmp_path.iterdir())
            row.cases += 1
        with pytest.warns(UserWarning, match="extrapolating"):
            assert main(["generate", str(calo / "run"), "--n", "8", "--cond", "energy=150", "--allow-extrapolation", "--quiet",
                         "--out", str(tmp_path / "hi.h5")]) == 0
        assert main(["data", "info", str(tmp_path / "hi.h5")]) in (0, 1)  # readable; an untrained model may deposit anything
        row.cases += 1


def test_each_domain_declares_its_physical_bounds(rec):
    with rec.case(CAT_PHYS, "physical bounds declared by the domains: calo energy <= 0, nbody sigma8 <= 0 / Omega_m <= 0 / "
                  "z <= -1, micro porosity outside [0, 1], phase fractions summing above 1 -> ConfigError") as row:
        bad = [("calo", ["energy"], [[0.0]]), ("calo", ["energy"], [[-5.0]]),
               ("nbody", ["omega_m", "sigma8"], [[0.3, 0.0]]), ("nbody", ["omega_m", "sigma8"], [[-0.1, 0.8]]),
               ("nbody", ["omega_m", "sigma8", "redshift"], [[0.3, 0.8, -1.0]]),
               ("micro", ["porosity", "blobiness"], [[1.2, 1.0]]), ("micro", ["porosity", "radius"], [[0.5, 0.0]]),
               ("micro", ["fraction_0", "fraction_1"], [[0.7, 0.5]]), ("micro", ["fraction_0", "fraction_1"], [[-0.1, 0.5]])]
        for dom, names, c in bad:
            with pytest.raises(ConfigError, match="physical domain|sum to more than 1"):
                check_requested_conditions(get_domain(dom), names, np.array(c))
            row.cases += 1
        good = [("calo", ["energy"], [[1e-3], [1e6]]), ("nbody", ["omega_m", "sigma8", "redshift"], [[0.3, 0.8, 0.0], [1.5, 3.0, 99.0]]),
                ("micro", ["porosity", "blobiness"], [[0.0, 0.1], [1.0, 5.0]]), ("micro", ["fraction_0", "fraction_1"], [[0.3, 0.7]]),
                ("array", ["energy"], [[-5.0]])]
        for dom, names, c in good:
            check_requested_conditions(get_domain(dom), names, np.array(c))
            row.cases += 1
        b = Bound(0.0, 1.0, hi_open=True)
        assert b.describe() == "[0, 1)" and b.outside(np.array([-0.1, 0.0, 0.5, 1.0, np.nan])).tolist() == [True, False, False, True, True]


@pytest.mark.slow
def test_data_info_and_train_apply_the_physics_checks(calo, rec, capsys, tmp_path):
    cases = [
        ("energy 0 and -5 GeV", _energies({3: 0.0, 7: -5.0}), "physical domain (0, inf)", "first at index 3"),
        ("all-zero showers", _zero_cells, "all-zero showers", "64 samples"),
        ("deposits ~1000x the incident energy (units)", _cells_x1000, "check the units", "64 samples"),
    ]
    with rec.case(CAT_PHYS, "`data info` on calo files with incident energy 0 / -5 GeV, all-zero showers, deposits ~1000x "
                  "the incident energy -> listed as problems (exit 1); `train` on them -> exit 2 before training") as row:
        for i, (label, edit, needle, where) in enumerate(cases):
            path = _variant(calo, f"bad{i}.h5", edit)
            assert main(["data", "info", str(path)]) == 1, label
            out = capsys.readouterr().out
            problems = out.split("problems:")[1]
            assert needle in problems and where in problems, (label, out)
            run = tmp_path / f"run{i}"
            assert main(["train", "calo", "--data", str(path), "--run", str(run), "--steps", "2", *TINY]) == 2, label
            err = capsys.readouterr().err
            assert err.startswith("physgan: error:") and "cannot train on this data" in err and needle in err, (label, err)
            assert not run.exists()
            row.cases += 2
    with rec.case(CAT_PHYS, "`data info` on a file whose condition is constant -> a warning (exit 0); a few empty showers "
                  "-> a warning") as row:
        path = _variant(calo, "const.h5", _energies({i: 50.0 for i in range(64)}))
        assert main(["data", "info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "problems:    none" in out and "condition 'energy' is constant (50) in all 64 samples" in out, out
        row.cases += 1

        def some_empty(f):
            for k in ("layer_0", "layer_1", "layer_2", "overflow"):
                a = f[k][:]
                a[5] = 0
                f[k][:] = a

        path = _variant(calo, "someempty.h5", some_empty)
        assert main(["data", "info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "warnings:" in out and "all-zero showers (nothing deposited): 1 samples, first at index 5" in out, out
        row.cases += 1


def test_real_geant4_file_passes_the_physics_checks(shared_data, rec, capsys):
    with rec.case(CAT_PHYS, "the real Geant4 CaloGAN file (51 showers) -> no physics problem (no false alarm)") as row:
        assert main(["data", "info", str(shared_data / "calo" / "geant4_eplus_calogan_51.h5")]) == 0
        out = capsys.readouterr().out
        assert "problems:    none" in out and "warnings:" not in out, out
        row.cases += 1


@pytest.mark.slow
def test_named_checkpoint_that_does_not_exist(calo, rec, capsys, tmp_path):
    with rec.case(CAT_PHYS, "`generate --checkpoint nonexist` -> exit 2 listing the checkpoints that exist (no silent last.pt)") as row:
        out = tmp_path / "g.h5"
        assert main(["generate", str(calo / "run"), "--n", "4", "--checkpoint", "nonexist", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "no checkpoint 'nonexist'" in err and "last.pt" in err and not out.exists(), err
        row.cases += 1
        for name in ("last", "last.pt", "step-0000002"):
            assert main(["generate", str(calo / "run"), "--n", "4", "--checkpoint", name, "--out", str(out), "--overwrite", "--quiet"]) == 0
            row.cases += 1
        assert main(["generate", str(calo / "run"), "--n", "4", "--checkpoint", "../../c.h5", "--out", str(out), "--overwrite"]) == 2
        assert "no checkpoint '../../c.h5'" in capsys.readouterr().err
        row.cases += 1


def test_training_check_scans_in_blocks_and_judges_the_whole_file(rec):
    with rec.case(CAT_PHYS, "training-time check in blocks: empty showers filling one block are a warning, every shower "
                  "empty is fatal; energy <= 0 in a later block is found with its index") as row:
        calo_dom = get_domain("calo")
        attrs = {"energy_units": "GeV", "geometry": "calogan"}
        x = np.ones((6, 507), np.float32)
        c = np.full((6, 1), 10.0, np.float32)
        x[:2] = 0
        warnings = check_training_data(calo_dom, x, c, ["energy"], attrs, "f.h5", block=2)
        assert any("all-zero showers (nothing deposited): 2 samples, first at index 0" in w for w in warnings), warnings
        with pytest.raises(DataError, match="all-zero showers"):
            check_training_data(calo_dom, np.zeros_like(x), c, ["energy"], attrs, "f.h5", block=2)
        c[5] = -1.0
        with pytest.raises(DataError, match="f.h5: cannot train on this data: condition 'energy'.*1 samples, first at index 5"):
            check_training_data(calo_dom, x, c, ["energy"], attrs, "f.h5", block=2)
        row.cases += 3
