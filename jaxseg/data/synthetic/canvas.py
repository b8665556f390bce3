"""The canvas: an image and its label map drawn by the same polygon calls."""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxseg.data.synthetic.class_sets import Style
from jaxseg.data.synthetic.palette import Color, shade
from jaxseg.data.synthetic.scene import Camera, box_faces

# Faces turned away from the sky are darker: a cheap stand-in for lighting that makes boxes
# read as solids.
_FACE_SHADE = {"front": 1.0, "side": 0.78, "top": 1.12}


class Canvas:
    """An RGB image and its label map, drawn by the same calls so they stay aligned."""

    def __init__(self, image: Image.Image, label: Image.Image, camera: Camera, style: Style):
        self.image = image
        self.label = label
        self.camera = camera
        self.style = style
        self._image_draw = ImageDraw.Draw(image)
        self._label_draw = ImageDraw.Draw(label)

    def fill(self, world: np.ndarray, cls: int, color: Color) -> None:
        """Fills the world polygon [K, 3] with `cls` in the label and `color` in the image."""
        self._check(cls)
        xy = self.camera.project(world).ravel().tolist()
        self._image_draw.polygon(xy, fill=color)
        self._label_draw.polygon(xy, fill=cls)

    def paint(self, world: np.ndarray, color: Color) -> None:
        """Paints the world polygon [K, 3] into the image only (detail within one class)."""
        self._image_draw.polygon(self.camera.project(world).ravel().tolist(), fill=color)

    def paint_many(
        self, quads: np.ndarray, colors: Color | Sequence[Color], min_pixels: float = 1.0
    ) -> None:
        """Paints [N, 4, 3] quads, skipping those that would be smaller than `min_pixels`."""
        xy = self.camera.project(quads)
        extent = np.ptp(xy, axis=1)
        keep = np.flatnonzero((extent[:, 0] >= min_pixels) & (extent[:, 1] >= min_pixels))
        for i in keep:
            color = colors if isinstance(colors, tuple) else colors[i]
            self._image_draw.polygon(xy[i].ravel().tolist(), fill=color)

    def fill_ellipse(
        self,
        center: tuple[float, float, float],
        radius: tuple[float, float],
        cls: int | None,
        color: Color,
        *,
        paint_only: bool = False,
    ) -> None:
        """An ellipse facing the camera: world centre (x, y, z) and radii (rx, ry) in metres.

        With `paint_only` it is drawn into the image only, and `cls` is ignored.
        """
        cx, cy = self.camera.project(np.asarray(center))
        rx = self.camera.pixels(radius[0], center[2])
        ry = self.camera.pixels(radius[1], center[2])
        xy = [cx - rx, cy - ry, cx + rx, cy + ry]
        if not paint_only:
            self._check(cls)
        self._image_draw.ellipse(xy, fill=color)
        if not paint_only:
            self._label_draw.ellipse(xy, fill=cls)

    def _check(self, cls: int) -> None:
        if cls not in self.style.classes:  # A drawing function forgot to skip its object.
            raise AssertionError(f"class {cls} is not in this scene's class set")

    def box(self, box: tuple, cls: int, color: Color) -> dict[str, np.ndarray]:
        """Fills the visible faces of an axis-aligned box; returns them for painting details."""
        faces = box_faces(box, self.camera.eye)
        for name, face in faces.items():
            self.fill(face, cls, shade(color, _FACE_SHADE[name]))
        return faces
