"""The level-3 classes the scenes are drawn with, and the class sets (`classes` parameter)."""

import dataclasses

from jaxseg.data.labels import IDD_LEVEL3
from jaxseg.data.synthetic.params import lookup

# Level-3 ids (`IDD_LEVEL3.class_names`): the label values the drawing writes.
ROAD, DRIVABLE, SIDEWALK, NON_DRIVABLE, PERSON, RIDER, MOTORCYCLE, BICYCLE = range(8)
AUTORICKSHAW, CAR, TRUCK, BUS, VEHICLE, CURB, WALL, FENCE, GUARD_RAIL = range(8, 17)
BILLBOARD, SIGN, LIGHT, POLE, OBSTACLE, BUILDING, BRIDGE, VEGETATION, SKY = range(17, 26)
NUM_CLASSES = IDD_LEVEL3.num_classes

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
        """Whether all of `classes` are in the set: things drawn with others are skipped."""
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
    return lookup("classes", classes, STYLES)
