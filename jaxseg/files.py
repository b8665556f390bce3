"""Files jaxseg writes: atomically, and where it keeps what it makes once (the cache)."""

import json
import math
import os
import threading
from pathlib import Path


def write_atomic(data: bytes, path: str | Path) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename, so
    a reader (or a run killed mid-write) never sees a partial file."""
    path = Path(path)
    # Named by process and thread: concurrent writers never share one; open() honours umask.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """`$JAXSEG_CACHE`, else `~/.cache/jaxseg`."""
    cache = os.environ.get("JAXSEG_CACHE")
    return Path(cache).expanduser() if cache else Path.home() / ".cache" / "jaxseg"


def weights_dir(arch: str) -> Path:
    """Where `jaxseg.convert --arch ARCH` writes converted torchvision weights by default."""
    return cache_dir() / "weights" / arch


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def to_json(record: dict, **kwargs) -> str:
    """Strict JSON: NaN (a class absent from a split has no IoU) is written as null."""
    return json.dumps(_nan_to_none(record), allow_nan=False, **kwargs)
