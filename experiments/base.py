"""The setting every experiment of the study shares (docs/study.md); each experiment file
overrides what differs.

Configs are data: `jaxseg.config.defaults()` lists every key, this file sets the study's
values, and `profiles.synthetic` holds the overrides applied when training on the built-in
synthetic data, so a run finishes on a 2-core CPU. The values outside the profile are the
study's setting on IDD.
"""

import ml_collections

from jaxseg.config import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults()
    config.experiment = "base"
    # IDD's 1080x1920 images resized to 1088x1920 (a multiple of 32: a 0.7% vertical
    # stretch). The course center-cropped instead, which pads 4 rows top and bottom.
    config.data.height = 1088
    config.data.width = 1920
    config.data.void = "class"  # The course trained void as one more class.
    # Decoding 8 small JPEGs costs ~30 ms a step: worker processes would only compete with
    # XLA for the 2 cores, and the decoded split is small enough to keep in memory. A short
    # cosine schedule from a higher rate converges faster.
    config.profiles.synthetic = ml_collections.ConfigDict(
        {
            "data": {
                "height": 128,
                "width": 256,
                "batch_size": 8,
                "eval_batch_size": 8,
                "workers": 0,
                "keep_in_memory": True,  # 200 examples of 128 KiB.
            },
            "optimizer": {"learning_rate": 3e-3, "schedule": "cosine"},
            "train": {"epochs": 8, "patience": 3},
        }
    )
    return config
