"""Segment images or a video with a trained run or an exported model:
`python -m jaxseg.predict --workdir DIR (or --exported FILE) --images PATH|--video FILE
--out DIR [--batch-size N] [--set key=value ...]`.

`--images` takes an image, a folder (searched recursively) or a CSV list (`image[,label]`
rows). For each image it writes `{name}_pred.png` (the label space's ids at the image's own
size: IDD level-3 ids, Cityscapes labelIds, ...; where the model predicts the void class, the
void id), `{name}_color.png` (class colours) and `{name}_overlay.jpg` (the colours blended
over the image). `--video` writes `{stem}_overlay.mp4` with the input's frame count and
rate (and, with `--frame-ids`, every frame's `_pred.png`). The run's `eval.*` settings (e.g.
`--set eval.mode=slide --set eval.flip=True`) choose how the model sees each image.
"""

from jaxseg import cli
from jaxseg.errors import ConfigError


def _predictor(args):
    if args.exported:
        if args.overrides:
            raise ConfigError("--set needs --workdir: an exported model has no config")
        from jaxseg import exported

        return exported.load(args.exported)
    from jaxseg.inference import Segmenter

    return Segmenter.from_run(args.workdir, overrides=args.overrides)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.predict", "Segment images or a video with a trained jaxseg run.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--workdir", help="folder of a run of jaxseg.train")
    model.add_argument("--exported", help="a StableHLO file of jaxseg.export (no config needed)")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--images", help="an image, a folder of images or a CSV list")
    inputs.add_argument("--video", help="a video file (mp4, ...)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", type=int, default=4, help="images per device call")
    parser.add_argument(
        "--frame-ids", action="store_true", help="with --video: also every frame's id PNG"
    )
    cli.add_overrides(parser, "override a value of the run's config, e.g. --set eval.mode=slide")
    args = parser.parse_args(argv)
    with cli.user_errors():
        from jaxseg import prediction, video

        if args.batch_size < 1:
            raise ConfigError(f"--batch-size {args.batch_size}; expected an integer >= 1")
        images = prediction.find_images(args.images) if args.images else None
        predictor = _predictor(args)
        if images is None:
            path = video.predict_video(
                predictor, args.video, args.out, args.batch_size, args.frame_ids
            )
            print(f"wrote {path}")
        else:
            written = prediction.predict_images(predictor, images, args.out, args.batch_size)
            print(f"wrote {len(written)} predictions, colour images and overlays to {args.out}")


if __name__ == "__main__":
    main()
