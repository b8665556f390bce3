"""U-Net trained with cross-entropy plus soft Dice (equal weights, as nnU-Net combines them),
otherwise the `unet` experiment.

Dice scores each class over the whole batch, so rare classes weigh as much as road; the
cross-entropy keeps the per-pixel signal. See jaxseg/losses.py for both terms.
Command: python -m jaxseg.train --experiment unet_dice [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about a minute longer than `unet` (its profile: 128x256
inputs, the first 10 of 22 epochs at 96x192, base width 16, batch 4).
"""

import ml_collections

from experiments import unet


def get_config() -> ml_collections.ConfigDict:
    config = unet.get_config()
    config.experiment = "unet_dice"
    config.loss.terms = [{"name": "ce", "weight": 1.0}, {"name": "dice", "weight": 1.0}]
    return config
