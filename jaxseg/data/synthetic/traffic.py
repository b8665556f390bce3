"""Road users: cars, trucks, buses, autorickshaws, two-wheelers with riders, people, animals."""

import dataclasses
from collections.abc import Callable

import numpy as np

from jaxseg.data.synthetic import palette
from jaxseg.data.synthetic.canvas import Canvas
from jaxseg.data.synthetic.class_sets import (
    AUTORICKSHAW,
    BICYCLE,
    BUS,
    CAR,
    MOTORCYCLE,
    PERSON,
    RIDER,
    TRUCK,
    VEHICLE,
)
from jaxseg.data.synthetic.palette import Color, pick, shade, vary
from jaxseg.data.synthetic.scene import ground_quad, sub_quads, upright


def _wheels(canvas: Canvas, box: tuple, cls: int, radius: float, inset: float = 0.0) -> None:
    x0, x1, _, _, z0, z1 = box
    tyre = (28, 28, 30)
    for wz in (z0 + 0.3 + inset, z1 - 0.3 - 2 * radius - inset):
        for wx0, wx1 in ((x0, x0 + 0.25), (x1 - 0.25, x1)):
            canvas.box((wx0, wx1, 0, 2 * radius, wz, wz + 2 * radius), cls, tyre)


def _under_shadow(canvas: Canvas, box: tuple) -> None:
    """A dark patch on the road under a vehicle: the strongest cue for where it touches down."""
    x0, x1, _, _, z0, z1 = box
    canvas.paint(ground_quad(x0 - 0.1, x1 + 0.1, z0 - 0.2, z1), (35, 35, 38))


def _car(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length, height = rng.uniform(1.6, 1.9), rng.uniform(3.8, 4.7), rng.uniform(1.4, 1.65)
    color = pick(rng, palette.CAR, 10)
    body = (x - width / 2, x + width / 2, 0.3, 0.95, z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, CAR, 0.32)
    cabin = (body[0] + 0.12, body[1] - 0.12, 0.9, height, z + 0.9, z + length - 0.9)
    faces = canvas.box(cabin, CAR, color)
    glass = vary(rng, (40, 48, 58), 8)
    for name, face in faces.items():
        if name != "top":
            canvas.paint(sub_quads(face, 0.08, 0.92, 0.12, 0.88)[0], glass)
    faces = canvas.box(body, CAR, color)
    for u in (0.04, 0.8):  # Tail lights.
        canvas.paint(sub_quads(faces["front"], u, u + 0.16, 0.55, 0.8)[0], (190, 30, 30))
    return body


def _truck(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length = rng.uniform(2.2, 2.5), rng.uniform(6, 9)
    cab = (x - width / 2 + 0.05, x + width / 2 - 0.05, 0.5, 2.8, z + length - 2.2, z + length)
    cargo = (x - width / 2, x + width / 2, 0.9, rng.uniform(2.8, 3.6), z, z + length - 2.3)
    _under_shadow(canvas, (*cargo[:4], z, z + length))
    _wheels(canvas, (*cargo[:4], z, z + length), TRUCK, 0.5)
    canvas.box(cab, TRUCK, pick(rng, palette.TRUCK, 15))
    faces = canvas.box(cargo, TRUCK, pick(rng, palette.TRUCK, 15))
    for v in rng.uniform(0.1, 0.8, rng.integers(1, 4)):  # Painted decoration.
        canvas.paint(
            sub_quads(faces["front"], 0.05, 0.95, v, v + 0.08)[0], pick(rng, palette.BRIGHT)
        )
    return (*cargo[:4], z, z + length)


def _bus(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length = rng.uniform(2.4, 2.6), rng.uniform(9, 12)
    body = (x - width / 2, x + width / 2, 0.35, rng.uniform(3.0, 3.3), z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, BUS, 0.5, inset=0.8)
    faces = canvas.box(body, BUS, pick(rng, palette.BUS, 15))
    glass = vary(rng, (45, 55, 65), 8)
    if "side" in faces:
        panes = np.arange(0.05, 0.95, 0.09)
        canvas.paint_many(sub_quads(faces["side"], panes, panes + 0.075, 0.48, 0.8), glass)
    canvas.paint(sub_quads(faces["front"], 0.06, 0.94, 0.5, 0.85)[0], glass)
    return body


def _autorickshaw(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    width, length = rng.uniform(1.25, 1.45), rng.uniform(2.5, 2.8)
    body = (x - width / 2, x + width / 2, 0.25, 1.0, z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, AUTORICKSHAW, 0.22)
    body_color = pick(rng, palette.AUTO_BODY, 12)
    roof_color = pick(rng, ((30, 30, 30), (220, 190, 40)), 8)
    canopy = (body[0] + 0.05, body[1] - 0.05, 1.0, rng.uniform(1.65, 1.8), z + 0.1, z + length)
    faces = canvas.box(canopy, AUTORICKSHAW, roof_color)
    # The canopy is open at the back and sides: the dark interior shows through.
    for name in ("front", "side"):
        if name in faces:
            canvas.paint(sub_quads(faces[name], 0.1, 0.9, 0.0, 0.8)[0], (25, 25, 28))
    canvas.box(body, AUTORICKSHAW, body_color)
    return body


def person_shape(
    canvas: Canvas, rng: np.random.Generator, x: float, z: float, cls: int, base: float = 0.0
) -> None:
    """A standing (or, with `base`, seated) figure facing the camera."""
    scale = canvas.style.person_scale
    height = (rng.uniform(1.5, 1.85) - (0.6 if base else 0.0)) * scale
    torso, legs = pick(rng, palette.CLOTHES, 15), pick(rng, palette.CLOTHES, 15)
    skin = pick(rng, palette.SKIN, 10)
    w = rng.uniform(0.2, 0.26) * scale

    def rect(x0: float, x1: float, y0: float, y1: float, color: Color) -> None:
        canvas.fill(upright(x0, x1, y0, y1, z), cls, color)

    leg_top = base + height * 0.48
    if base:
        rect(x - w - 0.05, x - w + 0.08, base - 0.45, leg_top, legs)
        rect(x + w - 0.08, x + w + 0.05, base - 0.45, leg_top, legs)
    elif rng.random() < 0.3:  # A saree or long dress.
        skirt = upright(x - w * 1.2, x + w * 1.2, 0, leg_top, z)
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
    frame = pick(rng, ((30, 30, 35), (150, 30, 30), (40, 50, 120), (160, 160, 165)), 10)
    box = (x - 0.35, x + 0.35, 0, 1.1, z, z + length)
    _under_shadow(canvas, (x - 0.25, x + 0.25, 0, 0, z, z + length))
    for wz in (z + 0.05, z + length - 0.65):
        canvas.box((x - 0.06, x + 0.06, 0, 0.6, wz, wz + 0.6), MOTORCYCLE, (25, 25, 25))
    canvas.box(
        (x - 0.38, x + 0.38, 0.95, 1.03, z + length - 0.5, z + length - 0.45), MOTORCYCLE, frame
    )
    if rng.random() < 0.3:  # A pillion rider sits behind, further from a following camera.
        person_shape(canvas, rng, x, z + 0.75, RIDER, base=0.85)
    canvas.box((x - 0.18, x + 0.18, 0.3, 0.9, z + 0.2, z + length - 0.3), MOTORCYCLE, frame)
    person_shape(canvas, rng, x, z + 0.35, RIDER, base=0.85)
    return box


def _bicycle(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    color = pick(rng, ((30, 30, 35), (150, 30, 30), (40, 50, 120)), 10)
    for wz in (z, z + 1.1):
        canvas.box((x - 0.03, x + 0.03, 0, 0.7, wz, wz + 0.6), BICYCLE, color)
    canvas.box((x - 0.03, x + 0.03, 0.55, 0.62, z + 0.3, z + 1.4), BICYCLE, color)
    canvas.box((x - 0.3, x + 0.3, 1.0, 1.05, z + 1.3, z + 1.35), BICYCLE, color)
    person_shape(canvas, rng, x, z + 0.5, RIDER, base=0.9)
    return (x - 0.3, x + 0.3, 0, 1.7, z, z + 1.7)


def _fallback_vehicle(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    """A tractor trolley, hand cart or van: the vehicles IDD files under 'vehicle fallback'."""
    width, length = rng.uniform(1.5, 2.2), rng.uniform(2.5, 5)
    body = (x - width / 2, x + width / 2, 0.4, rng.uniform(1.2, 2.2), z, z + length)
    _under_shadow(canvas, body)
    _wheels(canvas, body, VEHICLE, 0.4)
    color = pick(rng, ((60, 100, 160), (150, 110, 70), (180, 60, 40), (90, 120, 60)), 15)
    canvas.box(body, VEHICLE, color)
    return body


def _animal(canvas: Canvas, rng: np.random.Generator, x: float, z: float) -> tuple:
    """A cow standing across the road; IDD labels animals as person at level 3."""
    color = pick(rng, ((225, 220, 210), (110, 80, 60), (50, 45, 40)), 10)
    length = rng.uniform(1.6, 2.0)
    for lx in (x - length / 2 + 0.1, x + length / 2 - 0.25):
        canvas.box((lx, lx + 0.15, 0, 0.75, z + 0.1, z + 0.3), PERSON, color)
    canvas.box((x - length / 2, x + length / 2, 0.7, 1.35, z, z + 0.55), PERSON, color)
    hx = x + length / 2 if rng.random() < 0.5 else x - length / 2 - 0.4
    canvas.box((hx, hx + 0.4, 1.05, 1.5, z + 0.05, z + 0.45), PERSON, shade(color, 0.9))
    return (x - length / 2, x + length / 2 + 0.4, 0, 1.5, z, z + 0.55)


@dataclasses.dataclass(frozen=True)
class VehicleKind:
    """A kind of road user that `placement` puts in a lane."""

    # Draws it at (x, z) (the centre of its near end) and returns its footprint box.
    draw: Callable[[Canvas, np.random.Generator, float, float], tuple]
    frequency: float  # Relative to the other kinds.
    size: tuple[float, float]  # Footprint (width, length) that keeps road users apart (m).
    classes: tuple[int, ...]  # The classes it is drawn with: all must be in the class set.


# The order matters: the random pick of a kind indexes it, so reordering changes every scene.
VEHICLES: dict[str, VehicleKind] = {
    "car": VehicleKind(_car, 0.42, (1.9, 4.7), (CAR,)),
    "autorickshaw": VehicleKind(_autorickshaw, 0.17, (1.5, 2.8), (AUTORICKSHAW,)),
    "motorcycle": VehicleKind(_motorcycle, 0.18, (0.8, 2.1), (MOTORCYCLE, RIDER)),
    "truck": VehicleKind(_truck, 0.08, (2.5, 9.0), (TRUCK,)),
    "bus": VehicleKind(_bus, 0.07, (2.6, 12.0), (BUS,)),
    "bicycle": VehicleKind(_bicycle, 0.03, (0.6, 1.7), (BICYCLE, RIDER)),
    "vehicle": VehicleKind(_fallback_vehicle, 0.03, (2.2, 5.0), (VEHICLE,)),
    "animal": VehicleKind(_animal, 0.02, (2.4, 0.6), (PERSON,)),
}
