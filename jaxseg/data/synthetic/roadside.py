"""Along the roadside and on the horizon: buildings, walls, fences, guard rails, the skyline."""

import numpy as np

from jaxseg.data.synthetic import palette
from jaxseg.data.synthetic.canvas import Canvas
from jaxseg.data.synthetic.class_sets import (
    BILLBOARD,
    BUILDING,
    FENCE,
    GUARD_RAIL,
    VEGETATION,
    WALL,
)
from jaxseg.data.synthetic.palette import pick, shade
from jaxseg.data.synthetic.scene import Layout, Side, span, sub_quads


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
    glass = pick(rng, ((50, 60, 70), (90, 110, 130), (30, 30, 35), (140, 150, 150)), 10)
    colors = [shade(glass, f) for f in rng.uniform(0.7, 1.3, len(i))]
    canvas.paint_many(sub_quads(face, u0, u1, v0, v1), colors)


def _shop_front(canvas: Canvas, rng: np.random.Generator, face: np.ndarray, height: float) -> None:
    """Shutters and a shop signboard (billboard class) along the ground floor."""
    length = np.linalg.norm(face[1] - face[0])
    shops = max(1, int(length / rng.uniform(3, 6)))
    edges = np.linspace(0, 1, shops + 1)
    shutter = pick(rng, ((120, 120, 125), (90, 80, 70), (60, 70, 90)), 10)
    canvas.paint_many(
        sub_quads(face, edges[:-1] + 0.02, edges[1:] - 0.02, 0, 2.2 / height), shutter
    )
    if rng.random() < 0.7:
        board_v = (2.4 / height, min(1.0, rng.uniform(3.0, 3.6) / height))
        for u0, u1 in zip(edges[:-1], edges[1:], strict=True):
            if rng.random() < 0.7:
                quad = sub_quads(face, u0 + 0.03, u1 - 0.03, *board_v)[0]
                canvas.fill(quad, BILLBOARD, pick(rng, palette.BRIGHT, 15))


def _building(canvas: Canvas, rng: np.random.Generator, box: tuple) -> None:
    height = box[3]
    faces = canvas.box(box, BUILDING, pick(rng, palette.FACADE, 15))
    for name in ("front", "side"):
        if name in faces:
            _windows(canvas, rng, faces[name], height)
            if rng.random() < 0.6:
                _shop_front(canvas, rng, faces[name], height)


def _wall(canvas: Canvas, rng: np.random.Generator, side: Side, z0: float, z1: float) -> None:
    x0, x1 = span(side.sign, side.facade, side.facade + 0.25)
    height = rng.uniform(1.0, 2.6)
    color = pick(rng, ((200, 190, 170), (160, 150, 140), (170, 90, 70), (220, 220, 210)), 12)
    faces = canvas.box((x0, x1, 0, height, z0, z1), WALL, color)
    if "side" in faces and rng.random() < 0.5:  # A painted band or a stripe of posters.
        canvas.paint(sub_quads(faces["side"], 0, 1, 0.7, 0.85)[0], pick(rng, palette.BRIGHT, 20))


def _fence(canvas: Canvas, rng: np.random.Generator, side: Side, z0: float, z1: float) -> None:
    """Posts and rails; the background shows through the gaps, unlabelled as fence."""
    height = rng.uniform(1.0, 2.2)
    color = pick(rng, ((90, 110, 90), (120, 120, 125), (60, 60, 60), (150, 130, 100)), 12)
    x = side.sign * side.facade
    for z in np.arange(z1, z0, -rng.uniform(1.5, 3.0)):
        canvas.box((x - 0.06, x + 0.06, 0, height, z, z + 0.12), FENCE, color)
    for y in np.linspace(0.25, height - 0.1, int(rng.integers(2, 4))):
        canvas.box((x - 0.03, x + 0.03, y, y + 0.08, z0, z1), FENCE, color)


def _guard_rail(canvas: Canvas, rng: np.random.Generator, side: Side, near: float) -> None:
    x = side.sign * (side.walk_inner + 0.3)
    color = pick(rng, ((170, 175, 180), (140, 145, 150)), 10)
    for z in np.arange(near, 120, 4.0):
        canvas.box((x - 0.07, x + 0.07, 0, 0.75, z, z + 0.12), GUARD_RAIL, shade(color, 0.8))
    canvas.box((x - 0.04, x + 0.04, 0.45, 0.78, near, 120), GUARD_RAIL, color)


_ROADSIDE_CLASS = {"building": BUILDING, "wall": WALL, "fence": FENCE}


def draw_roadside(
    canvas: Canvas, rng: np.random.Generator, layout: Layout
) -> list[tuple[float, float]]:
    """Buildings, walls and fences along both sides, far to near; returns trees (x, z) to plant.

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
                x0, x1 = span(side.sign, setback, setback + rng.uniform(8, 15))
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
            color = shade(pick(rng, palette.FACADE, 15), rng.uniform(0.75, 1.0))  # Haze dims them.
            canvas.box((x, x + width, 0, height, z, z + 10), BUILDING, color)
        elif rng.random() < 0.8:
            for _ in range(int(width / 4) + 1):
                cx, r = x + rng.uniform(0, width), rng.uniform(3, 7)
                color = shade(pick(rng, palette.FOLIAGE, 10), 1.1)
                canvas.fill_ellipse((cx, r * rng.uniform(0.8, 1.6), z), (r, r), VEGETATION, color)
        x += width
