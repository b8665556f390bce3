"""The study's baseline: FCN encoder-decoder, Adam, early stopping on validation loss.

Command: python -m jaxseg.train --experiment baseline [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about 2 minutes (8 epochs); val PA .648, mIoU .257.
On IDD Part II the study reports PA .7944, mIoU .3371 (docs/study.md).
"""

import ml_collections

from experiments import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.experiment = "baseline"
    config.model.name = "fcn"
    return config
