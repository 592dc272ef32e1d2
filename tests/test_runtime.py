"""The runtime on tiny real models: same frames under a plan, preflight, out-of-memory retry, measured peaks.

Out-of-memory errors are raised the way the device would raise them, from inside the phase that runs: a
cancellation check inside the VAE (called between its tiles) or a DiT block observer raises
`torch.cuda.OutOfMemoryError`, which is a real exception class on any build of PyTorch.
"""

from __future__ import annotations

import logging
import re

import pytest
import torch

from pipeline_models import tiny_models
from seedvr2_core import RestoreOptions, restore, restore_stream
from seedvr2_core.dit.observers import observing
from seedvr2_core.errors import MemoryPlanError
from seedvr2_core.host import interrupt_checks
from seedvr2_core.memory import module_bytes
from seedvr2_core.memory_options import MemoryOptions
from seedvr2_core.memtrack import tracked_peak
from seedvr2_core.offload import BlockSwapper
from seedvr2_core.runtime import Runtime

OPTS = dict(batch_size=5, overlap=0, output_dtype=torch.float32)
SEPARATE = MemoryOptions(budget=1 << 34, device_memory="separate")  # the CPU standing in for a GPU


@pytest.fixture(scope="module")
def models(reference):
    return tiny_models(reference)


def video(frames: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(frames * h + w)
    return (torch.rand(frames, h, w, 3, generator=g) * 255).round().to(torch.uint8)


def device_oom(where: str) -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB ({where})")


def oom_in_vae(runtime: Runtime, phase: str, times: int = 1):
    """Within this scope, the VAE's next `times` checks during `phase` fail as an exhausted device would."""
    left = [times]

    def check():
        if runtime.phase == phase and left[0]:
            left[0] -= 1
            raise device_oom(f"in the {phase}")

    return interrupt_checks(check)


class OutOfMemoryAtBlock:
    """A DiT observer failing the forward at `block` the first `times` times, as a kernel would."""

    def __init__(self, block: int, times: int = 1):
        self.block, self.times = block, times

    def before_block(self, index, block):
        if index == self.block and self.times:
            self.times -= 1
            raise device_oom(f"at DiT block {index}")

    def after_block(self, index, block):
        pass


def test_planned_runtimes_restore_the_same_frames(models):
    dit, vae, text = models
    frames = video(5, 48, 80)
    expected = restore(frames, dit, vae, text, **OPTS)
    with Runtime(dit, vae, "cpu", MemoryOptions()) as runtime:
        assert torch.equal(restore(frames, dit, vae, text, **OPTS, runtime=runtime), expected)
    with Runtime(dit, vae, "cpu", MemoryOptions(blocks_to_swap="all", device_memory="separate")) as runtime:
        out = restore(frames, dit, vae, text, **OPTS, runtime=runtime)
        assert runtime.plan.blocks_to_swap == len(dit.blocks)
    assert torch.equal(out, expected)
    assert not any(isinstance(o, BlockSwapper) for o in dit.observers)  # closed: the swapper is gone


def test_out_of_memory_in_the_decoder_retries_with_exact_tiles(models, caplog):
    dit, vae, text = models
    frames = video(5, 128, 192)
    expected = restore(frames, dit, vae, text, **OPTS)
    runtime = Runtime(dit, vae, "cpu", MemoryOptions(budget=1 << 34))
    with caplog.at_level(logging.WARNING), oom_in_vae(runtime, "decode"):
        out = restore(frames, dit, vae, text, **OPTS, runtime=runtime)
    assert runtime.plan.vae_tiling.tile_size is not None and runtime.plan.vae_tiling.resolved_mode == "frame"
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)  # exact tiles: the untiled result
    message = caplog.records[-1].getMessage()
    assert "out of memory in the decode of frames 0-4" in message and "Tried to allocate 2.00 GiB" in message
    assert "Retrying once with" in message and f"VAE tiles {runtime.plan.vae_tiling.tile_size} px (exact)" in message


def test_out_of_memory_in_the_dit_step_retries_with_blocks_swapped(models, caplog):
    dit, vae, text = models
    frames = video(5, 32, 48)
    expected = restore(frames, dit, vae, text, **OPTS)
    with Runtime(dit, vae, "cpu", SEPARATE) as runtime, caplog.at_level(logging.WARNING):
        with observing(dit, OutOfMemoryAtBlock(2)):
            out = restore(frames, dit, vae, text, **OPTS, runtime=runtime)
        assert runtime.plan.blocks_to_swap > 0 or runtime.plan.swap_io
    assert torch.equal(out, expected)  # swapping is exact; the failed forward left nothing behind
    assert "out of memory in the DiT step of frames 0-4" in caplog.text and "blocks swapped" in caplog.text


def test_a_second_failure_stops_with_what_was_tried(models):
    dit, vae, text = models
    runtime = Runtime(dit, vae, "cpu", MemoryOptions(budget=1 << 34))
    with oom_in_vae(runtime, "decode", times=2), pytest.raises(MemoryPlanError, match="out of memory again in the decode") as e:
        restore(video(5, 128, 192), dit, vae, text, **OPTS, runtime=runtime)
    assert f"VAE tiles {runtime.plan.vae_tiling.tile_size} px (exact)" in str(e.value)  # the retried plan
    assert runtime.plan.vae_tiling.tile_size is not None and "--vram-budget" in str(e.value)
    assert isinstance(e.value.__cause__, torch.cuda.OutOfMemoryError)


def test_no_plan_means_no_retry_and_advice(models):
    dit, vae, text = models
    with observing(dit, OutOfMemoryAtBlock(0)), pytest.raises(MemoryPlanError, match="without a memory plan"):
        restore(video(1, 32, 48), dit, vae, text, **OPTS)
    runtime = Runtime(dit, vae, "cpu", MemoryOptions(budget=1 << 34))  # CPU: nothing lighter for the DiT
    with observing(dit, OutOfMemoryAtBlock(0)), pytest.raises(MemoryPlanError, match="No lighter plan"):
        restore(video(1, 32, 48), dit, vae, text, **OPTS, runtime=runtime)


def test_preflight_refuses_naming_the_smallest_plan_and_its_bytes(models):
    dit, vae, text = models
    frames = list(video(5, 64, 96))
    with pytest.raises(MemoryPlanError, match=r"no memory plan fits 96x64 frames") as e:
        next(restore_stream(frames, dit, vae, text, RestoreOptions(batch_size=5), runtime=Runtime(
            dit, vae, "cpu", MemoryOptions(budget=1 << 20))))
    needed = int(re.search(r"\((\d+) bytes", str(e.value)).group(1))
    assert needed > 1 << 20 and "batch 1 frame," in str(e.value)
    overlap = RestoreOptions().overlap
    plan = Runtime(dit, vae, "cpu", MemoryOptions(budget=needed)).prepare(64, 96, 5, len(text), overlap=overlap)
    assert plan.peak <= needed and plan.batch_frames == 1
    with pytest.raises(MemoryPlanError):
        Runtime(dit, vae, "cpu", MemoryOptions(budget=needed - 1)).prepare(64, 96, 5, len(text), overlap=overlap)


def test_a_smaller_batch_when_the_requested_one_does_not_fit(models, caplog):
    dit, vae, text = models
    frames = list(video(7, 64, 96))
    big = Runtime(dit, vae, "cpu", MemoryOptions()).prepare(64, 96, 9, len(text))
    budget = Runtime(dit, vae, "cpu", MemoryOptions()).prepare(64, 96, 5, len(text)).peak
    assert budget < big.peak
    runtime = Runtime(dit, vae, "cpu", MemoryOptions(budget=budget))
    with caplog.at_level(logging.INFO):
        out = list(restore_stream(frames, dit, vae, text, RestoreOptions(batch_size=9, overlap=2), runtime=runtime))
    assert runtime.plan.batch_frames == 5 and sum(len(c) for c in out) == 7
    assert "SeedVR2 memory plan on cpu: batch 5 frames" in caplog.text


@pytest.mark.parametrize("frames,h,w,overlap", [(5, 64, 96, 0), (5, 96, 128, 2), (5, 160, 256, 0)])
def test_estimate_is_within_25_percent_of_the_measured_peak(models, frames, h, w, overlap):
    """The acceptance check on the CPU: the whole run's peak bytes (model weights, which are allocated
    before, plus the tracked allocator's peak during the run) against the plan's estimate."""
    dit, vae, text = models
    runtime = Runtime(dit, vae, "cpu", MemoryOptions())
    data = list(video(frames + overlap, h, w))
    with tracked_peak() as reading:
        for _ in restore_stream(data, dit, vae, text, RestoreOptions(batch_size=frames, overlap=overlap), runtime=runtime):
            pass
    measured = module_bytes(dit) + module_bytes(vae) + reading.peak
    assert 0.75 <= runtime.plan.peak / measured <= 1.25, (runtime.plan.describe(), measured)
