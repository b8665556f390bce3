"""Defaults shared by every experiment; each experiment file overrides what differs.

Configs are data (ml_collections ConfigDict, locked so a typo in an override fails).
`profiles.synthetic` holds the overrides applied when training on the built-in synthetic
data, so a run finishes on a 2-core CPU; the recorded values are the seed's IDD setting.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "base"
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "fcn"  # Key of jaxseg.models.MODELS.
    config.model.dtype = "float32"  # Compute dtype; parameters stay float32.
    config.model.options = ml_collections.ConfigDict()  # Architecture keyword arguments.
    # Start from converted weights (a `jaxseg.convert` folder) when the workdir has no
    # checkpoint yet; "random_torchvision" converts a randomly initialised torchvision model.
    config.model.init_from = ""

    config.data = ml_collections.ConfigDict()
    config.data.source = "synthetic"  # "synthetic" or a path (IDD root or folder of CSVs).
    # The course center-cropped 1080x1920 to 1088x1920 (a multiple of 32).
    config.data.height = 1088
    config.data.width = 1920
    config.data.batch_size = 4
    config.data.eval_batch_size = 4
    config.data.void = "class"  # "ignore" (26 outputs) or "class" (27: the seed's course).
    config.data.workers = 2  # grain worker processes; 0 decodes in the training process.
    # Named augmentations applied in a fixed order (see jaxseg.data.augment), e.g.
    # {"hflip": {"p": 0.5}, "rotate": {"angle": 1.0}}; empty: none.
    config.data.augment = ml_collections.ConfigDict()
    config.data.val_split = "val"
    config.data.test_split = "test"

    config.loss = ml_collections.ConfigDict()
    config.loss.class_weights = "none"  # Scheme of jaxseg.class_weights.CLASS_WEIGHTS.
    config.loss.class_counts = "seed"  # Pixel counts: "seed" (SPEC 2) or a JSON file.
    config.loss.aux_weight = 0.5  # Auxiliary-head loss weight (torchvision's reference).

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"  # "constant", "cosine" or "poly".
    config.optimizer.warmup_steps = 0
    config.optimizer.weight_decay = 0.0

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 30
    config.train.patience = 3  # Early stopping: epochs without a lower val loss.
    config.train.log_every_steps = 10
    config.train.checkpoint_every_steps = 0  # 0: only at epoch ends.
    # Average the gradients of this many consecutive batches per optimizer update
    # (optax.MultiSteps): an effective batch of accumulate_steps * data.batch_size on few
    # devices. Steps count batches; the learning-rate schedule counts updates.
    config.train.accumulate_steps = 1

    # Data parallelism (jaxseg.parallel); data.batch_size is the global batch, split over
    # all devices of all processes. None of these change the trained model, so a run may
    # resume with other values (checkpoints are independent of the device count).
    config.parallel = ml_collections.ConfigDict()
    config.parallel.mode = "sharding"  # "sharding" (jit over a device mesh) or "pmap".
    config.parallel.num_devices = 0  # Devices used on each process; 0: all.
    config.parallel.shard_params = False  # Sharding mode: shard the state FSDP-style.

    # The built-in synthetic dataset generated when `data.source` is "synthetic";
    # `classes: all` draws every level-3 class, "common" the large ones (see CLASS_SETS).
    config.synthetic = ml_collections.ConfigDict(
        {
            "train": 200,
            "val": 40,
            "test": 10,
            "height": 256,
            "width": 512,
            "seed": 0,
            "classes": "common",
        }
    )

    config.profiles = ml_collections.ConfigDict()
    # Decoding 8 small JPEGs costs ~30 ms a step: worker processes would only compete with
    # XLA for the 2 cores. A short cosine schedule from a higher rate converges faster.
    config.profiles.synthetic = ml_collections.ConfigDict(
        {
            "data": {
                "height": 128,
                "width": 256,
                "batch_size": 8,
                "eval_batch_size": 8,
                "workers": 0,
            },
            "optimizer": {"learning_rate": 3e-3, "schedule": "cosine"},
            "train": {"epochs": 8, "patience": 3},
        }
    )
    return config
