"""Pictures and tables of finished runs: the study's figures, overlays and its Table 1.

Figures are built as matplotlib `Figure` objects by pure functions of the run's records
(`loss_figure`, `accuracy_figure`, `class_iou_figure`) and saved separately, so tests and
notebooks can inspect them; no pyplot state is used, rendering goes through Agg.

Commands:
  python -m jaxseg.report table --runs DIR [DIR ...] [--out table.md] [--all-classes]
  python -m jaxseg.report plots --workdir DIR
  python -m jaxseg.report confusion --workdir DIR
"""

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from jaxseg import cli, results
from jaxseg.config import saved_config
from jaxseg.data.labels import IDD_LEVEL3, LabelSpace, get_label_space
from jaxseg.errors import DataError

# The study's Table 1 (IDD level 3, docs/study.md): its published numbers, keyed like
# jaxseg's experiment names.
STUDY_TABLE = {
    name: dict(zip(("pixel_accuracy", "mean_iou", *IDD_LEVEL3.headline), row, strict=True))
    for name, row in {
        "baseline": (0.7944, 0.3371, 0.8632, 0.2323, 0.5084, 0.2419, 0.9403),
        "flip": (0.7546, 0.2532, 0.8082, 0.1864, 0.2262, 0.2542, 0.8105),
        "rotation": (0.8041, 0.3533, 0.8730, 0.2455, 0.5111, 0.3078, 0.9462),
        "weighted_loss": (0.7991, 0.3444, 0.8648, 0.2406, 0.5104, 0.2967, 0.9472),
        "custom": (0.3696, 0.0976, 0.6115, 0.0002, 0.2023, 0.0220, 0.6380),
        "transfer": (0.8296, 0.4370, 0.8687, 0.1485, 0.7904, 0.3900, 0.9427),
        "unet": (0.7486, 0.2577, 0.8266, 0.0038, 0.4794, 0.2225, 0.9125),
    }.items()
}

REPORT_DIR = "report"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
CONFUSION_FILE = "confusion.png"

# Line styles cycle over the palette colours so that similar IDD colours stay apart.
_LINE_STYLES = ("-", "--", "-.", ":")


@dataclasses.dataclass(frozen=True)
class Curves:
    """Per-epoch series of a run; NaN where a value is missing.

    Attributes:
      train_epochs: [E_t] epochs that have train records.
      train_loss: [E_t] mean train loss of each epoch's records.
      val_epochs: [E_v] epochs that have an evaluation.
      val_loss: [E_v] validation loss.
      val_pixel_accuracy: [E_v] validation pixel accuracy.
      val_mean_iou: [E_v] validation mean IoU.
      val_iou: class name -> [E_v] validation IoU, for every class the records name.
    """

    train_epochs: np.ndarray
    train_loss: np.ndarray
    val_epochs: np.ndarray
    val_loss: np.ndarray
    val_pixel_accuracy: np.ndarray
    val_mean_iou: np.ndarray
    val_iou: dict[str, np.ndarray]


def _float(value) -> float:
    # metrics.jsonl and results.json store NaN as null.
    return math.nan if value is None else float(value)


def curves_from_records(records: Sequence[dict]) -> Curves:
    """Groups metrics.jsonl records into per-epoch curves.

    Train records carry a fractional epoch (step / steps per epoch), so a record at epoch
    e belongs to epoch ceil(e) (the one it ends in); an epoch's train loss is the mean of its
    records. Evaluation records carry the integer epoch they close; a repeated epoch keeps
    its last record.

    Args:
      records: dicts as written to metrics.jsonl; train records have ``train_loss``,
        evaluation records ``val_loss``, ``val_pixel_accuracy``, ``val_mean_iou``,
        ``val_iou`` ({class name: IoU}).

    Raises:
      DataError: a train or evaluation record without a numeric ``epoch``.
    """
    train: dict[int, list[float]] = {}
    val: dict[int, dict] = {}
    for record in records:
        if ("train_loss" in record or "val_loss" in record) and not isinstance(
            record.get("epoch"), int | float
        ):
            raise DataError(f"metrics record of step {record.get('step')} has no numeric epoch")
        if "train_loss" in record:
            epoch = math.ceil(record["epoch"])
            train.setdefault(epoch, []).append(_float(record["train_loss"]))
        if "val_loss" in record:
            val[int(record["epoch"])] = record
    val_epochs = sorted(val)
    val_records = [val[e] for e in val_epochs]

    def series(key: str) -> np.ndarray:
        return np.array([_float(r.get(key)) for r in val_records], np.float64)

    class_names = dict.fromkeys(name for r in val_records for name in (r.get("val_iou") or {}))
    return Curves(
        train_epochs=np.array(sorted(train), np.float64),
        train_loss=np.array([np.nanmean(train[e]) for e in sorted(train)], np.float64),
        val_epochs=np.array(val_epochs, np.float64),
        val_loss=series("val_loss"),
        val_pixel_accuracy=series("val_pixel_accuracy"),
        val_mean_iou=series("val_mean_iou"),
        val_iou={
            name: np.array(
                [_float((r.get("val_iou") or {}).get(name)) for r in val_records], np.float64
            )
            for name in class_names
        },
    )


def _plot(axes, x: np.ndarray, y: np.ndarray, **style) -> None:
    # Leaving NaN points out (instead of gaps) joins the epochs around a missing value.
    finite = np.isfinite(y)
    axes.plot(x[finite], y[finite], marker="o", markersize=3, **style)


def _epoch_axes(figure: Figure, title: str, ylabel: str):
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return axes


def loss_figure(curves: Curves, label_space: LabelSpace) -> Figure:
    """The study's Figure 1: train and validation loss per epoch (two lines)."""
    figure = Figure(figsize=(7, 4.5))
    axes = _epoch_axes(figure, "Training and validation loss", "loss (loss.terms)")
    _plot(axes, curves.train_epochs, curves.train_loss, label="train")
    _plot(axes, curves.val_epochs, curves.val_loss, label="validation")
    axes.legend()
    return figure


def accuracy_figure(curves: Curves, label_space: LabelSpace) -> Figure:
    """The study's Figure 2: validation pixel accuracy and mean IoU per epoch (two lines)."""
    figure = Figure(figsize=(7, 4.5))
    axes = _epoch_axes(figure, "Validation pixel accuracy and mean IoU", "score")
    _plot(axes, curves.val_epochs, curves.val_pixel_accuracy, label="pixel accuracy")
    _plot(axes, curves.val_epochs, curves.val_mean_iou, label="mean IoU")
    axes.set_ylim(0, 1)
    axes.legend()
    return figure


def class_iou_figure(curves: Curves, label_space: LabelSpace) -> Figure:
    """The study's Figure 3: validation IoU per epoch of every class (one line each).

    Lines use the label space's palette colours; the legend sits outside the axes, on the
    right.
    """
    figure = Figure(figsize=(11, 6))
    axes = _epoch_axes(figure, "Validation IoU per class", "IoU")
    for i, name in enumerate(label_space.class_names):
        _plot(
            axes,
            curves.val_epochs,
            curves.val_iou.get(name, np.full(curves.val_epochs.shape, np.nan)),
            label=name,
            color=np.array(label_space.palette[i]) / 255,
            linestyle=_LINE_STYLES[i % len(_LINE_STYLES)],
        )
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return figure


FIGURES: dict[str, Callable[[Curves, LabelSpace], Figure]] = {
    "loss.png": loss_figure,
    "accuracy.png": accuracy_figure,
    "class_iou.png": class_iou_figure,
}


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Renders `figure` with Agg to a PNG (tight box, so outside legends are kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_curves(
    records: Sequence[dict], out_dir: str | Path, label_space: LabelSpace
) -> list[Path]:
    """Writes loss.png, accuracy.png and class_iou.png of a run into `out_dir`.

    Args:
      records: the run's metrics.jsonl records (see `curves_from_records`).
      out_dir: folder for the PNGs (created if needed).
      label_space: the run's classes and their colours.

    Returns:
      The paths written, in the order of `FIGURES`.

    Raises:
      DataError: no train or evaluation record among `records`.
    """
    curves = curves_from_records(records)
    if not (curves.train_epochs.size or curves.val_epochs.size):
        raise DataError("no train or evaluation records to plot")
    return [
        save_figure(build(curves, label_space), Path(out_dir) / name)
        for name, build in FIGURES.items()
    ]


def confusion_figure(confusion: np.ndarray, label_space: LabelSpace) -> Figure:
    """A heatmap of the confusion matrix, each ground-truth row divided by its pixels.

    Cell (i, j) is the share of class i's ground-truth pixels predicted as j; the last
    column is the share predicted as void (misses). Rows of classes absent from the ground
    truth are grey; shares of at least 1% are printed in percent.

    Args:
      confusion: [K, K + 1] pixel counts (`jaxseg.metrics.confusion_matrix`, summed).
      label_space: the K classes' names.

    Raises:
      DataError: the matrix does not have the label space's shape.
    """
    counts = np.asarray(confusion, np.float64)
    k = label_space.num_classes
    if counts.shape != (k, k + 1):
        raise DataError(
            f"confusion matrix of shape {counts.shape}; {label_space.name} needs {(k, k + 1)}"
        )
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.full_like(counts, np.nan), where=rows > 0)
    side = 3.0 + 0.3 * k
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    image = axes.imshow(np.ma.masked_invalid(share), cmap=cmap, vmin=0.0, vmax=1.0)
    axes.set_xticks(range(k + 1), [*label_space.class_names, "void"], rotation=90)
    axes.set_yticks(range(k), label_space.class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    axes.axvline(k - 0.5, color="0.3", linewidth=0.8)  # Sets the void column apart.
    axes.set_title("Confusion matrix: share of each ground-truth class's pixels (grey: absent)")
    for i, j in zip(*np.nonzero(np.nan_to_num(share) >= 0.01), strict=True):
        color = "white" if share[i, j] > 0.5 else "black"
        text = f"{100 * share[i, j]:.0f}"
        axes.text(j, i, text, ha="center", va="center", fontsize="x-small", color=color)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.02)
    return figure


def save_confusion(workdir: str | Path) -> Path:
    """Draws `report/confusion.png` from the confusion matrix in the run's results.json.

    Raises:
      DataError: results.json is missing, invalid or holds no confusion matrix.
    """
    workdir = Path(workdir)
    path = workdir / RESULTS_FILE
    run = results.load(path)
    if "confusion" not in run:
        raise DataError(f"{path}: no confusion matrix (written before jaxseg recorded one)")
    figure = confusion_figure(run["confusion"], get_label_space(run["labels"]))
    return save_figure(figure, workdir / REPORT_DIR / CONFUSION_FILE)


def blend(
    image: np.ndarray, ids: np.ndarray, label_space: LabelSpace, alpha: float = 0.5
) -> np.ndarray:
    """Class colours over an image; void (and any id outside 0..K-1) leaves it as is.

    Args:
      image: [H, W, 3] uint8 RGB.
      ids: [H, W] integer train ids.
      label_space: the classes' colours.
      alpha: opacity of the class colours.

    Returns:
      [H, W, 3] uint8.
    """
    ids = np.asarray(ids)
    colors = label_space.colorize(ids).astype(np.float32)
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colors
    valid = ((ids >= 0) & (ids < label_space.num_classes))[..., None]
    return np.where(valid, np.round(mixed), image).astype(np.uint8)


def overlay_figure(
    image: np.ndarray,
    prediction: np.ndarray,
    label: np.ndarray | None,
    label_space: LabelSpace,
) -> Figure:
    """Image, prediction over the image and (if given) the ground truth, side by side.

    A legend below names the classes present in the prediction or the ground truth.

    Args:
      image: [H, W, 3] uint8 RGB.
      prediction: [H, W] class ids.
      label: [H, W] ground-truth ids (255 = void, drawn black) or None.
      label_space: the classes' names and colours.
    """
    height, width = image.shape[:2]
    for name, ids in (("prediction", prediction), ("label", label)):
        if ids is not None and np.shape(ids) != (height, width):
            raise ValueError(f"{name} shape {np.shape(ids)} != image size {(height, width)}")
    panels = [("image", image), ("prediction", blend(image, prediction, label_space))]
    if label is not None:
        panels.append(("ground truth", label_space.colorize(label)))
    panel_width = 5.0
    figure = Figure(figsize=(panel_width * len(panels), panel_width * height / width + 1.2))
    for i, (title, picture) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        axes.imshow(picture, interpolation="nearest")
        axes.set_title(title)
        axes.set_axis_off()
    present = np.unique(
        np.concatenate([np.ravel(prediction), np.ravel(label if label is not None else [])])
    )
    handles = [
        Patch(color=np.array(label_space.palette[c]) / 255, label=label_space.class_names[c])
        for c in present.astype(np.int64)
        if 0 <= c < label_space.num_classes
    ]
    if handles:
        figure.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 7),
            fontsize="small",
            frameon=False,
        )
    return figure


def save_overlay(
    image: np.ndarray,
    prediction: np.ndarray,
    label: np.ndarray | None,
    label_space: LabelSpace,
    path: str | Path,
) -> Path:
    """Writes `overlay_figure(...)` as a PNG and returns its path."""
    return save_figure(overlay_figure(image, prediction, label, label_space), path)


def format_score(value: float | None) -> str:
    """Four decimals as in the study's table; "n/a" for a missing or NaN score."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _table_classes(label_space: LabelSpace, all_classes: bool) -> tuple[str, ...]:
    # The headline classes first (the study's five for IDD level 3), then the others in id
    # order.
    headline = label_space.headline
    if not all_classes:
        return headline
    return headline + tuple(c for c in label_space.class_names if c not in headline)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def data_source(run: dict, fallback: str) -> str:
    """Where a run's numbers come from: "synthetic" or its dataset folder's name."""
    data = run.get("data")
    if not data:
        return fallback
    return data if data == "synthetic" else Path(data).name


def _study_row(run: dict) -> dict | None:
    """The study's published row for a run of the same experiment on IDD level 3."""
    if run.get("labels", IDD_LEVEL3.name) != IDD_LEVEL3.name:
        return None
    return STUDY_TABLE.get(run["experiment"])


def results_table(runs: Sequence[tuple[str, dict]], all_classes: bool = False) -> str:
    """A markdown table of runs, each IDD level-3 run followed by the study's row.

    Args:
      runs: (name, results) pairs: a name for runs whose results do not say their data
        (the run's folder), and the `results.load` dict.
      all_classes: add a column for every class, not only the headline ones.

    Returns:
      The table, one line per row, ending with a newline. The "source" column says where
      the numbers come from: the run's data ("synthetic" or the dataset folder), or
      "study (Table 1)" for the published row (docs/study.md), which gave no other
      classes, so their cells are empty there.
    """
    space = get_label_space(runs[0][1].get("labels", IDD_LEVEL3.name)) if runs else IDD_LEVEL3
    classes = _table_classes(space, all_classes)
    lines = [
        _markdown_row(("experiment", "source", "PA", "mIoU", *classes)),
        _markdown_row(("---",) * (4 + len(classes))),
    ]
    for name, run in runs:
        scores = [run["pixel_accuracy"], run["mean_iou"]]
        scores += [run["iou"].get(c) for c in classes]
        source = data_source(run, name)
        lines.append(_markdown_row((run["experiment"], source, *map(format_score, scores))))
        study = _study_row(run)
        if study is not None:
            cells = [format_score(study[k]) for k in ("pixel_accuracy", "mean_iou")]
            cells += [format_score(study[c]) if c in study else "" for c in classes]
            lines.append(_markdown_row((run["experiment"], "study (Table 1)", *cells)))
    return "\n".join(lines) + "\n"


def _run_facts(run: dict) -> str:
    facts = [f"split: {run.get('split', '?')}"]
    for key, spec in (("steps", "d"), ("epochs", ".2f"), ("train_images_per_sec", ".1f")):
        value = run.get(key)
        if isinstance(value, int | float):
            facts.append(f"{key.replace('_', ' ')}: {value:{spec}}")
    return ", ".join(facts)


def _summary_table(run: dict, label_space: LabelSpace) -> list[str]:
    # Beside the study's numbers when the study ran this experiment.
    study = _study_row(run)
    header = ["metric", "this run"] + (["study (Table 1)"] if study else [])
    lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
    keys = [("PA", "pixel_accuracy"), ("mIoU", "mean_iou")]
    keys += [("mean accuracy", "mean_accuracy"), ("fwIoU", "fw_iou")]
    keys += [(c, c) for c in label_space.headline]
    for title, key in keys:
        ours = run["iou"].get(key) if key in label_space.headline else run.get(key)
        theirs = [format_score(study[key]) if key in study else ""] if study else []
        lines.append(_markdown_row([title, format_score(ours), *theirs]))
    return lines


def write_report_md(workdir: str | Path) -> Path:
    """Writes `report/report.md`: final numbers from results.json and links to the PNGs.

    Lists PA, mIoU and the headline classes (beside the study's Table 1 when it has the
    experiment), then the IoU of every class, then the figures and overlays in `report/`.

    Raises:
      DataError: results.json is missing or invalid.
    """
    workdir = Path(workdir)
    run = results.load(workdir / RESULTS_FILE)
    label_space = get_label_space(run["labels"])
    report_dir = workdir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {run['experiment']}", "", _run_facts(run), ""]
    lines += _summary_table(run, label_space)
    lines += ["", "## IoU of every class", "", "| class | IoU |", "| --- | --- |"]
    lines += [_markdown_row((c, format_score(run["iou"].get(c)))) for c in label_space.class_names]
    pictures = [name for name in FIGURES if (report_dir / name).exists()]
    pictures += sorted(p.name for p in report_dir.glob("*.png") if p.name not in FIGURES)
    if pictures:
        lines += ["", "## Figures"]
        for name in pictures:
            lines += ["", f"![{Path(name).stem}]({name})"]
    path = report_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _table_command(args) -> None:
    runs = [(str(d), results.load(Path(d) / RESULTS_FILE)) for d in args.runs]
    table = results_table(runs, all_classes=args.all_classes)
    if args.out:
        Path(args.out).write_text(table)
    print(table, end="")


def _run_labels(workdir: Path) -> str:
    """The label space a run's numbers are in: from its config.json, else its results."""
    if (workdir / "config.json").is_file():
        return saved_config(workdir / "config.json").data.labels
    if (workdir / RESULTS_FILE).is_file():
        return results.load(workdir / RESULTS_FILE)["labels"]
    raise DataError(f"{workdir}: no config.json or {RESULTS_FILE} saying the run's classes")


def _plots_command(args) -> None:
    from jaxseg import progress  # Imports jax: only the plots command needs it.

    workdir = Path(args.workdir)
    metrics = workdir / METRICS_FILE
    if not metrics.is_file():
        raise DataError(f"{metrics}: no such file")
    label_space = get_label_space(_run_labels(workdir))
    written = plot_curves(progress.read_metrics(metrics), workdir / REPORT_DIR, label_space)
    if (workdir / RESULTS_FILE).exists():
        written.append(write_report_md(workdir))
    for path in written:
        logging.info("wrote %s", path)


def _confusion_command(args) -> None:
    logging.info("wrote %s", save_confusion(args.workdir))


def main(argv: Sequence[str] | None = None) -> None:
    parser = cli.parser("jaxseg.report", "Figures and tables of finished runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="markdown table of runs beside the study's Table 1")
    table.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="run workdirs")
    table.add_argument("--out", help="also write the table to this file")
    table.add_argument("--all-classes", action="store_true", help="a column for every class")
    table.set_defaults(run=_table_command)
    plots = commands.add_parser("plots", help="regenerate a run's figures from metrics.jsonl")
    plots.add_argument("--workdir", required=True, help="the run's workdir")
    plots.set_defaults(run=_plots_command)
    confusion = commands.add_parser(
        "confusion", help="draw report/confusion.png from the run's results.json"
    )
    confusion.add_argument("--workdir", required=True, help="the run's workdir")
    confusion.set_defaults(run=_confusion_command)
    args = parser.parse_args(argv)
    with cli.user_errors():
        args.run(args)


if __name__ == "__main__":
    main()
