"""One scene: its parts drawn far to near, then the image-only finish."""

import numpy as np
from PIL import Image, ImageDraw

from jaxseg.data.labels import VOID
from jaxseg.data.synthetic.appearance import finish, sky_image
from jaxseg.data.synthetic.canvas import Canvas
from jaxseg.data.synthetic.class_sets import SKY, class_style
from jaxseg.data.synthetic.ground import draw_ground
from jaxseg.data.synthetic.palette import pick
from jaxseg.data.synthetic.params import DEFAULTS, SPLITS
from jaxseg.data.synthetic.placement import place_things
from jaxseg.data.synthetic.roadside import draw_roadside, draw_skyline
from jaxseg.data.synthetic.scene import random_camera, random_layout


def _ego_hood(canvas: Canvas, rng: np.random.Generator) -> None:
    """The ego vehicle's bonnet along the bottom edge: void (255), as in IDD."""
    camera = canvas.camera
    top = camera.height * (1 - rng.uniform(0.05, 0.12))
    xs = np.linspace(-0.05, 1.05, 24) * camera.width
    bulge = camera.height * rng.uniform(0.01, 0.04)
    ys = top + bulge * ((xs / camera.width - 0.5) * 2) ** 2
    xy = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    xy += [(camera.width * 1.05, camera.height + 1.0), (-camera.width * 0.05, camera.height + 1.0)]
    color = pick(rng, ((30, 30, 32), (200, 200, 205), (120, 30, 30), (60, 60, 70)), 8)
    ImageDraw.Draw(canvas.image).polygon(xy, fill=color)
    ImageDraw.Draw(canvas.label).polygon(xy, fill=VOID)


def render(
    rng: np.random.Generator, height: int, width: int, classes: str = DEFAULTS.classes
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one random driving scene with the classes of `CLASS_SETS[classes]` (and void).

    Returns:
      image: [H, W, 3] uint8 RGB.
      label: [H, W] uint8 level-3 ids, 255 = void.
    """
    scene_style = class_style(classes)
    camera = random_camera(rng, height, width)
    layout = random_layout(rng)
    image = Image.fromarray(np.clip(sky_image(rng, camera), 0, 255).astype(np.uint8))
    label = Image.new("L", (width, height), SKY)
    canvas = Canvas(image, label, camera, scene_style)
    draw_ground(canvas, rng, layout)
    draw_skyline(canvas, rng)
    trees = draw_roadside(canvas, rng, layout)
    things = place_things(rng, camera, layout, trees, scene_style)
    # Painter's algorithm: far to near. The sort is stable, so equal depths keep their order.
    for _, draw in sorted(things, key=lambda thing: -thing[0]):
        draw(canvas)
    if rng.random() < 0.3:
        _ego_hood(canvas, rng)
    label_array = np.asarray(label, np.uint8)
    image_array = finish(rng, camera, layout, image, label_array, scene_style.noise)
    return image_array, label_array


def example(
    seed: int, split: str, index: int, height: int, width: int, classes: str = DEFAULTS.classes
) -> tuple[np.ndarray, np.ndarray]:
    """The example `index` of `split`: a pure function of its arguments.

    Returns:
      image: [H, W, 3] uint8 RGB.
      label: [H, W] uint8 level-3 ids, 255 = void.
    """
    sequence = np.random.SeedSequence([seed, SPLITS.index(split), index])
    return render(np.random.default_rng(sequence), height, width, classes)
