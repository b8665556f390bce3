"""Experiment configs: loading, the synthetic-data profile and `--set key=value` overrides."""

import ast
import json
import logging
from pathlib import Path

import ml_collections

import experiments
from experiments import base
from jaxseg.errors import ConfigError


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
            f"config key {path!r} expects {type(old).__name__}, got {value!r} ({e})"
        ) from None


def parse_value(text: str):
    """`--set` values are Python literals (1, 0.5, True, "x", [1, 2]) or plain strings."""
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


def _flatten_dict(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and not _is_open_section(prefix + key):
            flat.update(_flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_open_section(path: str) -> bool:
    return path == "model.options" or path == "data.augment"


def apply_profile(config: ml_collections.ConfigDict, name: str) -> dict:
    """Applies `config.profiles[name]` in place and returns the flat overrides applied."""
    profile = config.profiles.get(name)
    if profile is None:
        return {}
    flat = _flatten_dict(profile.to_dict())
    for path, value in flat.items():
        _assign(config, path, value)
    return flat


def load_config(
    experiment: str, *, data: str | None = None, overrides: list[str] = ()
) -> ml_collections.ConfigDict:
    """The experiment's config, with the synthetic profile when the data is synthetic.

    Order: experiment defaults, then `--data`, then the synthetic profile (if the data is
    synthetic), then `--set` overrides, so a user's override always wins.
    """
    config = experiments.get_config(experiment)
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
    return config


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def saved_config(path: str | Path) -> ml_collections.ConfigDict:
    """A run's `config.json` over the defaults of `experiments/base.py`, so a run saved
    before a setting existed (e.g. `parallel`) still loads, with that setting's default."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the run's config ({e})") from None
    config = base.get_config()
    config.update(saved)
    return config
