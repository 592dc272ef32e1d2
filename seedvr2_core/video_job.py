"""A video restored from a file (or an in-memory file) to a new video file, streaming: frames are decoded
one at a time, restored batch by batch and written as H.264 segments that are joined at the end with the
input's audio copied (video_io, video_mux, jobs). Host memory holds about one batch, whatever the length.

The output keeps the input's frame rate, frame count, display rotation and audio streams. Audio the
output's MP4 container cannot hold (e.g. PCM from a .mov) is left out with a warning: SaveVideo copies
this file's streams into an .mp4 again.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .errors import InputError
from .jobs import Job, OutputTarget
from .pipeline import StreamState
from .video_io import MediaInfo, probe, read_frames
from .video_mux import VideoSettings, check_audio_fits

log = logging.getLogger(__name__)

Restorer = Callable[[Iterable[np.ndarray], StreamState], Iterator[torch.Tensor]]


@contextlib.contextmanager
def source_file(source: str | os.PathLike | io.BytesIO, folder: Path) -> Iterator[Path]:
    """A path to the video: the given one, or the bytes of an in-memory file written to `folder` meanwhile."""
    if not isinstance(source, io.IOBase):
        yield Path(source)
        return
    fd, name = tempfile.mkstemp(suffix=".mp4", prefix="seedvr2_input_", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            source.seek(0)
            shutil.copyfileobj(source, f)
        yield Path(name)
    finally:
        os.unlink(name)


def audio_source(info: MediaInfo, output: Path) -> Path | None:
    """The input path when its audio can be copied into `output`, else None (with a warning if audio is lost)."""
    if not info.audio:
        return None
    try:
        check_audio_fits(info.audio, output)
    except InputError as e:
        log.warning("the restored video has no sound: %s", e)
        return None
    return info.path


def restore_video(source: str | os.PathLike | io.BytesIO, output: Path,
                  restorer: Callable[[MediaInfo], Restorer]) -> Path:
    """Decode `source` and write `output` (.mp4) with the input's audio from the frames that
    `restorer(info)(frames, state)` yields: it takes the decoded frames (uint8 (H, W, 3) each), yields
    uint8 chunks (n, h, w, 3) in order and keeps `state` current.

    A failure or Cancel leaves no output and no work files behind.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with source_file(source, output.parent) as path:
        info = probe(path)
        if info.kind != "video":
            raise InputError(f"{path} is not a video ({info.describe()})")
        restore = restorer(info)
        settings = VideoSettings(info.fps, rotation=info.rotation)
        job = Job.open(OutputTarget(output, "video"), {"input": str(path)}, settings, resume=False, overwrite=True)
        try:
            state = StreamState()
            with contextlib.closing(restore(read_frames(info), state)) as chunks:
                for chunk in chunks:
                    job.commit(chunk.numpy(), state)
            job.mark_complete()
            job.finish(audio_source(info, output))
        except BaseException:
            job.close()
            shutil.rmtree(job.work, ignore_errors=True)
            raise
    return output
