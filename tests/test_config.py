import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.config import LIMITS, apply_overrides, check, defaults, load_config, saved_config
from jaxseg.discovery import experiment_names
from jaxseg.errors import ConfigError
from jaxseg.state import check_input_size


def test_synthetic_profile_applies_and_user_overrides_win():
    config = load_config("unet", overrides=["data.height=64"])
    assert config.data.source == "synthetic"
    assert config.data.height == 64  # --set beats the profile.
    assert config.data.width == 256  # From the synthetic profile.
    assert config.model.options.base_width == 16


def test_real_data_keeps_the_study_setting(tmp_path):
    config = load_config("unet", data=str(tmp_path))
    assert (config.data.height, config.data.width, config.data.batch_size) == (720, 1280, 1)
    assert config.train.epochs == 20
    assert config.model.options.base_width == 64
    assert config.data.source == str(tmp_path)


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
    # Booleans as the README writes them, and as Python literals.
    apply_overrides(config, ["train.log_plan=true", "data.keep_in_memory=TRUE"])
    assert config.train.log_plan is True and config.data.keep_in_memory is True
    apply_overrides(config, ["train.log_plan=false", "data.keep_in_memory=False"])
    assert config.train.log_plan is False and config.data.keep_in_memory is False


def test_unknown_experiment():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; valid: .*baseline"):
        load_config("nope")


def test_saved_config_fills_settings_added_since(tmp_path):
    """A run written before the `parallel` section or label spaces existed still loads,
    with the defaults (IDD level 3 for its labels), and keeps every value it saved."""
    saved = load_config("unet").to_dict()
    del saved["parallel"]
    del saved["train"]["accumulate_steps"]
    del saved["data"]["labels"]
    del saved["data"]["keep_in_memory"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    config = saved_config(path)
    assert config.parallel.mode == "sharding" and config.train.accumulate_steps == 1
    assert config.data.labels == "idd_level3" and config.data.keep_in_memory is False
    assert config.model.options.base_width == 16
    assert config.train.epochs == saved["train"]["epochs"] != defaults().train.epochs
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: cannot read"):
        saved_config(path)


def test_a_new_experiment_file_is_found_by_name(tmp_path, monkeypatch):
    """`--experiment NAME` is `experiments/NAME.py`: no list to edit; `--config FILE`
    loads a file anywhere; base.py is not an experiment."""
    names = experiment_names()
    assert {"baseline", "unet", "transfer"} <= set(names) and "base" not in names
    mine = tmp_path / "my_run.py"
    mine.write_text(
        "from experiments import baseline\n\n"
        "def get_config():\n"
        "    config = baseline.get_config()\n"
        "    config.experiment = 'my_run'\n"
        "    config.train.epochs = 2\n"
        "    return config\n"
    )
    config = load_config(str(mine), data=str(tmp_path))
    assert config.experiment == "my_run" and config.train.epochs == 2
    assert config.data.height == 1088
    # On synthetic data the profile applies, as for any experiment.
    assert load_config(str(mine)).data.height == 128


def test_experiment_files_are_checked_against_the_defaults(tmp_path):
    typo = tmp_path / "typo.py"
    typo.write_text(
        "from jaxseg.config import defaults\n\n"
        "def get_config():\n"
        "    config = defaults()\n"
        "    config.train.epoch = 3\n"
        "    return config\n"
    )
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        load_config(str(typo))
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_config(str(tmp_path / "missing.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="no get_config"):
        load_config(str(tmp_path / "empty.py"))


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(
        "transfer", data="idd", overrides=["model.init_from=weights/deeplabv3_resnet101"]
    )
    assert config.data.source == str(tmp_path / "idd")
    assert config.model.init_from == str(tmp_path / "weights" / "deeplabv3_resnet101")
    assert load_config("transfer", data="idd").model.init_from == "torchvision:deeplabv3_resnet101"
    assert defaults().data.labels == "auto"


# Keys the config check covers, with values of every kind a user might type.
CHECKED = sorted(LIMITS)
VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["skip", "stop", "raise", "ignore", "class"]),
    st.lists(st.integers(0, 3), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CHECKED), VALUES), min_size=1, max_size=3))
def test_generated_overrides_validate_or_give_a_one_line_error(overrides):
    texts = [f"{key}={value!r}" for key, value in overrides]
    try:
        config = load_config("baseline", data="/unused", overrides=texts)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message and any(key in message for key, _ in overrides), message
        return
    check(config)  # What was accepted holds the limits, e.g. data.height >= 1.
    for key, value in dict(overrides).items():  # The last override of a key wins.
        section, name = key.split(".") if "." in key else (None, key)
        got = config[section][name] if section else config[name]
        assert got == value or (isinstance(value, str) and str(got) == value)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.epochs=0", "train.epochs=0; expected an integer >= 1"),
        ("data.on_error='ignore'", "data.on_error='ignore'; valid: raise, skip"),
        ("train.on_nan='maybe'", "train.on_nan='maybe'; valid: skip, stop"),
        ("optimizer.learning_rate=-0.1", "optimizer.learning_rate=-0.1; expected a number >= 0"),
        ("train.checkpoint_every_minutes=nan", "expects float"),
        ("train.eval_every_epochs=0", "train.eval_every_epochs=0; expected an integer >= 1"),
        ("data.progressive_sizes=[[4, 64]]", "data.progressive_sizes entry [4, 64]; expected"),
        (
            "data.progressive_sizes=[[4, 64, 128], [2, 96, 192]]",
            "entry [2, 96, 192]; expected [last_epoch, height, width], positive integers, "
            "last_epoch increasing",
        ),
    ],
)
def test_bad_values_are_named(override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config("baseline", data="/unused", overrides=[override])


def test_image_size_must_suit_the_model():
    config = load_config("baseline", data="/unused", overrides=["data.height=100"])
    with pytest.raises(ConfigError, match=r"data.height=100, data.width=1920: .*multiples of 32"):
        check_input_size(config)
    config = load_config(
        "baseline", data="/unused", overrides=["data.progressive_sizes=[[3, 64, 100]]"]
    )
    with pytest.raises(ConfigError, match=r"progressive_sizes entry \[3, 64, 100\]: .*of 32"):
        check_input_size(config)
