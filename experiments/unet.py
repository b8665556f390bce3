"""U-Net at 720x1280, batch 1, 20 epochs, as the study ran it on an 11 GB GPU.

Command: python -m jaxseg.train --experiment unet [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: 8-9 minutes (128x256 inputs, base width 16, batch 4,
18 epochs, validated every second epoch). Expected: synthetic val mIoU about 0.51 (0.506
and 0.525 with seeds 0 and 1; 0.537 and 0.544 with 20 epochs; batch 8 for 22 epochs gave
0.48-0.53); on IDD Part II the study reports PA .7486, mIoU .2577.
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
    # Batch 4 costs ~10% more per image than batch 8 on the CPU and makes twice the updates per
    # epoch: at 18 epochs it reaches the mIoU batch 8 reached at 22.
    config.profiles.synthetic.data.batch_size = 4
    config.profiles.synthetic.train.epochs = 18
    # Each validation with its checkpoint costs ~3 s, 6% of an epoch here.
    config.profiles.synthetic.train.eval_every_epochs = 2
    return config
