"""The generation parameters: their defaults, written only here, and named choices."""

import dataclasses
import types
from collections.abc import Mapping
from typing import TypeVar

from jaxseg.errors import ConfigError

SPLITS = ("train", "val", "test")
# Rendering processes. Not a dataset parameter: the output does not depend on it.
DEFAULT_WORKERS = 1


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    """The parameters of a synthetic dataset; the field defaults are jaxseg's defaults."""

    train: int = 200  # Examples per split.
    val: int = 40
    test: int = 10
    height: int = 256  # Image size in pixels.
    width: int = 512
    seed: int = 0  # Example i of a split depends only on (seed, split, i).
    classes: str = "common"  # A name in `CLASS_SETS`: the classes the scenes contain.
    layout: str = "idd"  # A name in `FILE_LAYOUTS`: IDD's or Cityscapes' files and ids.


DEFAULTS = SyntheticParams()
# The defaults as a read-only mapping, in the order manifests and the CLI list them.
DEFAULT_PARAMS: Mapping[str, int | str] = types.MappingProxyType(dataclasses.asdict(DEFAULTS))

T = TypeVar("T")


def lookup(key: str, name: object, table: Mapping[str, T]) -> T:
    """The entry `name` of `table`, which holds the valid values of the parameter `key`.

    Raises:
      ConfigError: `name` is not a string or not a key of `table` (names the valid ones).
    """
    if not isinstance(name, str):
        raise ConfigError(f"synthetic: {key} must be a string, got {name!r}")
    if name not in table:
        raise ConfigError(f"synthetic: unknown {key} {name!r}; valid: {', '.join(table)}")
    return table[name]
