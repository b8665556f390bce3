"""Convert torchvision ResNet / DeepLabV3 checkpoints to Flax variables.

    python -m jaxseg.convert --arch deeplabv3_resnet101 \\
        --torch ~/.cache/torch/hub/checkpoints/deeplabv3_resnet101_coco-586e9e4e.pth --out DIR

writes ``DIR/variables`` (an orbax checkpoint of ``{"params", "batch_stats"}``, numpy float32)
and ``DIR/jaxseg_convert.json`` (arch, num_classes, aux). The mapping is one rule, because the
Flax modules are named after torchvision's keys: numeric key components join the name before
them with ``_`` (``backbone.layer3.4.conv2.weight`` -> ``backbone/layer3_4/conv2``), and the
leaf maps by type:

    conv weight [O, I, kh, kw]   -> params .../kernel [kh, kw, I, O]
    conv / BN bias               -> params .../bias
    BN weight                    -> params .../scale
    BN running_mean/running_var  -> batch_stats .../mean, .../var
    BN num_batches_tracked       -> dropped

ImageNet ResNet checkpoints (``--arch resnet50|resnet101``) become the ``backbone`` subtree
of a DeepLabV3 (their ``fc.*`` classifier is ignored); ``merge_pretrained`` puts them, or a
DeepLabV3 checkpoint with another class count, into freshly initialised variables.

Reading the ``.pth`` file needs torch (never torchvision); ``convert_state_dict`` and the rest
work on numpy arrays.
"""

import argparse
import json
import logging
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxseg import files
from jaxseg.errors import JaxsegError
from jaxseg.models import deeplabv3, resnet

Variables = dict[str, Any]

# Architectures the converter knows. The resnet* ones are torchvision classification ResNets
# (keys without the "backbone." prefix); their variables become a DeepLabV3 backbone.
ARCHS = {
    "deeplabv3_resnet101": deeplabv3.deeplabv3_resnet101,
    "deeplabv3_resnet50": deeplabv3.deeplabv3_resnet50,
    "resnet101": resnet.resnet101,
    "resnet50": resnet.resnet50,
}
# Layers whose shape depends on the class count. merge_pretrained keeps them freshly
# initialised when the pretrained class count differs from the model's.
CLASS_LAYERS = ("classifier_4", "aux_classifier_4")
# The auxiliary head is optional: merging into a model built with aux_loss=False drops it.
AUX_HEAD = "aux_classifier_"
# Classification heads of ImageNet ResNets, not part of the backbone.
IGNORED_PREFIXES = {"resnet101": ("fc.",), "resnet50": ("fc.",)}
# Image size at which the variable shapes are traced (they do not depend on it).
_TRACE_SIZE = 64
_VARIABLES_DIR = "variables"
_META_FILE = "jaxseg_convert.json"


class ConversionError(JaxsegError):
    """A checkpoint does not fit the architecture (one-line message naming the key)."""


def _is_backbone_only(arch: str) -> bool:
    return arch.startswith("resnet")


def expected_variables(arch: str, num_classes: int = 21, aux: bool = True) -> Variables:
    """Shapes of the Flax variables of ``arch``, as a tree of ``jax.ShapeDtypeStruct``.

    Backbone-only architectures are nested under ``"backbone"``, as in a DeepLabV3.
    """
    if arch not in ARCHS:
        raise ConversionError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if _is_backbone_only(arch):
        model = ARCHS[arch]()
    else:
        model = ARCHS[arch](num_classes=num_classes, aux_loss=aux)
    image = jax.ShapeDtypeStruct((1, _TRACE_SIZE, _TRACE_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(partial(model.init, train=False), jax.random.key(0), image)
    if _is_backbone_only(arch):
        shapes = {collection: {"backbone": tree} for collection, tree in shapes.items()}
    return shapes


def _torch_module(flax_path: tuple[str, ...]) -> str:
    """``("backbone", "layer3_4", "conv2")`` -> ``"backbone.layer3.4.conv2"``."""
    parts = []
    for name in flax_path:
        match = re.fullmatch(r"(.*?)((?:_\d+)+)", name)
        parts.extend([match[1], *match[2][1:].split("_")] if match else [name])
    return ".".join(parts)


def _torch_leaf(collection: str, flax_leaf: str) -> str:
    return {
        ("params", "kernel"): "weight",
        ("params", "scale"): "weight",
        ("params", "bias"): "bias",
        ("batch_stats", "mean"): "running_mean",
        ("batch_stats", "var"): "running_var",
    }[collection, flax_leaf]


def _to_flax(array: np.ndarray) -> np.ndarray:
    # Conv weights are the only 4-D leaves: OIHW -> HWIO.
    return np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(flax_shape) == 4:
        kh, kw, cin, cout = flax_shape
        return (cout, cin, kh, kw)
    return tuple(flax_shape)


def _key_table(arch: str, shapes: Variables) -> dict[str, tuple[str, tuple[str, ...], tuple]]:
    """Maps each torch key of ``arch`` to (collection, Flax path, torch-layout shape)."""
    table = {}
    for collection, tree in shapes.items():
        for path, leaf in traverse_util.flatten_dict(tree).items():
            key = f"{_torch_module(path[:-1])}.{_torch_leaf(collection, path[-1])}"
            if _is_backbone_only(arch):
                key = key.removeprefix("backbone.")
            table[key] = (collection, path, _torch_shape(leaf.shape))
    return table


def _num_classes(state_dict: Mapping[str, np.ndarray], num_classes: int | None) -> int:
    """The requested class count, else the checkpoint's, else torchvision's default 21."""
    if num_classes is not None:
        return num_classes
    bias = state_dict.get("classifier.4.bias")
    return 21 if bias is None else int(np.shape(bias)[0])


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], arch: str, num_classes: int | None = None
) -> Variables:
    """Maps a torchvision state dict to Flax variables, checking keys and shapes.

    Args:
      state_dict: torch key -> numpy array (torch layout).
      arch: one of ``ARCHS``.
      num_classes: expected class count of a DeepLabV3; None reads it from
        ``classifier.4.bias``. The auxiliary head is converted when its keys are present.

    Returns:
      {"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays.

    Raises:
      ConversionError: unknown arch, a key the architecture lacks, a missing key, or a shape
        mismatch; the message names the torch key and the expected and actual shapes.
    """
    aux = any(key.startswith("aux_classifier.") for key in state_dict)
    shapes = expected_variables(arch, _num_classes(state_dict, num_classes), aux)
    table = _key_table(arch, shapes)
    ignored = IGNORED_PREFIXES.get(arch, ())

    flat: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in state_dict.items():
        if key.startswith(ignored) or (
            key.endswith(".num_batches_tracked")
            and key.removesuffix("num_batches_tracked") + "running_mean" in table
        ):
            continue
        if key not in table:
            raise ConversionError(f"unexpected key {key} (not in {arch})")
        collection, path, shape = table[key]
        if tuple(np.shape(value)) != shape:
            raise ConversionError(
                f"key {key}: expected shape {shape}, got {tuple(np.shape(value))}"
            )
        flat[(collection, *path)] = _to_flax(np.asarray(value, dtype=np.float32))

    for key, (collection, path, shape) in table.items():
        if (collection, *path) not in flat:
            raise ConversionError(f"missing key {key} (expected shape {shape})")
    return traverse_util.unflatten_dict(flat)


def ignored_keys(state_dict: Mapping[str, Any], arch: str) -> list[str]:
    """Keys that ``convert_state_dict`` skips on purpose (e.g. an ImageNet ``fc`` head)."""
    return [key for key in state_dict if key.startswith(IGNORED_PREFIXES.get(arch, ()))]


def merge_pretrained(init_variables: Variables, pretrained_variables: Variables) -> Variables:
    """Overwrites the leaves of ``init_variables`` with those of ``pretrained_variables``.

    Leaves absent from the pretrained tree keep their initial values (a whole DeepLabV3 head
    when the pretrained tree is a converted ImageNet ResNet). When the class count differs,
    the class layers ``classifier_4`` and ``aux_classifier_4`` (kernel and bias) stay fresh;
    pretrained auxiliary-head leaves are dropped when the model has no auxiliary head.

    Args:
      init_variables: freshly initialised {"params", "batch_stats", ...} of the target model.
      pretrained_variables: converted variables, e.g. from ``load_converted``.

    Returns:
      A new tree shaped like ``init_variables``, leaves as ``jnp`` arrays of its dtypes.

    Raises:
      ConversionError: a pretrained leaf the model lacks, or a shape mismatch outside the
        class layers; the message names the variable and both shapes.
    """
    merged = traverse_util.flatten_dict(init_variables)
    for path, value in traverse_util.flatten_dict(pretrained_variables).items():
        name = "/".join(path)
        if path not in merged:
            if any(part.startswith(AUX_HEAD) for part in path):
                continue
            raise ConversionError(f"pretrained variable {name} is not in the model")
        target = merged[path]
        if tuple(np.shape(value)) != tuple(target.shape):
            if any(part in CLASS_LAYERS for part in path):
                continue
            raise ConversionError(
                f"variable {name}: expected shape {tuple(target.shape)}, "
                f"got {tuple(np.shape(value))}"
            )
        merged[path] = jnp.asarray(value, dtype=target.dtype)
    return traverse_util.unflatten_dict(merged)


def save_converted(out_dir: str | Path, variables: Variables, arch: str) -> None:
    """Writes ``variables`` as an orbax checkpoint plus ``jaxseg_convert.json`` to ``out_dir``."""
    import orbax.checkpoint as ocp

    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(out / _VARIABLES_DIR, variables, force=True)
    params = variables["params"]
    meta = {
        "arch": arch,
        "num_classes": (
            None if _is_backbone_only(arch) else int(params["classifier_4"]["bias"].shape[0])
        ),
        "aux": "aux_classifier_4" in params,
    }
    (out / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_converted(out_dir: str | Path) -> Variables:
    """Restores the variables written by ``save_converted`` as float32 numpy arrays."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(Path(out_dir).absolute() / _VARIABLES_DIR)
    return jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), restored)


def _load_reason(error: Exception) -> str:
    """The informative line of ``torch.load``'s multi-paragraph error message."""
    text = str(error)
    match = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = match[1] if match else (lines[0] if lines else type(error).__name__)
    return reason.split(". Please")[0]


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a torch state dict (or a checkpoint dict holding one under "model") as numpy.

    Raises:
      ConversionError: the file is missing, unreadable, or not a state dict.
    """
    try:
        import torch
    except ImportError as e:
        raise ConversionError(f"reading {path} needs torch ({e})") from e

    if not Path(path).is_file():
        raise ConversionError(f"no such file: {path}")
    try:
        # torchvision's reference training scripts store their argparse.Namespace beside
        # "model"; a Namespace only holds attributes, so allowing it keeps the load safe.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or non-weights files.
        raise ConversionError(f"cannot read {path} as torch weights: {_load_reason(e)}") from e
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise ConversionError(f"{path} is not a state dict (expected a dict of tensors)")
    # numpy has no bfloat16: read every floating tensor as float32.
    return {
        key: (value.float() if value.is_floating_point() else value).detach().cpu().numpy()
        for key, value in obj.items()
    }


def random_torchvision_weights(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Converts a randomly initialised torchvision model: a stand-in for pretrained
    weights where none can be downloaded, exercising the same file-to-Flax path.

    Needs torch and torchvision (the `torch` extra). Written once into ``out_dir``.
    """
    out = Path(out_dir)
    if (out / _META_FILE).exists():
        return out
    try:
        import torch
        import torchvision
    except ImportError as e:
        raise ConversionError(
            f"random torchvision weights need torch and torchvision (pip install '.[torch]'): {e}"
        ) from e
    torch.manual_seed(seed)
    if _is_backbone_only(arch):
        model = getattr(torchvision.models, arch)(weights=None)
    else:
        model = getattr(torchvision.models.segmentation, arch)(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=True
        )
    out.mkdir(parents=True, exist_ok=True)
    torch_file = out / f"{arch}_random.pth"
    torch.save(model.state_dict(), torch_file)
    save_converted(out, convert_state_dict(read_state_dict(torch_file), arch), arch)
    return out


def init_from_path(init_from: str, arch: str) -> Path | None:
    """The converted-weights folder `model.init_from` names (None for ""), checked.

    Args:
      init_from: a `jaxseg.convert` output folder; "torchvision:ARCH", the folder that
        `python -m jaxseg.convert --arch ARCH` writes by default; or "random_torchvision",
        a converted randomly initialised torchvision model of `arch` (made once into the
        cache; needs torch and torchvision).
      arch: the model's name, for "random_torchvision".

    Raises:
      ConversionError: torch missing for "random_torchvision", or no converted weights at
        the path.
    """
    if not init_from:
        return None
    if init_from == "random_torchvision":
        if arch not in ARCHS:
            raise ConversionError(f"model.init_from=random_torchvision: no torchvision {arch!r}")
        return random_torchvision_weights(arch, files.cache_dir() / f"random-torchvision-{arch}")
    path = Path(init_from)
    if init_from.startswith("torchvision:"):
        path = files.weights_dir(init_from.removeprefix("torchvision:"))
    if not (path / _META_FILE).is_file():
        raise ConversionError(
            f"model.init_from={init_from}: {path} holds no converted weights "
            "(write them with `python -m jaxseg.convert`, or name a jaxseg run's workdir)"
        )
    return path


def load_init_from(init_from: str, arch: str) -> Variables | None:
    """The variables `model.init_from` names (see `init_from_path`), or None for ""."""
    path = init_from_path(init_from, arch)
    return None if path is None else load_converted(path)


def main(argv: list[str] | None = None) -> None:
    from jaxseg import cli

    parser = cli.parser("jaxseg.convert", __doc__.split("\n")[0])
    # No argparse `choices`: an unknown arch is reported by ConversionError in one line.
    parser.add_argument("--arch", required=True, help=" | ".join(ARCHS))
    parser.add_argument("--torch", required=True, help="torchvision .pth state dict")
    parser.add_argument(
        "--out",
        help="output directory (default: the cache folder that model.init_from="
        "torchvision:ARCH reads)",
    )
    parser.add_argument("--num-classes", type=int, help="expected DeepLabV3 class count")
    args = parser.parse_args(argv)
    with cli.user_errors():
        if args.arch not in ARCHS:
            raise ConversionError(f"unknown arch {args.arch!r}; expected one of {', '.join(ARCHS)}")
        state_dict = read_state_dict(args.torch)
        variables = convert_state_dict(state_dict, args.arch, args.num_classes)
        skipped = ignored_keys(state_dict, args.arch)
        if skipped:
            logging.info("note: ignored the classification head: %s", ", ".join(skipped))
        out = Path(args.out) if args.out else files.weights_dir(args.arch)
        save_converted(out, variables, args.arch)
        logging.info("wrote %s", out / _VARIABLES_DIR)


if __name__ == "__main__":
    main()
