"""Experiments: one file per experiment, each with `get_config()` returning its config.

`python -m jaxseg.train --experiment NAME` loads `experiments/NAME.py`: adding a file here
is enough (see docs/recipes.md). `base.py` holds the setting the study's experiments share.
"""
