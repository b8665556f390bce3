"""Using a trained run: `jaxseg.Segmenter` under each evaluation mode, `jaxseg.evaluate`
with a mode against a NumPy confusion matrix of the Segmenter's ids, `jaxseg.predict` on
folders, CSV lists and videos (frame count and rate kept), and its errors."""

import av
import numpy as np
import pytest
from PIL import Image

import jaxseg
from jaxseg import evaluation, prediction, results, score, video
from jaxseg.data import formats, sources

pytestmark = pytest.mark.slow

FCN = ("baseline", "model.options={'widths': (8, 8, 8, 8, 8)}")


@pytest.fixture(scope="module")
def run(saved_run):
    return saved_run(*FCN)


# "whole" runs in the predict command's test below.
@pytest.mark.parametrize("mode", ["resize", "slide"])
def test_segmenter_keeps_each_size_and_ids_in_range(run, mode):
    seg = jaxseg.Segmenter.from_run(run, mode=mode, crop=[32, 64], stride=[24, 40], flip=True)
    k = seg.label_space.num_classes
    images = np.random.default_rng(0).integers(0, 256, (2, 50, 90, 3), np.uint8)
    probs = seg.probabilities(images)
    assert probs.shape == (2, 50, 90, seg.num_outputs) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-4)
    ids = seg.predict(images)
    assert ids.shape == (2, 50, 90) and ids.dtype == np.uint8
    # The baseline predicts void as one more class (`data.void: class`): id 255.
    expected = np.where(probs.argmax(-1) >= k, 255, probs.argmax(-1))
    np.testing.assert_array_equal(ids, expected)
    assert ((ids < k) | (ids == 255)).all()
    assert seg(images[1]).shape == (50, 90)
    assert seg.options.record() == {"mode": mode, "flip": True, "scales": [1.0]}


def test_evaluate_under_a_mode_scores_the_segmenters_ids(run, tiny_data):
    overrides = ["eval.mode='slide'", "eval.crop=[48, 80]", "eval.flip=True"]
    record = evaluation.evaluate_run(run, split="val", overrides=overrides)
    assert record["eval"] == {"mode": "slide", "flip": True, "scales": [1.0]}
    assert results.load(run / "eval_val.json")["eval"]["mode"] == "slide"
    seg = jaxseg.Segmenter.from_run(run, overrides=overrides)
    val = formats.open_dataset(tiny_data).split("val")
    k = seg.label_space.num_classes
    confusion = np.zeros((k, k + 1), np.int64)
    for example in val.examples:
        loaded = sources.load_example(example, val.label_space)
        label, ids = loaded["label"].ravel(), seg(loaded["image"]).ravel()
        keep = label < k
        np.add.at(confusion, (label[keep], np.minimum(ids[keep], k)), 1)
    np.testing.assert_array_equal(np.asarray(record["confusion"]), confusion)


def test_predict_writes_what_score_reads_for_folders_and_csv_lists(
    run, tiny_data, tmp_path, run_module
):
    images = tiny_data / "leftImg8bit" / "val"
    result = run_module(
        "jaxseg.predict", "--workdir", run, "--images", images, "--out", tmp_path / "out",
        "--batch-size", "4", "--set", "eval.mode='whole'",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    preds = sorted((tmp_path / "out").rglob("*_pred.png"))
    inputs = sorted(p for p in images.rglob("*") if p.is_file())
    assert len(preds) == len(inputs) == 6
    for pred, image in zip(preds, inputs, strict=True):
        assert Image.open(pred).size == Image.open(image).size
        assert (tmp_path / "out" / pred.relative_to(tmp_path / "out").parent).is_dir()
    assert len(list((tmp_path / "out").rglob("*_color.png"))) == 6
    assert len(list((tmp_path / "out").rglob("*_overlay.jpg"))) == 6
    scored = score.score_folders(tmp_path / "out", tiny_data / "gtFine" / "val")
    assert scored["images"] == 6
    csv = tmp_path / "list.csv"
    csv.write_text("".join(f"{p}\n" for p in inputs[:3]))
    assert [p for p, _ in prediction.find_images(csv)] == inputs[:3]


def _write_video(path, frames, rate):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def test_video_keeps_frame_count_and_rate(run, tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (7, 64, 128, 3), np.uint8)
    _write_video(tmp_path / "clip.mp4", frames, 12)
    seg = jaxseg.Segmenter.from_run(run)
    out = video.predict_video(seg, tmp_path / "clip.mp4", tmp_path / "out", 3, frame_ids=True)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == 12
    assert len(decoded) == 7 and decoded[0].shape == (64, 128, 3)
    assert len(list((tmp_path / "out" / "clip").glob("*_pred.png"))) == 7


def test_predict_errors_are_one_line(run, tmp_path, run_module, assert_one_line_error):
    # Inputs are checked before the model is restored; bad eval options are
    # ConfigErrors (tests/test_segment.py), one line like every user error.
    missing = run_module(
        "jaxseg.predict", "--workdir", run, "--images", tmp_path / "no", "--out", tmp_path
    )
    assert_one_line_error(missing, "no such image file, folder or CSV list")
