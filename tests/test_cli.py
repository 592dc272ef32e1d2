"""The `seedvr2` command line end to end: real files, tiny random-weight models (make_test_models), and
subprocesses that are killed and resumed."""

from __future__ import annotations

import signal
from fractions import Fraction

import numpy as np
import pytest
from cli_helpers import committed_frames, run, run_until_committed
from media_build import packets, synthetic_frames, write_images, write_video

from seedvr2_core.cli import main
from seedvr2_core.jobs import work_folder
from seedvr2_core.make_test_models import write_test_models
from seedvr2_core.video_io import probe, read_frames

# One thread: on a small shared CI machine two threads fighting another process are 30x slower (measured).
FAST = ["--batch-size", "5", "--overlap", "1", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_test_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "in.mp4", synthetic_frames(13), Fraction(30000, 1001))


def decoded(path) -> np.ndarray:
    return np.stack(list(read_frames(probe(path))))


# -- errors: one line, no traceback, nothing written ------------------------------------------------

def test_a_missing_model_fails_fast_saying_which_file_where_and_how_to_get_it(tmp_path, clip, capsys):
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "--models-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("seedvr2: error: SeedVR2 model seedvr2-3b not found: looked for seedvr2_ema_3b.pth")
    for part in (str(tmp_path / "none"), "https://huggingface.co/ByteDance-Seed/SeedVR2-3B", "--download"):
        assert part in err
    assert "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--resolution", "720", "--scale", "2"], "size request sets short_side and scale"),
    (["-o", "{tmp}/x.png"], "is one image but the input has 13 frames"),
    (["-o", "{tmp}/x.avi"], r"unknown type \.avi"),
    (["--width", "100", "--height", "100"], "another aspect ratio than the input 64x48"),
    (["--overlap", "5"], r"overlap must lie in \[0, batch size - 1\] = \[0, 4\]"),
    (["--model", "{tmp}/nothing.safetensors"], "neither an existing file nor a known name"),
    (["--device", "cuda:7"], "cuda"),
])
def test_bad_options_get_one_clear_line(tmp_path, clip, models, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main([str(clip), "--models-dir", str(models), "--batch-size", "5", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("seedvr2: error:") and "\n" not in err
    assert __import__("re").search(message, err), err


def test_debug_adds_the_traceback(tmp_path, capsys):
    assert main([str(tmp_path / "missing.mp4"), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "does not exist" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2 and "give an input" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["x.mp4", "--batch-size", "0"])
    assert stop.value.code == 2


# -- end to end ---------------------------------------------------------------------------------------

def test_a_video_with_audio_keeps_frames_fps_and_audio_at_the_requested_size(tmp_path, clip, models):
    out = tmp_path / "out.mp4"
    done = run([clip, "-o", out, "--models-dir", models, "--scale", "2", *FAST])
    assert done.returncode == 0, done.stderr
    info = probe(out)
    assert (info.width, info.height, info.frames, info.fps) == (128, 96, 13, Fraction(30000, 1001))
    assert len(decoded(out)) == 13
    assert info.audio == ("aac",) and packets(out, "audio") == packets(clip, "audio")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no work folder or temporary left


def test_an_image_keeps_its_exact_odd_size(tmp_path, models):
    image = write_images(tmp_path, synthetic_frames(1, 33, 47), ["photo.png"])[0]
    done = run([image, "-o", tmp_path / "big.png", "--models-dir", models, "--width", "94", *FAST])
    assert done.returncode == 0, done.stderr
    info = probe(tmp_path / "big.png")
    assert (info.kind, info.width, info.height) == ("image", 94, 66)


def test_a_folder_of_images_becomes_a_folder_with_the_same_names(tmp_path, models):
    names = [f"shot_{i}.jpg" for i in range(7)]
    write_images(tmp_path / "frames", synthetic_frames(7, 32, 48), names)
    done = run([tmp_path / "frames", "-o", tmp_path / "restored", "--models-dir", models, *FAST])
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == sorted(n[:-4] + ".png" for n in names)


# -- resume and memory -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", synthetic_frames(60, 24, 32), Fraction(25))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, long_clip, models):
    out = tmp_path_factory.mktemp("reference") / "reference.mp4"
    done = run([long_clip, "-o", out, "--models-dir", models, *FAST])
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("sig, status", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_output(tmp_path, long_clip, models, uninterrupted,
                                                                   sig, status):
    out = tmp_path / "out.mp4"
    args = [long_clip, "-o", out, "--models-dir", models, *FAST]
    returncode, stderr, seen = run_until_committed(args, work_folder(out), 12, sig)
    assert returncode == status, stderr
    if sig == signal.SIGINT:
        assert "finished frames are kept in" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert 12 <= seen < 60 and not out.exists()  # stopped mid-way; nothing under the final name
    kept = committed_frames(work_folder(out))
    assert kept >= seen
    resumed = run([*[a for a in args if a != "--quiet"], "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at frame {kept}" in resumed.stderr  # not started over
    assert out.read_bytes() == uninterrupted.read_bytes()
    assert np.array_equal(decoded(out), decoded(uninterrupted))
    assert not work_folder(out).exists()


def test_peak_memory_does_not_grow_with_the_video_length(tmp_path, models):
    """Issue 4: a 300-frame run peaks within 15 % of a 30-frame run. The frames are large enough that keeping
    them would show: 270 extra frames of 128x96 are 10 MB as uint8 (and 40 MB as restored float32)."""
    height, width = 96, 128

    def peak(frames: int) -> int:
        clip = tmp_path / f"in{frames}.mp4"
        if not clip.exists():
            write_video(clip, synthetic_frames(frames, height, width), Fraction(25))
        args = [clip, "-o", tmp_path / f"out{frames}.mp4", "--models-dir", models, *FAST, "--batch-size", "9",
                "--overwrite"]
        done = run(args)
        assert done.returncode == 0, done.stderr
        assert probe(tmp_path / f"out{frames}.mp4").frames == frames
        return done.peak_rss

    # Keeping the restored frames (float32, 4 bytes a value) would add 40 MB. Allocator noise only ever adds
    # to a peak: alone it is under 3 MB, but with the whole suite running beside it up to 19 MB was seen (in
    # both of two runs), so a growth above a third of that signal is checked once more before it counts.
    kept_restored = 270 * height * width * 3 * 4
    peaks = {frames: peak(frames) for frames in (30, 300)}
    if peaks[300] - peaks[30] >= kept_restored / 3:
        peaks[300] = min(peaks[300], peak(300))
    ratio, growth = peaks[300] / peaks[30], peaks[300] - peaks[30]
    print(f"peak RSS: 30 frames {peaks[30] / 2**20:.1f} MiB, 300 frames {peaks[300] / 2**20:.1f} MiB, "
          f"ratio {ratio:.3f}, growth {growth / 2**20:.2f} MiB")
    assert ratio <= 1.15, peaks  # the bound
    assert growth < 0.75 * kept_restored, peaks


def test_the_readme_command_fails_fast_on_a_fresh_machine_and_works_with_models_in_place(tmp_path, clip):
    """README: `seedvr2 in.mp4 -o out.mp4 --resolution 1080` with the models in ./models/SEEDVR2 (here at a
    size the tiny models restore in seconds)."""
    command = [clip, "-o", "out.mp4", "--resolution", "96", "--threads", "1"]
    failed = run(command, cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith(
        "seedvr2: error: SeedVR2 model seedvr2-3b not found: looked for seedvr2_ema_3b.pth (or "
        "seedvr2_ema_3b_fp16.safetensors")
    assert f"in {tmp_path / 'models' / 'SEEDVR2'}." in failed.stderr and "--download" in failed.stderr
    print(f"missing models reported in {failed.seconds:.2f} s")
    write_test_models(tmp_path / "models")
    placed = run(command, cwd=tmp_path)
    assert placed.returncode == 0, placed.stderr
    assert (probe(tmp_path / "out.mp4").width, probe(tmp_path / "out.mp4").height) == (128, 96)


def test_the_console_script_is_the_cli_main():
    import tomllib

    from cli_helpers import ROOT

    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["seedvr2"]
    module, function = script.split(":")
    assert (module, function) == ("seedvr2_core.cli", "main") and callable(main)
