"""The dataset cache: one dataset per parameter set, generated on first use."""

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from jaxseg import files
from jaxseg.data.synthetic.params import DEFAULT_WORKERS
from jaxseg.data.synthetic.writer import GENERATOR_VERSION, generate, matches, validate

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$JAXSEG_CACHE` if set, else `~/.cache/jaxseg` (`jaxseg.files.cache_dir`)."""
    return files.cache_dir()


def cache_path(params: Mapping[str, object] | None = None) -> Path:
    """Where `ensure_synthetic(params)` keeps its dataset: named by a hash of the parameters."""
    params = validate({k: v for k, v in (params or {}).items() if k != "workers"})
    key = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True)
    return default_cache_dir() / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_synthetic(params: Mapping[str, object] | None = None) -> Path:
    """The cached synthetic dataset for `params`, generated first if missing or incomplete.

    Args:
      params: any of `DEFAULT_PARAMS`' keys (the rest take their defaults), and optionally
        workers (not part of the cache key: it does not change the data).

    Returns:
      The dataset root, `default_cache_dir()/synthetic-<hash>`.
    """
    params = dict(params or {})
    workers = int(params.pop("workers", DEFAULT_WORKERS))
    path = cache_path(params)
    full = validate(params)
    if matches(path, full):
        return path
    if path.exists():  # Ours by its name, but not complete: start over.
        log.warning("synthetic data at %s is incomplete or outdated; regenerating", path)
        shutil.rmtree(path)
    log.info(
        "generating the synthetic dataset (%s) into %s",
        ", ".join(f"{k}={v}" for k, v in full.items()),
        path,
    )
    start = time.perf_counter()
    generate(path, **full, workers=workers)
    log.info("synthetic dataset ready in %.1f s", time.perf_counter() - start)
    return path
