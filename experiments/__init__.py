"""Experiment registry: one module per experiment, each with `get_config()`."""

import ml_collections

from experiments import baseline, custom, flip, rotation, transfer, unet, weighted_loss
from jaxseg.errors import ConfigError

EXPERIMENTS = {
    "baseline": baseline,
    "flip": flip,
    "rotation": rotation,
    "weighted_loss": weighted_loss,
    "custom": custom,
    "transfer": transfer,
    "unet": unet,
}


def get_config(name: str) -> ml_collections.ConfigDict:
    """Returns the locked config of experiment `name`."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; valid: {', '.join(sorted(EXPERIMENTS))}")
    config = EXPERIMENTS[name].get_config()
    config.lock()
    return config
