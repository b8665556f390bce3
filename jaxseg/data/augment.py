"""Training augmentations: pure, seeded functions on {"image", "label"} example dicts.

Each augmentation is `fn(example, rng, **params) -> example` on the decoded example
({"image": [H, W, 3] uint8, "label": [H, W] uint8, ...}, before normalisation), drawing all
its randomness from `rng`, so grain can apply a composition with
`MapDataset.random_map(augment)` and replay it exactly (grain seeds `rng` from the
pipeline seed and the element index). Geometric transforms move image and label together;
labels are always sampled with nearest neighbour, never interpolated. Pixels a transform
uncovers become void (255) in the label and the ImageNet mean colour in the image (zero
after normalisation).

Configuration (`config.data.augment`) is a ConfigDict of named entries, each holding the
keyword parameters of one augmentation; an empty ConfigDict means no augmentation. Entries
are applied in the canonical order of `AUGMENTATIONS` (scale_crop, rotate, hflip,
color_jitter) whatever order they were written in, for example::

    config.data.augment = ml_collections.ConfigDict(
        {"hflip": {"p": 0.5}, "rotate": {"angle": 1.0, "random": False, "p": 0.5}}
    )

or on the command line `--set 'data.augment={"hflip": {"p": 0.5}}'` (the section is open:
new entries are added, existing ones updated, e.g. `--set data.augment.hflip.p=0.3`). An
entry cannot be removed from the command line; its identity parameters switch it off
(p=0; min_scale=max_scale=1 without a crop size; jitter ranges 0). `build_augment` also
takes a list of {"name": ..., **params} dicts, applied in list order.
"""

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping

import ml_collections
import numpy as np
from PIL import Image, ImageEnhance

from jaxseg.data import transforms
from jaxseg.data.labels import VOID
from jaxseg.errors import ConfigError

# Fill colour for image pixels a transform uncovers: normalises to ~0 like the padding of a
# zero-mean input, so the border carries no spurious signal.
MEAN_COLOR = tuple(int(round(c * 255)) for c in transforms.IMAGENET_MEAN)

Augmentation = Callable[[dict, np.random.Generator], dict]


def hflip(example: dict, rng: np.random.Generator, *, p: float = 0.5) -> dict:
    """Mirrors image and label left-right with probability `p`.

    Args:
      example: {"image": [H, W, 3] uint8, "label": [H, W] uint8, ...}.
      rng: source of the coin flip.
      p: flip probability in [0, 1].
    """
    if rng.random() >= p:
        return example
    return {
        **example,
        "image": np.ascontiguousarray(example["image"][:, ::-1]),
        "label": np.ascontiguousarray(example["label"][:, ::-1]),
    }


def rotate(
    example: dict,
    rng: np.random.Generator,
    *,
    angle: float = 1.0,
    random: bool = False,
    p: float = 1.0,
) -> dict:
    """Rotates image (bilinear) and label (nearest) about the centre, keeping the size.

    The seed rotated training images by a fixed 1 degree and trained on them together with
    the unrotated ones; `p=0.5` is that mix in expectation. `random=True` draws the angle
    uniformly from [-angle, angle] instead. Uncovered corners become void in the label and
    the ImageNet mean colour in the image.

    Args:
      example: {"image": [H, W, 3] uint8, "label": [H, W] uint8, ...}.
      rng: source of the coin flip and the random angle.
      angle: degrees counter-clockwise, or the bound of the random range.
      random: draw the angle from [-angle, angle].
      p: probability of rotating at all, in [0, 1].
    """
    if rng.random() >= p:
        return example
    degrees = rng.uniform(-abs(angle), abs(angle)) if random else angle
    if degrees % 360 == 0:
        return example
    image = Image.fromarray(example["image"]).rotate(
        degrees, resample=Image.BILINEAR, fillcolor=MEAN_COLOR
    )
    label = Image.fromarray(example["label"]).rotate(
        degrees, resample=Image.NEAREST, fillcolor=VOID
    )
    return {**example, "image": np.asarray(image), "label": np.asarray(label)}


def scale_crop(
    example: dict,
    rng: np.random.Generator,
    *,
    min_scale: float = 0.5,
    max_scale: float = 2.0,
    height: int | None = None,
    width: int | None = None,
) -> dict:
    """Rescales by a random factor, then crops a random `height` x `width` window.

    Where the rescaled example is smaller than the window it is padded at the bottom/right
    (label void, image the mean colour) before cropping, so the output size is fixed.

    Args:
      example: {"image": [H, W, 3] uint8, "label": [H, W] uint8, ...}.
      rng: source of the scale factor and the crop offset.
      min_scale: smallest scale factor (> 0).
      max_scale: largest scale factor (>= min_scale).
      height: output height; None keeps the input height.
      width: output width; None keeps the input width.

    Returns:
      The example with image [height, width, 3] and label [height, width].
    """
    in_h, in_w = example["label"].shape
    out_h, out_w = height or in_h, width or in_w
    scale = rng.uniform(min_scale, max_scale)
    scaled = transforms.resize(example, max(1, round(in_h * scale)), max(1, round(in_w * scale)))
    image, label = _pad_to(scaled["image"], scaled["label"], out_h, out_w)
    top = rng.integers(0, label.shape[0] - out_h + 1)
    left = rng.integers(0, label.shape[1] - out_w + 1)
    window = np.s_[top : top + out_h, left : left + out_w]
    return {
        **example,
        "image": np.ascontiguousarray(image[window]),
        "label": np.ascontiguousarray(label[window]),
    }


def _pad_to(
    image: np.ndarray, label: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    pad_h, pad_w = max(0, height - label.shape[0]), max(0, width - label.shape[1])
    if not (pad_h or pad_w):
        return image, label
    padded_image = np.empty((label.shape[0] + pad_h, label.shape[1] + pad_w, 3), np.uint8)
    padded_image[:] = MEAN_COLOR
    padded_image[: image.shape[0], : image.shape[1]] = image
    padded_label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=VOID)
    return padded_image, padded_label


def color_jitter(
    example: dict,
    rng: np.random.Generator,
    *,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
) -> dict:
    """Random brightness, contrast and saturation of the image; the label is untouched.

    Each factor is drawn uniformly from [max(0, 1 - x), 1 + x] and applied in that fixed
    order with PIL's ImageEnhance, which is what torchvision's ColorJitter does on PIL
    images (torchvision also shuffles the order; a fixed one keeps this simpler).

    Args:
      example: {"image": [H, W, 3] uint8, ...}.
      rng: source of the three factors.
      brightness: brightness range (>= 0; 0 leaves brightness alone).
      contrast: contrast range (>= 0).
      saturation: saturation range (>= 0).
    """
    enhancers = (
        (ImageEnhance.Brightness, brightness),
        (ImageEnhance.Contrast, contrast),
        (ImageEnhance.Color, saturation),
    )
    # Draw every factor even when unused, so one parameter never shifts another's draw.
    factors = [rng.uniform(max(0.0, 1.0 - x), 1.0 + x) for _, x in enhancers]
    image = Image.fromarray(example["image"])
    for (enhancer, x), factor in zip(enhancers, factors, strict=True):
        if x > 0:
            image = enhancer(image).enhance(factor)
    return {**example, "image": np.asarray(image)}


# Insertion order is the canonical order in which configured entries are applied: the
# geometric ones first, so jitter never sees the mean-colour padding as content.
AUGMENTATIONS: dict[str, Callable[..., dict]] = {
    "scale_crop": scale_crop,
    "rotate": rotate,
    "hflip": hflip,
    "color_jitter": color_jitter,
}


def _keyword_defaults(fn: Callable[..., dict]) -> dict:
    """The parameters of an augmentation (its keyword-only arguments) and their defaults."""
    return {
        name: param.default
        for name, param in inspect.signature(fn).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_size(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def _is_range(value) -> bool:
    return _is_number(value) and value >= 0


# Checked when the augmentation is built, so a bad value fails in the main process with the
# config key in the message rather than later inside a grain worker.
_PARAM_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "p": (lambda v: _is_number(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    "angle": (_is_number, "a number of degrees"),
    "random": (lambda v: isinstance(v, bool), "True or False"),
    "min_scale": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "max_scale": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "height": (_is_size, "a positive int or None"),
    "width": (_is_size, "a positive int or None"),
    "brightness": (_is_range, "a range >= 0"),
    "contrast": (_is_range, "a range >= 0"),
    "saturation": (_is_range, "a range >= 0"),
}


def _check_values(name: str, params: dict) -> None:
    for key, value in params.items():
        is_valid, expected = _PARAM_CHECKS[key]
        if not is_valid(value):
            raise ConfigError(f"augmentation {name!r}: {key}={value!r}, expected {expected}")
    if name == "scale_crop":
        lo, hi = (
            {**_keyword_defaults(scale_crop), **params}[k] for k in ("min_scale", "max_scale")
        )
        if lo > hi:
            raise ConfigError(
                f"augmentation 'scale_crop': need min_scale <= max_scale, got {lo} > {hi}"
            )


def get_augmentation(name: str, **params) -> Augmentation:
    """One augmentation with its parameters bound: `fn(example, rng) -> example`.

    Raises:
      ConfigError: unknown name, unknown parameter or invalid value; the message lists the
        valid names or parameters.
    """
    if name not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    fn = AUGMENTATIONS[name]
    valid = tuple(_keyword_defaults(fn))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r} of augmentation {name!r}; valid: {', '.join(valid)}"
        )
    _check_values(name, params)
    return functools.partial(fn, **params)


def _apply_all(example: dict, rng: np.random.Generator, *, steps: tuple[Augmentation, ...]) -> dict:
    for step in steps:
        example = step(example, rng)
    return example


def _is_mapping(value) -> bool:
    # ConfigDict is not a collections.abc.Mapping.
    return isinstance(value, Mapping | ml_collections.ConfigDict)


def _params(name: str, value) -> dict:
    if not _is_mapping(value):
        raise ConfigError(f"augmentation {name!r}: expected a mapping of parameters, got {value!r}")
    return dict(value)


def build_augment(specs: Mapping | Iterable[Mapping] | None) -> Augmentation:
    """Composes configured augmentations into one `fn(example, rng) -> example`.

    The result is picklable (grain worker processes receive it) and deterministic given
    `rng`'s state.

    Args:
      specs: a mapping of augmentation name -> parameters (e.g. `config.data.augment`),
        applied in the canonical order of `AUGMENTATIONS`; or a list of
        {"name": ..., **params} applied in list order; None or empty for none.

    Raises:
      ConfigError: an unknown augmentation or parameter, or an invalid value.
    """
    if specs is None:
        entries = []
    elif _is_mapping(specs):
        unknown = sorted(set(specs.keys()) - set(AUGMENTATIONS))
        if unknown:
            get_augmentation(unknown[0])  # Raises with the valid names.
        entries = [(name, _params(name, specs[name])) for name in AUGMENTATIONS if name in specs]
    else:
        entries = []
        for spec in specs:
            params = _params("?", spec)
            if "name" not in params:
                raise ConfigError(f"augmentation {params!r} has no 'name'")
            entries.append((params.pop("name"), params))
    steps = tuple(get_augmentation(name, **params) for name, params in entries)
    return functools.partial(_apply_all, steps=steps)
