"""Every node run without a host on tiny random-weight models under the official file names: the right
types and shapes for what ComfyUI users feed (batches, RGBA, odd sizes, 1-frame batches), the modular path
equal to the one-node path, progress, Cancel and a run after it, and clear errors."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from media_build import synthetic_frames, write_video
from node_helpers import installed_test_models, output_types, pack_module, run_node, spec_by_id
from seedvr2_core.make_test_models import DIT_FILE, VAE_FILE
from seedvr2_core.video_io import probe, read_frames

host = pack_module("seedvr2_core.host")
errors = pack_module("seedvr2_core.errors")
sizing = pack_module("seedvr2_core.sizing")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    with installed_test_models(tmp_path_factory.mktemp("models")) as folder:
        yield folder


@pytest.fixture(scope="module")
def dit(models):
    return run_node("SeedVR2LoadDiT", model=DIT_FILE)[0]


@pytest.fixture(scope="module")
def vae(models):
    return run_node("SeedVR2LoadVAE", model=VAE_FILE)[0]


def check_outputs(node_id: str, outputs: tuple) -> None:
    """The results have the Python types the node's declared output types stand for."""
    declared = [o.type for o in spec_by_id(node_id).outputs]
    assert len(outputs) == len(declared)
    for value, kind in zip(outputs, declared):
        assert isinstance(value, output_types()[kind]), (node_id, kind, type(value))


def frames(count: int, height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(count, height, width, channels, generator=g)


def test_loaders_give_handles_of_the_declared_types(dit, vae):
    check_outputs("SeedVR2LoadDiT", (dit,))
    check_outputs("SeedVR2LoadVAE", (vae,))
    assert dit.text.shape == (58, dit.model.config.txt_in_dim)  # embeddings.safetensors next to the DiT
    assert dit.placement.device == host.compute_device() and vae.placement.dtype == torch.float32
    assert dit.placement.blocks_to_swap is None and vae.tiling is None  # -1 and "auto"


@pytest.mark.parametrize("shape, resolution, batch_size, overlap", [
    ((1, 45, 61, 3), 64, 1, 0),  # one image, odd sizes (not multiples of 16)
    ((3, 40, 40, 4), 56, 5, 1),  # RGBA frames
    ((6, 33, 50, 3), 0, 1, 0),  # a batch of 1-frame batches at the input size
    ((7, 24, 32, 3), 40, 5, 2),  # a short video: two batches blended over 2 frames
])
def test_upscale_returns_images_of_the_planned_size(dit, vae, shape, resolution, batch_size, overlap):
    images = frames(*shape)
    outputs = run_node("SeedVR2Upscale", image=images, dit=dit, vae=vae, resolution=resolution,
                       batch_size=batch_size, overlap=overlap)
    check_outputs("SeedVR2Upscale", outputs)
    out = outputs[0]
    plan = sizing.plan_size(sizing.SizeRequest(short_side=resolution or None), shape[1], shape[2])
    assert out.shape == (shape[0], *plan.output_hw, shape[3]) and out.dtype == torch.float32
    assert out.device == host.output_device() and 0 <= out.min() and out.max() <= 1
    assert min(plan.output_hw) == (resolution or min(shape[1:3]))


def test_alpha_is_resized_like_the_picture_and_attached_again(dit, vae):
    images = frames(2, 30, 44, 4, seed=3)
    same = run_node("SeedVR2Upscale", image=images, dit=dit, vae=vae, resolution=0, batch_size=1, overlap=0)[0]
    assert torch.equal(same[..., 3], images[..., 3])  # no resize: the matte passes through untouched
    up = run_node("SeedVR2Upscale", image=images, dit=dit, vae=vae, resolution=45, batch_size=1, overlap=0)[0]
    expected = F.interpolate(images[..., 3][:, None], size=up.shape[1:3], mode="bicubic", antialias=True)
    assert torch.allclose(up[..., 3], expected[:, 0].clamp(0, 1), atol=1e-6)
    # the restored RGB ignores the alpha channel: RGB in, RGB out is the same picture
    rgb = run_node("SeedVR2Upscale", image=images[..., :3], dit=dit, vae=vae, resolution=45, batch_size=1,
                   overlap=0)[0]
    assert torch.equal(rgb, up[..., :3])


def test_encode_restore_decode_equals_upscale(dit, vae):
    images = frames(9, 26, 35, 4, seed=5)
    settings = dict(resolution=40, batch_size=5, overlap=1)
    whole = run_node("SeedVR2Upscale", image=images, dit=dit, vae=vae, seed=11, **settings)[0]
    encoded = run_node("SeedVR2Encode", vae=vae, image=images, **settings)
    check_outputs("SeedVR2Encode", encoded)
    restored = run_node("SeedVR2Restore", dit=dit, latent=encoded[0], seed=11)
    check_outputs("SeedVR2Restore", restored)
    decoded = run_node("SeedVR2Decode", vae=vae, latent=restored[0])
    check_outputs("SeedVR2Decode", decoded)
    assert torch.equal(decoded[0], whole)
    assert encoded[0].stage == "encoded" and restored[0].stage == "restored" and len(encoded[0].batches) == 2


def test_the_modular_nodes_refuse_latents_of_the_wrong_stage(dit, vae):
    encoded = run_node("SeedVR2Encode", vae=vae, image=frames(1, 16, 16), resolution=0, batch_size=1, overlap=0)[0]
    with pytest.raises(errors.InputError, match="not restored yet"):
        run_node("SeedVR2Decode", vae=vae, latent=encoded)
    restored = run_node("SeedVR2Restore", dit=dit, latent=encoded)[0]
    with pytest.raises(errors.InputError, match="already restored"):
        run_node("SeedVR2Restore", dit=dit, latent=restored)


def test_progress_advances_per_batch_and_per_tile_with_previews(dit, vae):
    seen = []
    images = frames(9, 24, 32)
    with host.progress_listeners(lambda value, total, preview: seen.append((value, total, preview))):
        out = run_node("SeedVR2Upscale", image=images, dit=dit, vae=vae, resolution=32, batch_size=5, overlap=1)[0]
    values = [v for v, _, _ in seen]
    assert values == sorted(values) and values[-1] == seen[-1][1] == len(images)
    previews = [(v, p) for v, _, p in seen if p is not None]
    assert [v for v, _ in previews] == [4, 9]  # after each batch: frames final so far (5 - 1 held back, then 9)
    assert torch.equal(previews[-1][1], out[-1])
    # encode tiles, DiT blocks and decode tiles of each batch report in between
    assert len(seen) > 2 * (dit.model.config.num_layers + 2)


def _cancel_after(calls: int | None):
    """An interrupt check that cancels at its `calls`-th call (None: never), and its call count."""
    count = [0]

    def check():
        count[0] += 1
        if count[0] == calls:
            raise errors.ProcessingInterrupted("cancelled by the test")

    return check, count


@pytest.mark.parametrize("swap", [0, 2])
def test_a_run_after_a_cancelled_one_gives_the_uninterrupted_output(models, vae, swap):
    dit = run_node("SeedVR2LoadDiT", model=DIT_FILE, blocks_to_swap=swap)[0]
    settings = dict(image=frames(9, 24, 32, seed=7), dit=dit, vae=vae, resolution=32, batch_size=5, overlap=1)
    counter, checks = _cancel_after(None)
    with host.interrupt_checks(counter):
        uninterrupted = run_node("SeedVR2Upscale", **settings)[0]
    # between batches, VAE tiles and DiT blocks: early in batch 1, its DiT step, batch 2, its last tiles
    for calls in (2, checks[0] // 3, checks[0] // 2 + 1, checks[0] - 1):
        check, _ = _cancel_after(calls)
        with host.interrupt_checks(check), pytest.raises(errors.ProcessingInterrupted):
            run_node("SeedVR2Upscale", **settings)
        assert torch.equal(run_node("SeedVR2Upscale", **settings)[0], uninterrupted)
    assert dit.placement.swapped_blocks == swap and not dit.model.observers[1:]


def test_upscale_video_streams_to_a_file_with_the_frame_rate_and_sound(dit, vae, tmp_path):
    source = write_video(tmp_path / "in.mp4", synthetic_frames(11, 32, 48), Fraction(30000, 1001))
    outputs = run_node("SeedVR2UpscaleVideo", video=str(source), dit=dit, vae=vae, resolution=40, batch_size=5,
                       overlap=1)
    check_outputs("SeedVR2UpscaleVideo", outputs)
    info = probe(outputs[0])
    assert (info.frames, info.fps, info.width, info.height, info.audio) == (11, Fraction(30000, 1001), 60, 40, ("aac",))
    # the same frames through the IMAGE node, up to H.264's rounding
    decoded = torch.from_numpy(np.stack(list(read_frames(probe(source))))).float() / 255
    expected = run_node("SeedVR2Upscale", image=decoded, dit=dit, vae=vae, resolution=40, batch_size=5, overlap=1)[0]
    written = torch.from_numpy(np.stack(list(read_frames(info)))).float() / 255
    assert (written - expected).abs().mean() < 0.02


def test_an_in_memory_video_is_read_too(dit, vae, tmp_path):
    source = write_video(tmp_path / "in.mp4", synthetic_frames(5, 32, 32), Fraction(12), audio=False)
    out = run_node("SeedVR2UpscaleVideo", video=io.BytesIO(source.read_bytes()), dit=dit, vae=vae, resolution=0,
                   batch_size=5, overlap=0)[0]
    info = probe(out)
    assert (info.frames, info.fps, info.audio) == (5, Fraction(12), ())
    assert not list(tmp_path.glob("seedvr2_input_*")) and not list(Path(out).parent.glob(
        "seedvr2_input_*"))


def test_model_files_are_only_taken_from_the_model_folder(models):
    with pytest.raises(errors.CheckpointError, match="not in .*put it there"):
        run_node("SeedVR2LoadDiT", model="seedvr2_ema_7b.pth")
    (models.parent / "outside.safetensors").write_bytes((models / DIT_FILE).read_bytes())
    with pytest.raises(errors.CheckpointError, match="is not a file name inside"):
        run_node("SeedVR2LoadDiT", model="../outside.safetensors")
    with pytest.raises(errors.CheckpointError, match="is not a file name inside"):
        run_node("SeedVR2LoadDiT", model=str(models.parent / "outside.safetensors"))


def test_a_wrong_file_or_backend_is_a_clear_error(models, vae):
    with pytest.raises(errors.UnsupportedCheckpointError, match="not a SeedVR2 DiT"):
        run_node("SeedVR2LoadDiT", model=VAE_FILE)
    with pytest.raises(errors.ConfigError, match="flash_attn"):
        run_node("SeedVR2LoadDiT", model=DIT_FILE, attention="flash_attn")
    with pytest.raises(errors.InputError, match="overlap"):
        run_node("SeedVR2Encode", vae=vae, image=frames(1, 16, 16), batch_size=5, overlap=5)
