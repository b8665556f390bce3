"""Things that stand by or over the road: trees, poles, signs, lights, billboards, barriers."""

import numpy as np

from jaxseg.data.synthetic import palette
from jaxseg.data.synthetic.canvas import Canvas
from jaxseg.data.synthetic.class_sets import (
    BILLBOARD,
    BRIDGE,
    LIGHT,
    OBSTACLE,
    POLE,
    SIGN,
    VEGETATION,
)
from jaxseg.data.synthetic.palette import pick, shade, vary
from jaxseg.data.synthetic.scene import Layout, sub_quads, upright


def tree(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    """A trunk and a crown of overlapping ellipses, standing at (x, z)."""
    height = rng.uniform(3, 10)
    trunk = pick(rng, ((90, 70, 50), (70, 60, 50)), 8)
    canvas.box((x - 0.15, x + 0.15, 0, height * 0.6, z, z + 0.3), VEGETATION, trunk)
    crown = rng.uniform(1.2, 3.5)
    for _ in range(rng.integers(3, 8)):
        r = crown * rng.uniform(0.45, 0.8)
        center = (x + rng.normal(0, crown * 0.5), height * 0.65 + rng.normal(0, crown * 0.4), z)
        canvas.fill_ellipse(center, (r, r * 0.85), VEGETATION, pick(rng, palette.FOLIAGE, 12))


def pole(canvas: Canvas, rng: np.random.Generator, x: float, z: float, sign: int) -> None:
    """A street-light pole, sometimes with an arm reaching over the road (away from `sign`)."""
    height = rng.uniform(6, 10)
    color = pick(rng, ((130, 130, 130), (90, 90, 95), (170, 170, 165)), 10)
    w = rng.uniform(*canvas.style.pole_width)
    canvas.box((x - w, x + w, 0, height, z, z + 2 * w), POLE, color)
    if rng.random() < 0.5:  # A street-light arm reaching over the road.
        reach = -sign * rng.uniform(1.2, 2.5)
        x0, x1 = sorted((x, x + reach))
        canvas.box((x0, x1, height - 0.4, height - 0.28, z, z + 0.12), POLE, color)


def traffic_sign(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    """A round, triangular or board sign on a thin pole."""
    height = rng.uniform(2.2, 3.0)
    canvas.box((x - 0.04, x + 0.04, 0, height, z + 0.05, z + 0.13), POLE, (120, 120, 120))
    r = rng.uniform(0.3, 0.45)
    shape = rng.integers(3)
    white = vary(rng, (235, 235, 230), 8)
    if shape == 0:  # Red-rimmed round sign.
        canvas.fill_ellipse((x, height + r, z), (r, r), SIGN, vary(rng, (200, 30, 30), 10))
        canvas.fill_ellipse((x, height + r, z), (0.75 * r, 0.75 * r), None, white, paint_only=True)
    elif shape == 1:  # Triangle.
        tri = np.array([[x - r, height, z], [x + r, height, z], [x, height + 1.7 * r, z]])
        canvas.fill(tri, SIGN, vary(rng, (200, 30, 30), 10))
        inner = tri.mean(axis=0) + 0.6 * (tri - tri.mean(axis=0))
        canvas.paint(inner, white)
    else:  # Blue or green direction board.
        board = upright(x - 1.5 * r, x + 1.5 * r, height, height + 1.6 * r, z)
        canvas.fill(board, SIGN, pick(rng, ((30, 70, 160), (30, 120, 60)), 10))


def traffic_light(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    """A three-lamp signal head on a pole, one lamp lit."""
    height = rng.uniform(2.8, 4.0)
    color = vary(rng, (70, 70, 70), 8)
    canvas.box((x - 0.06, x + 0.06, 0, height, z + 0.1, z + 0.22), POLE, color)
    faces = canvas.box((x - 0.18, x + 0.18, height, height + 0.95, z, z + 0.3), LIGHT, (30, 30, 30))
    lit = rng.integers(3)
    for k, lamp in enumerate(((220, 40, 30), (230, 170, 20), (40, 200, 90))):
        if "front" in faces:
            cy = height + 0.95 - 0.16 - 0.3 * k
            lamp = lamp if k == lit else shade(lamp, 0.35)
            canvas.fill_ellipse((x, cy, z), (0.1, 0.1), None, lamp, paint_only=True)


def billboard(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    """An advertisement board on one or two posts."""
    width, height = rng.uniform(3, 9), rng.uniform(1.8, 4.5)
    bottom = rng.uniform(2.5, 6)
    pole = pick(rng, ((110, 110, 115), (80, 80, 80)), 10)
    for px in (x - width / 3, x + width / 3) if width > 5 else (x,):
        canvas.box((px - 0.12, px + 0.12, 0, bottom + 0.5, z + 0.2, z + 0.44), POLE, pole)
    board = upright(x - width / 2, x + width / 2, bottom, bottom + height, z)
    canvas.fill(board, BILLBOARD, pick(rng, palette.BRIGHT, 15))
    # Advertisement artwork: coloured blocks and text-like stripes.
    n = rng.integers(2, 7)
    u0 = rng.uniform(0.03, 0.7, n)
    v0 = rng.uniform(0.05, 0.7, n)
    quads = sub_quads(board, u0, u0 + rng.uniform(0.1, 0.5, n), v0, v0 + rng.uniform(0.05, 0.3, n))
    quads[..., 0] = np.clip(quads[..., 0], x - width / 2, x + width / 2)
    quads[..., 1] = np.clip(quads[..., 1], bottom, bottom + height)
    canvas.paint_many(quads, [pick(rng, palette.BRIGHT, 20) for _ in range(n)])


def barricade(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> None:
    """Red-and-white police barricades (obs-str-bar-fallback)."""
    width = rng.uniform(1.2, 2.2)
    faces = canvas.box(
        (x - width / 2, x + width / 2, 0, 1.0, z, z + 0.2), OBSTACLE, (220, 220, 215)
    )
    stripes = np.arange(0, 1, 0.2)
    canvas.paint_many(sub_quads(faces["front"], stripes, stripes + 0.1, 0.3, 0.9), (190, 30, 30))


def median(canvas: Canvas, rng: np.random.Generator, x: float, near: float) -> None:
    """A low concrete divider along a lane line (obs-str-bar-fallback)."""
    color = vary(rng, (175, 172, 165), 10)
    canvas.box((x - 0.3, x + 0.3, 0, rng.uniform(0.4, 0.8), near, 400), OBSTACLE, color)


def bridge(canvas: Canvas, rng: np.random.Generator, layout: Layout, z: float) -> None:
    """A flyover across the road on two piers."""
    color = pick(rng, ((170, 165, 155), (140, 138, 132)), 10)
    bottom = rng.uniform(5, 7)
    for side in (layout.left, layout.right):
        x = side.sign * (side.walk_outer + 0.8)
        canvas.box((x - 0.6, x + 0.6, 0, bottom, z + 2, z + 4), BRIDGE, shade(color, 0.9))
    x0, x1 = -layout.left.facade, layout.right.facade
    canvas.box((x0, x1, bottom, bottom + rng.uniform(1.2, 2.0), z, z + 12), BRIDGE, color)
