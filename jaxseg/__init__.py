"""jaxseg: pure-functional JAX/Flax semantic segmentation of driving scenes."""

__version__ = "0.1.0"
