"""Segment images with a trained run:
`python -m jaxseg.predict --workdir DIR --images PATH --out DIR`.

For each image writes `{name}_pred.png` (level-3 ids at the image's own size; void never
predicted under `void: ignore`, 255 where the model predicts the void class) and
`{name}_overlay.jpg` (the IDD colours blended over the image).
"""

from pathlib import Path

from PIL import Image

from jaxseg import cli, report, train
from jaxseg.data import sources
from jaxseg.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def find_images(path: str | Path) -> list[tuple[Path, Path]]:
    """(image, path relative to the input) for an image file or every image under a folder.

    Relative paths keep IDD's sequence folders, whose frame names repeat across folders.
    """
    path = Path(path)
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.is_dir():
        raise DataError(f"{path}: no such image file or folder")
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"{path}: no .png/.jpg images found")
    return [(p, p.relative_to(path)) for p in images]


def predict_images(
    workdir: str | Path, images: list[tuple[Path, Path]], out_dir: str | Path
) -> list[Path]:
    """Writes a prediction PNG and an overlay per image under `out_dir`, mirroring the
    input's subfolders; returns the prediction paths."""
    config, state = train.load_trained(workdir)
    out_dir = Path(out_dir)
    written = []
    for path, relative in images:
        image = sources.read_image(str(path))
        ids = train.predict_ids(state, config, image)
        name = relative.name.rsplit(".", 1)[0].removesuffix("_leftImg8bit")
        target = out_dir / relative.parent
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids).save(target / f"{name}_pred.png")
        Image.fromarray(report.blend(image, ids)).save(target / f"{name}_overlay.jpg", quality=90)
        written.append(target / f"{name}_pred.png")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("Segment images with a trained jaxseg run.")
    parser.add_argument("--workdir", required=True, help="folder of a run of jaxseg.train")
    parser.add_argument("--images", required=True, help="an image or a folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    with cli.user_errors():
        written = predict_images(args.workdir, find_images(args.images), args.out)
        print(f"wrote {len(written)} predictions and overlays to {args.out}")


if __name__ == "__main__":
    main()
