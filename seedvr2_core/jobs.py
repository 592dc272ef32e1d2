"""Resumable, atomic outputs: a work folder next to the output keeps every finished batch until the output
is complete, and nothing ever appears under the output's name before it is whole.

Work folder `.<output name>.seedvr2-work/` next to the output:
* `manifest.json`: what the run is (a fingerprint of input, models and options), `next_frame` (frames
  before it are final and stored), the crossfade tail file, and whether all frames are done.
* videos: `seg_<first>_<count>.mp4`, one H.264 segment per batch (video_mux); images: `frames/<name>`.
* `tail_<next>.safetensors`: the restored overlap frames the next batch blends with (StreamState.tail).
Each batch is committed in order: segment or frames, then tail, each written under a temporary name
and renamed; then the manifest is replaced atomically. A crash at any point leaves the last committed
state, which `--resume` continues (stray files from after it are deleted). When all frames are done
the output is assembled in the work folder, renamed over the output, and the work folder removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from .errors import InputError
from .pipeline import StreamState
from .video_io import MediaInfo, encode_image
from .video_mux import VideoSettings, join_segments, write_segment

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two runs on one output are then not detected
    fcntl = None

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VERSION = 1
SEGMENT = re.compile(r"seg_(\d{9})_(\d{6})\.mp4")
HEAD_BYTES = 1 << 20


@dataclass(frozen=True)
class OutputTarget:
    """Where the result goes: a video file, one image file, or a folder of images (`suffix` per frame)."""

    path: Path
    kind: str  # "video", "image" or "images"
    suffix: str = ".png"
    stems: tuple[str, ...] | None = None  # frame names of a folder input, to keep them in the output

    def frame_name(self, index: int) -> str:
        if self.kind == "image":
            return self.path.name
        if self.stems is not None:
            return self.stems[index] + self.suffix
        return f"{index:06d}{self.suffix}"


def work_folder(output: Path) -> Path:
    return output.parent / f".{output.name}.seedvr2-work"


def file_fingerprint(path: Path) -> dict:
    """Name, size and SHA-256 of the first and last MiB: cheap, and changes when the content does."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(HEAD_BYTES))
        if size > 2 * HEAD_BYTES:
            f.seek(size - HEAD_BYTES)
            digest.update(f.read(HEAD_BYTES))
    return {"name": path.name, "size": size, "sha256_ends": digest.hexdigest()}


def input_fingerprint(info: MediaInfo) -> dict:
    """A video's file fingerprint, or the names, sizes and modification times of an image sequence."""
    if info.kind == "video":
        return file_fingerprint(info.path)
    digest = hashlib.sha256()
    for path in info.files:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"images": len(info.files), "sha256_list": digest.hexdigest()}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, final: Path) -> None:
    """Rename a finished `tmp` file over `final` after flushing it to disk."""
    _fsync(tmp)
    os.replace(tmp, final)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    replace_durably(tmp, path)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} then, {b!r} now)")
    return out


class Job:
    """One run's work folder; `commit` each finished batch, then `finish` to assemble the output."""

    def __init__(self, target: OutputTarget, work: Path, manifest: dict, video: VideoSettings | None):
        self.target, self.work, self.manifest, self.video = target, work, manifest, video
        self._lock = None

    # -- opening ---------------------------------------------------------------------------------------
    @classmethod
    def open(cls, target: OutputTarget, fingerprint: dict, video: VideoSettings | None,
             resume: bool, overwrite: bool) -> Job | None:
        """The run's work folder: continued (resume), restarted (overwrite) or new; None if nothing to do."""
        fingerprint = json.loads(json.dumps(fingerprint))
        work = work_folder(target.path)
        if work.exists() and not resume and not overwrite:
            raise InputError(
                f"an unfinished run for {target.path} is kept in {work}: add --resume to continue it, "
                "or --overwrite to start over"
            )
        if work.exists() and not resume:
            previous = cls(target, work, {}, video)
            previous._take_lock()  # never delete the folder of a run still going
            previous.close()
            shutil.rmtree(work)
        if not work.exists():
            if target.path.exists() and not overwrite and (target.kind != "images" or any(target.path.iterdir())):
                if resume:
                    log.warning("%s exists and no unfinished run was found: nothing to do", target.path)
                    return None
                raise InputError(f"output {target.path} exists: add --overwrite to replace it")
            job = cls(target, work, {"version": VERSION, "fingerprint": fingerprint, "next_frame": 0,
                                     "tail": None, "complete": False}, video)
            (work / "frames").mkdir(parents=True)
            job._take_lock()
            job._save_manifest()
            return job
        job = cls(target, work, cls._read_manifest(work), video)
        job._take_lock()
        changed = _differences(job.manifest["fingerprint"], fingerprint)
        if changed:
            raise InputError(
                f"--resume: the unfinished run in {work} was made with other settings: {'; '.join(changed)}. "
                "Run with the same input, models and options, or use --overwrite to start over"
            )
        job._drop_strays()
        return job

    @staticmethod
    def _read_manifest(work: Path) -> dict:
        try:
            manifest = json.loads((work / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot resume from {work}: its manifest is unreadable ({e}); "
                             "use --overwrite to start over") from None
        if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
            raise InputError(f"cannot resume from {work}: it was written by another version; use --overwrite")
        return manifest

    def _take_lock(self) -> None:
        if fcntl is None:
            return
        self.work.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.work / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise InputError(f"another seedvr2 run is writing {self.target.path} (its work folder {self.work} "
                             "is locked): wait for it, or pick another output") from None

    def close(self) -> None:
        """Release the work folder's lock (the folder itself stays for --resume)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- state -----------------------------------------------------------------------------------------
    @property
    def next_frame(self) -> int:
        return int(self.manifest["next_frame"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    def state(self) -> StreamState:
        """Where the stream continues: the committed frame count and crossfade tail."""
        tail = self.manifest["tail"]
        return StreamState(self.next_frame, load_file(str(self.work / tail))["tail"] if tail else None)

    def _segments(self) -> list[tuple[int, int, Path]]:
        found = []
        for path in self.work.iterdir():
            match = SEGMENT.fullmatch(path.name)
            if match:
                found.append((int(match[1]), int(match[2]), path))
        return sorted(found)

    def _drop_strays(self) -> None:
        """Delete files written after the last commit (a crash mid-batch) and check what is kept."""
        keep = {MANIFEST, "lock", "frames", self.manifest["tail"]}
        for path in self.work.iterdir():
            if path.name not in keep and not SEGMENT.fullmatch(path.name):
                path.unlink()
        covered = 0
        for first, count, path in self._segments():
            if first + count > self.next_frame:
                path.unlink()
            elif first != covered:
                raise InputError(f"cannot resume from {self.work}: segment {path.name} does not follow frame "
                                 f"{covered}; use --overwrite to start over")
            else:
                covered += count
        if self.target.kind == "video" and covered != self.next_frame:
            raise InputError(f"cannot resume from {self.work}: its segments hold {covered} frames, the manifest "
                             f"says {self.next_frame}; use --overwrite to start over")
        if self.target.kind != "video":
            names = {self.target.frame_name(i) for i in range(self.next_frame)}
            for path in (self.work / "frames").iterdir():
                if path.name not in names:
                    path.unlink()

    def _save_manifest(self) -> None:
        write_atomically(self.work / MANIFEST, json.dumps(self.manifest, indent=1).encode())

    # -- committing ------------------------------------------------------------------------------------
    def commit(self, frames: np.ndarray, state: StreamState) -> None:
        """Store a batch's final frames uint8 (n, h, w, 3), which end at `state.next_frame`, with its tail."""
        first = state.next_frame - len(frames)
        if first != self.next_frame:
            raise AssertionError(f"batch starts at frame {first}, the job stands at {self.next_frame}")
        if self.target.kind == "video":
            assert self.video is not None
            segment = self.work / f"seg_{first:09d}_{len(frames):06d}.mp4"
            tmp = segment.with_name(segment.name + ".tmp")
            write_segment(frames, tmp, self.video)
            replace_durably(tmp, segment)
        else:
            for offset, frame in enumerate(frames):
                name = self.target.frame_name(first + offset)
                write_atomically(self.work / "frames" / name, encode_image(frame, self.target.suffix))
        old_tail = self.manifest["tail"]
        tail = None
        if state.tail is not None:
            tail = f"tail_{state.next_frame:09d}.safetensors"
            tmp = self.work / (tail + ".tmp")
            save_file({"tail": state.tail.contiguous()}, str(tmp))
            replace_durably(tmp, self.work / tail)
        self.manifest.update(next_frame=state.next_frame, tail=tail)
        self._save_manifest()
        if old_tail and old_tail != tail:
            (self.work / old_tail).unlink(missing_ok=True)

    def mark_complete(self) -> None:
        """Record that every frame is committed (a crash while assembling then only redoes the assembly)."""
        self.manifest["complete"] = True
        self._save_manifest()

    # -- finishing -------------------------------------------------------------------------------------
    def finish(self, audio_source: Path | None) -> None:
        """Assemble the output from the committed batches, rename it into place, remove the work folder."""
        assert self.complete, "finish() before mark_complete()"
        target = self.target
        target.path.parent.mkdir(parents=True, exist_ok=True)
        if target.kind == "video":
            assert self.video is not None
            tmp = self.work / ("output" + target.path.suffix)
            segments = [p for _, _, p in self._segments()]
            written = join_segments(segments, tmp, self.video.fps, audio_source, self.video.rotation)
            if written != self.next_frame:
                raise AssertionError(f"joined {written} frames, committed {self.next_frame}")
            replace_durably(tmp, target.path)
        elif target.kind == "image":
            os.replace(self.work / "frames" / target.frame_name(0), target.path)
        else:
            target.path.mkdir(parents=True, exist_ok=True)
            for index in range(self.next_frame):
                name = target.frame_name(index)
                if (self.work / "frames" / name).exists():  # absent: moved by an assembly that crashed
                    os.replace(self.work / "frames" / name, target.path / name)
        self.close()
        shutil.rmtree(self.work)
