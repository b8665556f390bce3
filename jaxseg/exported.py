"""A trained model outside jaxseg's code: a serialized `jax.export` artifact (StableHLO,
lowered for CPU and CUDA) and an ONNX model (jax2onnx, of the `export` extra), both taking
uint8 images [B, H, W, 3] with a symbolic batch B and returning float32 logits
[B, H, W, K] at the run's training size, normalisation included.

Beside each file, `{file}.json` records what a user of the logits needs: the label space
(class names, colours, output ids), the input size and the class count. `load` runs the
StableHLO artifact for `jaxseg.predict --exported` with no model code or config.
"""

import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import state, steps
from jaxseg.data import transforms
from jaxseg.data.labels import VOID, LabelSpace, get_label_space
from jaxseg.errors import DataError
from jaxseg.models import layers

FORMATS = ("stablehlo", "onnx")
# Largest difference between the ONNX model's logits and jax's that an export accepts.
ONNX_TOLERANCE = 1e-4
PLATFORMS = ("cpu", "cuda")


def restore_plain(workdir: str | Path) -> state.Restored:
    """A run built with the plain XLA kernels: the CPU kernels' choice depends on the
    backend at trace time, and an artifact must lower for CUDA as well."""
    return state.restore(workdir, ["model.kernels='xla'"])


def logits_function(run: state.Restored) -> Callable[[jax.Array], jax.Array]:
    """uint8 images [B, H, W, 3] -> float32 logits [B, H, W, K]; the weights are constants."""
    forward = steps.eval_forward(run.state.apply_fn, steps.eval_variables(run.state))
    return lambda images: forward(steps.model_input(images))


def input_spec(run: state.Restored) -> jax.ShapeDtypeStruct:
    """uint8 [B, data.height, data.width, 3] with a symbolic B."""
    height, width = run.config.data.height, run.config.data.width
    return jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"B, {height}, {width}, 3"), jnp.uint8)


def to_stablehlo(run: state.Restored) -> bytes:
    """The serialized `jax.export.Exported` of the run's logits, for CPU and CUDA."""
    exported = jax.export.export(jax.jit(logits_function(run)), platforms=PLATFORMS)
    return bytes(exported(input_spec(run)).serialize())


def to_onnx(run: state.Restored) -> bytes:
    """The run's logits as a serialized ONNX model (input "images", output "logits")."""
    try:
        import jax2onnx
        import onnxruntime  # noqa: F401 (`_check_onnx` runs the model)
    except ImportError as e:
        raise DataError(f"ONNX export needs {e.name}: pip install 'jaxseg[export]'") from None
    model = jax2onnx.to_onnx(
        logits_function(run),
        [input_spec(run)],
        model_name="jaxseg",
        input_names=["images"],
        output_names=["logits"],
    )
    data = model.SerializeToString()
    _check_onnx(run, data)
    return data


def _check_onnx(run: state.Restored, data: bytes) -> None:
    """Raises DataError unless onnxruntime's logits of a probe batch of two images agree
    with jax's to `ONNX_TOLERANCE`: jax2onnx 0.17.1 converts DeepLabV3 with a symbolic
    batch without an error, into a model whose logits are wrong."""
    import onnxruntime

    height, width = run.config.data.height, run.config.data.width
    images = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), np.uint8)
    expected = np.asarray(jax.jit(logits_function(run))(images))
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    error = float(np.abs(session.run(None, {"images": images})[0] - expected).max())
    if not error <= ONNX_TOLERANCE:
        raise DataError(
            f"model {run.config.model.name!r}: jax2onnx's conversion computes logits up to "
            f"{error:.3g} away from jax's (tolerance {ONNX_TOLERANCE}); use --format stablehlo"
        )


def export(workdir: str | Path, format: str, out: str | Path) -> Path:
    """Writes the run's model in `format` to `out` and its metadata to `{out}.json`."""
    if format not in FORMATS:
        raise DataError(f"--format {format!r}; valid: {', '.join(FORMATS)}")
    run = restore_plain(workdir)
    data = to_stablehlo(run) if format == "stablehlo" else to_onnx(run)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    meta = {
        "format": format,
        "labels": run.label_space.name,
        "height": run.config.data.height,
        "width": run.config.data.width,
        "num_classes": run.label_space.num_classes,
        "experiment": run.config.experiment,
    }
    Path(f"{out}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _ids(logits: jax.Array, size: tuple[int, int], num_classes: int) -> jax.Array:
    ids = jnp.argmax(layers.resize_bilinear(logits, size), axis=-1)
    return jnp.where(ids >= num_classes, VOID, ids).astype(jnp.uint8)


class ExportedModel:
    """A StableHLO artifact of `export` as a predictor (`jaxseg.prediction.Predictor`):
    images resized to the artifact's input size, logits resized back to each image's."""

    def __init__(self, exported: jax.export.Exported, label_space: LabelSpace):
        self.exported = exported
        self.label_space = label_space
        self.height, self.width = (int(d) for d in exported.in_avals[0].shape[1:3])
        self._ids = jax.jit(_ids, static_argnums=(1, 2))

    def logits(self, images: np.ndarray) -> jax.Array:
        """float32 logits [B, height, width, K] of uint8 images at the artifact's size."""
        return self.exported.call(jnp.asarray(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Train ids [B, H, W] uint8 (255 = void) of uint8 images [B, H, W, 3]."""
        size = images.shape[1:3]
        resized = np.stack([transforms.resize_image(i, self.height, self.width) for i in images])
        logits = self.logits(resized)
        return np.asarray(self._ids(logits, size, self.label_space.num_classes))


def load(path: str | Path) -> ExportedModel:
    """The StableHLO artifact at `path` and its `{path}.json`."""
    path = Path(path)
    meta_path = Path(f"{path}.json")
    for needed in (path, meta_path):
        if not needed.is_file():
            raise DataError(f"{needed}: no such file (write both with jaxseg.export)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "stablehlo":
        raise DataError(f"{path}: a {meta.get('format')} export; --exported runs stablehlo")
    try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception as e:  # Any corrupt artifact, whatever the parser raises.
        raise DataError(f"{path}: not a jax.export artifact ({type(e).__name__})") from None
    return ExportedModel(exported, get_label_space(meta["labels"]))
