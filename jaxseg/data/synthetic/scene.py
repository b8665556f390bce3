"""Where a scene's things are: the camera, 3-D geometry helpers and the random road layout."""

import dataclasses

import numpy as np
from numpy.typing import ArrayLike


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


def sub_quads(
    face: np.ndarray, u0: ArrayLike, u1: ArrayLike, v0: ArrayLike, v1: ArrayLike
) -> np.ndarray:
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


def box_faces(box: tuple, eye: float) -> dict[str, np.ndarray]:
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


def ground_quad(x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray:
    """A horizontal rectangle at height y, corners ordered for `sub_quads`."""
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]])


def upright(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    """A rectangle facing the camera at depth z."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


def span(sign: int, d0: float, d1: float) -> tuple[float, float]:
    """The x interval between lateral distances d0 and d1 on the side `sign` (-1 left, +1 right)."""
    a, b = sign * d0, sign * d1
    return (min(a, b), max(a, b))


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
        """Where the curb (or, without a sidewalk, the open ground) starts."""
        return self.road_edge + self.shoulder

    @property
    def walk_outer(self) -> float:
        """Where the sidewalk ends."""
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
        """The x interval of the asphalt."""
        return (-self.left.road_edge, self.right.road_edge)


def random_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    """A camera of random focal length, height and aim for a `height` x `width` image."""
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
    """A road of 1-4 lanes with the camera in one of them, and two random sides."""
    lane_width = rng.uniform(3.0, 3.7)
    lanes = int(rng.choice([1, 2, 2, 3, 3, 4]))
    ego_lane = rng.integers(lanes)
    left_edge = (ego_lane + rng.uniform(0.3, 0.7)) * lane_width
    right_edge = lanes * lane_width - left_edge
    return Layout(
        lane_width, lanes, _random_side(rng, -1, left_edge), _random_side(rng, 1, right_edge)
    )


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A random depth in [low, high), uniform in log space."""
    # Depths drawn uniformly in log space put things evenly over the image's rows. With an
    # extreme aspect ratio the road's nearest visible depth can pass `high`: stay past it.
    high = max(high, 1.5 * low)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))
