"""physgan.evaluation: files in, metrics.json + index.html out, --fail-on exit codes, domain hooks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from physgan.domains.base import Domain, IdentityTransform, register_domain
from physgan.errors import ConfigError, DataError, OutputExistsError
from physgan.evaluation import Evaluation, add_arguments, evaluate, main, parse_threshold
from physgan.io.hdf5 import write_samples

FAST = {
    "classifier": {"hidden": (32, 32), "epochs": 30, "batch_size": 32, "lr": 3e-3, "n_boot": 10},
    "fpd": {"n_batches": 3},
    "kpd": {"n_batches": 4},
}
CALLS: dict[str, int] = {}


def _toy_features(x, c, attrs):
    CALLS["features"] = CALLS.get("features", 0) + 1
    return {"total": x.sum(axis=(1, 2)), "peak": x.max(axis=(1, 2)), "first_row": x[:, 0].sum(1)}


def _toy_physics(real, fake, attrs):
    CALLS["physics"] = CALLS.get("physics", 0) + 1
    (xr, cr), (xf, _) = real, fake
    assert xr.ndim == 3 and cr.shape == (len(xr), 1)
    return {"mean_ratio": float(xf.mean() / xr.mean()), "scale_attr": float(attrs["scale"])}


def _toy_plots(real, fake, attrs, outdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.imshow(real[0].mean(0))
    path = Path(outdir) / "mean_image.png"
    fig.savefig(path)
    plt.close(fig)
    return [("mean image", path)]


def _dummy_net(spec):
    return torch.nn.Linear(1, 1)


TOY = register_domain(
    Domain(
        name="toytest",
        description="tiny test domain",
        layouts=["array"],
        make_transform=lambda options: IdentityTransform(),
        build_generator=_dummy_net,
        build_critic=_dummy_net,
        condition_scales={"energy": "log"},
        features=_toy_features,
        physics_metrics=_toy_physics,
        plots=_toy_plots,
    )
)
BARE = register_domain(
    Domain(
        name="toybare",
        description="test domain without hooks",
        layouts=["array"],
        make_transform=lambda options: IdentityTransform(),
        build_generator=_dummy_net,
        build_critic=_dummy_net,
    )
)


def _make(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    e = rng.uniform(1.0, 100.0, size=(n, 1)).astype(np.float32)
    x = (rng.gamma(2.0, 1.0, size=(n, 4, 4)) * (1 + shift)).astype(np.float32) * e[:, :, None] / 50
    return x, e


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    attrs = {"domain": "toytest", "scale": 2.5}
    out = {}
    for name, seed, shift in (("real", 1, 0.0), ("fake", 2, 0.8), ("train", 3, 0.0), ("real2", 4, 0.0)):
        x, e = _make(240, seed, shift)
        out[name] = write_samples(d / f"{name}.h5", x, e, ["energy"], layout="array", condition_units=["GeV"], attrs=attrs)
    return out


def _args(files, report, *extra):
    p = argparse.ArgumentParser()
    add_arguments(p)
    argv = ["--real", str(files["real"]), "--fake", str(files["fake"]), "--report", str(report)]
    argv += ["--n-boot", "2", "--device", "cpu"]
    return p.parse_args([*argv, *extra])


def test_parse_threshold():
    assert parse_threshold("auc_low>0.9") == ("auc_low", ">", 0.9)
    assert parse_threshold(" coverage <= 0.5 ") == ("coverage", "<=", 0.5)
    assert parse_threshold("w1/total>1e-3") == ("w1/total", ">", 1e-3)
    with pytest.raises(ConfigError, match="expected METRIC>VALUE"):
        parse_threshold("auc_low=0.9")


def test_evaluate_files_report_and_domain_hooks(files, tmp_path):
    CALLS.clear()
    ev = evaluate(files["real"], files["fake"], train=files["train"], n_boot=2, options=FAST, device="cpu")
    assert isinstance(ev, Evaluation) and ev.domain == "toytest"  # detected from attrs['domain']
    assert CALLS["physics"] == 1 + 1 + 2 * 2  # value, floor, n_boot rounds for each
    assert ev.feature_names == ["total", "peak", "first_row", "log10_energy"]
    report = ev.to_html(tmp_path / "report")
    d = json.loads((report / "metrics.json").read_text())
    assert d["schema"] == "physgan.evaluation/1" and d["domain"] == "toytest"
    assert d["n"] == {"real": 240, "fake": 240, "train": 240, "real2": None}
    assert d["floor_source"] == "real halves"
    # the caps and the spaces the metrics were computed in are written down, with the CPU time per stage
    assert d["prdc_space"]["n_real"] == 240 and 0 < d["prdc_space"]["variance_kept"] <= 1
    assert d["classifier_max_samples"] == 50000 and d["memorisation_search"]["max_queries"] == 10000
    assert set(d["timings_cpu_s"]) == set(d["timings_s"]) and d["timings_cpu_s"]["total"] > 0
    for key in ("fpd", "kpd", "precision", "recall", "density", "coverage", "auc_high", "jsd_high", "auc_low", "jsd_low",
                "w1_norm_mean", "separation_mean", "w1/total", "separation/peak", "memorisation/ratio",
                "memorisation/copy_fraction", "physics/mean_ratio", "physics/scale_attr"):  # fmt: skip
        assert key in d["metrics"], key
        assert set(d["metrics"][key]) == {
            "value", "error", "floor", "floor_error", "group", "better", "verdict", "n_sigma", "closeness", "description"
        }  # fmt: skip
    m = d["metrics"]
    # the fake is 80 % brighter: visible in the physics metric and far above the noise floor in W1 of the total
    assert m["physics/mean_ratio"]["value"] == pytest.approx(1.8, rel=0.1)
    assert m["physics/mean_ratio"]["floor"] == pytest.approx(1.0, abs=0.15)
    assert m["physics/scale_attr"]["value"] == 2.5
    assert m["w1/total"]["verdict"].startswith("above floor")
    assert m["auc_high"]["value"] > 0.8
    html = (report / "index.html").read_text()
    assert "<table class='summary'>" in html and "auc_high" in html and "mean image" in html
    assert "data:image/png;base64," in html
    assert "PRDC space" in html and "memorisation search" in html and "random samples per class" in html
    assert (report / "domain" / "mean_image.png").is_file() and (report / "marginals_1.png").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    with pytest.raises(OutputExistsError):
        ev.to_html(report)
    ev.to_html(report, overwrite=True)
    rows = ev.summary()
    assert rows[0]["metric"] == "fpd" and "±" in rows[0]["value"]
    assert "noise floor" in ev.format_summary()


def test_real2_floor_and_identical_sets_sit_at_floor(files):
    ev = evaluate(files["real"], files["real2"], real2=files["train"], n_boot=3, options=FAST, device="cpu")
    assert ev.info["floor_source"] == "real2"
    m = ev.metrics
    assert abs(m["auc_high"].value - 0.5) < 0.15
    assert m["w1/total"].verdict == "at floor"
    assert abs(m["physics/mean_ratio"].value - 1.0) < 0.15


def test_a_file_given_for_two_roles_is_read_and_featurised_once(files, monkeypatch):
    """The training set as the second real set (a common stand-in for the floor): one read, one feature pass."""
    import physgan.evaluation.inputs as inputs

    reads = []
    real_load = inputs.load_samples
    monkeypatch.setattr(inputs, "load_samples", lambda obj, *a, **k: reads.append(str(obj)) or real_load(obj, *a, **k))
    CALLS["features"] = 0
    ev = evaluate(files["real"], files["fake"], real2=files["train"], train=files["train"], n_boot=2, options=FAST, device="cpu")
    assert sorted(reads) == sorted(str(files[k]) for k in ("real", "fake", "train"))
    assert CALLS["features"] == 3  # real, fake, and the training set once for both roles
    assert ev.info["n"]["real2"] == ev.info["n"]["train"] == 240 and ev.info["floor_source"] == "real2"


def test_main_fail_on_exit_codes(files, tmp_path, capsys):
    assert main(_args(files, tmp_path / "r1", "--fail-on", "auc_high>1.5")) == 0
    assert main(_args(files, tmp_path / "r2", "--fail-on", "auc_high>0.7", "--fail-on", "coverage<-1")) == 1
    captured = capsys.readouterr()
    assert "FAIL: auc_high" in captured.err and "coverage" not in captured.err
    d = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert d["passed"] is False
    assert d["metrics"]["auc_high"]["value"] > 0.8  # default classifier settings separate the 80 % brighter fakes
    assert d["thresholds"][0] == {"metric": "auc_high", "op": ">", "value": 0.7, "violated": True}
    assert d["metrics"]["auc_high"]["verdict"].startswith("FAIL")
    with pytest.raises(OutputExistsError):
        main(_args(files, tmp_path / "r2"))
    with pytest.raises(ConfigError, match="unknown metric"):
        main(_args(files, tmp_path / "r3", "--fail-on", "nonsense>1"))


def test_generic_features_tuples_and_plot():
    rng = np.random.default_rng(0)
    xr, xf = rng.normal(size=(200, 6)).astype(np.float32), rng.normal(0.5, 1, size=(200, 6)).astype(np.float32)
    c = np.zeros((200, 0), np.float32)
    ev = evaluate((xr, c), (xf, c, {"note": "x"}), domain="toybare", n_boot=2, options=FAST, device="cpu")
    assert ev.feature_names == ["mean", "std", "min", "max", "pc1", "pc2", "pc3"]
    assert not any(k.startswith("physics/") for k in ev.metrics)
    assert ev.metrics["w1/mean"].value == pytest.approx(0.5, abs=0.15)
    figs = ev.plot()
    assert len(figs) == 1 and len(figs[0].axes) == 2 * 7  # histogram + ratio panel per feature
    assert "<table" in ev._repr_html_()


def test_bad_inputs(files):
    x = np.zeros((50, 3), np.float32)
    with pytest.raises(DataError, match="shape"):
        evaluate(files["real"], (x, np.zeros((50, 1))), n_boot=2, options=FAST)
    with pytest.raises(ConfigError, match="unknown domain"):
        evaluate((x, None), (x, None), domain="no-such-domain", n_boot=2)
    with pytest.raises(DataError, match="does not exist"):
        evaluate("/nonexistent/real.h5", files["fake"], n_boot=2)


def test_package_level_evaluate_is_the_function():
    import physgan
    import physgan.evaluation

    assert physgan.evaluate is physgan.evaluation.evaluate


def test_report_includes_training_curves_and_diagnostics(tmp_path):
    """``evaluate(..., run=RUN)``: the run's curves and diagnostics summary join metrics.json and index.html."""
    from physgan.config import resolve_config
    from physgan.sim.toy import sample_modes
    from physgan.train.loop import train

    x, c = sample_modes(300, "ring", radius_range=(1.5, 2.5), seed=0)
    write_samples(tmp_path / "ring.h5", x, c, ["radius"], "array", attrs={"domain": "array"})
    cfg = resolve_config("array", overrides=[f"data.path={tmp_path / 'ring.h5'}", "model.width=16", "model.depth=2", "model.z_dim=8",
                                             "train.batch_size=16", "train.n_critic=1", "train.steps=4", "train.log_every=2"])
    train(cfg, tmp_path / "run", progress=False)
    ev = evaluate(tmp_path / "ring.h5", tmp_path / "ring.h5", n_boot=2, run=tmp_path / "run")
    assert ev.training["curves"]["Loss/W"][-1][0] == 4  # the last tick's step
    out = ev.to_html(tmp_path / "report")
    page = (out / "index.html").read_text()
    assert "<h2>Training" in page and "training diagnostics after 4 steps" in page
    assert (out / "training.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["training"]["diagnostics"]["steps"] == 4


def _mean_gap(a, b, scale=1.0):
    return {"gap": scale * float(np.abs(np.asarray(a).mean(0) - np.asarray(b).mean(0)).mean()), "unreported": 1.0}


def test_evaluate_is_a_loop_over_the_metric_registry(monkeypatch):
    """A metric registered once is computed (with its options and error method), reported with its direction,
    description and panel, and accepted by --fail-on; nothing else needs to know about it."""
    from physgan.evaluation.result import check_threshold_names
    from physgan.metrics import PANELS, Metric, Reported, registry

    metric = Metric(
        "mean_gap", _mean_gap, "bootstrap", "features",
        (Reported("gap", "mean_gap", "mean |feature mean gap|", better="lower", panel=PANELS[1]),),
        defaults={"scale": 2.0},
    )
    monkeypatch.setitem(registry._REGISTRY, "mean_gap", metric)
    rng = np.random.default_rng(0)
    xr, xf = rng.normal(size=(200, 4)).astype(np.float32), rng.normal(0.5, 1, size=(200, 4)).astype(np.float32)
    c = np.zeros((200, 0), np.float32)
    ev = evaluate((xr, c), (xf, c), domain="toybare", n_boot=3, options={**FAST, "mean_gap": {"scale": 3.0}}, device="cpu")
    m = ev.metrics["mean_gap"]
    features = ev._feat_real, ev._feat_fake
    expect = _mean_gap(np.stack(list(features[0].values()), 1), np.stack(list(features[1].values()), 1), scale=3.0)["gap"]
    assert m.value == pytest.approx(expect) and m.description == "mean |feature mean gap|" and m.better == "lower"
    assert np.isfinite(m.error) and m.error > 0 and np.isfinite(m.floor) and m.floor < m.value
    assert "unreported" not in ev.metrics and "mean_gap" in ev.info["timings_s"]
    assert ev.to_dict()["metrics"]["mean_gap"]["group"] == "generic"
    panel = next(g for g in ev.group_verdicts() if g["group"] == PANELS[1])
    assert panel["n"] == 5  # fpd, kpd, w1_norm_mean, separation_mean and the new one
    assert check_threshold_names([("mean_gap", ">", 1.0)])
    monkeypatch.delitem(registry._REGISTRY, "mean_gap")
    with pytest.raises(ConfigError, match="unknown metric 'mean_gap'"):
        check_threshold_names([("mean_gap", ">", 1.0)])
