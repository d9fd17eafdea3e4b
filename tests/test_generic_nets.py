"""The array domain's MLP options: hidden activation and critic normalisation (``model.options``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from physgan.domains.base import ModelSpec, get_domain
from physgan.errors import ConfigError
from physgan.nn.generic import make_activation


def _spec(**options) -> ModelSpec:
    return ModelSpec(sample_shape=(2,), n_cond=1, condition_names=["radius"], z_dim=2, width=16, depth=2, embed_dim=4, options=options)


def _modules(net: nn.Module) -> list[type]:
    return [type(m) for m in net.modules()]


def test_default_mlps_keep_leaky_relu_and_layer_norm():
    """Runs saved before the options existed must rebuild the same networks."""
    dom = get_domain("array")
    G, D = dom.build_generator(_spec()), dom.build_critic(_spec())
    assert nn.LeakyReLU in _modules(G) and nn.ReLU not in _modules(G)
    assert _modules(D).count(nn.LayerNorm) == 2 and nn.LeakyReLU in _modules(D)


def test_relu_and_no_norm_options_reach_both_networks():
    dom = get_domain("array")
    spec = _spec(activation="relu", critic_norm="none")
    G, D = dom.build_generator(spec), dom.build_critic(spec)
    assert nn.ReLU in _modules(G) and nn.LeakyReLU not in _modules(G)
    assert nn.LayerNorm not in _modules(D) and _modules(D).count(nn.ReLU) == 2
    # the networks still map (B, z) and (B, 2) to the right shapes
    c = torch.zeros(5, 1)
    assert G(torch.randn(5, 2), c).shape == (5, 2)
    assert D(torch.randn(5, 2), c).shape == (5,)
    # a ReLU generator can flatten a region of its latent space: negative pre-activations give exactly zero
    assert float(make_activation("relu")(torch.tensor([-1.0]))) == 0.0
    assert float(make_activation("leaky_relu")(torch.tensor([-1.0]))) == pytest.approx(-0.2)


@pytest.mark.parametrize("key,value", [("activation", "tanh"), ("critic_norm", "batch")])
def test_unknown_option_is_a_config_error_naming_the_key(key, value):
    dom = get_domain("array")
    build = dom.build_generator if key == "activation" else dom.build_critic
    with pytest.raises(ConfigError, match=rf"model\.options\.{key} must be one of .*\(got '{value}'\)"):
        build(_spec(**{key: value}))


def test_saved_run_rebuilds_the_options_it_was_trained_with(tmp_path):
    from physgan.config import resolve_config
    from physgan.io.hdf5 import write_samples
    from physgan.run import load_run
    from physgan.sim.toy import sample_modes
    from physgan.train.loop import train

    x, c = sample_modes(200, "grid", sigma=0.1, radius_range=(2.0, 2.0), seed=0)
    write_samples(tmp_path / "grid.h5", x, c, ["spacing"], "array", attrs={"domain": "array"})
    overrides = [f"data.path={tmp_path / 'grid.h5'}", "model.width=16", "model.z_dim=2", "train.steps=2", "train.device=cpu"]
    overrides += ["model.options.activation=relu", "model.options.critic_norm=none", "train.val_every=0", "train.log_every=1"]
    train(resolve_config("array", overrides=overrides), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run", device="cpu")
    nets = [m for m in vars(run).values() if isinstance(m, nn.Module)]
    kinds = {type(m) for net in nets for m in net.modules()}
    assert nn.ReLU in kinds and nn.LeakyReLU not in kinds
    assert run.sample(10, {"spacing": 2.0}, seed=0).shape == (10, 2)


def test_refused_option_leaves_no_run_directory_behind(tmp_path, capsys):
    """A bad model option exits 2 with the key named; the run directory it created is removed, an existing one kept."""
    from physgan.cli import main
    from physgan.io.hdf5 import write_samples
    from physgan.sim.toy import sample_modes

    x, c = sample_modes(100, "ring", seed=0)
    write_samples(tmp_path / "ring.h5", x, c, ["radius"], "array", attrs={"domain": "array"})
    argv = ["train", "array", "--data", str(tmp_path / "ring.h5"), "--steps", "1", "--quiet"]
    bad = ["--set", "model.options.activation=tanh"]
    assert main([*argv, "--run", str(tmp_path / "new"), *bad]) == 2
    assert "model.options.activation must be one of leaky_relu, relu (got 'tanh')" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    assert main([*argv, "--run", str(tmp_path / "mine"), *bad]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "kept"
    # the same directory trains once the option is fixed
    assert main([*argv, "--run", str(tmp_path / "new"), "--set", "model.options.activation=relu"]) == 0
    assert (tmp_path / "new" / "checkpoints" / "last.pt").is_file()
