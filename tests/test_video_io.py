"""Video and image I/O through PyAV: probing, lazy reading, image files, H.264 segments joined with audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from media_build import packets, synthetic_frames, write_images, write_video

from seedvr2_core.errors import InputError
from seedvr2_core.video_io import IMAGE_ENCODERS, encode_image, probe, read_frames
from seedvr2_core.video_mux import VideoSettings, check_audio_fits, join_segments, video_format, write_segment


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "in.mp4", synthetic_frames(14), Fraction(30000, 1001))


def test_probe_describes_a_video_with_audio(clip):
    info = probe(clip)
    assert (info.kind, info.width, info.height, info.frames, info.fps) == ("video", 64, 48, 14, Fraction(30000, 1001))
    assert info.audio == ("aac",)


def test_frames_decode_in_order_and_start_skips_exactly(clip):
    info = probe(clip)
    frames = list(read_frames(info))
    assert len(frames) == 14 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    # Lossless H.264 of the synthetic frames: only 4:2:0 chroma rounding separates them from the source.
    assert np.abs(np.stack(frames).astype(int) - synthetic_frames(14)).mean() < 3
    later = list(read_frames(info, start=9))
    assert len(later) == 5 and all(np.array_equal(a, b) for a, b in zip(later, frames[9:]))


def test_a_folder_is_a_sequence_in_natural_order(tmp_path):
    frames = synthetic_frames(12, 32, 40)
    write_images(tmp_path / "seq", frames)
    info = probe(tmp_path / "seq")
    assert (info.kind, info.frames, info.fps, info.width, info.height) == ("images", 12, None, 40, 32)
    assert [p.name for p in info.files][:3] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    assert info.files[10].name == "frame_10.png"  # not after frame_1
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(info), frames))
    assert np.array_equal(next(read_frames(info, start=7)), frames[7])


def test_a_folder_with_frames_of_another_size_names_the_file(tmp_path):
    write_images(tmp_path / "seq", synthetic_frames(3, 32, 40))
    write_images(tmp_path / "seq", synthetic_frames(1, 32, 48), ["frame_3.png"])
    with pytest.raises(InputError, match=r"frame_3\.png is 48x32 but the input started at 40x32"):
        list(read_frames(probe(tmp_path / "seq")))


@pytest.mark.parametrize("name, match", [
    ("missing.mp4", "does not exist"),
    ("empty_folder", "holds no images"),
    ("garbage.mp4", "cannot read"),
    ("garbage.png", "cannot (read|decode)"),
])
def test_unreadable_inputs_give_one_clear_error_naming_the_path(tmp_path, name, match):
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 10)
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match=match) as error:
        probe(tmp_path / name)
    assert name in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("suffix", sorted(IMAGE_ENCODERS))
def test_image_files_round_trip(tmp_path, suffix):
    frame = synthetic_frames(1, 33, 47)[0]  # odd sizes: images keep them exactly
    path = tmp_path / f"x{suffix}"
    path.write_bytes(encode_image(frame, suffix))
    info = probe(path)
    assert (info.kind, info.width, info.height) == ("image", 47, 33)
    back = next(read_frames(info))
    error = np.abs(back.astype(int) - frame)
    if suffix in (".jpg", ".jpeg"):
        assert error.mean() < 2.0
    else:
        assert error.max() == 0


def _decoded(path: Path) -> np.ndarray:
    return np.stack(list(read_frames(probe(path))))


def test_segments_join_into_one_video_with_the_input_audio_copied(tmp_path, clip):
    frames = synthetic_frames(14)
    settings = VideoSettings(Fraction(30000, 1001))
    segments = []
    for first, last in ((0, 4), (4, 9), (9, 14)):
        segments.append(tmp_path / f"seg{first}.mp4")
        write_segment(frames[first:last], segments[-1], settings)
    for suffix in (".mp4", ".mkv", ".mov"):
        out = tmp_path / f"joined{suffix}"
        assert join_segments(segments, out, settings.fps, clip) == 14
        info = probe(out)
        assert (info.fps, info.width, info.height, info.audio) == (Fraction(30000, 1001), 64, 48, ("aac",))
        assert packets(out, "audio") == packets(clip, "audio")  # stream copy: every audio packet unchanged
        # Remuxing does not re-encode: the joined video decodes to exactly the segments' frames.
        assert np.array_equal(_decoded(out), np.concatenate([_decoded(s) for s in segments]))
    assert probe(tmp_path / "joined.mp4").frames == 14  # mp4 stores the count (mkv: estimated from durations)
    assert np.abs(_decoded(out).astype(int) - frames).mean() < 3


def test_a_segment_is_reproducible_byte_for_byte(tmp_path):
    frames = synthetic_frames(6)
    settings = VideoSettings(Fraction(24))
    write_segment(frames, tmp_path / "a.mp4", settings)
    write_segment(frames, tmp_path / "b.mp4", settings)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_odd_frame_sizes_get_one_repeated_row_and_column_in_video(tmp_path):
    frames = synthetic_frames(3, 47, 63)
    write_segment(frames, tmp_path / "odd.mp4", VideoSettings(Fraction(24), crf=0))
    decoded = _decoded(tmp_path / "odd.mp4")
    assert decoded.shape == (3, 48, 64, 3)
    assert np.abs(decoded[:, :47, :63].astype(int) - frames).mean() < 3


def test_container_choices_are_checked_before_any_work(tmp_path):
    with pytest.raises(InputError, match=r"cannot write \.avi videos; use one of \.mp4"):
        video_format(tmp_path / "x.avi")
    with pytest.raises(InputError, match=r"audio \(vorbis\) cannot be copied into a \.mov file; write \.mkv"):
        check_audio_fits(["vorbis"], tmp_path / "x.mov")
    check_audio_fits(["vorbis", "aac"], tmp_path / "x.mkv")


def test_a_display_rotation_is_read_and_copied_to_the_output(tmp_path):
    frames = synthetic_frames(3)
    clip = write_video(tmp_path / "portrait.mp4", frames, rotation=90, audio=False)
    info = probe(clip)
    assert (info.rotation, info.width, info.height) == (90, 64, 48)  # stored size; players turn it
    assert probe(write_video(tmp_path / "plain.mp4", frames, audio=False)).rotation == 0
    write_segment(frames, tmp_path / "seg.mp4", VideoSettings(Fraction(24), rotation=90))
    join_segments([tmp_path / "seg.mp4"], tmp_path / "out.mp4", Fraction(24), None, rotation=info.rotation)
    assert probe(tmp_path / "out.mp4").rotation == 90
