"""The restoration pipeline in our default mode: exact sizes, streaming batches, blending, seeded noise."""

from __future__ import annotations

import pytest
import torch

from pipeline_models import tiny_models
from seedvr2_core import InputError, RestoreOptions, SizeRequest, plan_size, restore, restore_stream
from seedvr2_core.batching import temporal_batches
from seedvr2_core.noise import SeededNoise
from seedvr2_core.pipeline import BatchRestorer


@pytest.fixture(scope="module")
def models(reference):
    return tiny_models(reference)


def video(frames: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, h, w, 3, generator=g)
    drift = torch.linspace(0, 0.3, frames).view(-1, 1, 1, 1)
    return ((base + drift) % 1.0 * 255).round().to(torch.uint8)


def test_odd_input_gives_exactly_the_requested_size_with_every_pixel_kept(models):
    dit, vae, text = models
    size = SizeRequest(short_side=80)
    plan = plan_size(size, 51, 67)  # odd, not multiples of 16
    assert plan.crop_box.hw == plan.resized_hw  # nothing cropped before the model
    out = restore(video(1, 51, 67), dit, vae, text, size=size, batch_size=1, overlap=0)
    assert out.shape == (1, 80, 105, 3) and out.dtype == torch.uint8
    assert plan.output_hw == (80, 105)


def test_333x251_to_short_side_500_plan():
    plan = plan_size(SizeRequest(short_side=500), 251, 333)
    assert plan.output_hw == (500, 663)
    assert plan.crop_box.hw == plan.resized_hw == (500, 663)
    assert plan.padded_hw == (512, 672)


@pytest.mark.parametrize("overlap", [1, 2, 4])
def test_overlap_frames_are_blends_of_both_batches(models, overlap):
    dit, vae, text = models
    frames = video(9 + 9 - overlap, 32, 48)
    opts = RestoreOptions(size=SizeRequest(), batch_size=9, overlap=overlap, color_fix="wavelet", seed=3)
    out = torch.cat(list(restore_stream(list(frames), dit, vae, text, opts, output_dtype=torch.float32)))
    assert len(out) == len(frames)
    plan = plan_size(opts.size, 32, 48)
    restorer = BatchRestorer(dit, vae, text, plan, opts, SeededNoise(opts.seed))
    first, second = list(temporal_batches(list(frames), 9, overlap))
    a = restorer(first)[9 - overlap :]  # unblended restorations of the shared frames
    b = restorer(second)[:overlap]
    shared = out[9 - overlap : 9].permute(0, 3, 1, 2) * 2 - 1
    for j in range(overlap):
        assert (shared[j] - a[j]).abs().max() > 1e-3
        assert (shared[j] - b[j]).abs().max() > 1e-3


def test_batch_size_does_not_change_frames_away_from_boundaries(models):
    """Batches of 5 and 9 from frame 0 restore frames 0-4 alike: same noise (seeded by position), causal
    VAE, per-frame windows in the DiT at this few latent frames. Only the text stream still couples them:
    the official model averages each text token over all windows of its sample, so a longer batch moves
    the text state slightly (measured here: mean 0.2/255, max 2/255), where frames in different batches
    differ by about half the range."""
    dit, vae, text = models
    frames = video(18, 32, 48, seed=5)
    five = restore(frames, dit, vae, text, batch_size=5, overlap=0, seed=11, output_dtype=torch.float32)
    nine = restore(frames, dit, vae, text, batch_size=9, overlap=0, seed=11, output_dtype=torch.float32)
    assert five.shape == nine.shape == (18, 32, 48, 3)
    same = (five[:5] - nine[:5]).abs()
    assert same.max() <= 3 / 255 and same.mean() < 0.5 / 255
    assert (five[5:9] - nine[5:9]).abs().mean() > 50 / 255  # these sit in different batches


def test_empty_input_is_refused(models):
    dit, vae, text = models
    with pytest.raises(InputError, match="no frames"):
        list(restore_stream([], dit, vae, text))
