"""Reading videos, images and folders of images as a lazy stream of RGB frames, and writing image files.

Everything goes through PyAV (FFmpeg), so any container or image format FFmpeg reads works. Frames are
uint8 (H, W, 3) numpy arrays, decoded one at a time: memory never depends on the length of the input.
Videos, images and folders share one description (`MediaInfo`); a folder is one frame sequence (sorted
by name, numbers in names compared as numbers) whose images must all have the same size.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import Interpolation

from .errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# FFmpeg encoder and pixel format per output image suffix; webp is written lossless, jpeg at quality 2 of 31.
IMAGE_ENCODERS = {
    ".png": ("png", "rgb24"),
    ".jpg": ("mjpeg", "yuvj444p"),
    ".jpeg": ("mjpeg", "yuvj444p"),
    ".webp": ("libwebp", "bgra"),
    ".bmp": ("bmp", "bgr24"),
    ".tif": ("tiff", "rgb24"),
    ".tiff": ("tiff", "rgb24"),
}
# swscale's default 4:2:0 <-> RGB conversion darkens by about 1 level on average (measured: -1.17 on a
# gradient round trip); exact rounding with full chroma interpolation removes that bias (measured: +0.01).
SWS_ACCURATE = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
JPEG_QSCALE = 2
FF_QP2LAMBDA = 118  # FFmpeg's lambda per quantiser step (libavutil/avutil.h)


@dataclass(frozen=True)
class MediaInfo:
    """What an input holds: kind "video", "image" or "images" (a folder), its frame size and count."""

    path: Path
    kind: str
    width: int
    height: int
    frames: int | None  # None when a video container does not say
    fps: Fraction | None  # None for images
    audio: tuple[str, ...] = ()  # codec names of the video's audio streams
    files: tuple[Path, ...] = ()  # the image files, in frame order
    rotation: int = 0  # display rotation of a video, degrees counter-clockwise (phones store portrait so)

    def describe(self) -> str:
        """One line, e.g. "video 1920x1080, 300 frames at 30 fps, audio aac"."""
        count = "unknown frame count" if self.frames is None else f"{self.frames} frame{'s' * (self.frames != 1)}"
        rate = f" at {float(self.fps):.4g} fps" if self.fps else ""
        audio = f", audio {', '.join(self.audio)}" if self.audio else ""
        return f"{self.kind} {self.width}x{self.height}, {count}{rate}{audio}"


def natural_key(path: Path) -> list:
    """Sort key comparing runs of digits as numbers: frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.FFmpegError as e:
        raise InputError(f"cannot read {path}: {e}. Check that it is a video or image file FFmpeg can open.") from None


def _image_frame(path: Path) -> av.VideoFrame:
    container = _open(path)
    try:
        if not container.streams.video:
            raise InputError(f"{path} holds no picture: give an image file ({', '.join(IMAGE_SUFFIXES)})")
        for frame in container.decode(video=0):
            return frame
        raise InputError(f"{path} holds no decodable picture: the file may be truncated; replace it")
    except av.FFmpegError as e:
        raise InputError(f"cannot decode {path}: {e}. The file may be damaged; replace it.") from None
    finally:
        container.close()


def _warn_alpha(frame: av.VideoFrame, path: Path) -> av.VideoFrame:
    """`frame`, after a warning if its picture has an alpha channel (frames are read as RGB: it is dropped)."""
    if any(c.is_alpha for c in frame.format.components):
        log.warning("%s has an alpha channel, which is dropped: pictures read from files are restored as RGB "
                    "(an RGBA IMAGE given to the ComfyUI nodes keeps its alpha)", path)
    return frame


def _folder_images(path: Path) -> tuple[Path, ...]:
    files = sorted((p for p in path.iterdir() if p.is_file() and is_image_path(p)), key=natural_key)
    if not files:
        raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}): give a folder of frames")
    return tuple(files)


def _video_frame_count(stream: av.video.stream.VideoStream, container) -> int | None:
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * rate)
    if rate and container.duration:
        return round(Fraction(container.duration, av.time_base) * rate)
    return None


def _probe_video(path: Path) -> MediaInfo:
    container = _open(path)
    try:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream: give a video, an image or a folder of images")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise InputError(f"{path}: the video stream has no frame rate FFmpeg can determine; remux it (ffmpeg -i)")
        if not stream.codec_context.width or not stream.codec_context.height:
            raise InputError(f"{path}: the video stream has no frame size; the file may be damaged")
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        first = next(container.decode(stream), None)
        rotation = int(first.rotation) if first is not None else 0
        return MediaInfo(path, "video", stream.codec_context.width, stream.codec_context.height,
                         _video_frame_count(stream, container), Fraction(rate), audio, rotation=rotation)
    except av.FFmpegError as e:
        raise InputError(f"decoding {path} failed: {e}. The file may be truncated or damaged.") from None
    finally:
        container.close()


def probe(path: str | Path) -> MediaInfo:
    """Describe a video file, an image file or a folder of images; InputError if it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist: give a video, an image or a folder of images")
    if path.is_dir():
        files = _folder_images(path)
        first = _warn_alpha(_image_frame(files[0]), files[0])
        return MediaInfo(path, "images", first.width, first.height, len(files), None, files=files)
    if is_image_path(path):
        frame = _warn_alpha(_image_frame(path), path)
        return MediaInfo(path, "image", frame.width, frame.height, 1, None, files=(path,))
    return _probe_video(path)


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame -> uint8 (H, W, 3) RGB, converted with the frame's own colour matrix."""
    return frame.reformat(format="rgb24", interpolation=SWS_ACCURATE).to_ndarray()


def _check_size(info: MediaInfo, where: str, width: int, height: int) -> None:
    if (width, height) != (info.width, info.height):
        raise InputError(
            f"{where} is {width}x{height} but the input started at {info.width}x{info.height}: all frames of one "
            "input must have the same size (split the input, or resize the frames first)"
        )


def _video_frames(info: MediaInfo, start: int) -> Iterator[np.ndarray]:
    container = _open(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index < start:
                continue  # resuming: frames before `start` are decoded (to stay exact) but not converted
            _check_size(info, f"frame {index} of {info.path}", frame.width, frame.height)
            yield to_rgb(frame)
    except av.FFmpegError as e:
        raise InputError(f"decoding {info.path} failed: {e}. The file may be truncated or damaged.") from None
    finally:
        container.close()


def read_frames(info: MediaInfo, start: int = 0) -> Iterator[np.ndarray]:
    """Frames of `info` from index `start` on, each uint8 (H, W, 3), decoded lazily one at a time."""
    if info.kind == "video":
        yield from _video_frames(info, start)
        return
    for path in info.files[start:]:
        frame = _image_frame(path)
        _check_size(info, str(path), frame.width, frame.height)
        yield to_rgb(frame)


def encode_image(frame: np.ndarray, suffix: str) -> bytes:
    """uint8 (H, W, 3) RGB -> the bytes of an image file of type `suffix` (".png", ".jpg", ...)."""
    codec, pix_fmt = IMAGE_ENCODERS[suffix.lower()]
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
    context.time_base = Fraction(1, 1)
    if codec == "libwebp":
        context.options = {"lossless": "1"}
    if codec == "mjpeg":
        context.qscale = True
        context.global_quality = JPEG_QSCALE * FF_QP2LAMBDA
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format=pix_fmt)
    packets = context.encode(picture) + context.encode(None)
    return b"".join(bytes(p) for p in packets)


def check_image_suffix(path: Path) -> str:
    """The output image suffix of `path`, lower case; InputError naming the supported ones otherwise."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_ENCODERS:
        raise InputError(f"output {path}: cannot write {suffix or 'files without a suffix'} images; "
                         f"use one of {', '.join(IMAGE_ENCODERS)}")
    return suffix
