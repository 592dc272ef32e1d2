"""A restoration stream continued from a saved StreamState gives exactly the frames of the whole stream
(the basis of the command line's --resume), with tiny random-weight models through the real pipeline."""

from __future__ import annotations

import pytest
import torch
from media_build import synthetic_frames

from seedvr2_core.dit.loader import load_dit
from seedvr2_core.make_test_models import write_test_models
from seedvr2_core.pipeline import RestoreOptions, StreamState, restore_stream
from seedvr2_core.sizing import SizeRequest
from seedvr2_core.text import find_text_embedding


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from seedvr2_core import load_vae

    folder = write_test_models(tmp_path_factory.mktemp("models"))
    dit = load_dit(folder / "seedvr2_ema_3b_fp16.safetensors")
    return dit, load_vae(folder / "ema_vae_fp16.safetensors"), find_text_embedding([folder], dit)


@pytest.mark.parametrize("overlap", [0, 2])
def test_continuing_from_a_saved_state_equals_the_whole_stream(tiny, one_thread, overlap):
    dit, vae, text = tiny
    frames = list(synthetic_frames(17, 24, 40))
    options = RestoreOptions(size=SizeRequest(scale=1.5), batch_size=5, overlap=overlap)
    whole = torch.cat(list(restore_stream(frames, dit, vae, text, options)))
    assert whole.shape == (17, 36, 60, 3) and whole.dtype == torch.uint8

    state = StreamState()
    stream = restore_stream(frames, dit, vae, text, options, state=state)
    first = [next(stream), next(stream)]  # two batches done, then the process "dies"
    stream.close()
    saved = StreamState(state.next_frame, None if state.tail is None else state.tail.clone())
    assert saved.next_frame == sum(len(c) for c in first)
    assert (saved.tail is None) == (overlap == 0)

    rest = list(restore_stream(frames[saved.next_frame:], dit, vae, text, options, state=saved))
    assert torch.equal(torch.cat(first + rest), whole)
    assert saved.next_frame == 17 and saved.tail is None
