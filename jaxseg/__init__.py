"""jaxseg: pure-functional JAX/Flax semantic segmentation of driving scenes.

`jaxseg.Segmenter` (the Python API of a trained run, `jaxseg.inference`) is imported on
first use, so `import jaxseg` stays free of jax for the tools that do without it.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Segmenter":
        from jaxseg.inference import Segmenter

        return Segmenter
    raise AttributeError(f"module 'jaxseg' has no attribute {name!r}")
