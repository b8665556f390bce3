"""Where the things standing on the road and sidewalks go, and the order they are drawn in.

Each `_place_*` step draws its random numbers in a fixed order: a scene is a pure function of
its random stream, so the steps (and the draws within them) must not be reordered.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from jaxseg.data.synthetic import objects
from jaxseg.data.synthetic.canvas import Canvas
from jaxseg.data.synthetic.class_sets import BRIDGE, LIGHT, OBSTACLE, PERSON, SIGN, Style
from jaxseg.data.synthetic.scene import Camera, Layout, log_uniform
from jaxseg.data.synthetic.traffic import VEHICLES, person_shape

Draw = Callable[[Canvas], None]


@dataclasses.dataclass
class _Placed:
    """The things placed so far, and the road footprints that keep road users apart."""

    rng: np.random.Generator
    things: list[tuple[float, Draw]] = dataclasses.field(default_factory=list)
    # (x0, x1, z0, z1) rectangles on the ground that are taken.
    occupied: list[tuple[float, float, float, float]] = dataclasses.field(default_factory=list)

    def add(self, z: float, draw: Callable, *args) -> None:
        """Queues `draw(canvas, rng, *args)` at depth `z`; it draws from the same stream."""
        rng = self.rng
        self.things.append((z, lambda canvas: draw(canvas, rng, *args)))

    def free(self, x0: float, x1: float, z0: float, z1: float) -> bool:
        """Whether the ground rectangle [x0, x1] x [z0, z1] overlaps nothing taken."""
        return all(x1 < a0 or x0 > a1 or z1 < b0 or z0 > b1 for a0, a1, b0, b1 in self.occupied)


def place_things(
    rng: np.random.Generator,
    camera: Camera,
    layout: Layout,
    trees: list[tuple[float, float]],
    style: Style,
) -> list[tuple[float, Draw]]:
    """Everything standing on the road and sidewalks, as (depth, draw) pairs.

    Things of classes outside `style.classes` are left out.

    Args:
      rng: the scene's random stream; the returned draws use it too, when called.
      camera: the scene's camera.
      layout: the road layout.
      trees: (x, z) of the trees `draw_roadside` left to plant.
      style: the class set's style.
    """
    placed = _Placed(rng)
    near = camera.z_bottom
    _place_roadside(placed, near, layout, trees, style)
    _place_vehicles(placed, near, layout, style)
    _place_people(placed, near, layout, style)
    _place_barricades(placed, near, layout, style)
    return placed.things


def _place_roadside(
    placed: _Placed, near: float, layout: Layout, trees: list[tuple[float, float]], style: Style
) -> None:
    """Trees, poles, traffic signs and lights, billboards and a bridge."""
    rng, add = placed.rng, placed.add
    sides = (layout.left, layout.right)
    for x, z in trees:
        add(z, objects.tree, x, z)
    for side in sides:
        post = side.sign * (side.walk_inner + side.curb + 0.4)
        z = near * rng.uniform(1.5, 4.0)
        while z < 140:
            add(z, objects.pole, post, z, side.sign)
            z += rng.uniform(12, 35)
        if rng.random() < 0.6 and side.facade - side.walk_outer > 2:
            for z in np.arange(near * rng.uniform(1, 3), 110, rng.uniform(6, 16)):
                x = side.sign * rng.uniform(side.walk_outer + 1, side.facade - 0.5)
                add(z, objects.tree, x, z)
    for _ in range(rng.integers(0, 4) if style.has(SIGN) else 0):
        side = sides[rng.integers(2)]
        z = log_uniform(rng, near * 1.5, 60)
        add(z, objects.traffic_sign, side.sign * (side.walk_inner + side.curb + 0.3), z)
    if style.has(LIGHT) and rng.random() < 0.25:
        z = log_uniform(rng, near * 2, 50)
        for side in sides:
            add(z, objects.traffic_light, side.sign * (side.walk_inner + side.curb + 0.3), z)
    for _ in range(rng.poisson(1.0)):
        side = sides[rng.integers(2)]
        z = log_uniform(rng, near * 2.5, 90)
        add(z, objects.billboard, side.sign * (side.walk_outer + rng.uniform(0, 4)), z)
    if style.has(BRIDGE) and rng.random() < 0.1:
        z = rng.uniform(25, 90)
        add(z, objects.bridge, layout, z)


def _place_vehicles(placed: _Placed, near: float, layout: Layout, style: Style) -> None:
    """A median divider sometimes, then vehicles in lanes or parked, kept apart."""
    rng = placed.rng
    road_x0, road_x1 = layout.road
    if style.has(OBSTACLE) and layout.lanes >= 2 and rng.random() < 0.15:
        x = road_x0 + layout.lane_width * rng.integers(1, layout.lanes)
        # Queued with the farthest things: it spans every depth.
        placed.add(1e4, objects.median, x, near * 0.5)
        placed.occupied.append((x - 0.5, x + 0.5, 0, 1e4))
    names = [name for name, kind in VEHICLES.items() if style.has(*kind.classes)]
    weights = np.array([VEHICLES[name].frequency for name in names])
    for boosted, factor in style.vehicle_boost:
        weights[names.index(boosted)] *= factor
    for _ in range(rng.integers(*style.vehicles)):
        kind = VEHICLES[names[rng.choice(len(names), p=weights / weights.sum())]]
        width, length = kind.size
        for _attempt in range(4):
            lane = rng.integers(layout.lanes)
            x = road_x0 + (lane + 0.5) * layout.lane_width + rng.normal(0, 0.4)
            if rng.random() < 0.15:  # Parked at the roadside.
                x = road_x0 + width / 2 + 0.2 if rng.random() < 0.5 else road_x1 - width / 2 - 0.2
            z = log_uniform(rng, near * 1.3, 80)
            x0, x1 = x - width / 2 - 0.3, x + width / 2 + 0.3
            if placed.free(x0, x1, z - 1, z + length + 1):
                placed.occupied.append((x0, x1, z - 1, z + length + 1))
                placed.add(z, kind.draw, x, z)
                break


def _place_people(placed: _Placed, near: float, layout: Layout, style: Style) -> None:
    """Pedestrians on the sidewalks, along the road's edge or crossing it."""
    rng = placed.rng
    road_x0, road_x1 = layout.road
    sides = (layout.left, layout.right)
    for _ in range(rng.integers(*style.people)):
        side = sides[rng.integers(2)]
        z = log_uniform(rng, near * 1.4, 60)
        if side.sidewalk and rng.random() < 0.8:
            x = side.sign * rng.uniform(side.walk_inner + side.curb + 0.3, side.walk_outer)
        else:  # Walking along the road's edge or crossing it.
            x = rng.uniform(road_x0, road_x1) if rng.random() < 0.3 else side.sign * side.road_edge
        if placed.free(x - 0.4, x + 0.4, z - 0.3, z + 0.3):
            placed.occupied.append((x - 0.4, x + 0.4, z - 0.3, z + 0.3))
            placed.add(z, person_shape, x, z, PERSON)


def _place_barricades(placed: _Placed, near: float, layout: Layout, style: Style) -> None:
    """A row of up to three police barricades across the road, where it is free."""
    rng = placed.rng
    if style.has(OBSTACLE) and rng.random() < 0.2:
        z = log_uniform(rng, near * 2, 40)
        x = rng.uniform(*layout.road)
        for k in range(rng.integers(1, 4)):
            if placed.free(x + 2.2 * k - 1.2, x + 2.2 * k + 1.2, z - 0.5, z + 0.7):
                placed.add(z, objects.barricade, x + 2.2 * k, z)
