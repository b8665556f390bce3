"""Evaluation modes: how a trained model turns images of any size into class probabilities
at the label's resolution. Validation, `jaxseg.evaluate`, `jaxseg.predict` and
`jaxseg.Segmenter` all go through `log_probabilities`.

Modes (config `eval.mode`):
- "resize": the image arrives resized on the host to the training size (`data.height`,
  `data.width`); its logits are resized to the label's size.
- "whole": the image at its own resolution, padded on the bottom and right to a multiple of
  `eval.multiple` (the models' total stride), the padding's logits dropped.
- "slide": windows of `eval.crop` every `eval.stride` (MMSegmentation's slide inference), each
  run like "whole"; logits are averaged where windows overlap.

`eval.flip` adds the horizontally flipped image and `eval.scales` rescales the input (on the
device, bilinearly); every pass's softmax is resized to the label's size and the passes'
probabilities are averaged there. All of it is one traced function of the batch, so a
`jax.jit` of it compiles once per input shape.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg.errors import ConfigError
from jaxseg.models import layers

MODES = ("resize", "whole", "slide")

# Normalised images [B, h, w, 3] -> logits [B, h, w, K] float32 of the model in eval mode.
Forward = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Options:
    """The evaluation mode and its settings (hashable: a static argument of `jax.jit`)."""

    mode: str = "resize"
    crop: tuple[int, int] = (512, 1024)  # Window (height, width) of "slide".
    stride: tuple[int, int] = (341, 683)  # Step between windows of "slide".
    flip: bool = False  # Also run the horizontally flipped image.
    scales: tuple[float, ...] = (1.0,)  # Input scales, each a pass.
    multiple: int = 32  # "whole" and "slide" pad each input to a multiple of this.

    def record(self) -> dict:
        """The `"eval"` field of a results record."""
        return {"mode": self.mode, "flip": self.flip, "scales": list(self.scales)}

    @property
    def resizes_on_host(self) -> bool:
        """Whether images are resized to the training size before they reach the device."""
        return self.mode == "resize"


def _pair(value, key: str) -> tuple[int, int]:
    values = tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise ConfigError(f"{key}={list(values)}; expected [height, width], positive integers")
    return values


def options(config: ml_collections.ConfigDict) -> Options:
    """The `eval` section of a config as `Options`. An empty `eval.crop` is the training
    size; an empty `eval.stride` two thirds of the crop (MMSegmentation's usual ratio).

    Raises:
      ConfigError: an unknown mode or a malformed crop, stride, scale or multiple.
    """
    section = config.eval
    if section.mode not in MODES:
        raise ConfigError(f"eval.mode {section.mode!r}; valid: {', '.join(MODES)}")
    crop = (
        _pair(section.crop, "eval.crop")
        if len(section.crop)
        else (config.data.height, config.data.width)
    )
    stride = (
        _pair(section.stride, "eval.stride")
        if len(section.stride)
        else tuple(max(1, 2 * c // 3) for c in crop)
    )
    scales = tuple(float(s) for s in section.scales)
    if not scales or not all(s > 0 for s in scales):
        raise ConfigError(f"eval.scales={list(section.scales)}; expected positive numbers")
    if not isinstance(section.multiple, int) or section.multiple < 1:
        raise ConfigError(f"eval.multiple={section.multiple!r}; expected an integer >= 1")
    return Options(section.mode, crop, stride, bool(section.flip), scales, section.multiple)


def _pad_to(x: jax.Array, height: int, width: int) -> jax.Array:
    # Zeros of a normalised image are the dataset mean: the least surprising filler.
    h, w = x.shape[1:3]
    return jnp.pad(x, ((0, 0), (0, height - h), (0, width - w), (0, 0)))


def _whole(forward: Forward, x: jax.Array, multiple: int) -> jax.Array:
    """Logits of `x` at its own size, run padded to a multiple of `multiple`."""
    h, w = x.shape[1:3]
    padded = _pad_to(x, -(-h // multiple) * multiple, -(-w // multiple) * multiple)
    return forward(padded)[:, :h, :w]


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Offsets of the windows along one axis: every `stride`, the last flush with the end."""
    if size <= crop:
        return [0]
    count = -(-(size - crop) // stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


def _slide(forward: Forward, x: jax.Array, options: Options) -> jax.Array:
    """Logits of `x` averaged over the windows that cover each pixel."""
    batch, h, w, channels = x.shape
    crop_h, crop_w = min(options.crop[0], h), min(options.crop[1], w)
    corners = [
        (top, left)
        for top in window_starts(h, crop_h, options.stride[0])
        for left in window_starts(w, crop_w, options.stride[1])
    ]
    count = np.zeros((h, w), np.float32)
    for top, left in corners:
        count[top : top + crop_h, left : left + crop_w] += 1

    def run(window: jax.Array) -> jax.Array:
        return _whole(forward, window, options.multiple)

    classes = jax.eval_shape(run, jax.ShapeDtypeStruct((batch, crop_h, crop_w, channels), x.dtype))

    # One window (of the whole batch) per scan step: memory stays that of one window, and
    # the compiled program does not grow with the window count (~600 at 1080x1920).
    def add_window(total: jax.Array, corner: jax.Array) -> tuple[jax.Array, None]:
        start = (0, corner[0], corner[1], 0)
        window = jax.lax.dynamic_slice(x, start, (batch, crop_h, crop_w, channels))
        size = (batch, crop_h, crop_w, classes.shape[-1])
        summed = jax.lax.dynamic_slice(total, start, size) + run(window)
        return jax.lax.dynamic_update_slice(total, summed, start), None

    total = jnp.zeros((batch, h, w, classes.shape[-1]), jnp.float32)
    total, _ = jax.lax.scan(add_window, total, jnp.asarray(corners, jnp.int32))
    return total * jnp.asarray(1 / count)[None, :, :, None]


def _logits(forward: Forward, x: jax.Array, options: Options) -> jax.Array:
    if options.mode == "slide":
        return _slide(forward, x, options)
    return _whole(forward, x, options.multiple)


def log_probabilities(
    forward: Forward, images: jax.Array, size: Sequence[int], options: Options
) -> jax.Array:
    """Log of the class probabilities averaged over the passes (scales x flips).

    Args:
      forward: the model in eval mode on normalised images.
      images: [B, h, w, 3] normalised float32; at the training size under "resize", at
        their own size otherwise.
      size: (H, W) of the labels, where the probabilities are averaged.
      options: the evaluation mode.

    Returns:
      [B, H, W, K] float32 log-probabilities. A single pass gives `log_softmax` of its
      logits, so the loss and argmax are those of the logits.
    """
    h, w = images.shape[1:3]
    total, passes = None, 0
    for scale in options.scales:
        scaled_size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = layers.resize_bilinear(images, scaled_size)
        for flipped in (False, True) if options.flip else (False,):
            logits = _logits(forward, scaled[:, :, ::-1] if flipped else scaled, options)
            logits = logits[:, :, ::-1] if flipped else logits
            resized = layers.resize_bilinear(logits.astype(jnp.float32), size)
            log_p = jax.nn.log_softmax(resized, axis=-1)
            # log(p1 + p2) without leaving log space: no underflow to log(0).
            total = log_p if total is None else jnp.logaddexp(total, log_p)
            passes += 1
    return total - math.log(passes)
