"""The ground: dirt or grass, shoulders, the road with its markings, curbs and sidewalks."""

import numpy as np

from jaxseg.data.synthetic import palette
from jaxseg.data.synthetic.canvas import Canvas
from jaxseg.data.synthetic.class_sets import (
    CURB,
    DRIVABLE,
    NON_DRIVABLE,
    ROAD,
    SIDEWALK,
    VEGETATION,
)
from jaxseg.data.synthetic.palette import pick, shade, vary
from jaxseg.data.synthetic.scene import Layout, Side, ground_quad, span


def draw_ground(canvas: Canvas, rng: np.random.Generator, layout: Layout) -> None:
    """Dirt or grass, shoulders, the road with its markings and patches, curbs and sidewalks."""
    camera = canvas.camera
    near, far = camera.z_bottom * 0.5, 5000.0
    x_far = 3 * far  # Wide enough to reach both image borders at every depth.
    for side in (layout.left, layout.right):
        grass = rng.random() < 0.25
        cls, choices = (VEGETATION, palette.GRASS) if grass else (NON_DRIVABLE, palette.DIRT)
        canvas.fill(ground_quad(*span(side.sign, 0, x_far), near, far), cls, pick(rng, choices))
    road_x0, road_x1 = layout.road
    for side in (layout.left, layout.right):
        if side.shoulder and canvas.style.has(DRIVABLE):
            x0, x1 = span(side.sign, side.road_edge - 0.05, side.walk_inner)
            canvas.fill(ground_quad(x0, x1, near, far), DRIVABLE, pick(rng, palette.MUD))
    road_color = pick(rng, palette.ROAD, 10)
    canvas.fill(ground_quad(road_x0, road_x1, near, far), ROAD, road_color)
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
        canvas.paint(ground_quad(x - w, x + w, z, z + d), shade(road_color, rng.uniform(0.7, 1.2)))
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
        canvas.fill(blob, DRIVABLE, pick(rng, palette.MUD))


def _lane_markings(canvas: Canvas, rng: np.random.Generator, layout: Layout) -> None:
    """Dashed lane lines and solid edge lines; painted, since IDD labels them as road."""
    if rng.random() < 0.2:
        return
    road_x0, road_x1 = layout.road
    white = vary(rng, (225, 225, 215), 10)
    z_start = canvas.camera.z_bottom * 0.5 - rng.uniform(0, 9)
    period, dash = rng.uniform(8, 12), rng.uniform(2.5, 4)
    starts = z_start + period * np.arange(int(120 / period))
    starts = starts[starts + dash > 0.3]
    half = rng.uniform(0.06, 0.1)
    for k in range(1, layout.lanes):
        x = road_x0 + k * layout.lane_width
        quads = np.repeat(ground_quad(x - half, x + half, 0, 1)[None], len(starts), axis=0)
        quads[:, :2, 2] = np.maximum(starts, 0.3)[:, None]
        quads[:, 2:, 2] = (starts + dash)[:, None]
        canvas.paint_many(quads, white, min_pixels=0.5)
    if rng.random() < 0.5:
        for x in (road_x0 + 0.3, road_x1 - 0.3):
            canvas.paint(ground_quad(x - half, x + half, 0.5, 3000), white)


def _curb_and_sidewalk(
    canvas: Canvas, rng: np.random.Generator, side: Side, near: float, far: float
) -> None:
    curb_height = rng.uniform(0.12, 0.25)
    walk = pick(rng, palette.SIDEWALK, 10)
    x0, x1 = span(side.sign, side.walk_inner + side.curb, side.walk_outer)
    canvas.fill(ground_quad(x0, x1, near, far, y=curb_height), SIDEWALK, walk)
    if rng.random() < 0.5:  # Paving joints.
        zs = near + rng.uniform(0.8, 1.5) * np.arange(60)
        joints = np.repeat(ground_quad(x0, x1, 0, 1, y=curb_height)[None], len(zs), axis=0)
        joints[:, :2, 2] = zs[:, None]
        joints[:, 2:, 2] = zs[:, None] + 0.06
        canvas.paint_many(joints, shade(walk, 0.8), min_pixels=0.5)
    cx0, cx1 = span(side.sign, side.walk_inner, side.walk_inner + side.curb)
    curb_color = pick(rng, ((170, 170, 165), (150, 150, 140)), 10)
    painted = rng.random() < 0.5  # Black-and-yellow curbs are common on Indian roads.
    if painted:
        curb_color = vary(rng, (220, 200, 60), 12)
    faces = canvas.box((cx0, cx1, 0.0, curb_height, near, far), CURB, curb_color)
    if painted:
        length = rng.uniform(0.8, 1.5)
        zs = near + length * np.arange(0, int(60 / length), 2)
        dark = vary(rng, (35, 35, 35), 6)
        # The side and top faces run along z: paint every other segment of `length`. The
        # corners that lie farther along z are (1, 2) on a side face and (2, 3) on the top.
        for name, far_corners in (("side", [0, 1, 1, 0]), ("top", [0, 0, 1, 1])):
            if name in faces:
                quads = np.repeat(faces[name][None], len(zs), axis=0)
                quads[:, :, 2] = zs[:, None] + length * np.array(far_corners)[None, :]
                canvas.paint_many(quads, dark, min_pixels=0.5)
