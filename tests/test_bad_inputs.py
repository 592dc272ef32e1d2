"""Inputs users really feed: empty batches, 1x1 and sub-16-pixel frames, grayscale, two channels, integer,
half and double precision IMAGE tensors, values outside [0, 1], NaN and infinity (nodes, on tiny random
models); 16-bit, grayscale and RGBA picture files and a 1x1 picture on the command line. Each either
works (with the result the equivalent well-formed input gives) or fails with an InputError saying what
is wrong and what to do."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from node_helpers import installed_test_models, pack_module, run_node
from seedvr2_core.cli import main
from seedvr2_core.errors import InputError as CoreInputError
from seedvr2_core.make_test_models import DIT_FILE, VAE_FILE
from seedvr2_core.transforms import frames_to_unit
from seedvr2_core.video_io import probe, read_frames

host = pack_module("seedvr2_core.host")
errors = pack_module("seedvr2_core.errors")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    with installed_test_models(tmp_path_factory.mktemp("models")) as folder:
        yield folder


@pytest.fixture(scope="module")
def handles(models):
    return run_node("SeedVR2LoadDiT", model=DIT_FILE)[0], run_node("SeedVR2LoadVAE", model=VAE_FILE)[0]


def upscale(handles, image, resolution=0, **options):
    dit, vae = handles
    return run_node("SeedVR2Upscale", image=image, dit=dit, vae=vae, resolution=resolution, batch_size=1, overlap=0,
                    **options)[0]


def pictures(*shape, seed=0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def refused(handles, image, **options) -> str:
    with pytest.raises(errors.InputError) as caught:
        upscale(handles, image, **options)
    return str(caught.value)


@pytest.mark.parametrize("shape", [(0, 32, 32, 3), (2, 0, 32, 3), (2, 32, 0, 3)])
def test_an_empty_batch_is_refused(handles, shape):
    assert "is empty" in refused(handles, torch.zeros(shape)) and "connect at least one frame" in refused(
        handles, torch.zeros(shape))


@pytest.mark.parametrize("hw", [(1, 1), (8, 8), (40, 10)])
def test_frames_below_16_pixels_need_an_output_size(handles, hw):
    message = refused(handles, pictures(1, *hw, 3))
    assert message.startswith(f"the input is {hw[1]}x{hw[0]}, below the 16 pixels per side SeedVR2 works on")
    assert "a short side / resolution of 16 or more" in message


@pytest.mark.parametrize("hw, resolution, out_hw", [((1, 1), 32, (32, 32)), ((8, 8), 16, (16, 16)),
                                                     ((40, 10), 16, (64, 16))])
def test_frames_below_16_pixels_are_upscaled_when_a_size_is_asked_for(handles, hw, resolution, out_hw):
    out = upscale(handles, pictures(1, *hw, 3), resolution)
    assert out.shape == (1, *out_hw, 3) and torch.isfinite(out).all()


def test_grayscale_is_restored_as_rgb_with_three_equal_channels(handles):
    gray = pictures(2, 24, 32, 1)
    out = upscale(handles, gray)
    assert torch.equal(out, upscale(handles, gray.repeat(1, 1, 1, 3)))


def test_two_channels_are_refused(handles):
    message = refused(handles, pictures(1, 24, 32, 2))
    assert message.startswith("image has shape (1, 24, 32, 2): expected (frames, height, width, 3 or 4)")


@pytest.mark.parametrize("dtype, divisor", [(torch.uint8, 255), (torch.int16, 65535), (torch.uint16, 65535)])
def test_integer_images_are_refused_saying_how_to_convert(handles, dtype, divisor):
    message = refused(handles, torch.zeros(1, 24, 32, 3, dtype=dtype))
    assert message == f"image has dtype {dtype}: IMAGE tensors are float in [0, 1] (convert with .float() / {divisor})"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_precisions_give_the_float32_result_of_the_same_values(handles, dtype):
    image = pictures(2, 24, 32, 3).to(dtype)
    assert torch.equal(upscale(handles, image), upscale(handles, image.float()))


@pytest.mark.parametrize("scale, shift, hint", [
    (255, 0, "0-255 values: divide them by 255"),
    (65535, 0, "16-bit values: divide them by 65535"),
    (2, -1, "[-1, 1] values map to it with (x + 1) / 2"),
    (6, 0, "HDR or over-bright pictures: tone-map or clamp them first"),
])
def test_values_far_outside_0_1_are_refused_with_a_hint(handles, scale, shift, hint):
    image = pictures(1, 24, 32, 3) * scale + shift
    low, high = float(image.min()), float(image.max())
    assert refused(handles, image) == (f"image values range from {low:.4g} to {high:.4g}; IMAGE values must lie in "
                                       f"[0, 1] ({hint})")


def test_slight_overshoot_is_clamped_like_the_official_preprocessing(handles):
    image = pictures(2, 24, 32, 3) * 1.6 - 0.3  # [-0.3, 1.3]: what resampling or sharpening leaves
    out = upscale(handles, image)
    assert torch.equal(out, upscale(handles, image.clamp(0, 1)))


@pytest.mark.parametrize("frame, value, channels", [(3, float("nan"), 3), (0, float("inf"), 3),
                                                    (1, float("-inf"), 4)])
def test_nan_or_infinity_is_refused_naming_the_frame(handles, frame, value, channels):
    image = pictures(5, 24, 32, channels)
    image[frame, 7, 9, channels - 1] = value  # in the alpha channel for RGBA
    assert refused(handles, image).startswith(f"image: frame {frame} holds 1 NaN or infinite values")


def test_the_modular_encode_node_checks_its_input_too(handles):
    image = pictures(3, 24, 32, 3)
    image[2, 0, 0, 0] = float("nan")
    with pytest.raises(errors.InputError, match="frame 2 holds 1 NaN"):
        run_node("SeedVR2Encode", vae=handles[1], image=image, resolution=0, batch_size=1, overlap=0)


def test_float_frames_given_to_the_core_directly_are_checked():
    frames = pictures(2, 20, 24, 3)
    frames[1, 0, 0, 2] = float("nan")
    with pytest.raises(CoreInputError, match="frames: frame 1 holds 1 NaN"):
        frames_to_unit(frames)


# -- picture files on the command line -----------------------------------------------------------------

def write_png(path, pixels: np.ndarray, array_format: str, pix_fmt: str):
    context = av.CodecContext.create("png", "w")
    context.width, context.height, context.pix_fmt = pixels.shape[1], pixels.shape[0], pix_fmt
    context.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(pixels, format=array_format)
    path.write_bytes(b"".join(bytes(p) for p in context.encode(frame) + context.encode(None)))
    return path


PNGS = {  # name -> (value range, numpy shape suffix, array format, stored pixel format)
    "16-bit RGB": (65536, (3,), "rgb48le", "rgb48be"),
    "8-bit gray": (256, (), "gray", "gray"),
    "16-bit gray": (65536, (), "gray16le", "gray16be"),
    "8-bit RGBA": (256, (4,), "rgba", "rgba"),
    "16-bit RGBA": (65536, (4,), "rgba64le", "rgba64be"),
}


@pytest.mark.parametrize("name", sorted(PNGS))
def test_picture_files_of_any_depth_and_channels_read_as_8_bit_rgb(tmp_path, caplog, name):
    top, channels, array_format, pix_fmt = PNGS[name]
    dtype = np.uint16 if top > 256 else np.uint8
    pixels = np.random.default_rng(0).integers(0, top, (20, 24, *channels), dtype=dtype)
    path = write_png(tmp_path / "in.png", pixels, array_format, pix_fmt)
    with caplog.at_level(logging.WARNING):
        frame = next(read_frames(probe(path)))
    expected = pixels.astype(np.float64) / (257 if top > 256 else 1)
    expected = np.repeat(expected[..., None], 3, -1) if not channels else expected[..., :3]
    assert frame.shape == (20, 24, 3) and frame.dtype == np.uint8
    assert np.abs(frame - expected).max() <= 1.5  # 16 -> 8 bits within rounding
    assert ("alpha channel, which is dropped" in caplog.text) == (channels == (4,))


def test_a_1x1_picture_on_the_command_line(tmp_path, models, capsys):
    path = write_png(tmp_path / "dot.png", np.full((1, 1, 3), 200, np.uint8), "rgb24", "rgb24")
    args = [str(path), "--models-dir", str(models), "--batch-size", "1", "--overlap", "0", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "same.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("seedvr2: error: the input is 1x1, below the 16 pixels per side") and "\n" not in err
    assert main([*args, "-o", str(tmp_path / "big.png"), "--resolution", "32"]) == 0
    info = probe(tmp_path / "big.png")
    assert (info.width, info.height) == (32, 32) and not (tmp_path / "same.png").exists()


@pytest.mark.parametrize("blocks", [-7, 99])
def test_a_block_count_out_of_range_is_refused_by_the_loader(models, blocks):
    with pytest.raises(errors.InputError, match=rf"blocks_to_swap must be from 0 to 4 .*or -1 \(auto\); got {blocks}"):
        run_node("SeedVR2LoadDiT", model=DIT_FILE, blocks_to_swap=blocks)
