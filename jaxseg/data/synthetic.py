"""The built-in synthetic driving-scene dataset: jaxseg's embedded default data.

Scenes are drawn procedurally with a pinhole camera over a flat ground plane: hazy sky, a road
in perspective with lane markings, curbs, sidewalks, dirt shoulders, buildings with windows and
shop signs, walls, fences, trees, poles, billboards, traffic signs and lights, and traffic
(cars, trucks, buses, autorickshaws, motorcycles with riders, people) sized by their depth and
painted far to near. Image and label are drawn by the same polygon calls, so they align
exactly; texture, lighting, shadows and noise touch the image only.

The `classes` parameter picks a class set (`CLASS_SETS`): "common" (the default) draws only
the large classes a small model learns in a short run, with half the texture noise; "all"
draws every level-3 class, including the thin and rare ones.

Every example is a pure function of (seed, split, index, classes): results do not depend on
the number of worker processes. The output has IDD's layout (SPEC 3), so every data path
reads it like real IDD:

    leftImg8bit/{split}/{seq}/{id}_leftImg8bit.jpg
    gtFine/{split}/{seq}/{id}_gtFine_labellevel3Ids.png   (mode L, level-3 ids, 255 = void)

plus `synthetic.json`, written last, which marks a complete dataset.

    python -m jaxseg.data.synthetic --out DIR [--train N --val N --test N --height H
        --width W --seed S --classes {common,all} --workers N]
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jaxseg.data.labels import IDD_LEVEL3, VOID

NUM_CLASSES = IDD_LEVEL3.num_classes
from jaxseg.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Bump when the drawing changes: it is part of the cache key and of the manifest.
GENERATOR_VERSION = 2  # 2: the `classes` parameter; "all" draws exactly as version 1 did.
# Names the generator in the manifest; not `__name__`, which is "__main__" under `python -m`.
GENERATOR = "jaxseg.data.synthetic"
MANIFEST = "synthetic.json"
SPLITS = ("train", "val", "test")
IMAGES_PER_SEQUENCE = 20
JPEG_QUALITY = 90
DEFAULT_PARAMS = {
    "train": 200, "val": 40, "test": 10, "height": 256, "width": 512, "seed": 0,
    "classes": "common",
}  # fmt: skip

# Level-3 ids (jaxseg.classes.CLASS_NAMES).
ROAD, DRIVABLE, SIDEWALK, NON_DRIVABLE, PERSON, RIDER, MOTORCYCLE, BICYCLE = range(8)
AUTORICKSHAW, CAR, TRUCK, BUS, VEHICLE, CURB, WALL, FENCE, GUARD_RAIL = range(8, 17)
BILLBOARD, SIGN, LIGHT, POLE, OBSTACLE, BUILDING, BRIDGE, VEGETATION, SKY = range(17, 26)

# The classes a dataset's scenes contain (the `classes` parameter). "all": every level-3
# class, including the thin and rare ones (bicycle, traffic light, fence...) that each cover
# well under 1% of the pixels. "common": only classes that cover >= ~1% of the pixels and
# appear in most images, so a small model can learn all of them in a short run. Objects of
# other classes are simply not drawn: what is behind them shows, nothing is relabelled.
CLASS_SETS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(NUM_CLASSES)),
    "common": (
        ROAD, DRIVABLE, SIDEWALK, NON_DRIVABLE, PERSON, AUTORICKSHAW, CAR, TRUCK, BUS, CURB,
        BILLBOARD, POLE, BUILDING, VEGETATION, SKY,
    ),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Style:
    """How a class set draws its scenes; "all" keeps the defaults (the original drawing)."""

    classes: frozenset[int]
    noise: float = 1.0  # Scales the texture and sensor noise.
    person_scale: float = 1.0  # Scales people's size.
    people: tuple[int, int] = (0, 9)  # Pedestrians per scene: [low, high).
    vehicles: tuple[int, int] = (1, 10)  # Vehicles tried per scene: [low, high).
    vehicle_boost: tuple[tuple[str, float], ...] = ()  # (name, factor): more of some vehicles.
    pole_width: tuple[float, float] = (0.07, 0.13)  # Half width of street-light poles (m).

    def has(self, *classes: int) -> bool:
        return all(cls in self.classes for cls in classes)


STYLES = {
    "all": Style(frozenset(CLASS_SETS["all"])),
    # Less noise, and bigger, more frequent people and thicker poles: thin and small
    # things are what a short training run fails to learn.
    "common": Style(
        frozenset(CLASS_SETS["common"]),
        noise=0.5,
        person_scale=1.15,
        people=(2, 12),
        vehicles=(2, 11),
        vehicle_boost=(("truck", 2.0), ("bus", 2.0)),
        pole_width=(0.1, 0.17),
    ),
}


def class_style(classes: str) -> Style:
    """The `Style` of a class set's name; ConfigError names the valid ones."""
    if classes not in CLASS_SETS:
        raise ConfigError(f"synthetic: unknown classes {classes!r}; valid: {', '.join(CLASS_SETS)}")
    return STYLES[classes]


# Per-class texture strength (pixel std of the luminance noise); the last entry is void.
# Rough surfaces (vegetation, dirt, walls) get more, so texture is a cue but not a decisive one.
_TEXTURE = np.array(
    [6, 11, 8, 13, 6, 6, 5, 5, 5, 4, 6, 5, 8, 8, 10, 6, 5, 7, 4, 4, 5, 8, 9, 8, 22, 2.5, 3],
    np.float32,
)
_TEXTURE_LUT = np.full(256, _TEXTURE[-1], np.float32)
_TEXTURE_LUT[:NUM_CLASSES] = _TEXTURE[:NUM_CLASSES]

# Base colours; every use adds random variation. Road and sidewalk greys are close on purpose,
# as are dirt and muddy shoulders, and some facades are as green as trees.
_ROAD = ((98, 98, 102), (84, 86, 92), (118, 114, 108), (76, 76, 80))
_SIDEWALK = ((132, 130, 126), (150, 140, 130), (160, 112, 104), (118, 120, 122))
_DIRT = ((136, 116, 92), (150, 132, 104), (118, 104, 86))
_MUD = ((112, 100, 84), (100, 94, 86))
_GRASS = ((84, 110, 60), (104, 118, 70))
_FACADE = (
    (196, 180, 150), (220, 214, 200), (170, 160, 150), (150, 150, 155), (200, 160, 120),
    (140, 170, 150), (120, 140, 100), (210, 190, 170), (180, 120, 100), (110, 110, 115),
)  # fmt: skip
_FOLIAGE = ((60, 90, 40), (80, 110, 50), (50, 75, 40), (96, 120, 62), (70, 96, 70))
_CAR = (
    (225, 225, 225), (190, 192, 196), (40, 40, 44), (150, 30, 30), (40, 60, 120),
    (120, 120, 126), (210, 200, 180), (60, 90, 80),
)  # fmt: skip
_TRUCK = ((220, 140, 40), (200, 180, 50), (180, 50, 40), (40, 90, 160), (60, 130, 70))
_BUS = ((180, 40, 40), (40, 80, 150), (220, 220, 215), (60, 130, 90), (220, 120, 40))
_AUTO_BODY = ((210, 190, 40), (60, 140, 60), (40, 40, 40))
_CLOTHES = (
    (200, 40, 40), (40, 60, 140), (230, 230, 220), (40, 40, 40), (220, 170, 40),
    (120, 60, 140), (60, 120, 80), (140, 100, 70), (230, 110, 150),
)  # fmt: skip
_SKIN = ((150, 100, 70), (120, 80, 55), (180, 130, 95))
_BRIGHT = (
    (230, 50, 40), (250, 200, 30), (40, 90, 200), (40, 160, 70), (240, 240, 240),
    (240, 120, 20), (150, 40, 150), (20, 20, 20),
)  # fmt: skip


# ----------------------------------------------------------------------------- geometry


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera `eye` metres above a flat road, looking along +z.

    World coordinates: x to the right, y up from the road, z forward (metres).
    """

    height: int  # Image rows.
    width: int  # Image columns.
    focal: float  # Pixels per metre at 1 m depth.
    horizon: float  # Image row of the horizon (the vanishing point's row).
    center: float  # Image column of the vanishing point.
    eye: float  # Camera height above the road (m).

    @property
    def z_bottom(self) -> float:
        """Depth of the road seen at the bottom image row."""
        return self.focal * self.eye / (self.height - self.horizon)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> image points [..., 2] (column, row)."""
        points = np.asarray(points, np.float64)
        z = np.maximum(points[..., 2], 1e-3)
        x = self.center + self.focal * points[..., 0] / z
        y = self.horizon + self.focal * (self.eye - points[..., 1]) / z
        return np.stack([x, y], axis=-1)

    def pixels(self, metres: float, z: float) -> float:
        """The image size of `metres` seen at depth `z`."""
        return self.focal * metres / z

    def visible_x(self, z: float) -> tuple[float, float]:
        """The x range (m) the image spans at depth `z`."""
        return (-self.center * z / self.focal, (self.width - self.center) * z / self.focal)


def _sub_quads(face: np.ndarray, u0, u1, v0, v1) -> np.ndarray:
    """Rectangles inside a planar quad face, in its (u, v) coordinates in [0, 1].

    Args:
      face: [4, 3] corners ordered (u, v) = (0, 0), (1, 0), (1, 1), (0, 1).
      u0, u1, v0, v1: scalars or [N] arrays.

    Returns:
      [N, 4, 3] world corners.
    """
    origin, du, dv = face[0], face[1] - face[0], face[3] - face[0]
    u0, u1, v0, v1 = (np.atleast_1d(np.asarray(a, np.float64))[:, None] for a in (u0, u1, v0, v1))
    corners = [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]
    return np.stack([origin + u * du + v * dv for u, v in corners], axis=1)


def _box_faces(box: tuple, eye: float) -> dict[str, np.ndarray]:
    """The faces of an axis-aligned box that a camera at (0, eye, 0) sees.

    A box is (x0, x1, y0, y1, z0, z1). Its faces are convex and do not overlap in the image,
    so their drawing order does not matter.
    """
    x0, x1, y0, y1, z0, z1 = box
    faces = {"front": np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0]])}
    side_x = x0 if x0 > 0 else x1 if x1 < 0 else None
    if side_x is not None:
        faces["side"] = np.array(
            [[side_x, y0, z0], [side_x, y0, z1], [side_x, y1, z1], [side_x, y1, z0]]
        )
    if y1 < eye:
        faces["top"] = np.array([[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]])
    return faces


def _ground_quad(x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray:
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]])


def _upright(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    """A rectangle facing the camera at depth z."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


def _span(sign: int, d0: float, d1: float) -> tuple[float, float]:
    """The x interval between lateral distances d0 and d1 on the side `sign` (-1 left, +1 right)."""
    a, b = sign * d0, sign * d1
    return (min(a, b), max(a, b))


# ----------------------------------------------------------------------------- drawing


def _vary(rng: np.random.Generator, base, spread: float = 12.0) -> tuple[int, int, int]:
    """`base` with a random brightness shift and a smaller random tint."""
    color = np.asarray(base, np.float64) + rng.normal(0, spread) + rng.normal(0, spread / 2, 3)
    return tuple(int(c) for c in np.clip(color, 0, 255))


def _pick(rng: np.random.Generator, choices, spread: float = 12.0) -> tuple[int, int, int]:
    return _vary(rng, choices[rng.integers(len(choices))], spread)


def _shade(color, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in color)


# Faces turned away from the sky are darker: a cheap stand-in for lighting that makes boxes
# read as solids.
_FACE_SHADE = {"front": 1.0, "side": 0.78, "top": 1.12}


class Canvas:
    """An RGB image and its label map, drawn by the same calls so they stay aligned."""

    def __init__(
        self, image: Image.Image, label: Image.Image, camera: Camera, style: Style = STYLES["all"]
    ):
        self.image = image
        self.label = label
        self.camera = camera
        self.style = style
        self._image_draw = ImageDraw.Draw(image)
        self._label_draw = ImageDraw.Draw(label)

    def fill(self, world: np.ndarray, cls: int, color) -> None:
        """Fills the world polygon [K, 3] with `cls` in the label and `color` in the image."""
        self._check(cls)
        xy = self.camera.project(world).ravel().tolist()
        self._image_draw.polygon(xy, fill=color)
        self._label_draw.polygon(xy, fill=cls)

    def paint(self, world: np.ndarray, color) -> None:
        """Paints the world polygon [K, 3] into the image only (detail within one class)."""
        self._image_draw.polygon(self.camera.project(world).ravel().tolist(), fill=color)

    def paint_many(self, quads: np.ndarray, colors, min_pixels: float = 1.0) -> None:
        """Paints [N, 4, 3] quads, skipping those that would be smaller than `min_pixels`."""
        xy = self.camera.project(quads)
        extent = np.ptp(xy, axis=1)
        keep = np.flatnonzero((extent[:, 0] >= min_pixels) & (extent[:, 1] >= min_pixels))
        for i in keep:
            color = colors if isinstance(colors, tuple) else colors[i]
            self._image_draw.polygon(xy[i].ravel().tolist(), fill=color)

    def fill_ellipse(
        self, center: tuple, radius: tuple, cls: int | None, color, *, paint_only: bool = False
    ) -> None:
        """An ellipse facing the camera: world centre (x, y, z) and radii (rx, ry) in metres."""
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

    def box(self, box: tuple, cls: int, color) -> dict[str, np.ndarray]:
        """Fills the visible faces of an axis-aligned box; returns them for painting details."""
        faces = _box_faces(box, self.camera.eye)
        for name, face in faces.items():
            self.fill(face, cls, _shade(color, _FACE_SHADE[name]))
        return faces


# ----------------------------------------------------------------------------- scene layout


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of the road, described by lateral distances (m) from the camera's axis."""

    sign: int  # -1: left, +1: right.
    road_edge: float  # Where the asphalt ends.
    shoulder: float  # Width of the muddy drivable-fallback shoulder (0: none).
    curb: float  # Width of the curb (0: none).
    sidewalk: float  # Width of the sidewalk (0: none).
    facade: float  # Where buildings, walls and fences start.
    guard_rail: bool

    @property
    def walk_inner(self) -> float:
        return self.road_edge + self.shoulder

    @property
    def walk_outer(self) -> float:
        return self.walk_inner + self.curb + self.sidewalk


@dataclasses.dataclass(frozen=True)
class Layout:
    """The road and its two sides."""

    lane_width: float
    lanes: int
    left: Side
    right: Side

    @property
    def road(self) -> tuple[float, float]:
        return (-self.left.road_edge, self.right.road_edge)


def random_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    return Camera(
        height=height,
        width=width,
        focal=width * rng.uniform(0.55, 0.8),
        horizon=height * rng.uniform(0.34, 0.5),
        center=width * rng.uniform(0.4, 0.6),
        eye=rng.uniform(1.25, 1.65),
    )


def _random_side(rng: np.random.Generator, sign: int, road_edge: float) -> Side:
    guard_rail = rng.random() < 0.12
    sidewalk = 0.0 if guard_rail or rng.random() < 0.25 else rng.uniform(1.5, 4.0)
    shoulder = rng.uniform(0.4, 2.5) if rng.random() < 0.35 else 0.0
    curb = rng.uniform(0.2, 0.35) if sidewalk else 0.0
    facade = road_edge + shoulder + curb + sidewalk + rng.uniform(0.5, 6.0)
    return Side(sign, road_edge, shoulder, curb, sidewalk, facade, guard_rail)


def random_layout(rng: np.random.Generator) -> Layout:
    lane_width = rng.uniform(3.0, 3.7)
    lanes = int(rng.choice([1, 2, 2, 3, 3, 4]))
    ego_lane = rng.integers(lanes)
    left_edge = (ego_lane + rng.uniform(0.3, 0.7)) * lane_width
    right_edge = lanes * lane_width - left_edge
    return Layout(
        lane_width, lanes, _random_side(rng, -1, left_edge), _random_side(rng, 1, right_edge)
    )


# ----------------------------------------------------------------------------- background


def _sky(rng: np.random.Generator, camera: Camera) -> np.ndarray:
    """[H, W, 3] float sky: blue at the top fading into haze at the horizon, some clouds."""
    top = _vary(rng, (80, 130, 200), 15)
    haze = _vary(rng, (200, 206, 214), 12)
    if rng.random() < 0.35:  # Indian skies are often washed out to a pale grey.
        top = tuple(int(0.35 * t + 0.65 * h) for t, h in zip(top, haze, strict=True))
    rows = np.arange(camera.height, dtype=np.float32)[:, None, None]
    t = np.clip(rows / max(camera.horizon, 1.0), 0, 1) ** rng.uniform(0.6, 1.5)
    sky = np.asarray(top, np.float32) * (1 - t) + np.asarray(haze, np.float32) * t
    sky = np.broadcast_to(sky, (camera.height, camera.width, 3)).copy()
    if rng.random() < 0.5:
        sky = _clouds(rng, camera, sky)
    return sky


def _clouds(rng: np.random.Generator, camera: Camera, sky: np.ndarray) -> np.ndarray:
    mask = Image.new("L", (camera.width, camera.height), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(rng.integers(2, 7)):
        cx = rng.uniform(0, camera.width)
        cy = rng.uniform(0, camera.horizon * 0.8)
        rx = camera.width * rng.uniform(0.04, 0.15)
        ry = rx * rng.uniform(0.2, 0.45)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(rng.uniform(90, 200)))
    radius = max(1.0, camera.width / 80)
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(radius)), np.float32)[..., None] / 255
    return sky * (1 - alpha) + np.float32(rng.uniform(215, 245)) * alpha


def draw_ground(canvas: Canvas, rng: np.random.Generator, layout: Layout) -> None:
    """Dirt or grass, shoulders, the road with its markings and patches, curbs and sidewalks."""
    camera = canvas.camera
    near, far = camera.z_bottom * 0.5, 5000.0
    x_far = 3 * far  # Wide enough to reach both image borders at every depth.
    for side in (layout.left, layout.right):
        grass = rng.random() < 0.25
        cls, color = (
            (VEGETATION, _pick(rng, _GRASS)) if grass else (NON_DRIVABLE, _pick(rng, _DIRT))
        )
        canvas.fill(_ground_quad(*_span(side.sign, 0, x_far), near, far), cls, color)
    road_x0, road_x1 = layout.road
    for side in (layout.left, layout.right):
        if side.shoulder and canvas.style.has(DRIVABLE):
            x0, x1 = _span(side.sign, side.road_edge - 0.05, side.walk_inner)
            canvas.fill(_ground_quad(x0, x1, near, far), DRIVABLE, _pick(rng, _MUD))
    road_color = _pick(rng, _ROAD, 10)
    canvas.fill(_ground_quad(road_x0, road_x1, near, far), ROAD, road_color)
    _road_patches(canvas, rng, layout, road_color)
    _lane_markings(canvas, rng, layout)
    for side in (layout.left, layout.right):
        if side.sidewalk:
            _curb_and_sidewalk(canvas, rng, side, near, far)


def _road_patches(canvas: Canvas, rng: np.random.Generator, layout: Layout, road_color) -> None:
    """Repaired asphalt (image only) and mud on the road (drivable fallback)."""
    road_x0, road_x1 = layout.road
    z_min = canvas.camera.z_bottom * 0.6
    for _ in range(rng.integers(0, 5)):
        x = rng.uniform(road_x0, road_x1)
        z = z_min * np.exp(rng.uniform(0, 3))
        w, d = rng.uniform(0.5, 3), rng.uniform(1, 8)
        canvas.paint(
            _ground_quad(x - w, x + w, z, z + d), _shade(road_color, rng.uniform(0.7, 1.2))
        )
    if rng.random() < 0.3 and canvas.style.has(DRIVABLE):
        # An irregular muddy patch, usually at the road's edge.
        x = rng.choice([road_x0, road_x1]) + rng.normal(0, 1)
        z = z_min * np.exp(rng.uniform(0.3, 2.5))
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radius = rng.uniform(0.5, 2.0) * rng.uniform(0.6, 1.4, 9)
        blob = np.stack(
            [x + radius * np.cos(angles), np.zeros(9), z + 3 * radius * np.sin(angles)], axis=1
        )
        blob[:, 2] = np.maximum(blob[:, 2], z_min)
        canvas.fill(blob, DRIVABLE, _pick(rng, _MUD))


def _lane_markings(canvas: Canvas, rng: np.random.Generator, layout: Layout) -> None:
    """Dashed lane lines and solid edge lines; painted, since IDD labels them as road."""
    if rng.random() < 0.2:
        return
    road_x0, road_x1 = layout.road
    white = _vary(rng, (225, 225, 215), 10)
    z_start = canvas.camera.z_bottom * 0.5 - rng.uniform(0, 9)
    period, dash = rng.uniform(8, 12), rng.uniform(2.5, 4)
    starts = z_start + period * np.arange(int(120 / period))
    starts = starts[starts + dash > 0.3]
    half = rng.uniform(0.06, 0.1)
    for k in range(1, layout.lanes):
        x = road_x0 + k * layout.lane_width
        quads = np.repeat(_ground_quad(x - half, x + half, 0, 1)[None], len(starts), axis=0)
        quads[:, :2, 2] = np.maximum(starts, 0.3)[:, None]
        quads[:, 2:, 2] = (starts + dash)[:, None]
        canvas.paint_many(quads, white, min_pixels=0.5)
    if rng.random() < 0.5:
        for x in (road_x0 + 0.3, road_x1 - 0.3):
            canvas.paint(_ground_quad(x - half, x + half, 0.5, 3000), white)


def _curb_and_sidewalk(
    canvas: Canvas, rng: np.random.Generator, side: Side, near: float, far: float
) -> None:
    curb_height = rng.uniform(0.12, 0.25)
    walk = _pick(rng, _SIDEWALK, 10)
    x0, x1 = _span(side.sign, side.walk_inner + side.curb, side.walk_outer)
    canvas.fill(_ground_quad(x0, x1, near, far, y=curb_height), SIDEWALK, walk)
    if rng.random() < 0.5:  # Paving joints.
        zs = near + rng.uniform(0.8, 1.5) * np.arange(60)
        joints = np.repeat(_ground_quad(x0, x1, 0, 1, y=curb_height)[None], len(zs), axis=0)
        joints[:, :2, 2] = zs[:, None]
        joints[:, 2:, 2] = zs[:, None] + 0.06
        canvas.paint_many(joints, _shade(walk, 0.8), min_pixels=0.5)
    cx0, cx1 = _span(side.sign, side.walk_inner, side.walk_inner + side.curb)
    curb_color = _pick(rng, ((170, 170, 165), (150, 150, 140)), 10)
    painted = rng.random() < 0.5  # Black-and-yellow curbs are common on Indian roads.
    if painted:
        curb_color = _vary(rng, (220, 200, 60), 12)
    faces = canvas.box((cx0, cx1, 0.0, curb_height, near, far), CURB, curb_color)
    if painted:
        length = rng.uniform(0.8, 1.5)
        zs = near + length * np.arange(0, int(60 / length), 2)
        dark = _vary(rng, (35, 35, 35), 6)
        # The side and top faces run along z: paint every other segment of `length`. The
        # corners that lie farther along z are (1, 2) on a side face and (2, 3) on the top.
        for name, far_corners in (("side", [0, 1, 1, 0]), ("top", [0, 0, 1, 1])):
            if name in faces:
                quads = np.repeat(faces[name][None], len(zs), axis=0)
                quads[:, :, 2] = zs[:, None] + length * np.array(far_corners)[None, :]
                canvas.paint_many(quads, dark, min_pixels=0.5)


# ----------------------------------------------------------------------------- structures


def _windows(canvas: Canvas, rng: np.random.Generator, face: np.ndarray, height: float) -> None:
    """A grid of windows above the ground floor of a building face."""
    length = np.linalg.norm(face[1] - face[0])
    bay = rng.uniform(2.5, 4.5)
    bays, floors = max(1, int(length / bay)), int(height / 3.1)
    if floors < 2:
        return
    i, j = np.meshgrid(np.arange(bays), np.arange(1, floors), indexing="ij")
    i, j = i.ravel(), j.ravel()
    frac = rng.uniform(0.3, 0.7)
    u0, u1 = (i + 0.5 - frac / 2) / bays, (i + 0.5 + frac / 2) / bays
    v0, v1 = (j * 3.1 + 0.9) / height, (j * 3.1 + 2.3) / height
    glass = _pick(rng, ((50, 60, 70), (90, 110, 130), (30, 30, 35), (140, 150, 150)), 10)
    colors = [_shade(glass, f) for f in rng.uniform(0.7, 1.3, len(i))]
    canvas.paint_many(_sub_quads(face, u0, u1, v0, v1), colors)


def _shop_front(canvas: Canvas, rng: np.random.Generator, face: np.ndarray, height: float) -> None:
    """Shutters and a shop signboard (billboard class) along the ground floor."""
    length = np.linalg.norm(face[1] - face[0])
    shops = max(1, int(length / rng.uniform(3, 6)))
    edges = np.linspace(0, 1, shops + 1)
    shutter = _pick(rng, ((120, 120, 125), (90, 80, 70), (60, 70, 90)), 10)
    canvas.paint_many(
        _sub_quads(face, edges[:-1] + 0.02, edges[1:] - 0.02, 0, 2.2 / height), shutter
    )
    if rng.random() < 0.7:
        board_v = (2.4 / height, min(1.0, rng.uniform(3.0, 3.6) / height))
        for u0, u1 in zip(edges[:-1], edges[1:], strict=True):
            if rng.random() < 0.7:
                quad = _sub_quads(face, u0 + 0.03, u1 - 0.03, *board_v)[0]
                canvas.fill(quad, BILLBOARD, _pick(rng, _BRIGHT, 15))


def _building(canvas: Canvas, rng: np.random.Generator, box: tuple) -> None:
    height = box[3]
    faces = canvas.box(box, BUILDING, _pick(rng, _FACADE, 15))
    for name in ("front", "side"):
        if name in faces:
            _windows(canvas, rng, faces[name], height)
            if rng.random() < 0.6:
                _shop_front(canvas, rng, faces[name], height)


def _wall(canvas: Canvas, rng: np.random.Generator, side: Side, z0: float, z1: float) -> None:
    x0, x1 = _span(side.sign, side.facade, side.facade + 0.25)
    height = rng.uniform(1.0, 2.6)
    color = _pick(rng, ((200, 190, 170), (160, 150, 140), (170, 90, 70), (220, 220, 210)), 12)
    faces = canvas.box((x0, x1, 0, height, z0, z1), WALL, color)
    if "side" in faces and rng.random() < 0.5:  # A painted band or a stripe of posters.
        canvas.paint(_sub_quads(faces["side"], 0, 1, 0.7, 0.85)[0], _pick(rng, _BRIGHT, 20))


def _fence(canvas: Canvas, rng: np.random.Generator, side: Side, z0: float, z1: float) -> None:
    """Posts and rails; the background shows through the gaps, unlabelled as fence."""
    height = rng.uniform(1.0, 2.2)
    color = _pick(rng, ((90, 110, 90), (120, 120, 125), (60, 60, 60), (150, 130, 100)), 12)
    x = side.sign * side.facade
    for z in np.arange(z1, z0, -rng.uniform(1.5, 3.0)):
        canvas.box((x - 0.06, x + 0.06, 0, height, z, z + 0.12), FENCE, color)
    for y in np.linspace(0.25, height - 0.1, int(rng.integers(2, 4))):
        canvas.box((x - 0.03, x + 0.03, y, y + 0.08, z0, z1), FENCE, color)


def _guard_rail(canvas: Canvas, rng: np.random.Generator, side: Side, near: float) -> None:
    x = side.sign * (side.walk_inner + 0.3)
    color = _pick(rng, ((170, 175, 180), (140, 145, 150)), 10)
    for z in np.arange(near, 120, 4.0):
        canvas.box((x - 0.07, x + 0.07, 0, 0.75, z, z + 0.12), GUARD_RAIL, _shade(color, 0.8))
    canvas.box((x - 0.04, x + 0.04, 0.45, 0.78, near, 120), GUARD_RAIL, color)


_ROADSIDE_CLASS = {"building": BUILDING, "wall": WALL, "fence": FENCE}


def draw_roadside(canvas: Canvas, rng: np.random.Generator, layout: Layout) -> list:
    """Buildings, walls and fences along both sides, far to near; returns the trees to plant.

    These sit at the outermost lateral positions, so everything on the road or sidewalk is
    painted after them.
    """
    camera = canvas.camera
    near = camera.z_bottom * 0.6
    trees = []
    for side in (layout.left, layout.right):
        segments, z = [], near - rng.uniform(0, 10)
        while z < 160:
            length = rng.uniform(6, 28)
            kind = rng.choice(["building", "wall", "fence", "open"], p=[0.5, 0.15, 0.1, 0.25])
            if kind in _ROADSIDE_CLASS and not canvas.style.has(_ROADSIDE_CLASS[kind]):
                kind = "open"  # Not in the class set: an open plot instead.
            segments.append((kind, max(z, near), z + length))
            z += length + (0 if rng.random() < 0.6 else rng.uniform(1, 10))
        for kind, z0, z1 in reversed(segments):
            if kind == "building":
                setback = side.facade + rng.uniform(0, 1.5)
                x0, x1 = _span(side.sign, setback, setback + rng.uniform(8, 15))
                height = rng.uniform(3.5, 9) if rng.random() < 0.75 else rng.uniform(9, 20)
                _building(canvas, rng, (x0, x1, 0, height, z0, z1))
            elif kind == "wall":
                _wall(canvas, rng, side, z0, z1)
            elif kind == "fence":
                _fence(canvas, rng, side, z0, z1)
            if kind != "building":  # Trees grow behind walls, fences and in open plots.
                for tz in np.arange(z0, z1, rng.uniform(4, 9)):
                    trees.append((side.sign * (side.facade + rng.uniform(1, 5)), tz))
        if side.guard_rail and canvas.style.has(GUARD_RAIL):
            _guard_rail(canvas, rng, side, near)
    return trees


def draw_skyline(canvas: Canvas, rng: np.random.Generator) -> None:
    """Distant buildings and tree lines that close off the horizon."""
    camera = canvas.camera
    z = rng.uniform(90, 220)
    x, x_end = (1.2 * v for v in camera.visible_x(z))
    open_land = rng.random() < 0.25
    while x < x_end:
        width = rng.uniform(8, 35)
        if not open_land and rng.random() < 0.65:
            height = rng.uniform(4, 30)
            color = _shade(_pick(rng, _FACADE, 15), rng.uniform(0.75, 1.0))  # Haze dims them.
            canvas.box((x, x + width, 0, height, z, z + 10), BUILDING, color)
        elif rng.random() < 0.8:
            for _ in range(int(width / 4) + 1):
                cx, r = x + rng.uniform(0, width), rng.uniform(3, 7)
                color = _shade(_pick(rng, _FOLIAGE, 10), 1.1)
                canvas.fill_ellipse((cx, r * rng.uniform(0.8, 1.6), z), (r, r), VEGETATION, color)
        x += width


# ----------------------------------------------------------------------------- things


def _tree(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    height = rng.uniform(3, 10)
    trunk = _pick(rng, ((90, 70, 50), (70, 60, 50)), 8)
    canvas.box((x - 0.15, x + 0.15, 0, height * 0.6, z, z + 0.3), VEGETATION, trunk)
    crown = rng.uniform(1.2, 3.5)
    for _ in range(rng.integers(3, 8)):
        r = crown * rng.uniform(0.45, 0.8)
        center = (x + rng.normal(0, crown * 0.5), height * 0.65 + rng.normal(0, crown * 0.4), z)
        canvas.fill_ellipse(center, (r, r * 0.85), VEGETATION, _pick(rng, _FOLIAGE, 12))


def _pole(canvas: Canvas, rng: np.random.Generator, x: float, z: float, sign: int) -> None:
    height = rng.uniform(6, 10)
    color = _pick(rng, ((130, 130, 130), (90, 90, 95), (170, 170, 165)), 10)
    w = rng.uniform(*canvas.style.pole_width)
    canvas.box((x - w, x + w, 0, height, z, z + 2 * w), POLE, color)
    if rng.random() < 0.5:  # A street-light arm reaching over the road.
        reach = -sign * rng.uniform(1.2, 2.5)
        x0, x1 = sorted((x, x + reach))
        canvas.box((x0, x1, height - 0.4, height - 0.28, z, z + 0.12), POLE, color)


def _traffic_sign(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    height = rng.uniform(2.2, 3.0)
    canvas.box((x - 0.04, x + 0.04, 0, height, z + 0.05, z + 0.13), POLE, (120, 120, 120))
    r = rng.uniform(0.3, 0.45)
    shape = rng.integers(3)
    white = _vary(rng, (235, 235, 230), 8)
    if shape == 0:  # Red-rimmed round sign.
        canvas.fill_ellipse((x, height + r, z), (r, r), SIGN, _vary(rng, (200, 30, 30), 10))
        canvas.fill_ellipse((x, height + r, z), (0.75 * r, 0.75 * r), None, white, paint_only=True)
    elif shape == 1:  # Triangle.
        tri = np.array([[x - r, height, z], [x + r, height, z], [x, height + 1.7 * r, z]])
        canvas.fill(tri, SIGN, _vary(rng, (200, 30, 30), 10))
        inner = tri.mean(axis=0) + 0.6 * (tri - tri.mean(axis=0))
        canvas.paint(inner, white)
    else:  # Blue or green direction board.
        board = _upright(x - 1.5 * r, x + 1.5 * r, height, height + 1.6 * r, z)
        canvas.fill(board, SIGN, _pick(rng, ((30, 70, 160), (30, 120, 60)), 10))


def _traffic_light(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    height = rng.uniform(2.8, 4.0)
    color = _vary(rng, (70, 70, 70), 8)
    canvas.box((x - 0.06, x + 0.06, 0, height, z + 0.1, z + 0.22), POLE, color)
    faces = canvas.box((x - 0.18, x + 0.18, height, height + 0.95, z, z + 0.3), LIGHT, (30, 30, 30))
    lit = rng.integers(3)
    for k, lamp in enumerate(((220, 40, 30), (230, 170, 20), (40, 200, 90))):
        if "front" in faces:
            cy = height + 0.95 - 0.16 - 0.3 * k
            lamp = lamp if k == lit else _shade(lamp, 0.35)
            canvas.fill_ellipse((x, cy, z), (0.1, 0.1), None, lamp, paint_only=True)


def _billboard(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    width, height = rng.uniform(3, 9), rng.uniform(1.8, 4.5)
    bottom = rng.uniform(2.5, 6)
    pole = _pick(rng, ((110, 110, 115), (80, 80, 80)), 10)
    for px in (x - width / 3, x + width / 3) if width > 5 else (x,):
        canvas.box((px - 0.12, px + 0.12, 0, bottom + 0.5, z + 0.2, z + 0.44), POLE, pole)
    board = _upright(x - width / 2, x + width / 2, bottom, bottom + height, z)
    canvas.fill(board, BILLBOARD, _pick(rng, _BRIGHT, 15))
    # Advertisement artwork: coloured blocks and text-like stripes.
    n = rng.integers(2, 7)
    u0 = rng.uniform(0.03, 0.7, n)
    v0 = rng.uniform(0.05, 0.7, n)
    quads = _sub_quads(board, u0, u0 + rng.uniform(0.1, 0.5, n), v0, v0 + rng.uniform(0.05, 0.3, n))
    quads[..., 0] = np.clip(quads[..., 0], x - width / 2, x + width / 2)
    quads[..., 1] = np.clip(quads[..., 1], bottom, bottom + height)
    canvas.paint_many(quads, [_pick(rng, _BRIGHT, 20) for _ in range(n)])


def _wheels(canvas: Canvas, box: tuple, cls: int, radius: float, inset: float = 0.0) -> None:
    x0, x1, _, _, z0, z1 = box
    tyre = (28, 28, 30)
    for wz in (z0 + 0.3 + inset, z1 - 0.3 - 2 * radius - inset):
        for wx0, wx1 in ((x0, x0 + 0.25), (x1 - 0.25, x1)):
            canvas.box((wx0, wx1, 0, 2 * radius, wz, wz + 2 * radius), cls, tyre)


def _under_shadow(canvas: Canvas, box: tuple) -> None:
    """A dark patch on the road under a vehicle: the strongest cue for where it touches down."""
    x0, x1, _, _, z0, z1 = box
    canvas.paint(_ground_quad(x0 - 0.1, x1 + 0.1, z0 - 0.2, z1), (35, 35, 38))


def _car(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length, height = rng.uniform(1.6, 1.9), rng.uniform(3.8, 4.7), rng.uniform(1.4, 1.65)
    color = _pick(rng, _CAR, 10)
    body = (x - width / 2, x + width / 2, 0.3, 0.95, z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, CAR, 0.32)
    cabin = (body[0] + 0.12, body[1] - 0.12, 0.9, height, z + 0.9, z + length - 0.9)
    faces = canvas.box(cabin, CAR, color)
    glass = _vary(rng, (40, 48, 58), 8)
    for name, face in faces.items():
        if name != "top":
            canvas.paint(_sub_quads(face, 0.08, 0.92, 0.12, 0.88)[0], glass)
    faces = canvas.box(body, CAR, color)
    for u in (0.04, 0.8):  # Tail lights.
        canvas.paint(_sub_quads(faces["front"], u, u + 0.16, 0.55, 0.8)[0], (190, 30, 30))
    return body


def _truck(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length = rng.uniform(2.2, 2.5), rng.uniform(6, 9)
    cab = (x - width / 2 + 0.05, x + width / 2 - 0.05, 0.5, 2.8, z + length - 2.2, z + length)
    cargo = (x - width / 2, x + width / 2, 0.9, rng.uniform(2.8, 3.6), z, z + length - 2.3)
    _under_shadow(canvas, (*cargo[:4], z, z + length))
    _wheels(canvas, (*cargo[:4], z, z + length), TRUCK, 0.5)
    canvas.box(cab, TRUCK, _pick(rng, _TRUCK, 15))
    faces = canvas.box(cargo, TRUCK, _pick(rng, _TRUCK, 15))
    for v in rng.uniform(0.1, 0.8, rng.integers(1, 4)):  # Painted decoration.
        canvas.paint(_sub_quads(faces["front"], 0.05, 0.95, v, v + 0.08)[0], _pick(rng, _BRIGHT))
    return (*cargo[:4], z, z + length)


def _bus(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length = rng.uniform(2.4, 2.6), rng.uniform(9, 12)
    body = (x - width / 2, x + width / 2, 0.35, rng.uniform(3.0, 3.3), z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, BUS, 0.5, inset=0.8)
    faces = canvas.box(body, BUS, _pick(rng, _BUS, 15))
    glass = _vary(rng, (45, 55, 65), 8)
    if "side" in faces:
        panes = np.arange(0.05, 0.95, 0.09)
        canvas.paint_many(_sub_quads(faces["side"], panes, panes + 0.075, 0.48, 0.8), glass)
    canvas.paint(_sub_quads(faces["front"], 0.06, 0.94, 0.5, 0.85)[0], glass)
    return body


def _autorickshaw(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length = rng.uniform(1.25, 1.45), rng.uniform(2.5, 2.8)
    body = (x - width / 2, x + width / 2, 0.25, 1.0, z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, AUTORICKSHAW, 0.22)
    body_color = _pick(rng, _AUTO_BODY, 12)
    roof_color = _pick(rng, ((30, 30, 30), (220, 190, 40)), 8)
    canopy = (body[0] + 0.05, body[1] - 0.05, 1.0, rng.uniform(1.65, 1.8), z + 0.1, z + length)
    faces = canvas.box(canopy, AUTORICKSHAW, roof_color)
    # The canopy is open at the back and sides: the dark interior shows through.
    for name in ("front", "side"):
        if name in faces:
            canvas.paint(_sub_quads(faces[name], 0.1, 0.9, 0.0, 0.8)[0], (25, 25, 28))
    canvas.box(body, AUTORICKSHAW, body_color)
    return body


def _person_shape(
    canvas: Canvas, rng: np.random.Generator, x: float, z: float, cls: int, base: float = 0.0
) -> None:
    """A standing (or, with `base`, seated) figure facing the camera."""
    scale = canvas.style.person_scale
    height = (rng.uniform(1.5, 1.85) - (0.6 if base else 0.0)) * scale
    torso, legs = _pick(rng, _CLOTHES, 15), _pick(rng, _CLOTHES, 15)
    skin = _pick(rng, _SKIN, 10)
    w = rng.uniform(0.2, 0.26) * scale

    def rect(x0: float, x1: float, y0: float, y1: float, color) -> None:
        canvas.fill(_upright(x0, x1, y0, y1, z), cls, color)

    leg_top = base + height * 0.48
    if base:
        rect(x - w - 0.05, x - w + 0.08, base - 0.45, leg_top, legs)
        rect(x + w - 0.08, x + w + 0.05, base - 0.45, leg_top, legs)
    elif rng.random() < 0.3:  # A saree or long dress.
        skirt = _upright(x - w * 1.2, x + w * 1.2, 0, leg_top, z)
        skirt[2:, 0] = (x + w, x - w)  # Narrower at the waist.
        canvas.fill(skirt, cls, legs)
    else:
        rect(x - w + 0.02, x - 0.02, 0, leg_top, legs)
        rect(x + 0.02, x + w - 0.02, 0, leg_top, legs)
    top = base + height * 0.82
    rect(x - w, x + w, leg_top - 0.02, top, torso)
    arm = 0.09 * scale
    rect(x - w - arm, x - w, leg_top + 0.05, top - 0.02, torso)
    rect(x + w, x + w + arm, leg_top + 0.05, top - 0.02, torso)
    head = 0.11 * scale
    canvas.fill_ellipse((x, top + head * 0.9, z), (head * 0.85, head), cls, skin)


def _motorcycle(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    length = rng.uniform(1.8, 2.1)
    frame = _pick(rng, ((30, 30, 35), (150, 30, 30), (40, 50, 120), (160, 160, 165)), 10)
    box = (x - 0.35, x + 0.35, 0, 1.1, z, z + length)
    _under_shadow(canvas, (x - 0.25, x + 0.25, 0, 0, z, z + length))
    for wz in (z + 0.05, z + length - 0.65):
        canvas.box((x - 0.06, x + 0.06, 0, 0.6, wz, wz + 0.6), MOTORCYCLE, (25, 25, 25))
    canvas.box(
        (x - 0.38, x + 0.38, 0.95, 1.03, z + length - 0.5, z + length - 0.45), MOTORCYCLE, frame
    )
    if rng.random() < 0.3:  # A pillion rider sits behind, further from a following camera.
        _person_shape(canvas, rng, x, z + 0.75, RIDER, base=0.85)
    canvas.box((x - 0.18, x + 0.18, 0.3, 0.9, z + 0.2, z + length - 0.3), MOTORCYCLE, frame)
    _person_shape(canvas, rng, x, z + 0.35, RIDER, base=0.85)
    return box


def _bicycle(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    color = _pick(rng, ((30, 30, 35), (150, 30, 30), (40, 50, 120)), 10)
    for wz in (z, z + 1.1):
        canvas.box((x - 0.03, x + 0.03, 0, 0.7, wz, wz + 0.6), BICYCLE, color)
    canvas.box((x - 0.03, x + 0.03, 0.55, 0.62, z + 0.3, z + 1.4), BICYCLE, color)
    canvas.box((x - 0.3, x + 0.3, 1.0, 1.05, z + 1.3, z + 1.35), BICYCLE, color)
    _person_shape(canvas, rng, x, z + 0.5, RIDER, base=0.9)
    return (x - 0.3, x + 0.3, 0, 1.7, z, z + 1.7)


def _fallback_vehicle(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    """A tractor trolley, hand cart or van: the vehicles IDD files under 'vehicle fallback'."""
    width, length = rng.uniform(1.5, 2.2), rng.uniform(2.5, 5)
    body = (x - width / 2, x + width / 2, 0.4, rng.uniform(1.2, 2.2), z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, VEHICLE, 0.4)
    color = _pick(rng, ((60, 100, 160), (150, 110, 70), (180, 60, 40), (90, 120, 60)), 15)
    canvas.box(body, VEHICLE, color)
    return body


def _animal(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    """A cow standing across the road; IDD labels animals as person at level 3."""
    color = _pick(rng, ((225, 220, 210), (110, 80, 60), (50, 45, 40)), 10)
    length = rng.uniform(1.6, 2.0)
    for lx in (x - length / 2 + 0.1, x + length / 2 - 0.25):
        canvas.box((lx, lx + 0.15, 0, 0.75, z + 0.1, z + 0.3), PERSON, color)
    canvas.box((x - length / 2, x + length / 2, 0.7, 1.35, z, z + 0.55), PERSON, color)
    hx = x + length / 2 if rng.random() < 0.5 else x - length / 2 - 0.4
    canvas.box((hx, hx + 0.4, 1.05, 1.5, z + 0.05, z + 0.45), PERSON, _shade(color, 0.9))
    return (x - length / 2, x + length / 2 + 0.4, 0, 1.5, z, z + 0.55)


def _barricade(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    """Red-and-white police barricades (obs-str-bar-fallback)."""
    width = rng.uniform(1.2, 2.2)
    faces = canvas.box(
        (x - width / 2, x + width / 2, 0, 1.0, z, z + 0.2), OBSTACLE, (220, 220, 215)
    )
    stripes = np.arange(0, 1, 0.2)
    canvas.paint_many(_sub_quads(faces["front"], stripes, stripes + 0.1, 0.3, 0.9), (190, 30, 30))


def _median(canvas: Canvas, rng: np.random.Generator, x: float, near: float) -> None:
    """A low concrete divider along a lane line (obs-str-bar-fallback)."""
    color = _vary(rng, (175, 172, 165), 10)
    canvas.box((x - 0.3, x + 0.3, 0, rng.uniform(0.4, 0.8), near, 400), OBSTACLE, color)


def _bridge(canvas: Canvas, rng: np.random.Generator, layout: Layout, z: float) -> None:
    """A flyover across the road on two piers."""
    color = _pick(rng, ((170, 165, 155), (140, 138, 132)), 10)
    bottom = rng.uniform(5, 7)
    for side in (layout.left, layout.right):
        x = side.sign * (side.walk_outer + 0.8)
        canvas.box((x - 0.6, x + 0.6, 0, bottom, z + 2, z + 4), BRIDGE, _shade(color, 0.9))
    x0, x1 = -layout.left.facade, layout.right.facade
    canvas.box((x0, x1, bottom, bottom + rng.uniform(1.2, 2.0), z, z + 12), BRIDGE, color)


# A thing is drawn by `draw(canvas, rng, x, z)` and returns its footprint box (or None).
_VEHICLES: dict[str, tuple[Callable, float]] = {
    # name: (draw, relative frequency)
    "car": (_car, 0.42),
    "autorickshaw": (_autorickshaw, 0.17),
    "motorcycle": (_motorcycle, 0.18),
    "truck": (_truck, 0.08),
    "bus": (_bus, 0.07),
    "bicycle": (_bicycle, 0.03),
    "vehicle": (_fallback_vehicle, 0.03),
    "animal": (_animal, 0.02),
}
_VEHICLE_SIZE = {  # Footprint (width, length) used to keep vehicles apart when placing them.
    "car": (1.9, 4.7), "autorickshaw": (1.5, 2.8), "motorcycle": (0.8, 2.1), "truck": (2.5, 9.0),
    "bus": (2.6, 12.0), "bicycle": (0.6, 1.7), "vehicle": (2.2, 5.0), "animal": (2.4, 0.6),
}  # fmt: skip
_VEHICLE_CLASSES = {  # The classes each kind of vehicle is drawn with.
    "car": (CAR,), "autorickshaw": (AUTORICKSHAW,), "motorcycle": (MOTORCYCLE, RIDER),
    "truck": (TRUCK,), "bus": (BUS,), "bicycle": (BICYCLE, RIDER), "vehicle": (VEHICLE,),
    "animal": (PERSON,),
}  # fmt: skip


def _free(occupied: list, x0: float, x1: float, z0: float, z1: float) -> bool:
    return all(x1 < a0 or x0 > a1 or z1 < b0 or z0 > b1 for a0, a1, b0, b1 in occupied)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # Depths drawn uniformly in log space put things evenly over the image's rows. With an
    # extreme aspect ratio the road's nearest visible depth can pass `high`: stay past it.
    high = max(high, 1.5 * low)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def place_things(
    rng: np.random.Generator,
    camera: Camera,
    layout: Layout,
    trees: list,
    style: Style = STYLES["all"],
) -> list[tuple[float, Callable[[Canvas], None]]]:
    """Everything standing on the road and sidewalks, as (depth, draw) pairs.

    Things of classes outside `style.classes` are left out.
    """
    things: list[tuple[float, Callable]] = []

    def add(z: float, draw: Callable, *args) -> None:
        things.append((z, lambda canvas: draw(canvas, rng, *args)))

    near = camera.z_bottom
    road_x0, road_x1 = layout.road
    sides = (layout.left, layout.right)
    for x, z in trees:
        add(z, _tree, x, z)
    for side in sides:
        post = side.sign * (side.walk_inner + side.curb + 0.4)
        z = near * rng.uniform(1.5, 4.0)
        while z < 140:
            add(z, _pole, post, z, side.sign)
            z += rng.uniform(12, 35)
        if rng.random() < 0.6 and side.facade - side.walk_outer > 2:
            for z in np.arange(near * rng.uniform(1, 3), 110, rng.uniform(6, 16)):
                add(z, _tree, side.sign * rng.uniform(side.walk_outer + 1, side.facade - 0.5), z)
    for _ in range(rng.integers(0, 4) if style.has(SIGN) else 0):
        side = sides[rng.integers(2)]
        z = _log_uniform(rng, near * 1.5, 60)
        add(z, _traffic_sign, side.sign * (side.walk_inner + side.curb + 0.3), z)
    if style.has(LIGHT) and rng.random() < 0.25:
        z = _log_uniform(rng, near * 2, 50)
        for side in sides:
            add(z, _traffic_light, side.sign * (side.walk_inner + side.curb + 0.3), z)
    for _ in range(rng.poisson(1.0)):
        side = sides[rng.integers(2)]
        z = _log_uniform(rng, near * 2.5, 90)
        add(z, _billboard, side.sign * (side.walk_outer + rng.uniform(0, 4)), z)
    if style.has(BRIDGE) and rng.random() < 0.1:
        z = rng.uniform(25, 90)
        add(z, _bridge, layout, z)

    occupied: list[tuple[float, float, float, float]] = []
    if style.has(OBSTACLE) and layout.lanes >= 2 and rng.random() < 0.15:
        x = road_x0 + layout.lane_width * rng.integers(1, layout.lanes)
        add(1e4, _median, x, near * 0.5)  # Sorted with the farthest: it spans every depth.
        occupied.append((x - 0.5, x + 0.5, 0, 1e4))
    names = [name for name in _VEHICLES if style.has(*_VEHICLE_CLASSES[name])]
    weights = np.array([_VEHICLES[n][1] for n in names])
    for boosted, factor in style.vehicle_boost:
        weights[names.index(boosted)] *= factor
    for _ in range(rng.integers(*style.vehicles)):
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        width, length = _VEHICLE_SIZE[name]
        for _attempt in range(4):
            lane = rng.integers(layout.lanes)
            x = road_x0 + (lane + 0.5) * layout.lane_width + rng.normal(0, 0.4)
            if rng.random() < 0.15:  # Parked at the roadside.
                x = road_x0 + width / 2 + 0.2 if rng.random() < 0.5 else road_x1 - width / 2 - 0.2
            z = _log_uniform(rng, near * 1.3, 80)
            x0, x1 = x - width / 2 - 0.3, x + width / 2 + 0.3
            if _free(occupied, x0, x1, z - 1, z + length + 1):
                occupied.append((x0, x1, z - 1, z + length + 1))
                add(z, _VEHICLES[name][0], x, z)
                break
    for _ in range(rng.integers(*style.people)):
        side = sides[rng.integers(2)]
        z = _log_uniform(rng, near * 1.4, 60)
        if side.sidewalk and rng.random() < 0.8:
            x = side.sign * rng.uniform(side.walk_inner + side.curb + 0.3, side.walk_outer)
        else:  # Walking along the road's edge or crossing it.
            x = rng.uniform(road_x0, road_x1) if rng.random() < 0.3 else side.sign * side.road_edge
        if _free(occupied, x - 0.4, x + 0.4, z - 0.3, z + 0.3):
            occupied.append((x - 0.4, x + 0.4, z - 0.3, z + 0.3))
            add(z, _person_shape, x, z, PERSON)
    if style.has(OBSTACLE) and rng.random() < 0.2:
        z = _log_uniform(rng, near * 2, 40)
        x = rng.uniform(road_x0, road_x1)
        for k in range(rng.integers(1, 4)):
            if _free(occupied, x + 2.2 * k - 1.2, x + 2.2 * k + 1.2, z - 0.5, z + 0.7):
                add(z, _barricade, x + 2.2 * k, z)
    return things


# ----------------------------------------------------------------------------- finishing


def _smooth_noise(rng: np.random.Generator, camera: Camera, cells: tuple[int, int]) -> np.ndarray:
    """[H, W] float32 standard-normal noise at a resolution of `cells`, bilinearly upsampled."""
    small = rng.standard_normal(cells, dtype=np.float32)
    image = Image.fromarray(small).resize((camera.width, camera.height), Image.BILINEAR)
    return np.asarray(image)


def _ego_hood(canvas: Canvas, rng: np.random.Generator) -> None:
    """The ego vehicle's bonnet along the bottom edge: void (255), as in IDD."""
    camera = canvas.camera
    top = camera.height * (1 - rng.uniform(0.05, 0.12))
    xs = np.linspace(-0.05, 1.05, 24) * camera.width
    bulge = camera.height * rng.uniform(0.01, 0.04)
    ys = top + bulge * ((xs / camera.width - 0.5) * 2) ** 2
    xy = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    xy += [(camera.width * 1.05, camera.height + 1.0), (-camera.width * 0.05, camera.height + 1.0)]
    color = _pick(rng, ((30, 30, 32), (200, 200, 205), (120, 30, 30), (60, 60, 70)), 8)
    ImageDraw.Draw(canvas.image).polygon(xy, fill=color)
    ImageDraw.Draw(canvas.label).polygon(xy, fill=VOID)


def _shadow_mask(rng: np.random.Generator, camera: Camera, layout: Layout) -> np.ndarray:
    """[H, W] float32 in [0, 1]: soft shadows of unseen trees and buildings across the road."""
    mask = Image.new("L", (camera.width, camera.height), 0)
    draw = ImageDraw.Draw(mask)
    road_x0, road_x1 = layout.road
    for _ in range(rng.integers(1, 4)):
        z = _log_uniform(rng, camera.z_bottom * 0.7, 40)
        x0 = rng.uniform(road_x0 - 4, road_x1)
        quad = _ground_quad(x0, x0 + rng.uniform(2, 12), z, z + rng.uniform(2, 12))
        draw.polygon(camera.project(quad).ravel().tolist(), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, camera.width / 120)))
    return np.asarray(mask, np.float32) / 255


def finish(
    rng: np.random.Generator,
    camera: Camera,
    layout: Layout,
    image: Image.Image,
    label: np.ndarray,
    noise: float = 1.0,
) -> np.ndarray:
    """Texture, lighting, shadows, a global colour change and sensor noise; image only.

    `noise` scales the texture and the sensor noise.

    Returns:
      [H, W, 3] uint8 image.
    """
    pixels = np.asarray(image, np.float32)
    amplitude = _TEXTURE_LUT[label] * np.float32(noise)
    grain = rng.standard_normal(label.shape, dtype=np.float32)
    blotches = _smooth_noise(rng, camera, (max(2, camera.height // 6), max(2, camera.width // 6)))
    pixels += (amplitude * (0.55 * grain + 0.9 * blotches))[..., None]
    light = 1 + rng.uniform(0.04, 0.15) * _smooth_noise(rng, camera, (3, 5))
    pixels *= light[..., None]
    if rng.random() < 0.4:
        pixels *= (1 - rng.uniform(0.25, 0.5) * _shadow_mask(rng, camera, layout))[..., None]
    contrast, brightness = rng.uniform(0.75, 1.2), rng.uniform(-25, 20)
    gain = rng.uniform(0.92, 1.08, 3).astype(np.float32)  # White balance.
    pixels = ((pixels - 128) * contrast + 128 + brightness) * gain
    pixels += noise * rng.uniform(2, 7) * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def render(
    rng: np.random.Generator, height: int, width: int, classes: str = "common"
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one random driving scene with the classes of `CLASS_SETS[classes]` (and void).

    Returns:
      image: [H, W, 3] uint8 RGB.
      label: [H, W] uint8 level-3 ids, 255 = void.
    """
    scene_style = class_style(classes)
    camera = random_camera(rng, height, width)
    layout = random_layout(rng)
    image = Image.fromarray(np.clip(_sky(rng, camera), 0, 255).astype(np.uint8))
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
    seed: int, split: str, index: int, height: int, width: int, classes: str = "common"
) -> tuple[np.ndarray, np.ndarray]:
    """The example `index` of `split`: a pure function of its arguments.

    Returns:
      image: [H, W, 3] uint8 RGB.
      label: [H, W] uint8 level-3 ids, 255 = void.
    """
    sequence = np.random.SeedSequence([seed, SPLITS.index(split), index])
    return render(np.random.default_rng(sequence), height, width, classes)


# ----------------------------------------------------------------------------- dataset files


def example_paths(root: Path, split: str, index: int, seed: int) -> tuple[Path, Path]:
    """(image, label) paths of one example in IDD's layout."""
    sequence = f"s{index // IMAGES_PER_SEQUENCE:03d}"
    # The split's digit keeps names unique across splits (predictions often share a folder).
    name = f"{seed}_{SPLITS.index(split)}{index:05d}"
    return (
        root / "leftImg8bit" / split / sequence / f"{name}_leftImg8bit.jpg",
        root / "gtFine" / split / sequence / f"{name}_gtFine_labellevel3Ids.png",
    )


def _write_example(task: tuple) -> np.ndarray:
    """Renders and writes one example; returns its 27 pixel counts (26 classes, then void)."""
    root, split, index, seed, height, width, classes = task
    image, label = example(seed, split, index, height, width, classes)
    image_path, label_path = example_paths(Path(root), split, index, seed)
    Image.fromarray(image).save(image_path, quality=JPEG_QUALITY)
    Image.fromarray(label).save(label_path)
    counts = np.bincount(label.ravel(), minlength=256)
    return np.append(counts[:NUM_CLASSES], counts[NUM_CLASSES:].sum())


def _validate(params: dict) -> dict:
    """The generation parameters with defaults filled in; ConfigError names a bad one."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ConfigError(
            f"synthetic: unknown parameter(s) {unknown}; valid: {list(DEFAULT_PARAMS)}"
        )
    params = {**DEFAULT_PARAMS, **params}
    classes = params.pop("classes")
    if not isinstance(classes, str):
        raise ConfigError(f"synthetic: classes must be a string, got {classes!r}")
    class_style(classes)  # ConfigError for an unknown set.
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"synthetic: {key} must be an integer, got {value!r}")
    limits = {"train": (1, 99999), "val": (0, 99999), "test": (0, 99999)}
    limits |= {"height": (16, 8192), "width": (16, 8192), "seed": (0, 2**63)}
    for key, (low, high) in limits.items():
        if not low <= params[key] <= high:
            raise ConfigError(f"synthetic: {key} must be in [{low}, {high}], got {params[key]}")
    return {**{key: int(value) for key, value in params.items()}, "classes": classes}


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete synthetic dataset at `root`, or None."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("generator") == GENERATOR else None


def _matches(root: Path, params: dict) -> bool:
    manifest = read_manifest(root)
    return (
        manifest is not None
        and manifest.get("version") == GENERATOR_VERSION
        and manifest.get("params") == params
    )


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_manifest(out_dir) is None:
        raise DataError(
            f"{out_dir}: folder is not empty and is not a jaxseg synthetic dataset "
            "(choose a new or empty folder)"
        )


def _render_all(root: Path, params: dict, workers: int) -> dict[str, list[int]]:
    tasks = []
    for split in SPLITS:
        for index in range(params[split]):
            for path in example_paths(root, split, index, params["seed"]):
                path.parent.mkdir(parents=True, exist_ok=True)
            size = (params["height"], params["width"])
            tasks.append((str(root), split, index, params["seed"], *size, params["classes"]))
    if workers > 1 and len(tasks) > 1:
        # Spawned, not forked: the caller may have started JAX's threads, which fork breaks.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            counts = list(pool.map(_write_example, tasks, chunksize=4))
    else:
        counts = [_write_example(task) for task in tasks]
    totals = {split: np.zeros(NUM_CLASSES + 1, np.int64) for split in SPLITS}
    for task, count in zip(tasks, counts, strict=True):
        totals[task[1]] += count
    return {split: total.tolist() for split, total in totals.items()}


def _move_into_place(tmp: Path, out_dir: Path, params: dict) -> None:
    """Renames the finished `tmp` to `out_dir`, replacing an empty folder or an old dataset."""
    if _matches(out_dir, params):  # Another process finished the same dataset first.
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out_dir, old)
        else:
            out_dir.rmdir()
    try:
        os.replace(tmp, out_dir)
    except OSError:
        # Another process got there between our check and the rename: keep theirs.
        if not _matches(out_dir, params):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def generate(
    out_dir: str | Path,
    *,
    train: int = 200,
    val: int = 40,
    test: int = 10,
    height: int = 256,
    width: int = 512,
    seed: int = 0,
    classes: str = "common",
    workers: int = 1,
) -> Path:
    """Writes a synthetic dataset in IDD's layout; every split has labels.

    The dataset appears at `out_dir` only when complete: it is written into a temporary folder
    beside it and renamed, with `synthetic.json` (the parameters and per-split pixel counts)
    written last. A complete dataset with the same parameters is left as it is.

    Args:
      out_dir: a new or empty folder, or one holding an earlier synthetic dataset (replaced).
      train, val, test: number of examples per split.
      height, width: image size in pixels.
      seed: the dataset's seed; example i of a split depends only on (seed, split, i).
      classes: a name in `CLASS_SETS`: the classes the scenes contain ("common": the large,
        learnable ones; "all": every level-3 class).
      workers: processes that render in parallel; the output does not depend on it.

    Returns:
      `out_dir` as a Path.

    Raises:
      ConfigError: a parameter is out of range.
      DataError: `out_dir` holds something other than a synthetic dataset.
    """
    params = _validate(
        {"train": train, "val": val, "test": test, "height": height, "width": width, "seed": seed}
        | {"classes": classes}
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"synthetic: workers must be a positive integer, got {workers!r}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    if _matches(out_dir, params):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        pixel_counts = _render_all(tmp, params, workers)
        manifest = {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "params": params,
            "layout": "IDD (leftImg8bit/gtFine, level-3 ids, 255 = void)",
            # Per split: 26 classes, then void; what class weights are computed from.
            "pixel_counts": pixel_counts,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(tmp, out_dir, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def default_cache_dir() -> Path:
    """`$JAXSEG_CACHE` if set, else `~/.cache/jaxseg`."""
    cache = os.environ.get("JAXSEG_CACHE")
    return Path(cache).expanduser() if cache else Path.home() / ".cache" / "jaxseg"


def cache_path(params: dict | None = None) -> Path:
    """Where `ensure_synthetic(params)` keeps its dataset: named by a hash of the parameters."""
    params = _validate({k: v for k, v in (params or {}).items() if k != "workers"})
    key = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True)
    return default_cache_dir() / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_synthetic(params: dict | None = None) -> Path:
    """The cached synthetic dataset for `params`, generated first if missing or incomplete.

    Args:
      params: any of train, val, test, height, width, seed, classes (the rest take
        `DEFAULT_PARAMS`), and optionally workers (not part of the cache key: it does not
        change the data).

    Returns:
      The dataset root, `default_cache_dir()/synthetic-<hash>`.
    """
    params = dict(params or {})
    workers = int(params.pop("workers", 1))
    path = cache_path(params)
    full = _validate(params)
    if _matches(path, full):
        return path
    if path.exists():  # Ours by its name, but not complete: start over.
        log.warning("synthetic data at %s is incomplete or outdated; regenerating", path)
        shutil.rmtree(path)
    log.info(
        "generating the synthetic dataset (%s) into %s",
        ", ".join(f"{k}={v}" for k, v in full.items()),
        path,
    )
    start = time.perf_counter()
    generate(path, **full, workers=workers)
    log.info("synthetic dataset ready in %.1f s", time.perf_counter() - start)
    return path


def main(argv: list[str] | None = None) -> None:
    from jaxseg import cli

    parser = cli.parser("Write the built-in synthetic driving-scene dataset in IDD's layout.")
    parser.add_argument("--out", required=True, help="a new or empty folder")
    for key, value in DEFAULT_PARAMS.items():
        if key != "classes":
            parser.add_argument(f"--{key}", type=int, default=value, help=f"default: {value}")
    # Not argparse `choices`: a bad name is a one-line error from `generate`, like other values.
    parser.add_argument(
        "--classes",
        default=DEFAULT_PARAMS["classes"],
        help=f"class set: {' or '.join(CLASS_SETS)} (default: {DEFAULT_PARAMS['classes']})",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    args = parser.parse_args(argv)
    params = {key: getattr(args, key) for key in DEFAULT_PARAMS}
    with cli.user_errors():
        start = time.perf_counter()
        root = generate(args.out, **params, workers=args.workers)
        seconds = time.perf_counter() - start
    print(
        f"{root}: {params['train']} train, {params['val']} val, {params['test']} test images, "
        f"{params['height']}x{params['width']}, seed {params['seed']}, "
        f"{params['classes']} classes, {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
