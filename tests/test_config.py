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
from pix2pix.presets import PRESETS, get_preset


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
