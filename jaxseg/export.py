"""Export a trained run for use outside jaxseg:
`python -m jaxseg.export --workdir DIR --format stablehlo|onnx --out FILE`.

Writes FILE (a serialized `jax.export` artifact lowered for CPU and CUDA, or an ONNX model)
taking uint8 images [B, H, W, 3] with a symbolic batch B at the run's training size and
returning float32 logits [B, H, W, K], normalisation included; and FILE.json (label space,
input size, class count). `python -m jaxseg.predict --exported FILE` runs the StableHLO one.
"""

from jaxseg import cli


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("jaxseg.export", "Export a trained jaxseg run to StableHLO or ONNX.")
    parser.add_argument("--workdir", required=True, help="folder of a run of jaxseg.train")
    parser.add_argument("--format", required=True, help="stablehlo or onnx")
    parser.add_argument("--out", required=True, help="the file to write")
    args = parser.parse_args(argv)
    with cli.user_errors():
        from jaxseg import exported

        path = exported.export(args.workdir, args.format, args.out)
        print(f"wrote {path} and {path}.json")


if __name__ == "__main__":
    main()
