import pytest

from jaxseg.config import apply_overrides, load_config
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
