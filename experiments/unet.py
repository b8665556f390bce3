"""U-Net at 720x1280, batch 1, 20 epochs, as the study ran it on an 11 GB GPU.

Command: python -m jaxseg.train --experiment unet [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about 8.5 minutes (128x256 inputs, base width 16, 22 epochs).
Expected: synthetic val mIoU about 0.5 (0.48-0.53 in runs that differed only in the initial
weights' random bits); on IDD Part II the study reports PA .7486, mIoU .2577.
"""

import ml_collections

from experiments import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.experiment = "unet"
    config.model.name = "unet"
    config.model.options = ml_collections.ConfigDict({"base_width": 64, "upsample": "transpose"})
    config.data.height = 720
    config.data.width = 1280
    config.data.batch_size = 1
    config.data.eval_batch_size = 1
    config.train.epochs = 20
    config.train.patience = 0  # The study ran a fixed 20 epochs.
    config.profiles.synthetic.model = {"options": {"base_width": 16}}
    config.profiles.synthetic.train.epochs = 22
    return config
