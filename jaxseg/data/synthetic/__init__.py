"""The built-in synthetic driving-scene dataset: jaxseg's embedded default data.

Scenes are drawn procedurally with a pinhole camera over a flat ground plane: hazy sky, a road
in perspective with lane markings, curbs, sidewalks, dirt shoulders, buildings with windows and
shop signs, walls, fences, trees, poles, billboards, traffic signs and lights, and traffic
(cars, trucks, buses, autorickshaws, motorcycles with riders, people) sized by their depth and
painted far to near. Image and label are drawn by the same polygon calls, so they align
exactly; texture, lighting, shadows and noise touch the image only.

The `classes` parameter picks a class set (`CLASS_SETS`): "common" (the default) draws only
the large classes a small model learns in a short run, with half the texture noise; "all"
draws every level-3 class, including the thin and rare ones.

Every example is a pure function of (seed, split, index, classes): results do not depend on
the number of worker processes. The `layout` parameter picks the files (`FILE_LAYOUTS`);
"idd" (the default) is IDD's layout, so every data path reads it like real IDD:

    leftImg8bit/{split}/{seq}/{id}_leftImg8bit.jpg
    gtFine/{split}/{seq}/{id}_gtFine_labellevel3Ids.png   (mode L, level-3 ids, 255 = void)

and "cityscapes" is Cityscapes' layout, with the level-3 classes mapped to labelIds:

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png   (mode L, 0 = unlabeled)

plus `synthetic.json`, written last, which marks a complete dataset. `DEFAULT_PARAMS` holds
the defaults of every parameter.

    python -m jaxseg.data.synthetic --out DIR [--train N --val N --test N --height H
        --width W --seed S --classes {common,all} --layout {idd,cityscapes} --workers N]

Modules: `params` (defaults), `class_sets`, `scene` (camera, geometry, road layout),
`palette`, `canvas`, `ground`, `roadside`, `objects`, `traffic` (road users), `placement`,
`appearance` (sky, texture, lighting, noise), `render` (one scene), `file_layout`, `writer`
(generate, manifest), `cache` (ensure_synthetic) and `__main__` (the CLI).
"""

from jaxseg.data.synthetic.cache import cache_path, default_cache_dir, ensure_synthetic
from jaxseg.data.synthetic.class_sets import CLASS_SETS
from jaxseg.data.synthetic.file_layout import CITYSCAPES_LABEL_IDS, FILE_LAYOUTS
from jaxseg.data.synthetic.params import (
    DEFAULT_PARAMS,
    DEFAULT_WORKERS,
    DEFAULTS,
    SPLITS,
    SyntheticParams,
)
from jaxseg.data.synthetic.render import example, render
from jaxseg.data.synthetic.writer import (
    GENERATOR_VERSION,
    MANIFEST,
    generate,
    read_manifest,
    validate,
)

__all__ = [
    "CITYSCAPES_LABEL_IDS",
    "CLASS_SETS",
    "DEFAULTS",
    "DEFAULT_PARAMS",
    "DEFAULT_WORKERS",
    "FILE_LAYOUTS",
    "GENERATOR_VERSION",
    "MANIFEST",
    "SPLITS",
    "SyntheticParams",
    "cache_path",
    "default_cache_dir",
    "ensure_synthetic",
    "example",
    "generate",
    "read_manifest",
    "render",
    "validate",
]
