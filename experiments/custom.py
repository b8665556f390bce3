"""The study's "Custom" model: RRCNN-block encoder with max-pooling and the FCN decoder.

The study removed 3 of 5 encoder layers and trained on 256x256 crops with batch 1 to fit
11 GB; `model.options.depth=5` gives the full-depth comparison.
Command: python -m jaxseg.train --experiment custom [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about 2 minutes; val PA .537, mIoU .166.
On IDD Part II the study reports PA .3696, mIoU .0976 (docs/study.md).
"""

import ml_collections

from experiments import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.experiment = "custom"
    config.model.name = "custom"
    config.model.options = ml_collections.ConfigDict({"depth": 2})
    crop = {"min_scale": 1.0, "max_scale": 1.0, "height": 256, "width": 256}
    config.data.augment = ml_collections.ConfigDict({"scale_crop": crop})
    config.data.batch_size = 1
    config.data.eval_batch_size = 1
    small_crop = {"scale_crop": {**crop, "height": 128, "width": 128}}
    config.profiles.synthetic.data.augment = small_crop
    config.profiles.synthetic.train.epochs = 5
    return config
