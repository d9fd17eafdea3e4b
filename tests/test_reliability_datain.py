"""Getting data in: foreign files point to ``data import``, plain particle arrays import, inferred
attributes say so, an unknown voxel size is never made up, and long commands show progress from the start.

The rows of ``docs/reliability.md`` are written by this module (see ``reliability_table``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from reliability_table import Recorder

from physgan.cli import main
from physgan.config import resolve_config
from physgan.io.hdf5 import open_source, read_all, write_samples
from physgan.train.loop import train
from physgan.train.stats import Progress

CAT_IN = "getting data in"
NBODY = ["--cond", "omega_m=0.3", "--cond", "sigma8=0.8"]


@pytest.fixture(scope="module")
def rec():
    recorder = Recorder("test_reliability_datain")
    yield recorder
    recorder.write()


@pytest.fixture(scope="module")
def positions(tmp_path_factory) -> tuple[Path, np.ndarray]:
    d = tmp_path_factory.mktemp("pos")
    rng = np.random.default_rng(0)
    pos = np.concatenate([rng.uniform(0, 16, (3000, 3)), rng.normal(8, 0.5, (1000, 3)) % 16])  # a uniform box with a clump
    return d, pos


def test_foreign_files_point_to_data_import(positions, rec, capsys):
    d, pos = positions
    tifffile = pytest.importorskip("tifffile")
    with rec.case(CAT_IN, "`data info` on a .tif, a .zip of a TIFF, a .npy -> exit 2 naming `physgan data import <domain>`") as row:
        tif = d / "vol.tif"
        tifffile.imwrite(tif, (np.arange(8 * 8 * 8).reshape(8, 8, 8) % 2).astype(np.uint8))
        zpath = d / "vol.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.write(tif, "vol.tif")
        npy = d / "pos.npy"
        np.save(npy, pos.astype(np.float32))
        for path, command in ((tif, "physgan data import micro"), (zpath, "physgan data import micro"), (npy, "physgan data import nbody")):
            assert main(["data", "info", str(path)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("physgan: error:") and "is not an HDF5 file" in err and command in err, err
            row.cases += 1


def test_plain_position_arrays_import_like_snapshots(positions, rec, capsys):
    d, pos = positions
    with rec.case(CAT_IN, "N-body particle positions as .npy / .npz / text + `--box` -> the same CIC grid (mean density 1); "
                  "no --box, positions outside the box, a (3, N) array -> exit 2") as row:
        np.save(d / "p.npy", pos)
        np.savez(d / "p.npz", pos=pos, ids=np.arange(len(pos)))
        np.savetxt(d / "p.txt", pos, header="x y z [Mpc/h]")
        grids = []
        for name in ("p.npy", "p.npz", "p.txt"):
            out = d / f"{name}.h5"
            assert main(["data", "import", "nbody", str(d / name), "--box", "16", "--grid", "8", *NBODY, "--out", str(out)]) == 0
            x, c = read_all(open_source(out))
            assert x.shape == (1, 8, 8, 8) and np.allclose(c, [[0.3, 0.8]])
            assert abs(float(x.mean()) - 1.0) < 1e-5 and x.max() > 5  # the clump stands out of the mean density
            grids.append(x)
            row.cases += 1
        assert np.allclose(grids[0], grids[1], atol=1e-5) and np.allclose(grids[0], grids[2], atol=1e-4)
        for extra, needle in ((["--grid", "8"], "--box"), (["--box", "8"], "wrong --box")):
            assert main(["data", "import", "nbody", str(d / "p.npy"), *extra, *NBODY, "--out", str(d / "bad.h5")]) == 2
            assert needle in capsys.readouterr().err
            row.cases += 1
        np.save(d / "t.npy", pos.T)
        assert main(["data", "import", "nbody", str(d / "t.npy"), "--box", "16", *NBODY, "--out", str(d / "bad.h5")]) == 2
        assert "transposed?" in capsys.readouterr().err and not (d / "bad.h5").exists()
        row.cases += 1


def test_real_abacus_positions_import(shared_data, tmp_path, rec):
    with rec.case(CAT_IN, "the real AbacusSummit 64^3-particle positions (.npy, box 32 Mpc/h) -> a 16^3 CIC grid, "
                  "mean 1, strongly clustered") as row:
        out = tmp_path / "abacus.h5"
        src = shared_data / "nbody" / "abacus_mini_N64_L32_z0_positions.npy"
        assert main(["data", "import", "nbody", str(src), "--box", "32", "--grid", "16", "--cond", "omega_m=0.3152",
                     "--cond", "sigma8=0.81", "--out", str(out)]) == 0
        x, _ = read_all(open_source(out))
        assert abs(float(x.mean()) - 1.0) < 1e-5 and float(x.std()) > 1.0  # non-linear: density contrast above 1
        row.cases += 1


def test_inferred_attributes_are_labelled(tmp_path, rec, capsys):
    with rec.case(CAT_IN, "`data info` on a CaloGAN file with no attributes (as the Geant4 file) -> the layout's assumptions "
                  "are listed as inferred, not as attributes") as row:
        path = tmp_path / "bare.h5"
        rng = np.random.default_rng(0)
        with h5py.File(path, "w") as f:
            f["energy"] = rng.uniform(10, 50, (8, 1))
            for k, shape in (("layer_0", (3, 96)), ("layer_1", (12, 12)), ("layer_2", (12, 6)), ("overflow", (3,))):
                f[k] = rng.uniform(0, 1, (8, *shape))
        assert main(["data", "info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "\nattributes:" not in out, out
        inferred = out.split("inferred (not stored in the file")[1].split("problems:")[0]
        assert "energy_units = GeV" in inferred and "geometry" in inferred, out
        row.cases += 1


def test_micro_voxel_size_is_never_made_up(tmp_path, rec):
    tifffile = pytest.importorskip("tifffile")
    with rec.case(CAT_IN, "`data import micro` without --voxel-size -> voxel_size_m recorded as 'unknown' (not 1 m); "
                  "with it -> the value; --voxel-size 0 -> exit 2") as row:
        tif = tmp_path / "v.tif"
        tifffile.imwrite(tif, (np.random.default_rng(0).uniform(size=(16, 16, 16)) > 0.5).astype(np.uint8))
        base = ["data", "import", "micro", str(tif), "--crop", "8", "--stride", "8"]
        assert main([*base, "--out", str(tmp_path / "a.h5")]) == 0
        assert open_source(tmp_path / "a.h5").header.attrs["voxel_size_m"] == "unknown"
        assert main([*base, "--voxel-size", "2e-6", "--out", str(tmp_path / "b.h5")]) == 0
        assert float(open_source(tmp_path / "b.h5").header.attrs["voxel_size_m"]) == pytest.approx(2e-6)
        assert main([*base, "--voxel-size", "0", "--out", str(tmp_path / "c.h5")]) == 2
        row.cases += 3


def test_progress_from_the_first_step(tmp_path, rec, capsys):
    with rec.case(CAT_IN, "training shows progress after the first step and then by the clock (not only every log_every "
                  "steps); `evaluate` prints its stages") as row:
        prog = Progress(100, heartbeat_s=3600)
        prog.start()
        for step in (1, 2, 3):
            prog.heartbeat(step)
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("step 1/100 (") and "s/step" in lines[0], lines
        prog.heartbeat_s = 0.0
        prog.heartbeat(4)
        assert capsys.readouterr().err.startswith("step 4/100")
        row.cases += 1
        rng = np.random.default_rng(0)
        data = tmp_path / "d.h5"
        write_samples(data, rng.normal(size=(200, 4)).astype(np.float32), rng.uniform(1, 2, (200, 1)), ["energy"], "array")
        cfg = resolve_config("array", overrides=[f"data.path={data}", "train.steps=3", "train.log_every=1000", "train.val_every=0",
                                                 "model.width=8", "model.depth=1", "train.batch_size=8", "train.n_critic=1"])
        train(cfg, tmp_path / "run", progress=True)
        err = capsys.readouterr().err
        assert "step 1/3 (" in err, err
        row.cases += 1
        assert main(["generate", str(tmp_path / "run"), "--n", "200", "--out", str(tmp_path / "f.h5"), "--quiet"]) == 0
        assert main(["evaluate", "--real", str(data), "--fake", str(tmp_path / "f.h5"), "--n-boot", "2"]) == 0
        stages = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("evaluate: ")]
        assert len(stages) >= 5 and stages[0].startswith("evaluate: load: "), stages  # after loading: a bad file stays one error line
        assert any(s.startswith("evaluate: features") for s in stages), stages
        assert any("classifier_low" in s for s in stages), stages
        row.cases += 1
