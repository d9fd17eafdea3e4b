"""Config: recipes, presets, YAML, overrides and readable validation errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from physgan.config import (
    RECIPE_KEYS,
    RECIPES,
    Config,
    config_from_dict,
    config_to_dict,
    recipe_settings,
    resolve_config,
    save_config,
)
from physgan.domains.base import domains, get_domain
from physgan.errors import ConfigError

#: every (domain, preset) pair, None being "the user names no preset"
DOMAIN_PRESETS = [(d, p) for d, dom in sorted(domains().items()) for p in [None, *dom.presets]]


def test_default_recipe_is_gulrajani2017():
    cfg = resolve_config("array")
    t = cfg.train
    assert (t.loss, t.gp_lambda, t.n_critic, t.lr_d, t.lr_g, t.betas) == ("wgan-gp", 10.0, 5, 1e-4, 1e-4, (0.0, 0.9))
    assert t.recipe == "gulrajani2017"


def test_recipes_are_applied_whole():
    cfg = resolve_config("array", recipe="arjovsky2017")
    assert (cfg.train.loss, cfg.train.optimizer, cfg.train.lr_d, cfg.train.clip) == ("wgan-clip", "rmsprop", 5e-5, 0.01)
    assert set(RECIPES) >= {"gulrajani2017", "progan", "arjovsky2017", "goodfellow2014"}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("domain, preset", DOMAIN_PRESETS, ids=[f"{d}-{p}" for d, p in DOMAIN_PRESETS])
def test_a_named_recipe_means_the_same_in_every_domain_and_preset(domain, preset, recipe):
    cfg = resolve_config(domain, preset=preset, recipe=recipe)
    t = cfg.train
    assert t.recipe == recipe
    for key, value in RECIPES[recipe].items():  # the recipe's own literal values, key by key
        got = getattr(t, key)
        assert (tuple(got) if key == "betas" else got) == (tuple(value) if key == "betas" else value), (domain, preset, key)
    # the preset still owns sizes and schedules
    chosen = preset or ("default" if "default" in get_domain(domain).presets else None)
    for section, values in (get_domain(domain).presets.get(chosen, {}) if chosen else {}).items():
        for key, value in values.items():
            if key not in ("recipe", "options", "transform"):
                assert getattr(getattr(cfg, section), key) == value, (section, key)


def test_the_issue_cases_resolve_to_the_recipes_optimiser():
    """The measured bug (issue 15): the calo/nbody/micro default presets used to restate Gulrajani's optimiser."""
    for domain in ("calo", "nbody", "micro"):
        t = resolve_config(domain, recipe="goodfellow2014").train
        assert (t.loss, t.n_critic, t.lr_g, t.lr_d, t.betas) == ("nonsaturating", 1, 2e-4, 2e-4, (0.5, 0.999))
        assert resolve_config(domain, recipe="arjovsky2017").train.lr_d == 5e-5
        t = resolve_config(domain, recipe="progan").train
        assert (t.n_critic, t.lr_g, t.drift) == (1, 1e-3, 1e-3)


def test_recipe_settings_are_complete():
    for name in RECIPES:
        assert set(recipe_settings(name)) == set(RECIPE_KEYS)
    with pytest.raises(ConfigError, match="did you mean 'progan'"):
        recipe_settings("prog4n")


def test_explicit_values_win_over_recipe_and_preset(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"train": {"lr_g": 3e-4}}))
    cfg = resolve_config("calo", "quick", f, ["train.n_critic=3", "train.loss=minimax"], recipe="goodfellow2014")
    t = cfg.train
    assert (t.loss, t.n_critic, t.lr_g, t.lr_d, t.steps) == ("minimax", 3, 3e-4, 2e-4, 3000)


def test_recipe_named_in_file_or_override_counts_as_named(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"train": {"recipe": "arjovsky2017"}}))
    assert resolve_config("micro", config_file=f).train.optimizer == "rmsprop"
    t = resolve_config("micro", overrides=["train.recipe=goodfellow2014"]).train
    assert (t.recipe, t.n_critic, t.betas) == ("goodfellow2014", 1, (0.5, 0.999))


def test_a_preset_names_its_recipe_and_a_named_recipe_replaces_it():
    t = resolve_config("micro", "quick").train
    assert (t.recipe, t.lr_g) == ("gulrajani2017-lr2e-4", 2e-4)
    t = resolve_config("micro", "quick", recipe="gulrajani2017").train
    assert (t.recipe, t.lr_g, t.steps) == ("gulrajani2017", 1e-4, 400)
    t = resolve_config("micro", "default").train  # the 3-D CPU preset: two critic updates, the critic at twice the rate
    assert (t.recipe, t.n_critic, t.lr_g, t.lr_d) == ("gulrajani2017-ttur", 2, 2e-4, 4e-4)
    assert resolve_config("micro", "anisotropic").train.recipe == "gulrajani2017-lr2e-4"


def test_a_preset_setting_a_recipe_key_is_refused(monkeypatch):
    monkeypatch.setitem(get_domain("array").presets, "bad", {"train": {"steps": 5, "lr_g": 1e-3}})
    with pytest.raises(ConfigError, match=r"preset 'array/bad' sets train.lr_g, which recipes own"):
        resolve_config("array", "bad")


def test_resuming_keeps_the_runs_optimiser_unless_a_recipe_is_named():
    base = config_to_dict(resolve_config("calo", recipe="progan", overrides=["train.lr_g=3e-4"]))
    t = resolve_config("calo", base=base).train
    assert (t.recipe, t.lr_g, t.drift, t.n_critic) == ("progan", 3e-4, 1e-3, 1)
    t = resolve_config("calo", base=base, recipe="gulrajani2017").train
    assert (t.recipe, t.lr_g, t.drift, t.n_critic, t.betas) == ("gulrajani2017", 1e-4, 0.0, 5, (0.0, 0.9))


def test_preset_then_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"train": {"steps": 111, "batch_size": 7}, "model": {"width": 9}}))
    cfg = resolve_config("array", "quick", f, ["train.batch_size=13", "model.options={n_up: 1}"])
    assert cfg.preset == "quick"
    assert cfg.train.steps == 111  # file beats preset
    assert cfg.train.batch_size == 13  # override beats file
    assert cfg.model.width == 9 and cfg.model.options == {"n_up": 1}


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
        ("train.gp_every=0", "gp_every must be >= 1"),
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
    cfg = resolve_config("calo", "quick", overrides=["train.seed=5", "model.options.response_range=[0.5, 1.5]"])
    save_config(cfg, tmp_path / "config.yaml")
    back = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert config_to_dict(back) == config_to_dict(cfg)
    assert isinstance(back.train.betas, tuple)


def test_lazy_penalty_needs_the_penalised_loss():
    with pytest.raises(ConfigError, match="gp_every applies to loss wgan-gp only"):
        resolve_config("array", overrides=["train.loss=wgan-clip", "train.gp_every=2"])
    assert resolve_config("array", overrides=["train.gp_every=2"]).train.gp_every == 2


def test_validate_catches_unconstrained_critic():
    cfg = Config()
    cfg.train.gp_lambda = 0.0
    with pytest.raises(ConfigError, match="unconstrained"):
        cfg.validate()


@pytest.mark.parametrize(
    "domain, override, message",
    [
        ("calo", "model.options.cel_noise=1", r"unknown option 'model.options.cel_noise'; did you mean 'cell_noise'\?"),
        ("calo", "model.options.eps=1e-3", r"it is set as 'data.transform.eps'"),
        ("calo", "model.options.critic_norm=layr", r"must be one of none, layer \(got 'layr'\); did you mean 'layer'\?"),
        ("calo", "model.options.response_range=[0.5]", "list of 2 numbers"),
        ("nbody", "data.transform.knd=gauss", r"did you mean 'kind'\?"),
        ("nbody", "model.options.critic_width=wide", "must be an integer"),
        ("micro", "model.options.slices_per_axiss=4", r"did you mean 'slices_per_axis'\?"),
        ("array", "model.options.activation=tanh", "must be one of leaky_relu, relu"),
    ],
)
def test_domain_options_are_typed_and_checked(domain, override, message):
    with pytest.raises(ConfigError, match=f"domain '{domain}': .*{message}"):
        resolve_config(domain, overrides=[override])


def test_domain_options_are_converted_to_their_types_and_every_preset_passes():
    opts = resolve_config("calo", overrides=["model.options.cell_noise=yes", "model.options.cell_noise_init=1"]).model.options
    assert opts["cell_noise"] is True and opts["cell_noise_init"] == 1.0 and isinstance(opts["cell_noise_init"], float)
    assert resolve_config("nbody", overrides=["model.options.arch=null"]).model.options["arch"] is None
    for domain, preset in DOMAIN_PRESETS:
        dom = get_domain(domain)
        cfg = resolve_config(domain, preset)
        if dom.model_options is not None:
            assert set(cfg.model.options) <= {f.name for f in dataclasses.fields(dom.model_options)}


def test_every_option_a_factory_reads_is_declared():
    """The options records list every key the domain's code reads with ``.get("key"...)`` / ``_opt(spec, "key"...)``."""
    import re
    from pathlib import Path

    import physgan

    root = Path(physgan.__file__).parent / "domains"
    read = re.compile(r'(?:opts|options|spec\.options)\.get\("(\w+)"|_opt\(spec, "(\w+)"|options\["(\w+)"\]')
    for domain, files in {
        "calo": (["calo/model.py"], ["calo/transform.py"]),
        "nbody": (["nbody/model.py"], ["nbody/transform.py"]),
        "micro": (["micro/model.py"], ["micro/transform.py"]),
        "array": ([], ["array.py"]),  # one module: its keys must be declared in one of the two records
    }.items():
        dom = get_domain(domain)
        both = {f.name for r in (dom.model_options, dom.transform_options) for f in dataclasses.fields(r)}
        for record, paths in ((dom.model_options, files[0]), (dom.transform_options, files[1])):
            declared = {f.name for f in dataclasses.fields(record)} if domain != "array" else both
            for path in paths:
                keys = {k for m in read.finditer((root / path).read_text()) for k in m.groups() if k}
                keys -= {"data_stats", "condition_stats"}  # fitted statistics, not options
                assert keys <= declared, (domain, path, keys - declared)


def test_typed_values_are_not_parsed_as_yaml_and_the_last_named_recipe_wins(tmp_path):
    cfg = resolve_config("array", values={"data": {"path": "on"}, "model": {"options": {"n_up": 2}}})
    assert cfg.data.path == "on" and cfg.model.options == {"n_up": 2}  # '--set data.path=on' would read YAML's True
    assert resolve_config("array", overrides=["data.path=on"]).data.path == "yes"
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"train": {"recipe": "progan"}}))
    t = resolve_config("array", config_file=f, overrides=["train.recipe=goodfellow2014"]).train
    assert (t.recipe, t.n_critic, t.betas, t.drift) == ("goodfellow2014", 1, (0.5, 0.999), 0.0)
    t = resolve_config("array", overrides=["train.recipe=progan", "train.recipe=arjovsky2017"]).train
    assert (t.recipe, t.optimizer) == ("arjovsky2017", "rmsprop")
    t = resolve_config("array", values={"train": {"recipe": "progan"}}).train
    assert (t.recipe, t.n_critic) == ("progan", 1)


def test_surrogate_settings_keep_their_types():
    from physgan.run import Surrogate

    s = Surrogate("calo", run_dir="unused", train__steps=7, model__options={"cell_noise": True}, data__layout="calogan")
    assert s.values == {"train": {"steps": 7}, "model": {"options": {"cell_noise": True}}, "data": {"layout": "calogan"}}
    with pytest.raises(ConfigError, match="section__key"):
        Surrogate("calo", steps=7)
