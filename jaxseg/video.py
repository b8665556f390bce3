"""Segmenting a video with PyAV (FFmpeg inside the `av` wheel, of the `video` extra): frames
decoded by a background thread, predicted in batches, their overlays encoded into an mp4
with the input's frame count and rate."""

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from jaxseg import prediction, progress, report
from jaxseg.errors import DataError

# H.264 where the wheel's FFmpeg has it, else MPEG-4 part 2 (both in PyAV's wheels).
CODECS = ("libx264", "h264", "mpeg4")


def _av():
    try:
        import av
    except ImportError:
        raise DataError("video needs PyAV: pip install 'jaxseg[video]'") from None
    return av


def _frames(container) -> Iterator[np.ndarray]:
    for frame in container.decode(video=0):
        yield frame.to_ndarray(format="rgb24")


def _output_stream(container, rate: Fraction, width: int, height: int):
    av = _av()
    for codec in CODECS:
        try:
            av.codec.Codec(codec, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        stream = container.add_stream(codec, rate=rate)
        # yuv420p halves chroma: even sizes only (the input's, from an mp4, are).
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        return stream
    raise DataError(f"no video encoder among {', '.join(CODECS)} in this PyAV build")


def predict_video(
    predictor: prediction.Predictor,
    video: str | Path,
    out_dir: str | Path,
    batch_size: int = 4,
    frame_ids: bool = False,
) -> Path:
    """Writes `{stem}_overlay.mp4` (class colours over every frame, same rate and frame
    count) into `out_dir`, and with `frame_ids` `{stem}/{index:06d}_pred.png` per frame;
    returns the mp4's path."""
    av = _av()
    video, out_dir = Path(video), Path(out_dir)
    if not video.is_file():
        raise DataError(f"{video}: no such video file")
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"{video.stem}_overlay.mp4"
    try:
        source = av.open(str(video))
    except av.error.FFmpegError as e:
        raise DataError(f"{video}: cannot read the video ({e})") from None
    with source, av.open(str(out_path), "w") as sink:
        stream = source.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        bar = progress.Progress(stream.frames or None, 0, "predict", unit="frame")
        encoder, index = None, 0
        batches = prediction.same_size_batches(_frames(source), lambda f: f, batch_size)
        for batch in prediction.in_background(batches):
            ids = predictor.predict(np.stack(batch))
            for frame, frame_ids_ in zip(batch, ids, strict=True):
                if encoder is None:
                    encoder = _output_stream(sink, rate, frame.shape[1], frame.shape[0])
                overlay = report.blend(frame, frame_ids_, predictor.label_space)
                sink.mux(encoder.encode(av.VideoFrame.from_ndarray(overlay, format="rgb24")))
                if frame_ids:
                    target = out_dir / video.stem / f"{index:06d}_pred.png"
                    prediction.write_ids(frame_ids_, target, predictor.label_space)
                index += 1
            bar.update(len(batch))
        if encoder is None:
            raise DataError(f"{video}: no frames")
        sink.mux(encoder.encode(None))  # Flushes the encoder's delayed frames.
        bar.close()
    return out_path
