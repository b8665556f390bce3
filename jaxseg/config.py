"""Configs: every key with its default, experiments found by name or file, `--set` overrides.

An experiment is a Python file with `get_config() -> ml_collections.ConfigDict`, found by
module name in the `experiments` folder (`--experiment unet` loads `experiments/unet.py`;
a new file there is enough) or by path anywhere (`--config path/to/file.py`). Its config
starts from `defaults()`, the one place that lists every key; an experiment that sets a key
the defaults lack is an error, as is an unknown `--set` key.
"""

import ast
import json
import logging
from pathlib import Path

import ml_collections

from jaxseg import discovery
from jaxseg.data import synthetic
from jaxseg.errors import ConfigError

# Sections whose keys are free (architecture and augmentation keyword arguments).
OPEN_SECTIONS = ("model.options", "data.augment")


def defaults() -> ml_collections.ConfigDict:
    """Every config key with its default value; experiments override what differs."""
    config = ml_collections.ConfigDict()
    config.experiment = "default"
    config.seed = 0
    config.model = _section(
        name="fcn",  # Key of jaxseg.models.MODELS.
        dtype="float32",  # Compute dtype ("float32", "bfloat16"); parameters stay float32.
        options=ml_collections.ConfigDict(),  # The model's keyword arguments.
        # Start from other weights when the workdir has no checkpoint yet: a finished
        # run's workdir (its best weights, a fresh optimizer), a `jaxseg.convert` folder,
        # "torchvision:ARCH" (the folder `jaxseg.convert --arch ARCH` writes into the
        # cache by default), or "random_torchvision" (a converted randomly initialised
        # torchvision model; needs the torch extra).
        init_from="",
        # Convolution kernels: "cpu" (formulations measured faster on the XLA CPU backend,
        # jaxseg.cpu_kernels), "xla" (plain XLA) or "auto" (cpu on the CPU backend).
        kernels="auto",
        remat=False,  # Recompute blocks' activations in backward (U-Net) instead of keeping them.
    )
    config.data = _data_section()
    config.loss = _section(
        class_weights="none",  # Scheme of jaxseg.class_weights.CLASS_WEIGHTS.
        # Pixel counts for the weights: "seed" (the IDD level-3 counts of the report jaxseg
        # reimplements, docs/study.md), "train" (counted once over the training split and
        # kept in the workdir), or a JSON file.
        class_counts="seed",
        aux_weight=0.5,  # Auxiliary-head loss weight (torchvision's reference).
        # Weighted loss terms added together, each {"name": a key of
        # jaxseg.losses.LOSSES (ce, dice, focal, lovasz, ohem), "weight": float, and that
        # loss's options}, e.g. [{"name": "ce", "weight": 1.0}, {"name": "dice", "weight":
        # 0.5}]. class_weights apply to every term but lovasz.
        terms=[{"name": "ce", "weight": 1.0}],
    )
    config.optimizer = _section(
        name="adam",  # "adam", "adamw" or "sgd".
        learning_rate=1e-3,
        schedule="constant",  # "constant", "cosine" or "poly".
        warmup_steps=0,
        weight_decay=0.0,
    )
    config.train = _train_section()
    config.eval = _eval_section()
    # Data parallelism (jaxseg.parallel). None of these change the trained model, so a run
    # may resume with other values.
    config.parallel = _section(
        mode="sharding",  # "sharding" (jit over a device mesh) or "pmap".
        num_devices=0,  # Devices used on each process; 0: all.
        shard_params=False,  # Sharding mode: shard the state FSDP-style.
    )
    # The built-in synthetic dataset, generated when data.source is "synthetic".
    config.synthetic = ml_collections.ConfigDict(dict(synthetic.DEFAULT_PARAMS))
    # Overrides applied when the data is synthetic, so a run fits a 2-core CPU.
    config.profiles = _section(synthetic=ml_collections.ConfigDict())
    return config


def _data_section() -> ml_collections.ConfigDict:
    """The `data` section of `defaults()`."""
    return _section(
        source="synthetic",  # "synthetic" or a dataset path (jaxseg.data.formats).
        # Label space of the labels (jaxseg.data.labels): "auto" is the format's default
        # (IDD: idd_level3; Cityscapes: cityscapes); idd_level2 / idd_level1 read IDD's
        # coarser levels from the same level-3 files.
        labels="auto",
        height=512,  # Model input size: images are resized to it.
        width=1024,
        batch_size=4,  # Global batch, split over all devices of all processes.
        eval_batch_size=4,
        void="ignore",  # "ignore" (no loss on void) or "class" (void is one more output).
        workers=2,  # grain worker processes; 0 decodes in the training process.
        # A corrupt image, wrong-size label or unknown label id: "raise" (an error naming
        # the file) or "skip" (logged, listed in results.json as "skipped_files").
        on_error="raise",
        prefetch=2,  # Batches a thread reads ahead of the step (data.prefetch); 0: none.
        # Keep the decoded, resized training examples in memory after the first epoch
        # (H * W * 4 bytes each, in every process and worker): for splits that fit.
        keep_in_memory=False,
        # Progressive resizing: [[last_epoch, height, width], ...] in increasing epoch order
        # trains the epochs up to each last_epoch (from 1) at that smaller size, the rest at
        # height x width; e.g. [[9, 96, 192]]. []: the full size throughout.
        progressive_sizes=[],
        # Named augmentations in a fixed order (jaxseg.data.augment), e.g.
        # {"hflip": {"p": 0.5}, "rotate": {"angle": 1.0}}; empty: none.
        augment=ml_collections.ConfigDict(),
        val_split="val",
        test_split="test",
    )


def _train_section() -> ml_collections.ConfigDict:
    """The `train` section of `defaults()`."""
    return _section(
        epochs=30,
        patience=3,  # Early stopping: evaluations without a lower val loss; 0: never.
        # Validate (log, keep the best, test early stopping) every this many epochs and
        # after the last; epoch ends between are checkpointed only when one is due.
        eval_every_epochs=1,
        log_every_steps=10,
        checkpoint_every_steps=0,  # 0: only at epoch ends.
        checkpoint_every_minutes=0.0,  # Also when this long since the last one; 0: never.
        # Non-finite loss/gradients never update the model: "skip" logs the step and goes
        # on (until max_skipped_in_a_row in a row; 0: no limit), "stop" ends with an error.
        on_nan="skip",
        max_skipped_in_a_row=10,
        # Val examples (the first ones) drawn at each evaluation as a TensorBoard image:
        # image | prediction | label overlays, one row each; 0: none.
        tensorboard_images=2,
        # Batches per optimizer update (optax.MultiSteps); the schedule counts updates.
        accumulate_steps=1,
        log_plan=False,  # Log the step's parameters, GFLOPs, peak memory (one more compile).
    )


def _eval_section() -> ml_collections.ConfigDict:
    """How validation, jaxseg.evaluate and jaxseg.predict run the model (jaxseg.segment)."""
    return _section(
        mode="resize",  # "resize" (to data.height x data.width), "whole" or "slide".
        crop=[],  # "slide" window [height, width]; empty: [data.height, data.width].
        stride=[],  # "slide" step [height, width]; empty: two thirds of the crop.
        flip=False,  # Average with the horizontally flipped image's probabilities.
        scales=[1.0],  # Input scales whose probabilities are averaged, e.g. [0.75, 1.0, 1.25].
        multiple=32,  # "whole" and "slide" pad inputs to a multiple of this (model stride).
    )


def _section(**values) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(values)


def get_experiment(experiment: str) -> ml_collections.ConfigDict:
    """The locked config of an experiment name or `.py` file, checked against `defaults()`."""
    module = discovery.import_experiment(experiment)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"experiment {experiment!r}: no get_config() function")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"experiment {experiment!r}: get_config() must return a ConfigDict")
    unknown = sorted(set(_leaf_paths(config)) - set(_leaf_paths(defaults())))
    unknown = [k for k in unknown if not k.startswith(OPEN_SECTIONS) and "profiles." not in k]
    if unknown:
        raise ConfigError(f"experiment {experiment!r}: unknown config key {unknown[0]!r}")
    config.lock()
    return config


def _leaf_paths(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    paths = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            paths.update(_leaf_paths(value, f"{path}."))
        else:
            paths[path] = value
    return paths


def _assign(config: ml_collections.ConfigDict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    node = config
    for i, key in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            raise ConfigError(f"unknown config key {'.'.join(parents[: i + 1])!r} in {path!r}")
        node = node[key]
    if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"unknown config key {path!r}: {'.'.join(parents)!r} is not a section")
    if leaf not in node:
        valid = ", ".join(sorted(node.keys()))
        raise ConfigError(f"unknown config key {path!r}; valid keys here: {valid}")
    old = node[leaf]
    if isinstance(old, ml_collections.ConfigDict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {path!r} is a section; set one of its keys instead")
        # Open sections (such as model.options) take new keys; others keep their keys.
        with node[leaf].unlocked():
            node[leaf].update(value)
        return
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"config key {path!r} expects {type(old).__name__}, got {value!r} "
            f"({' '.join(str(e).split())})"  # One line, whatever the value holds.
        ) from None


def parse_value(text: str):
    """`--set` values are Python literals (1, 0.5, True, "x", [1, 2]) or plain strings;
    true and false in any case are booleans too, as users write them on a command line."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Applies `key.path=value` strings in place; unknown keys and wrong types raise."""
    for override in overrides:
        path, sep, text = override.partition("=")
        if not sep or not path:
            raise ConfigError(f"bad override {override!r}: expected key=value")
        _assign(config, path.strip(), parse_value(text.strip()))


def flatten_dict(tree: dict, prefix: str = "") -> dict:
    """{"a.b": leaf}; the open sections (model.options, data.augment) stay whole."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and prefix + key not in OPEN_SECTIONS:
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_profile(config: ml_collections.ConfigDict, name: str) -> dict:
    """Applies `config.profiles[name]` in place and returns the flat overrides applied."""
    profile = config.profiles.get(name)
    if profile is None:
        return {}
    flat = flatten_dict(profile.to_dict())
    for path, value in flat.items():
        _assign(config, path, value)
    return flat


def load_config(
    experiment: str, *, data: str | None = None, overrides: list[str] = ()
) -> ml_collections.ConfigDict:
    """The config of an experiment name or file, with the synthetic profile when the data
    is synthetic.

    Order: experiment defaults, then `--data`, then the synthetic profile (if the data is
    synthetic), then `--set` overrides, so a user's override always wins. A relative data
    or `model.init_from` path is made absolute, so the saved config does not depend on the
    working directory.
    """
    config = get_experiment(experiment)
    if data is not None:
        config.data.source = data
    if config.data.source == "synthetic":
        applied = apply_profile(config, "synthetic")
        if applied:
            logging.info(
                "synthetic data: using the experiment's synthetic profile (%s)",
                ", ".join(f"{k}={v}" for k, v in applied.items()),
            )
    apply_overrides(config, list(overrides))
    _absolute_paths(config)
    from jaxseg import losses  # Imports jax, which the report command does without.

    losses.parse_terms(config.loss.terms)  # A bad term is an error before any work starts.
    check(config)
    return config


# key: (lowest value, or the valid values); what `check` requires of numbers and names.
LIMITS = {
    "seed": (0,),
    "data.height": (1,),
    "data.width": (1,),
    "data.batch_size": (1,),
    "data.eval_batch_size": (1,),
    "data.workers": (0,),
    "data.void": ("ignore", "class"),
    "data.on_error": ("raise", "skip"),
    "loss.aux_weight": (0.0,),
    "optimizer.learning_rate": (0.0,),
    "optimizer.warmup_steps": (0,),
    "optimizer.weight_decay": (0.0,),
    "train.epochs": (1,),
    "train.patience": (0,),
    "train.eval_every_epochs": (1,),
    "train.log_every_steps": (1,),
    "train.checkpoint_every_steps": (0,),
    "train.checkpoint_every_minutes": (0.0,),
    "train.on_nan": ("skip", "stop"),
    "train.max_skipped_in_a_row": (0,),
    "train.accumulate_steps": (1,),
    "train.tensorboard_images": (0,),
}


def _check_value(path: str, value, limits: tuple) -> None:
    if isinstance(limits[0], str):
        if value not in limits:
            raise ConfigError(f"{path}={value!r}; valid: {', '.join(limits)}")
        return
    kind = int if isinstance(limits[0], int) else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= limits[0]:
        expected = "an integer" if kind is int else "a number"
        raise ConfigError(f"{path}={value!r}; expected {expected} >= {limits[0]}")


def check(config: ml_collections.ConfigDict) -> None:
    """Types and ranges of the settings a run depends on, before any work starts.

    Raises:
      ConfigError: one line naming the key, the value and what it should be.
    """
    values = _leaf_paths(config)
    for path, limits in LIMITS.items():
        _check_value(path, values[path], limits)
    _check_progressive_sizes(config.data.progressive_sizes)


def _check_progressive_sizes(entries) -> None:
    previous = 0
    for entry in entries:
        valid = (
            isinstance(entry, (list, tuple))
            and len(entry) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in entry)
        )
        if not valid or entry[0] <= previous:
            raise ConfigError(
                f"data.progressive_sizes entry {entry!r}; expected [last_epoch, height, width], "
                "positive integers, last_epoch increasing"
            )
        previous = entry[0]


def _absolute_paths(config: ml_collections.ConfigDict) -> None:
    if config.data.source != "synthetic":
        config.data.source = str(Path(config.data.source).expanduser().absolute())
    init_from = config.model.init_from
    if init_from and ":" not in init_from and init_from != "random_torchvision":
        config.model.init_from = str(Path(init_from).expanduser().absolute())


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def saved_config(path: str | Path) -> ml_collections.ConfigDict:
    """A run's `config.json` over `defaults()`, so a run saved before a setting existed
    (e.g. `parallel`) still loads, with that setting's default."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the run's config ({e})") from None
    data = saved.get("data", {})
    if "labels" not in data:  # Saved before label spaces: every such run was IDD level 3.
        data["labels"] = "idd_level3"
    config = defaults()
    config.update(saved)
    return config
