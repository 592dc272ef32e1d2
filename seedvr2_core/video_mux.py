"""Writing videos in resumable pieces: each finished batch becomes its own H.264 segment file, and the
segments are joined at the end, with the input's audio copied, by remuxing (no second encode).

Why segments: a half-written mp4 cannot be appended to, but closed segments survive a crash. Every segment
is encoded by a fresh libx264 encoder with the same settings and B-frames off, so each starts with a key
frame, packets come in presentation order and all segments share one SPS/PPS: the packets of all of them
form one valid stream. x264 is deterministic for a given input and thread count, so a resumed run writes
the same bytes as an uninterrupted one.

Timing: output frame i is shown at i / fps (constant frame rate at the input's average rate, so the
output has the input's frame count and fps). Audio packets are copied unchanged, shifted by the input
video's start time so that sound and picture stay together.

Rotation: frames are restored as stored; the input's display rotation (a phone's portrait video is
stored landscape with a rotation tag) is copied onto the output, so players show both alike.

Frame size: H.264 in 4:2:0 needs even sides. An odd output side gets one duplicated row or column at
the bottom or right (`even_size`); the CLI says so. Images are always written at exactly the asked size.
"""

from __future__ import annotations

import heapq
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from .errors import InputError
from .video_io import SWS_ACCURATE

log = logging.getLogger(__name__)

VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
SEGMENT_FORMAT = "mp4"
DEFAULT_CRF = 16  # x264 constant rate factor: 0 lossless, 18 is usually called visually lossless
DEFAULT_PRESET = "medium"
BT709 = 1  # AVCOL_PRI / AVCOL_TRC / AVCOL_SPC value of ITU-R BT.709 (libavutil/pixfmt.h)
MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited ("TV") range


@dataclass(frozen=True)
class VideoSettings:
    """How restored frames are encoded: constant frame rate `fps`, x264 `crf` and `preset`."""

    fps: Fraction
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    rotation: int = 0  # display rotation tag, degrees counter-clockwise


def even_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) rounded up to even numbers, the frame size H.264 4:2:0 can store."""
    return height + height % 2, width + width % 2


def video_format(path: Path) -> str:
    """FFmpeg muxer name for an output video path; InputError naming the supported suffixes otherwise."""
    fmt = VIDEO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"output {path}: cannot write {path.suffix or 'a file without suffix'} videos; "
                         f"use one of {', '.join(VIDEO_FORMATS)}")
    return fmt


def check_audio_fits(audio_codecs: Iterable[str], output: Path) -> None:
    """InputError if the output container cannot hold one of the input's audio codecs (they are copied)."""
    fmt = video_format(output)
    container = av.open(os.devnull, "w", format=fmt)
    try:
        supported = container.supported_codecs
    finally:
        container.close()
    bad = [c for c in audio_codecs if c not in supported]
    if bad:
        raise InputError(
            f"the input's audio ({', '.join(bad)}) cannot be copied into a {output.suffix} file; "
            "write .mkv instead (it holds any audio; audio is copied, never re-encoded)"
        )


def _video_frame(frame: np.ndarray, size: tuple[int, int]) -> av.VideoFrame:
    pad_h, pad_w = size[0] - frame.shape[0], size[1] - frame.shape[1]
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return rgb.reformat(format="yuv420p", dst_colorspace="itu709", dst_color_range=MPEG_RANGE,
                        dst_color_trc=BT709, dst_color_primaries=BT709, interpolation=SWS_ACCURATE)


def write_segment(frames: np.ndarray, path: Path, settings: VideoSettings) -> None:
    """uint8 frames (n, h, w, 3) -> an H.264 segment file at `path` (frames at pts 0..n-1, 1/fps each)."""
    size = even_size(frames.shape[1], frames.shape[2])
    container = av.open(str(path), "w", format=SEGMENT_FORMAT)
    try:
        stream = container.add_stream("libx264", rate=settings.fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / settings.fps
        context = stream.codec_context
        context.max_b_frames = 0  # packets in presentation order: segments join by plain concatenation
        context.options = {"crf": str(settings.crf), "preset": settings.preset}
        context.color_primaries = context.color_trc = context.colorspace = BT709
        context.color_range = MPEG_RANGE
        for index, frame in enumerate(frames):
            picture = _video_frame(frame, size)
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    finally:
        container.close()


def _segment_packets(segments: list[Path], stream: av.video.stream.VideoStream, fps: Fraction) -> Iterator[tuple]:
    """(time, order, packet) of every frame of the segments, renumbered to pts = dts = frame index."""
    index = 0
    for path in segments:
        with av.open(str(path)) as container:
            for packet in container.demux(video=0):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                packet.pts = packet.dts = index
                packet.time_base, packet.duration, packet.stream = 1 / fps, 1, stream
                yield index / fps, 0, index, packet
                index += 1


def _audio_packets(container, streams: dict, offset: Fraction) -> Iterator[tuple]:
    """(time, order, packet) of the audio packets of `container`, shifted by -`offset` seconds."""
    if not streams:
        return
    for packet in container.demux(*streams):
        if packet.dts is None or packet.size == 0:
            continue
        shift = round(offset / packet.time_base)
        target = streams[packet.stream]
        packet.dts -= shift
        if packet.pts is not None:
            packet.pts -= shift
        packet.stream = target
        yield packet.dts * packet.time_base, 1, packet.dts, packet


def _video_start(container) -> Fraction:
    stream = container.streams.video[0] if container.streams.video else None
    if stream is None or stream.start_time is None:
        return Fraction(0)
    return stream.start_time * stream.time_base


def join_segments(segments: list[Path], output: Path, fps: Fraction, audio_source: Path | None,
                  rotation: int = 0) -> int:
    """Remux the segments' frames plus `audio_source`'s audio streams (copied) into `output`, tagged with
    the display `rotation`; returns the frame count. `output`'s suffix picks the container."""
    if not segments:
        raise InputError("no restored frames to write")
    source = av.open(str(audio_source)) if audio_source is not None else None
    out = av.open(str(output), "w", format=video_format(output))
    written = 0
    try:
        with av.open(str(segments[0])) as first:
            video = out.add_stream_from_template(first.streams.video[0])
        video.time_base = 1 / fps
        if rotation:
            video.set_display_rotation(rotation)
        audio = {s: out.add_stream_from_template(s) for s in (source.streams.audio if source else ())}
        offset = _video_start(source) if source is not None else Fraction(0)
        merged = heapq.merge(_segment_packets(segments, video, fps), _audio_packets(source, audio, offset),
                             key=lambda item: item[:3])
        for _, kind, _, packet in merged:
            out.mux(packet)
            written += kind == 0
    finally:
        out.close()
        if source is not None:
            source.close()
    return written
