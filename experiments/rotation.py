"""The study's baseline with training images rotated by 1 degree.

Labels are rotated with nearest sampling; pixels the rotation uncovers are void.
Command: python -m jaxseg.train --experiment rotation [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about 2 minutes; val PA .634, mIoU .245.
On IDD Part II the study reports PA .8041, mIoU .3533 (docs/study.md).
"""

import ml_collections

from experiments import baseline


def get_config() -> ml_collections.ConfigDict:
    config = baseline.get_config()
    config.experiment = "rotation"
    config.data.augment = ml_collections.ConfigDict({"rotate": {"angle": 1.0, "p": 1.0}})
    return config
