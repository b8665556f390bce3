"""Segmenting images with a trained model: ids at each image's own size, and the files
`jaxseg.predict` writes (prediction PNGs in the label space's ids, colour overlays)."""

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from jaxseg import report, state, steps
from jaxseg.data import sources, transforms
from jaxseg.data.labels import VOID, LabelSpace
from jaxseg.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_jitted_logits = jax.jit(steps.predict_logits, static_argnums=2)


def predict_ids(
    train_state: state.TrainState,
    config: ml_collections.ConfigDict,
    label_space: LabelSpace,
    image: np.ndarray,
) -> np.ndarray:
    """Train ids [H, W] uint8 of one [H, W, 3] uint8 image, at the image's own size.

    The image is resized to the model's input size; logits are resized back bilinearly.
    A prediction of the void class (under `void: class`) is 255.
    """
    resized = transforms.resize(
        {"image": image, "label": np.zeros(image.shape[:2], np.uint8)},
        config.data.height,
        config.data.width,
    )["image"]
    logits = _jitted_logits(train_state, resized[None], image.shape[:2])
    ids = np.asarray(jnp.argmax(logits[0], axis=-1))
    return np.where(ids >= label_space.num_classes, VOID, ids).astype(np.uint8)


def find_images(path: str | Path) -> list[tuple[Path, Path]]:
    """(image, path relative to the input) for an image file or every image under a folder.

    Relative paths keep the sequence folders, whose frame names repeat across folders.
    """
    path = Path(path)
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.is_dir():
        raise DataError(f"{path}: no such image file or folder")
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"{path}: no .png/.jpg images found")
    return [(p, p.relative_to(path)) for p in images]


def predict_images(
    workdir: str | Path,
    images: list[tuple[Path, Path]],
    out_dir: str | Path,
    overrides: Sequence[str] = (),
) -> list[Path]:
    """Writes `{name}_pred.png` (the label space's ids, e.g. level-3 ids or Cityscapes
    labelIds, which `jaxseg.score` reads) and `{name}_overlay.jpg` per image under
    `out_dir`, mirroring the input's subfolders; returns the prediction paths. `overrides`
    (`key=value`) change the run's config first (e.g. `data.height`)."""
    run = state.restore(workdir, overrides)
    out_dir = Path(out_dir)
    written = []
    for path, relative in images:
        image = sources.read_image(str(path))
        ids = predict_ids(run.state, run.config, run.label_space, image)
        name = relative.name.rsplit(".", 1)[0].removesuffix("_leftImg8bit")
        target = out_dir / relative.parent
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(run.label_space.to_output_ids(ids)).save(target / f"{name}_pred.png")
        overlay = report.blend(image, ids, run.label_space)
        Image.fromarray(overlay).save(target / f"{name}_overlay.jpg", quality=90)
        written.append(target / f"{name}_pred.png")
    return written
