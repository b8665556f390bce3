"""XLA CPU settings jaxseg applies before jax starts its backend (on `import jaxseg`).

jaxlib 0.10 hands every convolution to YNNPACK one at a time ("individual_convolution" in
`--xla_cpu_experimental_ynn_fusion_type`). Its kernels ran U-Net's narrow layers (16-256
channels) on about one of the two cores this CPU has: the U-Net base 16 train step at
128x256 batch 8 (the README's main command) took 1.05 s, 0.67 s with the convolutions
left to XLA's own (Eigen) kernels; FCN, the RRCNN encoder and DeepLabV3 did not change.
Matmuls stay with YNNPACK. benchmarks/NOTES.md has the measurements.
"""

import importlib.metadata
import os

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# jaxlib versions whose flag parser knows the value below: XLA aborts the process on an
# unknown one, so other versions keep XLA's defaults.
_VERSIONS_WITH_YNN_CONVOLUTION = ("0.10.",)


def _jaxlib_version() -> str:
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return ""


def apply_defaults(environ: os._Environ | dict = os.environ) -> None:
    """Adds jaxseg's XLA CPU flags to `XLA_FLAGS` unless the user set them already.

    Takes effect only when called before jax initialises its backend (its first
    computation), as `import jaxseg` does; the flags concern the CPU backend only.
    """
    flags = environ.get("XLA_FLAGS", "")
    if YNN_FUSION_FLAG in flags or not _jaxlib_version().startswith(_VERSIONS_WITH_YNN_CONVOLUTION):
        return
    environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_FLAG}=-individual_convolution".strip()
