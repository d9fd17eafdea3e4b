"""Property-based robustness: random malformed HDF5 files and configs through every entry point.

Every entry point (``open_source`` + ``read_all``, ``physgan data info``,
``physgan train array``, ``physgan evaluate``, ``physgan generate --cond``)
must either work or fail with a :class:`~physgan.errors.PhysganError` (CLI: exit
code 2 and a message naming the file), never with another exception. The rows
of ``docs/reliability.md`` are written by this module (see ``reliability_table``).
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_table import Recorder

from physgan.cli import main
from physgan.errors import DataError, PhysganError
from physgan.io.hdf5 import open_source, read_all, write_samples

CAT_DATA, CAT_CFG, CAT_GEN = "bad input: HDF5", "bad input: config/CLI", "bad input: generate"
FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
TINY = ["model.width=8", "model.depth=1", "model.z_dim=4", "model.embed_dim=4", "train.batch_size=4", "train.n_critic=1"]
TINY_SETS = [f"--set={o}" for o in TINY] + ["--set=train.val_every=0", "--set=data.val_size=8"]

# top-level names of every registered layout, so detection and every layout's checks are exercised
NAMES = ["samples", "conditions", "energy", "layer_0", "layer_1", "layer_2", "overflow", "incident_energies", "showers", "labels"]
EVIL = ["../../etc/x", "$(rm -rf /)", "; touch PWNED", "`touch PWNED`", "C:\\x", "\x00nul", "é ünïcode"]
DTYPES = ["f4", "f8", "f2", "i2", "u1", "i8", "bool", "c8", "S5", "vlen-str", "compound", "object-ref"]


@pytest.fixture(scope="module")
def rec():
    recorder = Recorder("test_reliability_inputs")
    yield recorder
    recorder.write()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ---- random malformed files ------------------------------------------------------------------
@st.composite
def dataset_spec(draw, n_max=12):
    n = draw(st.sampled_from([0, 1, 2, 5, n_max]))
    extra = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 12, 96]), min_size=0, max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    fill = draw(st.sampled_from(["normal", "nan", "inf", "-inf", "negative", "zeros", "huge"]))
    return {"shape": (n, *extra), "dtype": dtype, "fill": fill, "group": draw(st.booleans()) and draw(st.booleans())}


@st.composite
def h5_spec(draw):
    kind = draw(st.sampled_from(["structure"] * 6 + ["garbage", "hdf5-signature-garbage", "empty", "truncated", "corrupted"]))
    spec = {"kind": kind, "seed": draw(st.integers(0, 2**16))}
    if kind == "structure":
        names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=4, unique=True))
        spec["datasets"] = {nm: draw(dataset_spec()) for nm in names}
        spec["conditions"] = draw(
            st.one_of(
                st.none(),
                st.lists(st.tuples(st.sampled_from(["energy", "angle", "..", "a b", *EVIL[:4]]), dataset_spec()), max_size=3),
            )
        )
        spec["order"] = draw(st.one_of(st.none(), st.sampled_from(["energy", "energy,missing", "", ",,"])))
        spec["attrs"] = draw(
            st.dictionaries(
                st.sampled_from(["physgan_layout", "domain", "geometry", "run", "data", "non_negative", "units", "complete"]),
                st.one_of(st.sampled_from(["array", "calogan", "calo", "micro", *EVIL]), st.integers(-3, 3), st.booleans()),
                max_size=3,
            )
        )
    return spec


def _values(ds: dict, rng: np.random.Generator) -> np.ndarray:
    shape, dtype, fill = ds["shape"], ds["dtype"], ds["fill"]
    base = rng.normal(size=shape) + 1.0
    if fill == "nan" and base.size:
        base.flat[rng.integers(base.size)] = np.nan
    elif fill in ("inf", "-inf") and base.size:
        base.flat[rng.integers(base.size)] = float(fill)
    elif fill == "negative":
        base = -np.abs(base)
    elif fill == "zeros":
        base = np.zeros(shape)
    elif fill == "huge":
        base = base * 1e300
    if dtype == "bool":
        return base > 1
    if dtype == "c8":
        return base.astype(np.complex64)
    if dtype == "S5":
        return np.full(shape, b"abc", dtype="S5")
    if dtype in ("i2", "u1", "i8"):
        return np.nan_to_num(base, nan=0, posinf=0, neginf=0).clip(-100, 100).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return base.astype(dtype)


def _put(g: h5py.Group, name: str, ds: dict, rng: np.random.Generator) -> None:
    if ds["group"]:
        g.create_group(name).create_dataset("inner", data=np.ones(3))
        return
    if ds["dtype"] == "vlen-str":
        g.create_dataset(name, shape=ds["shape"][:1], dtype=h5py.string_dtype())[...] = "x"
    elif ds["dtype"] == "compound":
        g.create_dataset(name, shape=ds["shape"][:1], dtype=np.dtype([("a", "f4"), ("b", "i4")]))
    elif ds["dtype"] == "object-ref":
        g.create_dataset(name, shape=ds["shape"][:1], dtype=h5py.ref_dtype)
    else:
        g.create_dataset(name, data=_values(ds, rng))


def _valid_bytes(work: Path, rows: int = 300) -> bytes:
    p = work / f"valid-{rows}.h5"
    if not p.exists():
        rng = np.random.default_rng(0)
        write_samples(p, rng.normal(size=(rows, 6)).astype(np.float32), rng.uniform(1, 2, (rows, 1)), ["energy"], "array")
    return p.read_bytes()


def build_file(spec: dict, work: Path) -> Path:
    """Write the file a spec describes (under a fresh name) and return its path."""
    rng = np.random.default_rng(spec["seed"])
    path = work / f"f-{uuid.uuid4().hex[:10]}.h5"
    kind = spec["kind"]
    if kind == "garbage":
        path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes())
    elif kind == "hdf5-signature-garbage":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = _valid_bytes(work)
        path.write_bytes(data[: int(rng.integers(1, len(data)))])
    elif kind == "corrupted":
        data = bytearray(_valid_bytes(work))
        for _ in range(int(rng.integers(1, 20))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        path.write_bytes(bytes(data))
    else:
        with h5py.File(path, "w") as f:
            for name, ds in spec["datasets"].items():
                if name == "conditions" and spec["conditions"] is not None:
                    continue
                _put(f, name, ds, rng)
            if spec["conditions"] is not None and "conditions" not in f:
                g = f.create_group("conditions")
                for cname, ds in spec["conditions"]:
                    cname = cname.replace("/", "_").replace("\x00", "") or "empty"
                    if cname in (".", "..") or cname in g:
                        continue
                    _put(g, cname, ds, rng)
                if spec["order"] is not None:
                    g.attrs["order"] = spec["order"]
            for k, v in spec["attrs"].items():
                f.attrs[k] = v.replace("\x00", "") if isinstance(v, str) else v
    return path


def _expect_ours(err: BaseException, path: Path) -> None:
    """Our error type, and a data error names the file."""
    assert isinstance(err, PhysganError), f"raw {type(err).__name__}: {err}"
    if isinstance(err, DataError):
        assert path.name in str(err), str(err)


def _cli(argv: list[str], capsys, path: Path | None, ok=(0,)) -> int:
    code = main(argv)  # any exception other than PhysganError escapes main and fails the test
    err = capsys.readouterr().err
    assert code in (*ok, 2), f"exit code {code}: {err}"
    if code == 2:
        assert err.startswith("physgan: error:") and "Traceback" not in err, err
        if path is not None and "config" not in err:
            assert path.name in err or str(path) in err, err
    return code


# ---- the properties ----------------------------------------------------------------------
@settings(FUZZ, max_examples=100)
@given(spec=h5_spec())
def test_fuzz_open_read_and_info(spec, work, rec, capsys):
    """open_source + read_all and ``physgan data info`` on random malformed files."""
    with rec.case(CAT_DATA, "random malformed files (structure, dtypes incl. string/compound/ref, NaN/Inf, "
                  "negative, empty, truncated, corrupted bytes, garbage, groups for datasets) -> open_source + read_all") as row:
        path = build_file(spec, work)
        try:
            x, c = read_all(open_source(path))
            assert np.isfinite(x).all() and np.isfinite(c).all() and len(x) == len(c) > 0
        except Exception as err:  # noqa: BLE001 - the property is about the exception type
            _expect_ours(err, path)
        row.cases += 1
    with rec.case(CAT_DATA, "the same random files -> `physgan data info` (exit 0/1 = listed problems, 2 = error)") as row:
        _cli(["data", "info", str(path)], capsys, path, ok=(0, 1))
        row.cases += 1


@settings(FUZZ, max_examples=25)
@given(spec=h5_spec())
def test_fuzz_train_cli(spec, work, tmp_path_factory, rec, capsys):
    """``physgan train array`` (1 tiny step) on random malformed files: works or exit 2, nothing raw."""
    with rec.case(CAT_DATA, "random malformed files -> `physgan train array` (1 tiny step)") as row:
        path = build_file(spec, work)
        run = tmp_path_factory.mktemp("run")
        code = _cli(["train", "array", "--data", str(path), "--run", str(run / "r"), "--steps", "1", "--quiet", *TINY_SETS], capsys, path)
        if code == 2:  # refused before training: the run directory this call created is gone again
            assert not (run / "r").exists()
        row.cases += 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(120, 4))).astype(np.float32)
    c = rng.uniform(1.0, 2.0, (120, 1)).astype(np.float32)
    write_samples(d / "real.h5", x, c, ["energy"], "array", attrs={"domain": "array"})
    assert main(["train", "array", "--data", str(d / "real.h5"), "--run", str(d / "run"), "--steps", "2", "--quiet", *TINY_SETS]) == 0
    return d


@settings(FUZZ, max_examples=12)
@given(spec=h5_spec())
def test_fuzz_evaluate_cli(spec, work, trained, rec, capsys):
    """``physgan evaluate`` with a random malformed file as --fake: a report or exit 2."""
    with rec.case(CAT_DATA, "random malformed files as --fake -> `physgan evaluate` (n-boot 2)") as row:
        path = build_file(spec, work)
        _cli(["evaluate", "--real", str(trained / "real.h5"), "--fake", str(path), "--n-boot", "2", "--device", "cpu"],
             capsys, path, ok=(0, 1))
        row.cases += 1


COND_TEXT = st.one_of(
    st.text(max_size=12),
    st.builds(lambda n, v: f"{n}={v}", st.sampled_from(["energy", "Energy", "", "angle", *EVIL]),
              st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6),
                        st.tuples(st.floats(-10, 10), st.floats(-10, 10)).map(lambda t: f"{t[0]}:{t[1]}"),
                        st.tuples(st.floats(-10, 10), st.floats(-10, 10)).map(lambda t: f"{t[0]}:{t[1]}:log"))),
)


@settings(FUZZ, max_examples=40)
@given(conds=st.lists(COND_TEXT, max_size=3), n=st.sampled_from([-1, 0, 1, 7]), extrapolate=st.booleans())
def test_fuzz_generate_conditions(conds, n, extrapolate, trained, rec, capsys):
    """``physgan generate --cond`` with random text: exit 0 (file complete) or 2 (no file)."""
    with rec.case(CAT_GEN, "random --cond text/values (NaN, Inf, reversed/log ranges, unknown names, out of range), "
                  "--n <= 0, with/without --allow-extrapolation -> `physgan generate`") as row:
        out = trained / f"g-{uuid.uuid4().hex[:8]}.h5"
        argv = ["generate", str(trained / "run"), "--n", str(n), "--out", str(out), "--quiet", "--device", "cpu"]
        argv += [f"--cond={c}" for c in conds] + (["--allow-extrapolation"] if extrapolate else [])
        with warnings.catch_warnings():  # the extrapolation warning is the documented behaviour
            warnings.simplefilter("ignore")
            code = _cli(argv, capsys, None)
        if code == 0:
            x, c = read_all(open_source(out))
            assert len(x) == n and np.isfinite(x).all() and np.isfinite(c).all()
        else:
            assert not out.exists()
        assert not [p for p in trained.iterdir() if ".tmp-" in p.name]
        row.cases += 1


def test_out_of_range_refused_and_extrapolation_warns(trained, rec, capsys):
    with rec.case(CAT_GEN, "condition outside the trained range: refused (exit 2, no file); --allow-extrapolation warns") as row:
        out = trained / "ext.h5"
        base = ["generate", str(trained / "run"), "--n", "5", "--out", str(out), "--quiet", "--cond", "energy=50"]
        assert main(base) == 2 and "outside the training range" in capsys.readouterr().err and not out.exists()
        with pytest.warns(UserWarning, match="extrapolating"):
            assert main([*base, "--allow-extrapolation"]) == 0
        assert out.exists()
        row.cases += 2


# ---- config / CLI ------------------------------------------------------------------------
BAD_CONFIGS = [
    ("unknown key", ["--set", "train.stpes=3"], "did you mean 'steps'"),
    ("unknown section", ["--set", "trian.steps=3"], "unknown config section"),
    ("wrong type", ["--set", "train.steps=many"], "must be an integer"),
    ("wrong type (bool)", ["--set", "train.deterministic=maybe"], "true or false"),
    ("negative lr", ["--set", "train.lr_g=-1e-4"], "learning rates must be positive"),
    ("n_critic = 0", ["--set", "train.n_critic=0"], "n_critic"),
    ("zero batch", ["--batch-size", "0"], "batch_size"),
    ("bad betas", ["--set", "train.betas=[0.5]"], "betas"),
    ("unknown loss", ["--loss", "hinge"], "unknown"),
    ("unknown recipe", ["--recipe", "nope"], "unknown recipe"),
    ("unknown preset", ["--preset", "nope"], "no preset"),
    ("cuda without GPU", ["--device", "cuda:7"], "cuda"),
    ("unknown layout", ["--layout", "nope"], "unknown layout"),
    ("val_fraction = 1", ["--set", "data.val_fraction=1"], "val_fraction"),
]


@pytest.mark.parametrize("label,args,needle", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_values(label, args, needle, trained, rec, capsys, tmp_path):
    with rec.case(CAT_CFG, "unknown keys/sections, wrong types, impossible values (negative lr, n_critic = 0, ...), "
                  "unknown loss/recipe/preset/layout/device -> `physgan train` exit 2") as row:
        if label == "cuda without GPU" and __import__("torch").cuda.is_available():
            pytest.skip("a GPU is present")
        argv = ["train", "array", "--data", str(trained / "real.h5"), "--run", str(tmp_path / "r"), "--steps", "1", "--quiet", *args]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("physgan: error:") and needle in err, err
        assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()
        row.cases += 1


def test_bad_config_file(trained, rec, capsys, tmp_path):
    with rec.case(CAT_CFG, "config file: not YAML, not a mapping, a wrong type inside, missing -> exit 2 naming the file or key") as row:
        for text in ("train: [1, 2", "- a\n- b\n", "model: {width: many}\n"):
            cfg = tmp_path / f"c{row.cases}.yaml"
            cfg.write_text(text)
            argv = ["train", "array", "--data", str(trained / "real.h5"), "--run", str(tmp_path / "r"), "--config", str(cfg), "--quiet"]
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith("physgan: error:") and (cfg.name in err or "model.width" in err), err
            row.cases += 1
        assert main(["train", "array", "--data", str(trained / "real.h5"), "--run", str(tmp_path / "r"), "--config",
                     str(tmp_path / "missing.yaml")]) == 2
        assert "missing.yaml" in capsys.readouterr().err
        row.cases += 1


def test_config_file_section_not_a_mapping(trained, rec, capsys, tmp_path):
    with rec.case(CAT_CFG, "config file whose 'train' section is a number (train: 5) -> exit 2") as row:
        cfg = tmp_path / "c.yaml"
        cfg.write_text("train: 5\n")
        row.cases += 1
        assert main(["train", "array", "--data", str(trained / "real.h5"), "--run", str(tmp_path / "r"), "--config", str(cfg)]) == 2
        assert "must be a mapping" in capsys.readouterr().err


def test_resume_run_of_a_different_config(trained, rec, capsys):
    with rec.case(CAT_CFG, "--resume auto on a run directory of a different config (model width, depth) -> exit 2") as row:
        argv = ["train", "array", "--data", str(trained / "real.h5"), "--run", str(trained / "run"), "--steps", "4", "--quiet",
                "--resume", "auto", *TINY_SETS]
        assert main([*argv, "--set=model.width=32"]) == 2
        assert "different configuration" in capsys.readouterr().err
        row.cases += 1
        assert main([*argv, "--set=model.depth=2"]) == 2
        assert "different configuration" in capsys.readouterr().err
        row.cases += 1


def test_missing_and_directory_inputs(tmp_path, rec, capsys):
    with rec.case(CAT_DATA, "missing file, a directory, an unknown forced layout, an incomplete (interrupted) output") as row:
        for p in (tmp_path / "nope.h5", tmp_path):
            _cli(["data", "info", str(p)], capsys, p)
            row.cases += 1
        good = tmp_path / "g.h5"
        write_samples(good, np.ones((4, 2)), np.ones((4, 1)), ["e"])
        assert main(["data", "info", str(good), "--layout", "nope"]) == 2 and "unknown layout" in capsys.readouterr().err
        with h5py.File(good, "a") as f:
            f.attrs["complete"] = False
        with pytest.raises(DataError, match="incomplete"):
            open_source(good)
        row.cases += 2


def test_env_has_no_stray_files(work):
    """Nothing the fuzzers fed in was executed (no PWNED file in the working directories)."""
    assert not any(p.name == "PWNED" for p in work.rglob("*"))
    assert not Path(os.getcwd(), "PWNED").exists()


def test_hdf5_library_hang_or_crash_becomes_a_data_error(tmp_path, rec, monkeypatch):
    """Corrupted metadata can make HDF5 loop forever or crash; the forked metadata walk turns both into DataError."""
    import signal
    import time

    from physgan.io import probe

    with rec.case(CAT_DATA, "HDF5 library hangs (infinite loop on corrupted metadata) or crashes (SIGSEGV) while reading "
                  "a file -> DataError after the probe timeout, caller never hangs") as row:
        good = tmp_path / "g.h5"
        write_samples(good, np.ones((4, 2)), np.ones((4, 1)), ["e"])
        monkeypatch.setattr(probe, "_CACHE", {})
        monkeypatch.setattr(probe, "_walk", lambda path: time.sleep(3600))
        t0 = time.time()
        with pytest.raises(DataError, match="did not finish within 1 s"):
            probe.probe_hdf5(good, timeout=1)
        assert time.time() - t0 < 30
        monkeypatch.setattr(probe, "_walk", lambda path: os.kill(os.getpid(), signal.SIGSEGV))
        with pytest.raises(DataError, match="crashed the HDF5 library"):
            open_source(good)
        monkeypatch.undo()
        assert len(read_all(open_source(good))[0]) == 4
        row.cases += 2
