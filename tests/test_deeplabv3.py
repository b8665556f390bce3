"""DeepLabV3 / ResNet parity with torchvision, and the checkpoint converter."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxseg import convert
from jaxseg.losses import weighted_cross_entropy
from jaxseg.models.deeplabv3 import deeplabv3_resnet50, deeplabv3_resnet101, deeplabv3_tiny

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
F = torch.nn.functional

REPO = Path(__file__).resolve().parents[1]
FLAX_MODELS = {"deeplabv3_resnet50": deeplabv3_resnet50, "deeplabv3_resnet101": deeplabv3_resnet101}


@pytest.fixture(autouse=True, scope="module")
def _two_torch_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _randomize_batchnorm(model, seed: int) -> None:
    """Random BN statistics and affine parameters, so that a layout slip cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _torch_deeplab(arch: str, aux: bool, num_classes: int = 21, seed: int = 0):
    torch.manual_seed(seed)
    build = getattr(torchvision.models.segmentation, arch)
    model = build(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
    _randomize_batchnorm(model, seed)
    return model.eval()


def _numpy_state_dict(model) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def _nhwc(x) -> np.ndarray:
    return x.detach().numpy().transpose(0, 2, 3, 1)


def _assert_close(got, want: np.ndarray, rel: float = 1e-4) -> None:
    """Asserts max |got - want| <= rel * max(1, max |want|) (the parity bound of docs/parity.md)."""
    diff = float(np.max(np.abs(np.asarray(got) - want)))
    assert diff <= rel * max(1.0, float(np.max(np.abs(want)))), diff


@pytest.fixture(scope="module")
def resnet50_aux(tmp_path_factory):
    """A random torchvision deeplabv3_resnet50 (aux) and its weights converted by the CLI."""
    model = _torch_deeplab("deeplabv3_resnet50", aux=True)
    tmp = tmp_path_factory.mktemp("r50")
    torch.save(model.state_dict(), tmp / "model.pth")
    # `python -m jaxseg.convert`, also proving the converter never imports torchvision.
    script = (
        "import runpy, sys\n"
        "sys.argv = ['convert', '--arch', 'deeplabv3_resnet50', '--torch', sys.argv[1],"
        " '--out', sys.argv[2]]\n"
        "runpy.run_module('jaxseg.convert', run_name='__main__')\n"
        "assert 'torchvision' not in sys.modules, 'the converter imported torchvision'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp / "model.pth"), str(tmp / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return model, tmp / "out"


def test_convert_cli_writes_checkpoint_and_metadata(resnet50_aux):
    model, out = resnet50_aux
    meta = json.loads((out / "jaxseg_convert.json").read_text())
    assert meta == {"arch": "deeplabv3_resnet50", "num_classes": 21, "aux": True}
    variables = convert.load_converted(out)
    expected = convert.convert_state_dict(_numpy_state_dict(model), "deeplabv3_resnet50")
    flat, want = (traverse_util.flatten_dict(v) for v in (variables, expected))
    assert flat.keys() == want.keys()
    for path, value in want.items():
        assert flat[path].dtype == np.float32
        np.testing.assert_array_equal(flat[path], value)


@pytest.mark.parametrize("shape", [(1, 3, 161, 201), (2, 3, 224, 320)])
def test_resnet50_eval_parity_with_aux(resnet50_aux, shape):
    model, out = resnet50_aux
    variables = convert.load_converted(out)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    flax_model = deeplabv3_resnet50(num_classes=21)
    got = jax.jit(lambda v, x: flax_model.apply(v, x, train=False))(variables, _nhwc(x))
    assert got.keys() == {"out", "aux"}
    for key in ("out", "aux"):
        assert got[key].shape == (shape[0], *shape[2:], 21) and got[key].dtype == jnp.float32
        _assert_close(got[key], _nhwc(want[key]))


@pytest.mark.parametrize(
    "arch, aux, shape",
    [
        ("deeplabv3_resnet50", False, (1, 3, 161, 201)),
        ("deeplabv3_resnet50", False, (2, 3, 224, 320)),
        ("deeplabv3_resnet101", True, (1, 3, 161, 201)),
    ],
)
def test_eval_parity(arch, aux, shape):
    model = _torch_deeplab(arch, aux=aux, num_classes=7, seed=2)
    variables = convert.convert_state_dict(_numpy_state_dict(model), arch)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x)
    flax_model = FLAX_MODELS[arch](num_classes=7, aux_loss=aux)
    got = jax.jit(lambda v, x: flax_model.apply(v, x, train=False))(variables, _nhwc(x))
    assert got.keys() == want.keys()
    for key in want:
        _assert_close(got[key], _nhwc(want[key]))


def test_train_mode_loss_and_running_stats(resnet50_aux):
    """Batch statistics, torch's unbiased running-variance update, and the loss agree.

    Parameter gradients are not compared: in this random network (ASPP's pooling BN sees two
    values per channel) they are ill-conditioned, and torch float32 itself differs from torch
    float64 by ~25% of the largest gradient entry, as much as Flax float32 does.
    """
    model, out = resnet50_aux
    model = copy.deepcopy(model)  # Train mode updates the running stats the other tests use.
    variables = convert.load_converted(out)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 97, 113, generator=gen)
    labels = torch.randint(0, 21, (2, 97, 113), generator=gen)
    labels[:, :10] = 255  # Void rows carry no loss.

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    result = model(x)
    want_loss = F.cross_entropy(result["out"], labels, ignore_index=255) + 0.5 * F.cross_entropy(
        result["aux"], labels, ignore_index=255
    )
    want_stats = convert.convert_state_dict(_numpy_state_dict(model), "deeplabv3_resnet50")

    flax_model = deeplabv3_resnet50(num_classes=21, dropout_rate=0.0, aux_dropout_rate=0.0)

    @jax.jit
    def loss_and_stats(variables, x, labels):
        logits, updates = flax_model.apply(variables, x, train=True, mutable=["batch_stats"])
        loss = weighted_cross_entropy(logits["out"], labels) + 0.5 * weighted_cross_entropy(
            logits["aux"], labels
        )
        return loss, updates["batch_stats"]

    loss, stats = loss_and_stats(variables, _nhwc(x), labels.numpy())
    assert abs(float(loss) - want_loss.item()) <= 1e-4
    got, want = (traverse_util.flatten_dict(s) for s in (stats, want_stats["batch_stats"]))
    assert got.keys() == want.keys()
    for path, value in want.items():
        _assert_close(got[path], value)


def _init(model, size: int = 65):
    init = jax.jit(lambda key, x: model.init(key, x, train=False))
    return init(jax.random.key(0), jnp.zeros((1, size, size, 3)))


@pytest.fixture(scope="module")
def tiny_variables():
    """Variables of ``deeplabv3_tiny(num_classes=5)``, float32 whatever the compute dtype."""
    return _init(deeplabv3_tiny(num_classes=5), size=33)


@pytest.mark.parametrize("size", [(17, 23), (64, 97)])
def test_any_input_size_and_bfloat16_compute(tiny_variables, size):
    model = deeplabv3_tiny(num_classes=5, dtype=jnp.bfloat16)
    train_forward = jax.jit(
        lambda v, x: model.apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)}
        )
    )
    result, updates = train_forward(tiny_variables, jnp.ones((2, *size, 3)))
    for logits in result.values():
        assert logits.shape == (2, *size, 5) and logits.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(logits)))
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {np.dtype(np.float32)}


# --- converter errors -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50_state_dict():
    torch.manual_seed(7)
    model = torchvision.models.resnet50(weights=None)
    _randomize_batchnorm(model, 7)
    return _numpy_state_dict(model)


def test_backbone_conversion_ignores_fc(resnet50_state_dict):
    variables = convert.convert_state_dict(resnet50_state_dict, "resnet50")
    assert variables["params"].keys() == {"backbone"}
    assert convert.ignored_keys(resnet50_state_dict, "resnet50") == ["fc.weight", "fc.bias"]
    np.testing.assert_array_equal(
        variables["params"]["backbone"]["layer3_4"]["conv2"]["kernel"],
        resnet50_state_dict["layer3.4.conv2.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["backbone"]["layer1_0"]["downsample_1"]["var"],
        resnet50_state_dict["layer1.0.downsample.1.running_var"],
    )


def _without(state_dict, key):
    return {k: v for k, v in state_dict.items() if k != key}


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda sd: _without(sd, "layer2.1.bn2.running_var"),
            "missing key layer2.1.bn2.running_var",
        ),
        (lambda sd: {**sd, "layer5.0.conv1.weight": np.zeros(3)}, "unexpected key layer5.0.conv1"),
        (
            lambda sd: {**sd, "layer1.0.conv1.weight": np.zeros((64, 64, 3, 3), np.float32)},
            "key layer1.0.conv1.weight: expected shape (64, 64, 1, 1), got (64, 64, 3, 3)",
        ),
    ],
    ids=["missing", "extra", "shape"],
)
def test_convert_state_dict_errors(resnet50_state_dict, edit, message):
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_state_dict(edit(resnet50_state_dict), "resnet50")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_class_count_mismatch_names_classifier_key():
    model = _torch_deeplab("deeplabv3_resnet50", aux=False, num_classes=5)
    with pytest.raises(convert.ConversionError, match=r"classifier\.4\.weight: expected shape"):
        convert.convert_state_dict(_numpy_state_dict(model), "deeplabv3_resnet50", num_classes=6)


def _run_cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        convert.main(list(args))
    return info.value.code, capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys, resnet50_state_dict):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"a": 1, "b": 2}, tmp_path / "ints.pth")
    broken = {k: torch.from_numpy(v) for k, v in resnet50_state_dict.items()}
    broken["layer4.2.bn3.weight"] = torch.zeros(7)
    torch.save({"model": broken}, tmp_path / "broken.pth")
    cases = [
        ("missing.pth", "resnet50", "no such file"),
        ("list.pth", "resnet50", "is not a state dict"),
        ("ints.pth", "resnet50", "is not a state dict"),
        ("broken.pth", "resnet50", "layer4.2.bn3.weight: expected shape (2048,), got (7,)"),
        ("broken.pth", "vgg16", "unknown arch 'vgg16'"),
    ]
    for name, arch, message in cases:
        out = tmp_path / "out"
        args = ["--arch", arch, "--torch", str(tmp_path / name), "--out", str(out)]
        code, err = _run_cli(capsys, *args)
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
        assert not out.exists()


# --- merging pretrained weights ---------------------------------------------------------------


def test_merge_backbone_into_new_head(resnet50_state_dict):
    pretrained = convert.convert_state_dict(resnet50_state_dict, "resnet50")
    init = _init(deeplabv3_resnet50(num_classes=26))
    merged = convert.merge_pretrained(init, pretrained)
    flat, fresh, backbone = (traverse_util.flatten_dict(v) for v in (merged, init, pretrained))
    assert flat.keys() == fresh.keys()
    for path, value in flat.items():
        np.testing.assert_array_equal(value, backbone.get(path, fresh[path]))
    assert merged["params"]["classifier_4"]["kernel"].shape == (1, 1, 256, 26)
    assert merged["params"]["aux_classifier_4"]["bias"].shape == (26,)


def test_merge_keeps_fresh_class_layers_only(tiny_variables):
    pretrained = {
        "params": {
            "backbone": {"conv1": {"kernel": np.ones((7, 7, 3, 8), np.float32)}},
            "classifier_4": {"kernel": np.ones((1, 1, 16, 21)), "bias": np.ones(21)},
            "aux_classifier_4": {"bias": np.ones(21)},
        }
    }
    # The variables of a 5-class tiny model built with aux_loss=False.
    init = {
        collection: {name: v for name, v in tree.items() if not name.startswith("aux_")}
        for collection, tree in tiny_variables.items()
    }
    merged = convert.merge_pretrained(init, pretrained)
    assert np.all(merged["params"]["backbone"]["conv1"]["kernel"] == 1)
    np.testing.assert_array_equal(
        merged["params"]["classifier_4"]["kernel"], init["params"]["classifier_4"]["kernel"]
    )
    assert "aux_classifier_4" not in merged["params"]

    wrong = {"params": {"classifier_1": {"kernel": np.ones((3, 3, 16, 17))}}}
    with pytest.raises(convert.ConversionError, match="classifier_1/kernel: expected shape"):
        convert.merge_pretrained(init, wrong)
    unknown = {"params": {"classifier_9": {"kernel": np.ones(1)}}}
    with pytest.raises(convert.ConversionError, match="classifier_9/kernel is not in the model"):
        convert.merge_pretrained(init, unknown)
