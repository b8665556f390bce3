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

TINY_UNET = [
    "model.name=unet",
    "model.options={'base_width': 4}",
    "data.height=32",
    "data.width=64",
    "data.batch_size=1",
]


def _config(*extra):
    return load_config("baseline", overrides=[*TINY_UNET, *extra])


def _real_step(config, batch_size):
    """The train step compiled on an initialised state and a real batch, independently of
    `planning`: (compiled, state, batch)."""
    shape = (batch_size, config.data.height, config.data.width, 3)
    created = state.create(config, IDD_LEVEL3, image_shape=shape)
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8)),
        "label": jnp.asarray(rng.integers(0, 26, shape[:3], dtype=np.int32)),
    }
    loss_fn = steps.bind_loss(config, IDD_LEVEL3.num_classes, None)
    jitted = jax.jit(functools.partial(steps.train_step, loss_fn=loss_fn), donate_argnums=(0,))
    return jitted.lower(created.state, batch).compile(), created.state, batch


def _peak(compiled) -> int:
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
    )


def test_plan_matches_the_compiled_step_and_its_largest_batch_fits():
    config = _config()
    one, created_state, _ = _real_step(config, 1)
    two = _real_step(config, 2)[0]
    # Room for batch 2 and half the growth to batch 3: batch 3 must not fit.
    memory = _peak(two) + (_peak(two) - _peak(one)) // 2
    result = planning.make_plan(config, memory)

    leaves = jax.tree.leaves(created_state.params)
    assert result.params == sum(np.size(leaf) for leaf in leaves)
    assert result.peak_memory_bytes == _peak(one)
    # The state is donated: the new state reuses the old one's buffers.
    assert one.memory_analysis().alias_size_in_bytes > 0
    assert result.gflops_per_step == pytest.approx(one.cost_analysis()["flops"] / 1e9)
    assert result.gflops_per_image == result.gflops_per_step
    assert result.max_batch == 2 and result.device_memory_bytes == memory
    assert planning.make_plan(config, _peak(one) - 1).max_batch == 0


def test_remat_gives_the_same_loss_and_gradients_and_a_lower_peak():
    config = _config("data.height=64", "data.width=128", "data.batch_size=2")
    remat = _config("data.height=64", "data.width=128", "data.batch_size=2", "model.remat=True")
    _, created_state, batch = _real_step(config, 2)
    loss_fn = steps.bind_loss(config, IDD_LEVEL3.num_classes, None)

    def loss_and_grads(cfg):
        model = state.build_model(cfg, IDD_LEVEL3.num_classes)

        def loss_of(params):
            outputs, _ = model.apply(
                {"params": params, "batch_stats": created_state.batch_stats},
                steps.model_input(batch["image"]),
                train=True,
                mutable=["batch_stats"],
            )
            return steps.mean_loss(loss_fn(outputs, batch["label"]))

        return jax.jit(jax.value_and_grad(loss_of))(created_state.params)

    (loss, grads), (remat_loss, remat_grads) = loss_and_grads(config), loss_and_grads(remat)
    assert float(remat_loss) == pytest.approx(float(loss), rel=1e-6)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6), remat_grads, grads
    )
    plain_peak = planning.peak_bytes(planning.compile_train_step(config, IDD_LEVEL3, 2)[0])
    remat_peak = planning.peak_bytes(planning.compile_train_step(remat, IDD_LEVEL3, 2)[0])
    assert remat_peak < 0.9 * plain_peak


def test_remat_on_a_model_without_it_is_a_config_error():
    config = _config("model.name=fcn", "model.options={}", "model.remat=True")
    with pytest.raises(ConfigError, match="model 'fcn'.*remat"):
        state.build_model(config, 26)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80GB", 80 * 10**9), ("16GiB", 16 * 2**30), ("512 MB", 512 * 10**6), ("1e9", 10**9)],
)
def test_parse_bytes(text, expected):
    assert planning.parse_bytes(text) == expected


def test_cli_writes_the_contract_and_refuses_a_bad_size(tmp_path, capsys):
    out = tmp_path / "plan.json"
    overrides = [f"--set={item}" for item in TINY_UNET]
    record = plan.main(
        ["--experiment=baseline", *overrides, "--device-memory=1GB", f"--json={out}"]
    )
    assert json.loads(out.read_text()) == record
    assert {"params", "gflops_per_step", "gflops_per_image", "peak_memory_bytes", "max_batch"} <= (
        record.keys()
    )
    assert isinstance(record["max_batch"], int) and record["max_batch"] >= 1

    with pytest.raises(SystemExit) as exit_info:
        plan.main(["--experiment=baseline", "--device-memory=lots"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: device memory 'lots': expected a size such as 80GB, 16GiB or 512MB"]
