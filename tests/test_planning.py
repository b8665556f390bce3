"""The plan's figures against the compiled train step, and U-Net's rematerialisation."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import plan, planning, state, steps
from jaxseg.config import load_config
from jaxseg.data.labels import IDD_LEVEL3
from jaxseg.errors import ConfigError

TINY_FCN = [
    "model.name=fcn",
    "model.options={'widths': (4, 8, 8, 8, 16)}",
    "data.height=32",
    "data.width=64",
    "data.batch_size=1",
]
TINY_UNET = [
    "model.name=unet",
    "model.options={'base_width': 4}",
    "model.kernels=xla",
    *TINY_FCN[2:],
]


def _config(*overrides):
    return load_config("baseline", overrides=list(overrides))


def _real_state_and_batch(config):
    """An initialised state and a random batch, built without `planning`."""
    data = config.data
    shape = (data.batch_size, data.height, data.width, 3)
    created = state.create(config, IDD_LEVEL3, image_shape=shape)
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8)),
        "label": jnp.asarray(rng.integers(0, 26, shape[:3], dtype=np.int32)),
    }
    return created.state, batch


def _peak(compiled) -> int:
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
    )


@pytest.mark.slow  # Several compiles of the train step.
def test_plan_matches_the_compiled_step():
    config = _config(*TINY_FCN)
    train_state, batch = _real_state_and_batch(config)
    loss_fn = steps.bind_loss(config, IDD_LEVEL3.num_classes, None)
    jitted = jax.jit(functools.partial(steps.train_step, loss_fn=loss_fn), donate_argnums=(0,))
    compiled = jitted.lower(train_state, batch).compile()
    result = planning.make_plan(config, find_max_batch=False)

    leaves = jax.tree.leaves(train_state.params)
    assert result.params == sum(np.size(leaf) for leaf in leaves)
    assert result.peak_memory_bytes == _peak(compiled)
    # The state is donated: the new state reuses the old one's buffers.
    assert compiled.memory_analysis().alias_size_in_bytes > 0
    assert result.gflops_per_step == pytest.approx(compiled.cost_analysis()["flops"] / 1e9)
    assert result.gflops_per_image == result.gflops_per_step and result.max_batch is None
    assert "parameters" in result.summary() and "largest batch" not in result.summary()


@pytest.mark.parametrize("memory", [99, 130, 250, 315, 339, 1000])
def test_largest_batch_is_the_last_that_fits(memory):
    # 100 bytes fixed, 30 per image, and 25 more from batch 4 on, which the estimate from
    # batches 1 and 2 does not see: the neighbour search corrects it.
    def peak_at(batch):
        return 100 + 30 * batch + (25 if batch >= 4 else 0)

    brute_force = max((b for b in range(1, 100) if peak_at(b) <= memory), default=0)
    assert planning.largest_batch(peak_at, memory, start=1) == brute_force


@pytest.mark.slow  # Several compiles of the train step.
def test_remat_gives_the_same_loss_and_gradients():
    plain = _config(*TINY_UNET)
    remat = _config(*TINY_UNET, "model.remat=True")
    train_state, batch = _real_state_and_batch(plain)
    # The plan's compiled steps, run on the same state and batch: one Adam step each.
    results = {}
    for name, config in (("plain", plain), ("remat", remat)):
        compiled, abstract = planning.compile_train_step(config, IDD_LEVEL3, 1)
        # A copy (the step donates its state) with this config's model and optimizer.
        copy = jax.tree.map(jnp.copy, train_state).replace(
            apply_fn=abstract.apply_fn, tx=abstract.tx
        )
        results[name] = (planning.flops(compiled), *compiled(copy, batch))
    (plain_flops, plain_state, plain_metrics) = results["plain"]
    (remat_flops, remat_state, remat_metrics) = results["remat"]
    assert float(remat_metrics["loss"]) == pytest.approx(float(plain_metrics["loss"]), rel=1e-6)
    assert float(remat_metrics["grad_norm"]) == pytest.approx(
        float(plain_metrics["grad_norm"]), rel=1e-5
    )
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, remat_state.params, plain_state.params)
    jax.tree.map(close, remat_state.opt_state, plain_state.opt_state)  # Adam's moments: grads.
    jax.tree.map(close, remat_state.batch_stats, plain_state.batch_stats)
    # The recomputation is in the compiled step.
    assert remat_flops > plain_flops


@pytest.mark.slow  # Two compiles of the train step.
def test_remat_lowers_the_compiled_peak_by_at_least_30_percent():
    # Large enough for activations to dominate the peak (the kernels are the CPU default's);
    # U-Net 512x1024 base 64: 8.51 GB plain, 4.55 GB with remat (benchmarks/RESULTS.md).
    size = ["model.name=unet", "model.options={'base_width': 8}", "data.height=128"]
    size += ["data.width=256", "data.batch_size=2"]
    plain, remat = (
        planning.make_plan(_config(*size, f"model.remat={flag}"), find_max_batch=False)
        for flag in (False, True)
    )
    assert remat.peak_memory_bytes <= 0.7 * plain.peak_memory_bytes, (
        remat.peak_memory_bytes,
        plain.peak_memory_bytes,
    )
    assert remat.gflops_per_step > plain.gflops_per_step


def test_remat_on_a_model_without_it_is_a_config_error():
    config = _config(*TINY_FCN, "model.remat=True")
    with pytest.raises(ConfigError, match="model 'fcn'.*remat"):
        state.build_model(config, 26)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80GB", 80 * 10**9), ("16GiB", 16 * 2**30), ("512 MB", 512 * 10**6), ("1e9", 10**9)],
)
def test_parse_bytes(text, expected):
    assert planning.parse_bytes(text) == expected


@pytest.mark.slow  # Several compiles of the train step.
def test_cli_writes_the_contract_and_refuses_a_bad_size(tmp_path, capsys):
    out = tmp_path / "plan.json"
    overrides = [f"--set={item}" for item in TINY_FCN]
    record = plan.main(
        ["--experiment=baseline", *overrides, "--device-memory=3MB", f"--json={out}"]
    )
    assert json.loads(out.read_text()) == record
    assert {"params", "gflops_per_step", "gflops_per_image", "peak_memory_bytes", "max_batch"} <= (
        record.keys()
    )
    # This tiny FCN's compiled peaks: 1.57 MB at batch 1, 2.52 MB at 2, 3.68 MB at 3.
    assert record["max_batch"] == 2

    with pytest.raises(SystemExit) as exit_info:
        plan.main(["--experiment=baseline", "--device-memory=lots"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: device memory 'lots': expected a size such as 80GB, 16GiB or 512MB"]
