import json

import pytest

from jaxseg.config import apply_overrides, load_config, saved_config
from jaxseg.errors import ConfigError


def test_synthetic_profile_applies_and_user_overrides_win():
    config = load_config("unet", overrides=["data.height=64"])
    assert config.data.source == "synthetic"
    assert config.data.height == 64  # --set beats the profile.
    assert config.data.width == 256  # From the synthetic profile.
    assert config.model.options.base_width == 16


def test_real_data_keeps_the_seed_setting(tmp_path):
    config = load_config("unet", data=str(tmp_path))
    assert (config.data.height, config.data.width, config.data.batch_size) == (720, 1280, 1)
    assert config.train.epochs == 20
    assert config.model.options.base_width == 64


def test_override_types_and_unknown_keys():
    config = load_config("baseline")
    apply_overrides(config, ["optimizer.learning_rate=0.01", "model.dtype=bfloat16"])
    assert config.optimizer.learning_rate == 0.01
    assert config.model.dtype == "bfloat16"
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        apply_overrides(config, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        apply_overrides(config, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match="expects int"):
        apply_overrides(config, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(config, ["train.epochs"])


def test_unknown_experiment():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; valid: .*baseline"):
        load_config("nope")


def test_saved_config_fills_settings_added_since(tmp_path):
    """A run written before the `parallel` section existed still loads, with its defaults,
    and keeps every value it saved."""
    saved = load_config("unet").to_dict()
    del saved["parallel"]
    del saved["train"]["accumulate_steps"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    config = saved_config(path)
    assert config.parallel.mode == "sharding" and config.train.accumulate_steps == 1
    assert config.model.options.base_width == 16 and config.train.epochs == 22
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: cannot read"):
        saved_config(path)
