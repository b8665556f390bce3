"""Data-parallel training on 1, 2 and 4 (forced CPU) devices, under sharding and pmap, and
across processes: the same global batch and seed give the same model as one device."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from test_train import _assert_one_line_error, _cli, _final_state

from jaxseg import metrics, parallel, progress, train
from jaxseg.config import load_config
from jaxseg.data import pipeline, sources, synthetic
from jaxseg.errors import ConfigError

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
def tiny_data(tmp_path_factory):
    """6 validation images: the last batch of 4 is padded."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic.generate(root, train=24, val=6, test=1, height=32, width=64, seed=3)
    return root


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


def _assert_same_run(workdir, reference, step=STEPS):
    """Same loss curve and final state as the reference, to 1e-5 relative."""
    records, ref_records = _records(workdir), _records(reference)
    assert [r["step"] for r in records] == [r["step"] for r in ref_records]
    for record, ref in zip(records, ref_records, strict=True):
        assert record["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-5)

    state, ref_state = _final_state(workdir, step), _final_state(reference, step)
    assert int(state["step"]) == step
    for part in ("params", "batch_stats"):
        assert _relative_difference(state[part], ref_state[part]) <= 1e-5, part


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
    assert train.train_and_evaluate(config, workdir, stop_after_steps=STEPS) is None
    return workdir


@pytest.mark.parametrize(
    "mode, devices, shard_params",
    [
        ("sharding", 2, False),
        ("sharding", 4, False),
        ("sharding", 4, True),
        ("pmap", 1, False),
        ("pmap", 2, False),
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
):
    # One example per device on 4 devices: only synchronised BatchNorm statistics agree.
    config = _config(tiny_data, *_parallel(mode, devices, shard_params))
    assert train.train_and_evaluate(config, tmp_path, stop_after_steps=STEPS) is None
    _assert_same_run(tmp_path, reference)


def test_resume_on_another_device_count_and_mode(tiny_data, reference, tmp_path):
    config = _config(tiny_data, *_parallel("pmap", 4))
    assert train.train_and_evaluate(config, tmp_path, stop_after_steps=3) is None
    config = _config(tiny_data, *_parallel("sharding", 1))
    assert train.train_and_evaluate(config, tmp_path, stop_after_steps=STEPS - 3) is None
    _assert_same_run(tmp_path, reference)
    # The last step, validation, the best checkpoint's results and the report under pmap.
    results = train.train_and_evaluate(_config(tiny_data, *_parallel("pmap", 2)), tmp_path)
    assert results["steps"] == 6 and 0 < results["pixel_accuracy"] < 1
    assert (tmp_path / "report").is_dir()


def _state(config, strategy):
    model = train.build_model(config, bn_axis_name=strategy.axis_name)
    state = train.create_train_state(
        model,
        train.create_optimizer(config, train.create_learning_rate(config, 10)),
        jax.random.PRNGKey(1),
        (1, 32, 64, 3),
    )
    return strategy.place_state(strategy.unreplicated(state))


@pytest.mark.parametrize("mode", ["sharding", "pmap"])
def test_evaluation_counts_every_example_once(tiny_data, mode):
    """6 validation images in batches of 4 on 4 devices: the padded rows of the last batch
    count for nothing; the metrics equal those of a plain per-image evaluation."""
    config = _config(tiny_data)
    val = sources.open_split(tiny_data, "val")
    assert len(val) % config.data.eval_batch_size

    one = parallel.create(num_devices=1)
    eval_one = jax.jit(
        lambda state, batch: train.eval_step(state, batch, class_weights=None, void="class")
    )
    state = _state(config, one)
    confusion, pixels = 0, 0
    for batch in pipeline.eval_batches(val, height=32, width=64, batch_size=1):
        confusion = confusion + np.asarray(eval_one(state, batch)["confusion"])
        pixels += int(np.sum(batch["label"] < 26))
    assert confusion.sum() == pixels
    expected = metrics.metrics_from_confusion(confusion)

    strategy = parallel.create(mode, num_devices=4)
    state = _state(config, strategy)
    _, compiled_eval = train.compile_steps(config, strategy, None, state)
    batches = pipeline.eval_batches(val, height=32, width=64, batch_size=4)
    result = train.evaluate(compiled_eval, state, batches, strategy)
    assert result["pixel_accuracy"] == expected["pixel_accuracy"]
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"], rel=1e-12)


def test_accumulated_gradients_make_one_update_of_their_mean(tiny_data):
    config = _config(tiny_data, "train.accumulate_steps=2")
    model = train.build_model(config)
    loss_fn = jax.tree_util.Partial(
        train.segmentation_loss, class_weights=None, void="class", aux_weight=0.5
    )
    rng = jax.random.PRNGKey(1)

    def fresh_state(accumulate):
        config.train.accumulate_steps = accumulate
        tx = train.create_optimizer(config, train.create_learning_rate(config, 10))
        return train.create_train_state(model, tx, rng, (2, 32, 64, 3))

    source = sources.open_split(tiny_data, "train")
    batches = [
        next(iter(pipeline.train_dataset(source, height=32, width=64, batch_size=2, seed=seed)))
        for seed in (0, 1)
    ]
    step = jax.jit(lambda state, batch: train.train_step(state, batch, loss_fn=loss_fn))
    state = fresh_state(2)
    initial = state.params
    state, _ = step(state, batches[0])
    jax.tree.map(np.testing.assert_array_equal, state.params, initial)
    state, _ = step(state, batches[1])

    plain = fresh_state(1)

    @jax.jit
    def grads(batch):
        def loss_of(params):
            outputs, _ = plain.apply_fn(
                {"params": params, "batch_stats": plain.batch_stats},
                batch["image"],
                train=True,
                mutable=["batch_stats"],
            )
            return loss_fn(outputs, batch["label"])

        return jax.grad(loss_of)(plain.params)

    mean = jax.tree.map(lambda a, b: (a + b) / 2, grads(batches[0]), grads(batches[1]))
    expected = plain.apply_gradients(grads=mean).params
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state.params, expected
    )


def test_batch_not_dividing_over_devices_is_a_config_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="data.batch_size=6 does not divide over 4 devices"):
        train.train_and_evaluate(_config(tiny_data, "data.batch_size=6"), tmp_path)
    result = _cli(
        "--experiment",
        "baseline",
        "--data",
        str(tiny_data),
        "--workdir",
        str(tmp_path / "cli"),
        "--set",
        "data.eval_batch_size=6",
    )
    _assert_one_line_error(result, "data.eval_batch_size=6", "4 devices")


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


def test_two_processes_train_and_one_resumes(tiny_data, reference, tmp_path):
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
    assert train.train_and_evaluate(config, workdir, stop_after_steps=STEPS - 3) is None
    _assert_same_run(workdir, reference)
