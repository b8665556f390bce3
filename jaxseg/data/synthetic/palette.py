"""Base colours of the things drawn (a palette per kind of thing), and their random variation.

Every use of a base colour adds random variation. Road and sidewalk greys are close on purpose,
as are dirt and muddy shoulders, and some facades are as green as trees: colour alone must not
give a class away.
"""

from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]

ROAD = ((98, 98, 102), (84, 86, 92), (118, 114, 108), (76, 76, 80))
SIDEWALK = ((132, 130, 126), (150, 140, 130), (160, 112, 104), (118, 120, 122))
DIRT = ((136, 116, 92), (150, 132, 104), (118, 104, 86))
MUD = ((112, 100, 84), (100, 94, 86))
GRASS = ((84, 110, 60), (104, 118, 70))
FACADE = (
    (196, 180, 150), (220, 214, 200), (170, 160, 150), (150, 150, 155), (200, 160, 120),
    (140, 170, 150), (120, 140, 100), (210, 190, 170), (180, 120, 100), (110, 110, 115),
)  # fmt: skip
FOLIAGE = ((60, 90, 40), (80, 110, 50), (50, 75, 40), (96, 120, 62), (70, 96, 70))
CAR = (
    (225, 225, 225), (190, 192, 196), (40, 40, 44), (150, 30, 30), (40, 60, 120),
    (120, 120, 126), (210, 200, 180), (60, 90, 80),
)  # fmt: skip
TRUCK = ((220, 140, 40), (200, 180, 50), (180, 50, 40), (40, 90, 160), (60, 130, 70))
BUS = ((180, 40, 40), (40, 80, 150), (220, 220, 215), (60, 130, 90), (220, 120, 40))
AUTO_BODY = ((210, 190, 40), (60, 140, 60), (40, 40, 40))
CLOTHES = (
    (200, 40, 40), (40, 60, 140), (230, 230, 220), (40, 40, 40), (220, 170, 40),
    (120, 60, 140), (60, 120, 80), (140, 100, 70), (230, 110, 150),
)  # fmt: skip
SKIN = ((150, 100, 70), (120, 80, 55), (180, 130, 95))
BRIGHT = (
    (230, 50, 40), (250, 200, 30), (40, 90, 200), (40, 160, 70), (240, 240, 240),
    (240, 120, 20), (150, 40, 150), (20, 20, 20),
)  # fmt: skip


def vary(rng: np.random.Generator, base: Sequence[float], spread: float = 12.0) -> Color:
    """`base` with a random brightness shift and a smaller random tint."""
    color = np.asarray(base, np.float64) + rng.normal(0, spread) + rng.normal(0, spread / 2, 3)
    return tuple(int(c) for c in np.clip(color, 0, 255))


def pick(rng: np.random.Generator, choices: Sequence[Color], spread: float = 12.0) -> Color:
    """A random one of `choices`, varied."""
    return vary(rng, choices[rng.integers(len(choices))], spread)


def shade(color: Sequence[float], factor: float) -> Color:
    """`color` darkened (factor < 1) or lightened, clipped at white."""
    return tuple(int(min(255, c * factor)) for c in color)
