"""Spatial tiling: tile geometry covers frames exactly once, mode "frame" equals the untiled result,
mode "tile" blends convexly, and the planner picks plans that fit a memory budget."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seedvr2_core import VAETiling, estimate_vae_cost
from seedvr2_core.errors import MemoryPlanError
from seedvr2_core.vae.cost import plan_tiling
from seedvr2_core.vae.program import ConvStep
from seedvr2_core.vae.tiles import overlapping, ramp_weights, split
from seedvr2_core.vae.tiling import frame_plan
from tests.vae_helpers import psnr, random_vae, video

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


@settings(deadline=None)
@given(n=st.integers(1, 500), tile=st.integers(1, 200))
def test_split_partitions_the_axis(n, tile):
    spans = split(n, tile)
    assert spans[0].lo == 0 and spans[-1].hi == n
    assert all(a.hi == b.lo for a, b in zip(spans, spans[1:]))
    sizes = [s.size for s in spans]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and max(sizes) <= max(tile, 1)


@settings(deadline=None)
@given(n=st.integers(1, 400), tile=st.integers(2, 160), overlap=st.integers(0, 64), align=st.sampled_from([1, 2, 8]))
def test_overlapping_spans_cover_and_blend_to_one(n, tile, overlap, align):
    spans = overlapping(n, tile, overlap, align)
    weights = ramp_weights(spans, n, torch.float64)
    total = torch.zeros(n, dtype=torch.float64)
    covered = torch.zeros(n, dtype=torch.int64)
    for s, w in zip(spans, weights):
        assert 0 <= s.lo < s.hi <= n and s.size <= max(tile, align, 1) or len(spans) == 1
        assert (w > 0).all()
        total[s.lo:s.hi] += w
        covered[s.lo:s.hi] += 1
    assert (covered >= 1).all()
    torch.testing.assert_close(total, torch.ones(n, dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), tile=st.integers(8, 512), scale=st.sampled_from([1, 2, 4, 8]))
def test_frame_plan_covers_every_position_once(h, w, tile, scale):
    step = ConvStep("x", None, "a", "b", scale=scale)
    count = torch.zeros(h, w, dtype=torch.int64)
    for r in frame_plan(tile)(step, h, w):
        count[r.rows.lo:r.rows.hi, r.cols.lo:r.cols.hi] += 1
    assert (count == 1).all()


@pytest.fixture(scope="module")
def vae():
    return random_vae()


@pytest.mark.parametrize("tile", [8, 24, 40])
def test_frame_mode_equals_untiled_at_odd_sizes(vae, tile):
    """40 x 56 frames are no multiple of any of these tiles; T = 5 streams in two chunks."""
    x = video(5, 40, 56, batch=2)
    tiling = VAETiling(tile_size=tile, mode="frame")
    latent = vae.encode(x)
    torch.testing.assert_close(vae.encode(x, tiling=tiling), latent, atol=1e-4, rtol=1e-4)
    out = vae.decode(latent)
    tiled = vae.decode(latent, tiling=tiling)
    assert tiled.shape == out.shape == x.shape and tiled.dtype == out.dtype
    torch.testing.assert_close(tiled, out, atol=1e-4, rtol=1e-4)


def test_tile_mode_blends_tile_outputs_convexly(vae):
    """Each output value lies between the values the overlapping tiles gave it on their own."""
    latent = vae.encode(video(1, 40, 56))
    tiling = VAETiling(tile_size=24, tile_overlap=16, mode="tile")
    blended = vae.decode(latent, tiling=tiling)
    assert blended.shape == (1, 3, 1, 40, 56)
    rows, cols = overlapping(5, 3, 2), overlapping(7, 3, 2)
    lo = torch.full_like(blended, float("inf"))
    hi = torch.full_like(blended, float("-inf"))
    for r in rows:
        for c in cols:
            part = vae.decode(latent[..., r.lo:r.hi, c.lo:c.hi])
            region = (..., slice(8 * r.lo, 8 * r.hi), slice(8 * c.lo, 8 * c.hi))
            lo[region] = torch.minimum(lo[region], part)
            hi[region] = torch.maximum(hi[region], part)
    assert torch.isfinite(lo).all()
    assert (blended >= lo - 1e-5).all() and (blended <= hi + 1e-5).all()
    whole = VAETiling(tile_size=64, mode="tile")  # one tile covering the frame is the untiled call
    torch.testing.assert_close(vae.decode(latent, tiling=whole), vae.decode(latent), atol=0, rtol=0)


def test_whole_frame_statistics_beat_per_tile_statistics(vae):
    x = video(1, 48, 64, seed=3)
    latent = vae.encode(x)
    out = vae.decode(latent)
    frame = vae.decode(latent, tiling=VAETiling(tile_size=16, mode="frame"))
    tile = vae.decode(latent, tiling=VAETiling(tile_size=16, tile_overlap=8, mode="tile"))
    assert psnr(frame, out) > psnr(tile, out) + 30


def test_planner_prefers_whole_frames_then_frame_tiles_then_tile_mode(vae):
    size = (1, 1, 16, 16)
    _, whole = estimate_vae_cost(vae, "decode", size)
    assert plan_tiling(vae, "decode", size, VAETiling(memory_budget=whole)).tile_size is None
    frame_peaks = [estimate_vae_cost(vae, "decode", size, VAETiling(tile_size=s))[1] for s in (64, 32)]
    assert frame_peaks[1] < frame_peaks[0] < whole
    plan = plan_tiling(vae, "decode", size, VAETiling(memory_budget=frame_peaks[1]))
    assert plan.mode == "frame" and plan.tile_size <= 32
    tile_peak = estimate_vae_cost(vae, "decode", size, VAETiling(tile_size=32, mode="tile"))[1]
    assert tile_peak < min(frame_peaks)
    small = plan_tiling(vae, "decode", size, VAETiling(memory_budget=tile_peak))
    assert small.mode == "tile" and estimate_vae_cost(vae, "decode", size, small)[1] <= tile_peak
    with pytest.raises(MemoryPlanError, match="MiB"):
        plan_tiling(vae, "decode", size, VAETiling(memory_budget=1024))
    out = vae.decode(torch.randn(1, 16, *size[1:]), tiling=VAETiling(memory_budget=frame_peaks[1]))
    assert out.shape == (1, 3, 1, 128, 128)


def test_half_precision_tiling_adds_no_error_beyond_the_dtype():
    """bf16 frame-mode tiles apply whole-frame statistics in float32: as close to float32 as untiled."""
    vae32, vae16 = random_vae(), random_vae(dtype=torch.bfloat16)
    latent = vae32.encode(video(5, 40, 56))
    reference = vae32.decode(latent)
    untiled = psnr(vae16.decode(latent).float(), reference)
    tiled = psnr(vae16.decode(latent, tiling=VAETiling(tile_size=16)).float(), reference)
    assert untiled > 35 and tiled > untiled - 1.0, (untiled, tiled)


@settings(max_examples=30, deadline=None)
@given(t=st.sampled_from([1, 5]), h=st.integers(1, 8).map(lambda n: 8 * n), w=st.integers(1, 8).map(lambda n: 8 * n),
       tile=st.integers(1, 9).map(lambda n: 8 * n), chunk=st.sampled_from([None, 1, 2]))
def test_frame_tiling_gives_the_exact_shape_and_values_at_random_sizes(vae, t, h, w, tile, chunk):
    """Frames of 4n+1 frames (what the pipeline feeds), any multiple of 8: latents (1, 16, n+1, h/8, w/8) and
    decoded frames of the input's shape, tiled or not, with frame tiling equal to the untiled call."""
    x = video(t, h, w)
    tiling = VAETiling(tile_size=tile, mode="frame", chunk_size=chunk)
    latent = vae.encode(x)
    tiled_latent = vae.encode(x, tiling=tiling)
    assert latent.shape == tiled_latent.shape == (1, 16, (t - 1) // 4 + 1, h // 8, w // 8)
    torch.testing.assert_close(tiled_latent, latent, atol=1e-4, rtol=1e-4)
    out, tiled = vae.decode(latent), vae.decode(latent, tiling=tiling)
    assert out.shape == tiled.shape == x.shape
    torch.testing.assert_close(tiled, out, atol=1e-4, rtol=1e-4)
