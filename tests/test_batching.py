"""Temporal batching and crossfade: every frame once, in order; overlaps really blend; and the same through
the whole pipeline at random sizes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seedvr2_core import load_vae
from seedvr2_core.batching import Crossfader, blend_weights, temporal_batches
from seedvr2_core.dit.loader import load_dit
from seedvr2_core.errors import InputError
from seedvr2_core.make_test_models import DIT_FILE, VAE_FILE, write_test_models
from seedvr2_core.noise import SeededNoise, latent_frame_keys
from seedvr2_core.pipeline import RestoreOptions, restore_stream
from seedvr2_core.sizing import SizeRequest, plan_size
from seedvr2_core.text import find_text_embedding


def run_stream(n: int, batch: int, overlap: int) -> tuple[list, list]:
    """Push frame indices through batching and crossfade; frames are their own index as a value."""
    fader, out, batches = Crossfader(), [], []
    for b in temporal_batches(range(n), batch, overlap):
        batches.append(b)
        frames = torch.tensor(b.frames, dtype=torch.float64)
        out.extend(fader.push(frames, b.overlap, 0 if b.is_last else overlap).tolist())
    return out, batches


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 120), batch=st.integers(1, 33), data=st.data())
def test_every_frame_emitted_once_in_order(n, batch, data):
    overlap = data.draw(st.integers(0, batch - 1))
    out, batches = run_stream(n, batch, overlap)
    # Each frame's two restorations carry the same value here, so blending must return it exactly.
    assert out == [float(i) for i in range(n)]
    assert all(len(b.frames) <= batch for b in batches)
    assert batches[-1].is_last and not any(b.is_last for b in batches[:-1])
    for prev, nxt in zip(batches, batches[1:]):
        assert nxt.frames[: nxt.overlap] == prev.frames[len(prev.frames) - nxt.overlap :]


def test_batches_read_the_stream_lazily():
    consumed = []

    def frames():
        for i in range(100):
            consumed.append(i)
            yield i

    gen = temporal_batches(frames(), 9, 2)
    first = next(gen)
    assert first.frames == list(range(9)) and len(consumed) == 10  # one frame of look-ahead


@pytest.mark.parametrize("overlap", [1, 2, 4])
def test_overlap_frames_differ_from_both_unblended_neighbours(overlap):
    fader = Crossfader()
    a = torch.zeros(9, 3, 4, 4)
    b = torch.ones(9, 3, 4, 4)
    first = fader.push(a, 0, overlap)
    second = fader.push(b, overlap, 0)
    assert len(first) + len(second) == 18 - overlap
    blended = second[:overlap]
    assert torch.all(blended > 0) and torch.all(blended < 1)
    torch.testing.assert_close(blended[:, 0, 0, 0], blend_weights(overlap))


def test_invalid_batching_is_refused():
    with pytest.raises(InputError, match="overlap must lie in"):
        list(temporal_batches(range(10), 5, 5))
    with pytest.raises(InputError, match="batch size must be at least 1"):
        list(temporal_batches(range(10), 0, 0))


def test_noise_depends_on_position_not_batching():
    noise = SeededNoise(7)
    # A batch of 9 from frame 0 and a batch of 5 from frame 0 share latent frames 0 and 1.
    nine = noise.draw(latent_frame_keys(0, 3), (2, 3, 16), "x")
    five = noise.draw(latent_frame_keys(0, 2), (2, 3, 16), "x")
    assert torch.equal(nine[:2], five)
    later = noise.draw(latent_frame_keys(4, 2), (2, 3, 16), "x")
    assert torch.equal(later[0], nine[1])  # frame 4 closes latent 1 of the first and opens the second
    assert not torch.equal(noise.draw([0], (2, 3, 16), "y"), nine[:1])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 80), batch=st.integers(2, 17), data=st.data())
def test_a_stream_continued_from_any_batch_equals_the_whole_stream(n, batch, data):
    overlap = data.draw(st.integers(0, batch - 1))
    whole = list(temporal_batches(range(n), batch, overlap))
    cut = data.draw(st.integers(0, len(whole) - 1))  # continue after `cut` finished batches
    if cut == 0:
        return
    # After batch cut-1, the frames before its held-back overlap are final; the rest starts the next batch.
    prev = whole[cut - 1]
    start = prev.start + len(prev.frames) - overlap
    rest = list(temporal_batches(range(start, n), batch, overlap, start=start, first_overlap=overlap))
    assert [(b.start, b.frames, b.overlap, b.is_last) for b in rest] == [
        (b.start, b.frames, b.overlap, b.is_last) for b in whole[cut:]
    ]


def test_continuing_with_more_shared_frames_than_the_overlap_is_refused():
    with pytest.raises(InputError, match="cannot continue at frame 4"):
        list(temporal_batches(range(4, 10), 5, 1, start=4, first_overlap=2))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_test_models(tmp_path_factory.mktemp("models"))
    dit = load_dit(folder / DIT_FILE)
    return dit, load_vae(folder / VAE_FILE), find_text_embedding([folder], dit)


def flat_colours(n: int) -> torch.Tensor:
    """(n, 3) colours at least 1 / n apart, one per frame, so each restored frame tells which input it was."""
    return torch.stack([torch.tensor([i / max(n - 1, 1), 1 - i / max(n - 1, 1), (i * 5 % n) / n]) for i in range(n)])


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 14), h=st.integers(16, 40), w=st.integers(16, 40), batch=st.integers(1, 9),
       scale=st.sampled_from([None, 1.5]), data=st.data())
def test_the_pipeline_emits_every_frame_once_in_order_at_the_planned_size(tiny, n, h, w, batch, scale, data):
    """Through the real pipeline on tiny models: as many frames as came in, each chunk at the planned size,
    and frame i restored from input i (the colour fix carries each input's flat colour through)."""
    overlap = data.draw(st.integers(0, batch - 1))
    dit, vae, text = tiny
    colours = flat_colours(n)
    frames = list(colours[:, None, None, :].expand(n, h, w, 3))
    options = RestoreOptions(size=SizeRequest(scale=scale), batch_size=batch, overlap=overlap)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        chunks = list(restore_stream(frames, dit, vae, text, options, output_dtype=torch.float32))
    finally:
        torch.set_num_threads(threads)
    plan = plan_size(options.size, h, w)
    assert all(c.shape[1:] == (*plan.output_hw, 3) for c in chunks) and sum(len(c) for c in chunks) == n
    nearest = torch.cdist(torch.cat(chunks).mean((1, 2)), colours).argmin(1)
    assert nearest.tolist() == list(range(n))
