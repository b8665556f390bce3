"""jaxseg: pure-functional JAX/Flax semantic segmentation of driving scenes.

`jaxseg.Segmenter` (the Python API of a trained run, `jaxseg.inference`) is imported on
first use, so `import jaxseg` stays free of jax for the tools that do without it. Importing it sets
jaxseg's XLA CPU flags (`jaxseg.xla_cpu`) unless `XLA_FLAGS` already has them.
"""

from jaxseg import xla_cpu

__version__ = "0.1.0"

xla_cpu.apply_defaults()


def __getattr__(name: str):
    if name == "Segmenter":
        from jaxseg.inference import Segmenter

        return Segmenter
    raise AttributeError(f"module 'jaxseg' has no attribute {name!r}")
