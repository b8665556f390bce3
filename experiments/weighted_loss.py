"""The study's baseline with class-weighted cross-entropy, w_c = 1 - n_c / sum(n).

On IDD the weights come from the study's pixel counts (docs/study.md); on synthetic data from the
training split's own counts.
Command: python -m jaxseg.train --experiment weighted_loss [--data /path/to/idd20kII]
Synthetic data on a 2-core CPU: about 2 minutes; val PA .642, mIoU .252.
On IDD Part II the study reports PA .7991, mIoU .3444 (docs/study.md).
"""

import ml_collections

from experiments import baseline


def get_config() -> ml_collections.ConfigDict:
    config = baseline.get_config()
    config.experiment = "weighted_loss"
    config.loss.class_weights = "seed"
    config.loss.class_counts = "seed"
    config.profiles.synthetic.loss = {"class_counts": "train"}
    return config
