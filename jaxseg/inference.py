"""The Python API of a trained model: `Segmenter` turns uint8 images of any size into class
ids or probabilities at their own size, under an evaluation mode (`jaxseg.segment`).

    seg = jaxseg.Segmenter.from_run("runs/unet", mode="slide", flip=True)
    ids = seg(image)                      # [H, W] uint8 train ids, 255 = void
    probs = seg.probabilities(images)     # [B, H, W, K] float32
"""

import copy
import functools
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import segment, state, steps
from jaxseg.data import transforms
from jaxseg.data.labels import VOID, LabelSpace


def _log_probabilities(variables, images, size, *, apply_fn, options):
    forward = steps.eval_forward(apply_fn, variables)
    return segment.log_probabilities(forward, steps.model_input(images), size, options)


def _ids(variables, images, size, *, apply_fn, options, num_classes):
    log_p = _log_probabilities(variables, images, size, apply_fn=apply_fn, options=options)
    ids = jnp.argmax(log_p, axis=-1)
    # The void output (under `void: class`) is the void id.
    return jnp.where(ids >= num_classes, VOID, ids).astype(jnp.uint8)


def eval_overrides(**options) -> list[str]:
    """`--set` strings of the `eval` section for the options that are not None
    (`mode="slide"` -> `eval.mode='slide'`)."""
    return [
        f"eval.{key}={list(value) if isinstance(value, tuple) else value!r}"
        for key, value in options.items()
        if value is not None
    ]


class Segmenter:
    """A trained model under an evaluation mode; compiled once per input shape.

    Attributes:
      config: the run's config (its `eval` section is the mode).
      label_space: the classes, their names and colours.
      options: the evaluation mode.
      num_outputs: K of `probabilities`: the classes, plus void under `data.void: class`.
    """

    def __init__(
        self,
        train_state: state.TrainState,
        config: ml_collections.ConfigDict,
        label_space: LabelSpace,
    ):
        self.config = config
        self.label_space = label_space
        self.options = segment.options(config)
        self.num_outputs = state.num_outputs(config, label_space)
        self._variables = steps.eval_variables(train_state)
        bound = {"apply_fn": train_state.apply_fn, "options": self.options}
        self._log_p = jax.jit(
            functools.partial(_log_probabilities, **bound), static_argnames="size"
        )
        self._ids = jax.jit(
            functools.partial(_ids, **bound, num_classes=label_space.num_classes),
            static_argnames="size",
        )

    @classmethod
    def from_run(
        cls,
        workdir: str | Path,
        *,
        mode: str | None = None,
        crop: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        flip: bool | None = None,
        scales: Sequence[float] | None = None,
        overrides: Sequence[str] = (),
    ) -> "Segmenter":
        """The best checkpoint of a run of `jaxseg.train`, under the run's `eval` settings
        with those given here replacing them (see `jaxseg.segment`).

        Args:
          overrides: further `key=value` config changes (e.g. `model.kernels=xla`).
        """
        eval_options = eval_overrides(mode=mode, crop=crop, stride=stride, flip=flip)
        eval_options += eval_overrides(scales=scales)
        run = state.restore(workdir, [*overrides, *eval_options])
        return cls(run.state, run.config, run.label_space)

    def with_state(self, train_state: state.TrainState) -> "Segmenter":
        """This segmenter with `train_state`'s weights, reusing its compiled functions (a
        new `Segmenter` compiles again)."""
        other = copy.copy(self)
        other._variables = steps.eval_variables(train_state)
        return other

    def _inputs(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            got = f"{images.dtype} {list(images.shape)}"
            raise ValueError(f"expected uint8 images [B, H, W, 3], got {got}")
        size = images.shape[1:3]
        if self.options.resizes_on_host:
            height, width = self.config.data.height, self.config.data.width
            images = np.stack([transforms.resize_image(i, height, width) for i in images])
        return images, size

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities [B, H, W, K] float32 of uint8 images [B, H, W, 3] (or one
        [H, W, 3] image: [H, W, K]), at the images' size."""
        single = np.ndim(images) == 3
        inputs, size = self._inputs(images[None] if single else images)
        probs = np.exp(np.asarray(self._log_p(self._variables, inputs, size=size)))
        return probs[0] if single else probs

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Train ids [B, H, W] uint8 (255 = void) of uint8 images [B, H, W, 3]."""
        inputs, size = self._inputs(images)
        return np.asarray(self._ids(self._variables, inputs, size=size))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Train ids [H, W] uint8 (255 = void) of one uint8 image [H, W, 3]."""
        return self.predict(np.asarray(image)[None])[0]
