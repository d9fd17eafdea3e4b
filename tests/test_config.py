"""Config: recipes, presets, YAML, overrides and readable validation errors."""

from __future__ import annotations

import pytest
import yaml

from physgan.config import RECIPES, Config, config_from_dict, config_to_dict, resolve_config, save_config
from physgan.errors import ConfigError


def test_default_recipe_is_gulrajani2017():
    cfg = resolve_config("array")
    t = cfg.train
    assert (t.loss, t.gp_lambda, t.n_critic, t.lr_d, t.lr_g, t.betas) == ("wgan-gp", 10.0, 5, 1e-4, 1e-4, (0.0, 0.9))
    assert t.recipe == "gulrajani2017"


def test_recipes_are_applied_whole():
    cfg = resolve_config("array", recipe="arjovsky2017")
    assert (cfg.train.loss, cfg.train.optimizer, cfg.train.lr_d, cfg.train.clip) == ("wgan-clip", "rmsprop", 5e-5, 0.01)
    assert set(RECIPES) >= {"gulrajani2017", "progan", "arjovsky2017", "goodfellow2014"}


def test_preset_then_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"train": {"steps": 111, "batch_size": 7}, "model": {"width": 9}}))
    cfg = resolve_config("array", "quick", f, ["train.batch_size=13", "model.options={a: 1}"])
    assert cfg.preset == "quick"
    assert cfg.train.steps == 111  # file beats preset
    assert cfg.train.batch_size == 13  # override beats file
    assert cfg.model.width == 9 and cfg.model.options == {"a": 1}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stepz=3", "did you mean 'steps'"),
        ("train.steps=ten", "must be an integer"),
        ("train.n_critic=0", "n_critic must be >= 1"),
        ("train.lr_d=-1e-4", "learning rates must be positive"),
        ("train.betas=[0.5]", "list of 2 numbers"),
        ("train.loss=hinge", "unknown"),
        ("trian.steps=3", "did you mean 'train'"),
        ("steps=3", "needs a section"),
        ("train.deterministic=maybe", "true or false"),
    ],
)
def test_bad_values_give_readable_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("array", overrides=[override])


def test_unknown_domain_and_preset():
    with pytest.raises(ConfigError, match="unknown domain"):
        resolve_config("nope")
    with pytest.raises(ConfigError, match="has no preset 'huge'"):
        resolve_config("array", "huge")


def test_yaml_round_trip(tmp_path):
    cfg = resolve_config("array", "quick", overrides=["train.seed=5", "model.options={k: [1, 2]}"])
    save_config(cfg, tmp_path / "config.yaml")
    back = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert config_to_dict(back) == config_to_dict(cfg)
    assert isinstance(back.train.betas, tuple)


def test_validate_catches_unconstrained_critic():
    cfg = Config()
    cfg.train.gp_lambda = 0.0
    with pytest.raises(ConfigError, match="unconstrained"):
        cfg.validate()
