"""IDD (or any IDD-layout folder) as a TFDS array_record dataset, read without TensorFlow.

The builder `idd` reads an IDD root from `manual_dir` (config `full`: real IDD, either part;
config `synthetic`: the output of `jaxseg.data.synthetic`) and stores every example as its
encoded file bytes: `tfds.features.Image` would need TensorFlow to decode, so images and
level-3 labels are `tfds.features.Tensor` bytes that `sources.load_example` decodes with
Pillow, to exactly the arrays the folder source gives. Examples keep the folder source's
order. The labels can be read in any of IDD's levels.

Build: `python -m jaxseg.data.prepare --idd-root DIR --tfds OUT` (or `build(...)`);
read: `formats.open_split(OUT, "train")` or `tfds_source(OUT, "train", IDD_LEVEL3)`.
"""

import tempfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxseg.data import sources
from jaxseg.data.labels import IDD_LEVEL3, LabelSpace
from jaxseg.errors import DataError


class Idd(tfds.core.GeneratorBasedBuilder):
    """IDD semantic segmentation with level-3 labels, as encoded image and PNG bytes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Encoded images, level-3 id PNGs (255 = void) and names."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="full", description="Real IDD (Part I or II)."),
        tfds.core.BuilderConfig(name="synthetic", description="jaxseg's synthetic scenes."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put an IDD root (leftImg8bit/, gtFine/ with level-3 label PNGs made by "
        "`python -m jaxseg.data.prepare`) in manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        encoded = tfds.features.Tensor(shape=(), dtype=np.object_)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": encoded,  # JPEG or PNG file bytes.
                    "label": encoded,  # Level-3 id PNG bytes; b"" for unlabelled images.
                    "name": tfds.features.Text(),
                }
            ),
            homepage="https://idd.insaan.iiit.ac.in/",
            # Records in the folder source's order: both sources give the same training order.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        root = Path(dl_manager.manual_dir)
        splits = [s for s in sources.SPLITS if (root / "leftImg8bit" / s).is_dir()]
        if not splits:
            raise DataError(f"{root}: no leftImg8bit/{{train,val,test}} folder (not an IDD root)")
        return {split: self._generate_examples(_split_source(root, split)) for split in splits}

    def _generate_examples(self, source: sources.ExampleSource):
        for index, example in enumerate(source):
            yield index, _record(example)


def _record(example: sources.Example) -> dict:
    """The stored record of an example, checked to decode (a bad file fails the build)."""
    image = sources.read_bytes(example.image_path)
    size = sources.verify_image(image, example.image_path)
    label = b""
    if example.label_path is not None:
        label = sources.read_bytes(example.label_path)
        sources.decode_label(label, example.label_path, IDD_LEVEL3, size)
    return {"image": image, "label": label, "name": example.name}


def _split_source(root: Path, split: str) -> sources.ExampleSource:
    """A split's examples, all labelled or all unlabelled (IDD's test split has no labels).

    A partly labelled split means `prepare` has not run on it: an error, so that a TFDS
    split's first record tells whether the whole split has labels.
    """
    source = sources.folder_source(root, split, IDD_LEVEL3, require_labels=False)
    unlabelled = [e for e in source.examples if e.label_path is None]
    if unlabelled and len(unlabelled) < len(source):
        raise DataError(
            f"{unlabelled[0].image_path}: no level-3 label while others in {split} have one "
            "(run `python -m jaxseg.data.prepare`)"
        )
    return source


def build(
    idd_root: str | Path, data_dir: str | Path, *, config: str = "full", progress: bool = True
) -> Path:
    """Builds the TFDS dataset of an IDD-layout folder (array_record files).

    Args:
      idd_root: IDD root with level-3 label PNGs (`jaxseg.data.prepare` makes them).
      data_dir: TFDS data directory to write into.
      config: "full" (real IDD) or "synthetic".
      progress: show TFDS's progress bars.

    Returns:
      The dataset's version folder, `data_dir/idd/{config}/{version}`. An existing
      dataset of that version is kept as it is: delete it to rebuild.
    """
    idd_root = Path(idd_root)
    if not (idd_root / "leftImg8bit").is_dir():
        raise DataError(f"{idd_root}: not an IDD root (no leftImg8bit/ folder)")
    if not progress:
        tfds.disable_progress_bar()
    builder = Idd(config=config, data_dir=str(data_dir), file_format="array_record")
    # TFDS wants a download folder even with manual data: keep it out of data_dir.
    with tempfile.TemporaryDirectory() as download_dir:
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(manual_dir=str(idd_root)),
        )
    return Path(builder.data_dir)


class TfdsSource:
    """A grain random-access source over one split of a TFDS dataset built by `build`.

    Items are `sources.EncodedExample`s, which `sources.load_example` decodes.
    """

    def __init__(self, data_source, description: str, label_space: LabelSpace):
        if len(data_source) == 0:
            raise DataError(f"{description}: no examples found")
        self.data_source = data_source  # tfds ArrayRecordDataSource: picklable for workers.
        self.description = description
        self.label_space = label_space  # One of IDD's levels: the records hold level 3.

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> sources.EncodedExample:
        record = self.data_source[index]
        return sources.EncodedExample(
            image=bytes(record["image"]),
            label=bytes(record["label"]) or None,
            name=_text(record["name"]),
            origin=f"{self.description}[{index}]",
        )

    def __repr__(self) -> str:
        return f"TfdsSource({self.description}, {len(self)} examples)"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dataset_dir(data_dir: str | Path) -> Path:
    """The one dataset version folder (holding `dataset_info.json`) in a TFDS data dir.

    Accepts the data dir itself or any folder below it down to the version folder.
    """
    data_dir = Path(data_dir)
    infos = sources.tfds_info_files(data_dir)
    if not infos:
        raise DataError(f"{data_dir}: no TFDS dataset (no dataset_info.json)")
    if len(infos) > 1:
        found = ", ".join(str(p.parent.relative_to(data_dir)) for p in infos)
        raise DataError(f"{data_dir}: several TFDS datasets ({found}); pass one of them")
    return infos[0].parent


def tfds_source(
    data_dir: str | Path, split: str, label_space: LabelSpace, *, require_labels: bool = True
) -> TfdsSource:
    """Opens a split of a TFDS dataset as a grain source, through `tfds` data sources.

    Args:
      data_dir: a TFDS data dir holding one dataset, or its version folder.
      split: "train", "val" or "test".
      label_space: the IDD level to read the level-3 labels in.
      require_labels: if True, a split without labels is an error.
    """
    path = dataset_dir(data_dir)
    try:
        builder = tfds.builder_from_directory(str(path))
    except Exception as e:  # TFDS raises assorted errors for damaged metadata files.
        raise DataError(f"{path}: cannot read TFDS dataset ({type(e).__name__}: {e})") from None
    if split not in builder.info.splits:
        raise DataError(f"{path}: no split {split!r} (has {', '.join(builder.info.splits)})")
    source = TfdsSource(builder.as_data_source(split=split), f"{path}:{split}", label_space)
    if require_labels and source[0].label is None:
        raise DataError(f"{path}:{split}: the split has no labels")
    return source
