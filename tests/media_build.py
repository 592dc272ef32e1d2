"""Small real media files for tests, made with PyAV: videos with an audio track, images, folders of images."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from seedvr2_core.video_io import encode_image

SAMPLE_RATE = 44100


def synthetic_frames(count: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 (count, height, width, 3): smooth gradients with a moving square, different in every frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) * 127 // (height + width)], -1)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frame = (base + rng.integers(0, 8, 3)).clip(0, 255)
        top, left = (3 * i) % max(height - 8, 1), (5 * i) % max(width - 8, 1)
        frame[top : top + 8, left : left + 8] = (255 - 7 * i % 256, 40, 200)
        frames[i] = frame
    return frames


def write_video(path: Path, frames: np.ndarray, fps: Fraction = Fraction(24), audio: bool = True,
                codec: str = "libx264", rotation: int = 0) -> Path:
    """frames uint8 (n, h, w, 3) -> a video file (lossless H.264 so decoded frames equal `frames` up to
    4:2:0 colour rounding), with a mono AAC sine track as long as the video when `audio`, and a display
    rotation tag (degrees counter-clockwise) when `rotation`."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    if rotation:
        stream.set_display_rotation(rotation)
    stream.codec_context.options = {"qp": "0"} if codec == "libx264" else {}
    sound = None
    if audio:
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
    for i, frame in enumerate(frames):
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
        picture.pts = i
        container.mux(stream.encode(picture))
    container.mux(stream.encode(None))
    if sound is not None:
        samples = int(SAMPLE_RATE * len(frames) / fps)
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    container.close()
    return path


def write_images(folder: Path, frames: np.ndarray, names: list[str] | None = None) -> list[Path]:
    """One PNG per frame in `folder` (created); names default to frame_<i>.png (unpadded: tests natural order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / (names[i] if names else f"frame_{i}.png")
        path.write_bytes(encode_image(frame, path.suffix))
        paths.append(path)
    return paths


def packets(path: Path, kind: str) -> list[bytes]:
    """The payload bytes of every packet of the first `kind` ("audio" / "video") stream."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(**{kind: 0}) if p.size]
