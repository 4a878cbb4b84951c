import json

import pytest

from pix2pix.config import (
    Config,
    apply_overrides,
    config_from_dict,
    load_config_file,
    update_config,
    validate,
)
from pix2pix.errors import ConfigError
from pix2pix.presets import IMPROVEMENTS, PRESETS, get_preset, improvement_overrides


def test_defaults_are_the_reference_recipe():
    cfg = Config()
    assert (cfg.model.generator, cfg.model.norm, cfg.model.n_layers_d) == ("unet_256", "batch", 3)
    assert (cfg.loss.gan_mode, cfg.loss.lambda_l1) == ("vanilla", 100.0)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.n_epochs, cfg.optim.n_epochs_decay) == (2e-4, 0.5, 100, 100)
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.train.batch_size) == (286, 256, 1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name):
    cfg = validate(get_preset(name))
    assert cfg.preset == name


def test_facades_preset_is_labels_to_photo():
    assert get_preset("facades").data.direction == "BtoA"


def test_overrides_parse_by_type_and_accept_short_keys():
    cfg = apply_overrides(get_preset("tiny"), ["optim.lr=1e-3", "batch_size=3", "flip=false",
                                                "model.generator_kwargs.num_downs=6", "gan_mode=lsgan"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.train.batch_size == 3 and cfg.data.flip is False
    assert cfg.model.generator_kwargs == {"num_downs": 6}
    assert cfg.loss.gan_mode == "lsgan"


def test_overrides_do_not_leak_into_presets():
    apply_overrides(get_preset("tiny"), ["model.generator_kwargs.num_downs=7"])
    assert get_preset("tiny").model.generator_kwargs == {"num_downs": 5}


def test_unknown_key_suggests_the_close_match():
    with pytest.raises(ConfigError, match="Did you mean 'lambda_l1'"):
        apply_overrides(Config(), ["lambda_l2=10"])
    with pytest.raises(ConfigError, match="not a valid int"):
        apply_overrides(Config(), ["batch_size=two"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Config(), ["batch_size"])


def test_unknown_preset_suggests_the_close_match():
    with pytest.raises(ConfigError, match="Did you mean 'facades'"):
        get_preset("facade")


def test_config_file_round_trip_and_strictness(tmp_path):
    cfg = get_preset("synthetic")
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert config_from_dict(load_config_file(path)) == cfg
    path.write_text(json.dumps({"optim": {"learning_rate": 1}}))
    with pytest.raises(ConfigError, match="unknown key 'optim.learning_rate'"):
        update_config(Config(), load_config_file(path), source=str(path))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(path)


@pytest.mark.parametrize("override, message", [
    ("direction=AtoC", "Did you mean 'AtoB'"),
    ("preprocess=resize", "data.preprocess"),
    ("crop_size=300", "larger than data.load_size"),
    ("norm=group", "model.norm"),
    ("batch_size=0", "at least 1"),
])
def test_validate_names_the_key_and_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(Config(), [override]))


def test_every_numeric_field_has_a_range_rule():
    """A numeric field added without a rule in validate's table fails here, instead of slipping through."""
    from pix2pix.config import _RANGES, SECTIONS, _field_types

    cfg = Config()
    numeric = {f"{s}.{k}" for s in SECTIONS for k, t in _field_types(getattr(cfg, s)).items() if t in (int, float)}
    assert numeric - set(_RANGES) == set() and set(_RANGES) - numeric == set()


@pytest.mark.parametrize("override", ["max_steps=0", "lr_d=0", "beta1=0", "ema_decay=0", "lambda_gan=0",
                                      "num_workers=-1", "max_items=0", "n_layers_d=0"])
def test_range_edges_that_are_valid(override):
    validate(apply_overrides(get_preset("tiny"), [override]))


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lr=0", r"optim.lr=0.0 must be a finite learning rate above 0: e.g. --set optim.lr=2e-4"),
    ("optim.beta2=-0.1", r"optim.beta2=-0.1 must be in \[0, 1\)"),
    ("train.max_steps=-1", r"train.max_steps=-1 must be 0 \(train for"),
    ("model.ngf=0", r"model.ngf=0 must be at least 1 filter"),
    ("train.num_samples=0", r"train.num_samples=0 must be at least 1"),
    ("loss.lambda_vgg=inf", r"loss.lambda_vgg=inf must be a finite weight"),
    ("optim.lr_policy=linar", r"Did you mean 'linear'"),
])
def test_range_errors_name_the_key_value_and_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(get_preset("tiny"), [override]))


def test_the_smallest_crop_reported_is_the_one_the_networks_take():
    """The check runs G and D on shape-only tensors; real tensors agree at the reported size and one below."""
    import torch

    from pix2pix.training.objectives import build_discriminator, check_trainable

    cfg = apply_overrides(get_preset("tiny"), ["batch_size=1", "crop_size=16", "load_size=16",
                                               "model.generator_kwargs.num_downs=4"])
    with pytest.raises(ConfigError, match="'patchgan' with model.n_layers_d=3 needs 24") as info:
        check_trainable(validate(cfg))
    assert "needs 16" not in str(info.value)  # the 4-level U-Net takes 16
    d = build_discriminator(cfg).train()
    d(torch.zeros(1, 6, 24, 24))
    with pytest.raises((RuntimeError, ValueError)):
        d(torch.zeros(1, 6, 23, 23))
    check_trainable(validate(apply_overrides(cfg, ["crop_size=24", "load_size=24"])))


def test_type_errors_name_the_file_and_short_dict_keys_resolve(tmp_path):
    with pytest.raises(ConfigError, match=r"run/config.json: train.max_steps='3' should be a int \(a whole number"):
        config_from_dict({"train": {"max_steps": "3"}}, source="run/config.json")
    with pytest.raises(ConfigError, match="run/config.json: the top level must be a mapping"):
        config_from_dict([1], source="run/config.json")  # type: ignore[arg-type]
    cfg = apply_overrides(get_preset("tiny"), ["generator_kwargs.num_downs=4"])
    assert cfg.model.generator_kwargs == {"num_downs": 4}
    with pytest.raises(ConfigError, match="give a finite number"):
        apply_overrides(get_preset("tiny"), ["model.generator_kwargs.num_downs=NaN"])


def test_improved_presets_are_their_task_preset_plus_the_benchmarked_changes():
    for name, (base, _, _) in IMPROVEMENTS.items():
        expected = apply_overrides(get_preset(base), improvement_overrides(name))
        expected.preset = name
        assert get_preset(name) == expected
    plus = get_preset("facades_plus")
    assert (plus.data.direction, plus.model.ngf, plus.train.batch_size, plus.train.ema_decay) == ("BtoA", 32, 4, 0.99)
    assert "model.ngf=32" in improvement_overrides("facades_plus")
    seg = get_preset("synthetic_plus")
    assert seg.loss.lambda_seg == 5.0 and seg.model == get_preset("synthetic").model
    assert "loss.lambda_seg=5.0" in improvement_overrides("synthetic_plus")
