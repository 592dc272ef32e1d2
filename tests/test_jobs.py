"""Resumable jobs: batches committed to a work folder, continued after a crash, assembled atomically."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from media_build import synthetic_frames

from seedvr2_core.errors import InputError
from seedvr2_core.jobs import Job, OutputTarget, work_folder
from seedvr2_core.pipeline import StreamState
from seedvr2_core.video_io import probe, read_frames
from seedvr2_core.video_mux import VideoSettings

FRAMES = synthetic_frames(11)
BATCHES = [(0, 4), (4, 7), (7, 11)]  # final frame ranges of three batches
SETTINGS = VideoSettings(Fraction(25))
FINGERPRINT = {"input": {"name": "in.mp4", "size": 1}, "options": {"seed": 666, "batch_size": 5}}


def tail_after(index: int) -> torch.Tensor | None:
    """A stand-in crossfade tail (2, 3, 48, 64) float32, different for every batch; none after the last."""
    if index == len(BATCHES) - 1:
        return None
    return torch.linspace(-1, 1, 2 * 3 * 48 * 64).reshape(2, 3, 48, 64) * (index + 1) / 3


def commit(job: Job, index: int) -> None:
    first, last = BATCHES[index]
    job.commit(FRAMES[first:last], StreamState(last, tail_after(index)))


def open_job(target: OutputTarget, resume=False, overwrite=False, fingerprint=FINGERPRINT) -> Job | None:
    return Job.open(target, fingerprint, SETTINGS if target.kind == "video" else None, resume, overwrite)


def run_all(target: OutputTarget) -> None:
    job = open_job(target)
    for index in range(len(BATCHES)):
        commit(job, index)
    job.mark_complete()
    job.finish(None)


def test_the_output_appears_only_when_complete(tmp_path):
    target = OutputTarget(tmp_path / "out.mp4", "video")
    job = open_job(target)
    for index in range(len(BATCHES)):
        commit(job, index)
        assert not target.path.exists()
    job.mark_complete()
    job.finish(None)
    assert not work_folder(target.path).exists()
    info = probe(target.path)
    assert (info.frames, info.fps, info.width, info.height) == (11, Fraction(25), 64, 48)


def test_a_crashed_job_resumes_with_its_state_and_gives_the_same_output(tmp_path):
    reference = OutputTarget(tmp_path / "ref.mp4", "video")
    run_all(reference)
    target = OutputTarget(tmp_path / "out.mp4", "video")
    job = open_job(target)
    commit(job, 0)
    commit(job, 1)
    del job  # a crash: no close, no finish (the lock goes with the process in real life)
    work = work_folder(target.path)
    (work / "seg_000000007_000004.mp4").write_bytes(b"a segment written after the last commit")
    (work / "manifest.json.tmp").write_bytes(b"{half")
    resumed = open_job(target, resume=True)
    state = resumed.state()
    assert state.next_frame == 7 and torch.equal(state.tail, tail_after(1))
    assert sorted(p.name for p in work.iterdir()) == [
        "frames", "lock", "manifest.json", "seg_000000000_000004.mp4", "seg_000000004_000003.mp4",
        "tail_000000007.safetensors"]
    commit(resumed, 2)
    resumed.mark_complete()
    resumed.finish(None)
    assert target.path.read_bytes() == reference.path.read_bytes()


def test_an_unfinished_run_is_neither_lost_nor_silently_continued(tmp_path):
    target = OutputTarget(tmp_path / "out.mp4", "video")
    job = open_job(target)
    commit(job, 0)
    job.close()
    with pytest.raises(InputError, match="an unfinished run for .*out.mp4 is kept in .*: add --resume .* or --overwrite"):
        open_job(target)
    changed = {**FINGERPRINT, "options": {"seed": 1, "batch_size": 5}}
    with pytest.raises(InputError, match=r"other settings: options\.seed \(666 then, 1 now\)"):
        open_job(target, resume=True, fingerprint=changed)
    fresh = open_job(target, overwrite=True, fingerprint=changed)
    assert fresh.next_frame == 0 and fresh.state().tail is None


def test_two_runs_cannot_write_one_output(tmp_path):
    target = OutputTarget(tmp_path / "out.mp4", "video")
    first = open_job(target)
    with pytest.raises(InputError, match="another seedvr2 run is writing"):
        open_job(target, resume=True)
    first.close()
    assert open_job(target, resume=True).next_frame == 0


def test_an_existing_output_is_kept_unless_overwrite(tmp_path):
    target = OutputTarget(tmp_path / "out.mp4", "video")
    target.path.write_bytes(b"earlier result")
    with pytest.raises(InputError, match="exists: add --overwrite"):
        open_job(target)
    assert open_job(target, resume=True) is None  # finished earlier: nothing to resume
    job = open_job(target, overwrite=True)
    assert job is not None and target.path.read_bytes() == b"earlier result"  # replaced only when complete


def test_image_outputs_keep_the_frame_names_and_exact_pixels(tmp_path):
    stems = tuple(f"shot_{i:03d}" for i in range(11))
    target = OutputTarget(tmp_path / "restored", "images", ".png", stems)
    job = open_job(target)
    commit(job, 0)
    commit(job, 1)
    job.close()
    resumed = open_job(target, resume=True)
    commit(resumed, 2)
    resumed.mark_complete()
    resumed.finish(None)
    names = sorted(p.name for p in target.path.iterdir())
    assert names == [s + ".png" for s in stems]
    info = probe(target.path)
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(info), FRAMES))


def test_a_single_image_output(tmp_path):
    target = OutputTarget(tmp_path / "one.webp", "image", ".webp")
    job = open_job(target)
    job.commit(FRAMES[:1], StreamState(1, None))
    job.mark_complete()
    job.finish(None)
    assert np.array_equal(next(read_frames(probe(target.path))), FRAMES[0])
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["one.webp"]
