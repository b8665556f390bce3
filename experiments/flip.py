"""The study's baseline plus horizontal mirror augmentation.

Command: python -m jaxseg.train --experiment flip [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about 2 minutes; val PA .644, mIoU .249.
On IDD Part II the study reports PA .7546, mIoU .2532 (docs/study.md).
"""

import ml_collections

from experiments import baseline


def get_config() -> ml_collections.ConfigDict:
    config = baseline.get_config()
    config.experiment = "flip"
    config.data.augment = ml_collections.ConfigDict({"hflip": {"p": 0.5}})
    return config
