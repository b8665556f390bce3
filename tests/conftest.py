"""Test setup and shared fixtures.

Several CPU devices, so sharded and pmapped code runs as on a multi-GPU host; small
synthetic datasets made once per session; helpers that run the command-line tools and
read checkpoints. `pytest -m "not slow"` leaves out the end-to-end, subprocess and
multi-process tests.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Must happen before jax is imported anywhere.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same tiny models, in this process and in the commands they start
# (which inherit the environment): XLA's persistent cache compiles each program once.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxseg-tests-xla-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """`make(train, val, test, height, width, seed, layout="idd")` -> a synthetic dataset's
    root, generated once per session for each setting."""
    from jaxseg.data import synthetic

    made = {}

    def make(train, val, test, height, width, seed, layout="idd"):
        key = (train, val, test, height, width, seed, layout)
        if key not in made:
            root = tmp_path_factory.mktemp("synthetic") / "data"
            kwargs = {} if layout == "idd" else {"layout": layout}
            synthetic.generate(
                root, train=train, val=val, test=test, height=height, width=width, seed=seed,
                **kwargs,
            )  # fmt: skip
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_data(synthetic_data):
    """16 train, 6 val, 2 test images of 64x128."""
    return synthetic_data(16, 6, 2, 64, 128, 3)


@pytest.fixture(scope="session")
def run_module():
    """`run(module, *args, cwd=None, timeout=300, env=None)`: `python -m module args` as a
    subprocess, output captured as text."""

    def run(module, *args, cwd=None, timeout=300, env=None):
        return subprocess.run(
            [sys.executable, "-m", module, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd or REPO,
            timeout=timeout,
            env=env,
        )

    return run


@pytest.fixture(scope="session")
def assert_one_line_error():
    """`check(result, *fragments)`: a failed command whose last stderr line is `error: ...`
    holding every fragment, with no traceback."""

    def check(result, *fragments):
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        for fragment in fragments:
            assert fragment in lines[-1]

    return check


@pytest.fixture(scope="session")
def final_state():
    """`read(workdir, step)`: the state tree of a run's latest checkpoint at `step`."""
    import orbax.checkpoint as ocp

    from jaxseg import checkpoint

    def read(workdir, step):
        checkpoints = checkpoint.Checkpoints(Path(workdir) / "checkpoints")
        try:
            restored = checkpoints.latest.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
                ),
            )
        finally:
            checkpoints.close()
        return restored.state

    return read


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory, tiny_data):
    """`make(experiment, *overrides)` -> a run folder on `tiny_data` (64x128) holding its
    config.json and a checkpoint of the freshly initialised state, made without training:
    what prediction, evaluation and export read, at the cost of one initialisation (made
    once per session for each setting; tests must not change it)."""
    from jaxseg import checkpoint, state
    from jaxseg.config import config_to_json, load_config
    from jaxseg.data import formats

    made = {}

    def make(experiment, *overrides):
        if (experiment, *overrides) in made:
            return made[(experiment, *overrides)]
        config = load_config(
            experiment,
            data=str(tiny_data),
            overrides=["data.height=64", "data.width=128", "data.workers=0", *overrides],
        )
        space = formats.config_dataset(config).label_space
        config.data.labels = space.name
        workdir = tmp_path_factory.mktemp("run")
        (workdir / "config.json").write_text(config_to_json(config))
        created = state.create(config, space, image_shape=(1, 64, 128, 3))
        checkpoints = checkpoint.Checkpoints(workdir / "checkpoints")
        checkpoints.save(0, state.checkpoint_tree(created.state), {}, best=True)
        checkpoints.close()
        made[(experiment, *overrides)] = workdir
        return workdir

    return make
