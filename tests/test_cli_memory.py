"""The memory options of the command line: a plan on request (on the CPU), the same frames under it, a
refusal with numbers before any heavy work, and usage errors for values that are not sizes."""

from __future__ import annotations

import logging
import time
from fractions import Fraction

import numpy as np
import pytest
from media_build import synthetic_frames, write_video

from seedvr2_core.cli import main
from seedvr2_core.make_test_models import write_test_models
from seedvr2_core.video_io import probe, read_frames

FAST = ["--batch-size", "5", "--overlap", "1", "--threads", "1", "--resolution", "48"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_test_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "in.mp4", synthetic_frames(9, 32, 48), Fraction(25))


def frames_of(path) -> np.ndarray:
    return np.stack(list(read_frames(probe(path))))


def test_a_planned_cpu_run_logs_its_plan_and_writes_the_same_frames(tmp_path, models, clip, caplog):
    """On the CPU the weights already live in host memory: swapping is refused with a warning, tiling runs."""
    plain, planned = tmp_path / "plain.mp4", tmp_path / "planned.mp4"
    base = [str(clip), "--models-dir", str(models), *FAST, "--crf", "0"]
    assert main([*base, "-o", str(plain)]) == 0
    with caplog.at_level(logging.INFO):
        assert main([*base, "-o", str(planned), "--vram-budget", "4GiB", "--blocks-to-swap", "all",
                     "--vae-tile", "32"]) == 0
    lines = [r.getMessage() for r in caplog.records if "memory plan" in r.getMessage()]
    assert len(lines) == 1 and "no blocks swapped, VAE tiles 32 px (exact)" in lines[0], lines
    assert "4.00 GiB budget (given)" in lines[0]
    assert any("--blocks-to-swap has no effect on the CPU" in r.getMessage() for r in caplog.records)
    # Swapping changes nothing and exact tiles only float rounding (~1e-5): a value that sits on a rounding
    # edge of the 8-bit output may move by one level, nothing more and almost never.
    diff = np.abs(frames_of(planned).astype(np.int16) - frames_of(plain).astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000, (diff.max(), np.count_nonzero(diff))


def test_a_budget_too_small_is_refused_with_numbers_before_the_work(tmp_path, models, clip, capsys):
    out = tmp_path / "out.mp4"
    start = time.monotonic()
    status = main([str(clip), "-o", str(out), "--models-dir", str(models), *FAST, "--vram-budget", "1M"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert status == 1 and "no memory plan fits" in err and "MiB" in err and "--vram-budget" in err, err
    assert not out.exists() and elapsed < 30


@pytest.mark.parametrize("flag, value", [("--vram-budget", "lots"), ("--vram-budget", "-3G"),
                                         ("--blocks-to-swap", "half"), ("--vae-tile", "512:sideways")])
def test_values_that_are_not_sizes_are_usage_errors_that_name_them(flag, value, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["in.mp4", f"{flag}={value}"])
    assert stop.value.code == 2 and repr(value) in capsys.readouterr().err
