"""Segment images with a trained run:
`python -m jaxseg.predict --workdir DIR --images PATH --out DIR`.

For each image writes `{name}_pred.png` (the label space's ids at the image's own size: IDD
level-3 ids, Cityscapes labelIds, ...; where the model predicts the void class, the void
id) and `{name}_overlay.jpg` (the class colours blended over the image).
"""

from jaxseg import cli, inference


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.predict", "Segment images with a trained jaxseg run.")
    parser.add_argument("--workdir", required=True, help="folder of a run of jaxseg.train")
    parser.add_argument("--images", required=True, help="an image or a folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    cli.add_overrides(parser, "override a value of the run's config, e.g. --set data.height=512")
    args = parser.parse_args(argv)
    with cli.user_errors():
        written = inference.predict_images(
            args.workdir, inference.find_images(args.images), args.out, args.overrides
        )
        print(f"wrote {len(written)} predictions and overlays to {args.out}")


if __name__ == "__main__":
    main()
