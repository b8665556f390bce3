"""Transfer learning: DeepLabV3-ResNet101 pretrained on COCO (VOC labels), a new classifier
(and auxiliary classifier) for the IDD classes, frozen backbone, 7 epochs.

First convert torchvision's checkpoint once (no download: a file from a torch hub cache);
without --out it goes to the jaxseg cache, where `torchvision:deeplabv3_resnet101` finds it:
    python -m jaxseg.convert --arch deeplabv3_resnet101 \\
        --torch deeplabv3_resnet101_coco-586e9e4e.pth
Command: python -m jaxseg.train --experiment transfer --data /path/to/idd20kII
On synthetic data it starts from a converted randomly initialised torchvision model (needs
the `torch` extra); about 2 minutes on a 2-core CPU, val mIoU .112 (a random backbone
frozen: only the heads learn).
On IDD Part II the study reports PA .8296, mIoU .4370 (docs/study.md).
"""

import ml_collections

from experiments import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.experiment = "transfer"
    config.model.name = "deeplabv3_resnet101"
    config.model.options = ml_collections.ConfigDict(
        {"aux_loss": True, "freeze_backbone": True, "freeze_aspp": False}
    )
    config.model.init_from = "torchvision:deeplabv3_resnet101"
    config.loss.aux_weight = 0.5
    config.data.height = 1080
    config.data.width = 1920
    config.data.batch_size = 2
    config.data.eval_batch_size = 2
    config.train.epochs = 7
    config.profiles.synthetic.model = {"init_from": "random_torchvision"}
    # ResNet-101 at output stride 8 costs ~4x the FCN per pixel: smaller inputs keep the
    # synthetic run to a few minutes.
    config.profiles.synthetic.data.update(
        {"height": 64, "width": 128, "batch_size": 4, "eval_batch_size": 4}
    )
    config.profiles.synthetic.train.epochs = 3
    return config
