"""Preemption and crashes: SIGTERM checkpoints at the next step and says how to resume;
SIGKILL at random moments (mid-step, mid-evaluation, mid-checkpoint write, mid-report),
then the same command, ends bit for bit where an uninterrupted run ends.

More kill rounds than CI runs: `JAXSEG_KILL_SEEDS=0,1,2,3 pytest tests/test_preemption.py`.
"""

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow

SEEDS = [int(s) for s in os.environ.get("JAXSEG_KILL_SEEDS", "0").split(",")]
STEPS = 8  # 2 epochs of 4 steps.
TIMING = {"steps_per_sec", "images_per_sec", "train_images_per_sec", "data_wait"}


@pytest.fixture(scope="module")
def small_data(synthetic_data):
    return synthetic_data(16, 4, 1, 32, 64, 3)


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """One device and a shared compilation cache: the relaunches skip compiling."""
    cache = tmp_path_factory.mktemp("jit_cache")
    return {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _command(data, workdir):
    settings = [
        "data.height=32",
        "data.width=64",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.workers=0",
        "model.options={'widths': (4, 4)}",
        "train.epochs=2",
        "train.patience=0",
        "train.log_every_steps=1",
        "train.checkpoint_every_steps=1",
        "train.tensorboard_images=0",
    ]
    command = [sys.executable, "-m", "jaxseg.train", "--experiment", "baseline"]
    command += ["--data", str(data), "--workdir", str(workdir)]
    return command + [arg for s in settings for arg in ("--set", s)]


def _launch(command, env):
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _records(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # A line being written.
            pass
    return records


def _wait_for(process, condition, timeout=120.0) -> bool:
    """Polls `condition` every 2 ms until it holds (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return False


def _writing_checkpoint(workdir: Path) -> bool:
    folder = workdir / "checkpoints" / "latest"
    return folder.exists() and any("tmp" in p.name for p in folder.iterdir())


def _comparable(workdir: Path):
    records = [{k: v for k, v in r.items() if k not in TIMING} for r in _records(workdir)]
    results = json.loads((workdir / "results.json").read_text())
    return records, {k: v for k, v in results.items() if k not in TIMING}


def _kill_points(rng: random.Random) -> list:
    """Kills in a random order: one while a checkpoint is being written (after a random
    number of log records), one after a random number of records plus a random delay;
    with JAXSEG_KILL_SEEDS set, one more while the report is drawn."""
    points = [("checkpoint", rng.randint(3, STEPS)), ("records", rng.randint(3, 10))]
    rng.shuffle(points)
    return points + ([("report", 0)] if "JAXSEG_KILL_SEEDS" in os.environ else [])


def _kill_at(process, workdir: Path, point, rng) -> bool:
    """Sends SIGKILL at `point`; False when the run ended first."""
    kind, count = point
    if kind == "checkpoint":
        reached = _wait_for(
            process, lambda: len(_records(workdir)) >= count and _writing_checkpoint(workdir)
        )
    elif kind == "records":
        reached = _wait_for(process, lambda: len(_records(workdir)) >= count)
        time.sleep(rng.uniform(0.0, 0.5))
    else:
        reached = _wait_for(process, lambda: (workdir / "results.json").exists())
    process.kill()
    process.communicate()
    return reached and process.returncode == -signal.SIGKILL


def _sigterm(process, workdir: Path, count: int) -> int:
    """Sends SIGTERM after `count` log records; checks the exit, the message and that the
    checkpoint is of the step running when the signal came (or the one before)."""
    assert _wait_for(process, lambda: len(_records(workdir)) >= count)
    logged = max(r["step"] for r in _records(workdir))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("SIGTERM: stopped at step ")
    assert last.endswith(f"resume with: python -m jaxseg.train {shlex.join(process.args[3:])}")
    saved = int(last.split("step ")[1].split(",")[0])
    assert logged <= saved <= logged + 1
    assert (workdir / "checkpoints" / "latest" / str(saved)).is_dir()
    return saved


@pytest.fixture(scope="module")
def straight(small_data, environment, tmp_path_factory):
    """The uninterrupted run, checkpointed only at epoch ends."""
    workdir = tmp_path_factory.mktemp("straight")
    command = _command(small_data, workdir) + ["--set", "train.checkpoint_every_steps=0"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("seed", SEEDS)
def test_sigterm_and_kill9_anywhere_then_same_command_matches(
    small_data, environment, straight, tmp_path, final_state, seed
):
    command, rng = _command(small_data, tmp_path), random.Random(seed)
    _sigterm(_launch(command, environment), tmp_path, rng.randint(1, 4))
    kills = sum(
        _kill_at(_launch(command, environment), tmp_path, point, rng) for point in _kill_points(rng)
    )
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert kills >= 1
    jax.tree.map(
        np.testing.assert_array_equal, final_state(straight, STEPS), final_state(tmp_path, STEPS)
    )
    assert _comparable(tmp_path) == _comparable(straight)
    print(f"seed {seed}: 1 SIGTERM and {kills} kills, resumed run matched")
