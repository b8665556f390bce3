"""Experiments found by name or by file, without importing the experiments package up front.

`--experiment NAME` is the module `experiments/NAME.py` of the `experiments` folder (found
with `importlib.util.find_spec`, so adding a file there is enough); `--config FILE` is a
`.py` file anywhere. Kept apart from `jaxseg.config` so the command-line helpers can list
the names without importing what a config needs.
"""

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from jaxseg.errors import ConfigError

EXPERIMENTS_PACKAGE = "experiments"
# Files of the experiments folder that are not experiments.
_NOT_EXPERIMENTS = ("__init__", "base")


def experiments_dir() -> Path | None:
    """The folder of the `experiments` package (found without importing it), or None."""
    spec = importlib.util.find_spec(EXPERIMENTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def experiment_names() -> list[str]:
    """Names `--experiment` accepts: the experiment files of the experiments folder."""
    folder = experiments_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.py") if p.stem not in _NOT_EXPERIMENTS)


def import_experiment(experiment: str) -> ModuleType:
    """The module of an experiment name (`experiment_names`) or `.py` file path."""
    if experiment.endswith(".py"):
        path = Path(experiment)
        if not path.is_file():
            raise ConfigError(f"{path}: no such experiment file")
        spec = importlib.util.spec_from_file_location(f"jaxseg_experiment_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    names = experiment_names()
    if experiment not in names:
        raise ConfigError(f"unknown experiment {experiment!r}; valid: {', '.join(names)}")
    return importlib.import_module(f"{EXPERIMENTS_PACKAGE}.{experiment}")
