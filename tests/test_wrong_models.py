"""The wrong file, or a damaged one, picked as a model: truncated files of every format, the VAE as the
DiT and the reverse, checkpoints of other model families, a config that does not fit the weights,
incomplete or malformed DiT state dicts, non-float weights and duplicated keys. Each gets an error
naming the file, what it looks like, and what was expected; mixed float dtypes load as stored."""

from __future__ import annotations

import json

import pytest
import torch

from seedvr2_core import load_dit, load_vae
from seedvr2_core.convert import convert_checkpoint
from seedvr2_core.errors import CheckpointError, StateDictMismatchError, UnsupportedCheckpointError
from seedvr2_core.make_test_models import DIT_FILE, TINY_DIT_3B, TINY_VAE, VAE_FILE, write_test_models
from seedvr2_core.weights import open_source
from seedvr2_core.weights.safetensors_file import write_safetensors


def state_dict(path) -> dict[str, torch.Tensor]:
    source = open_source(path)
    try:
        return {k: source.get(k) for k in source.keys()}
    finally:
        source.close()


def save(path, tensors: dict[str, torch.Tensor]):
    write_safetensors(path, {k: (t.dtype, tuple(t.shape)) for k, t in tensors.items()}, tensors.__getitem__)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny DiT as .safetensors, .pth and .gguf, and the tiny VAE."""
    folder = write_test_models(tmp_path_factory.mktemp("models"))
    dit = folder / DIT_FILE
    pth = folder / "dit.pth"
    torch.save(state_dict(dit), pth)
    gguf = folder / "dit-Q8_0.gguf"
    convert_checkpoint(dit, gguf, "q8_0")
    return {"safetensors": dit, "pth": pth, "gguf": gguf, "vae": folder / VAE_FILE}


def message_of(error) -> str:
    return str(error.value)


CUTS = {"in the header": lambda n: 100, "halfway": lambda n: n // 2, "last byte missing": lambda n: n - 1}


@pytest.mark.parametrize("kind", ["safetensors", "pth", "gguf"])
@pytest.mark.parametrize("cut", sorted(CUTS))
def test_a_truncated_file_names_itself_and_says_it_is_damaged(files, tmp_path, kind, cut):
    blob = files[kind].read_bytes()
    path = tmp_path / f"cut{files[kind].suffix}"
    path.write_bytes(blob[: CUTS[cut](len(blob))])
    with pytest.raises(CheckpointError) as caught:
        load_dit(path, config=TINY_DIT_3B)
    assert message_of(caught).startswith(str(path)) and "damaged" in message_of(caught)


def test_the_vae_as_dit_and_the_dit_as_vae_are_named(files):
    with pytest.raises(UnsupportedCheckpointError) as caught:
        load_dit(files["vae"])
    assert message_of(caught).startswith(f"{files['vae']} looks like a SeedVR2 VAE, not a SeedVR2 DiT")
    assert "Pick seedvr2_ema_3b" in message_of(caught)
    for kind in ("safetensors", "pth", "gguf"):
        with pytest.raises(UnsupportedCheckpointError) as caught:
            load_vae(files[kind])
        assert message_of(caught).startswith(f"{files[kind]} looks like a SeedVR2 DiT, not the SeedVR2 video VAE")
        assert "Pick ema_vae.pth" in message_of(caught)


Z2, Z4 = torch.zeros(2, 2), torch.zeros(2, 2, 3, 3)
# Key names as these families' checkpoints spell them (a few each, tiny tensors).
OTHER_FAMILIES = {
    "a Stable Diffusion 1.x/2.x/SDXL UNet": {  # an SD 1.5 all-in-one checkpoint
        "model.diffusion_model.input_blocks.0.0.weight": Z4, "first_stage_model.encoder.conv_in.weight": Z4,
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": Z2},
    "a Stable Diffusion XL checkpoint": {  # SDXL without its UNet (a refiner-conditioner extract)
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": Z2},
    "a Stable Diffusion 3 transformer": {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": Z2},
    "a Flux transformer": {"double_blocks.0.img_attn.qkv.weight": Z2, "img_in.weight": Z2, "txt_in.weight": Z2,
                           "single_blocks.0.linear1.weight": Z2},
    "an image VAE with 2-D convolutions": {"encoder.conv_in.weight": Z4, "decoder.conv_in.weight": Z4,
                                           "decoder.conv_out.weight": Z4, "encoder.down.0.block.0.conv1.weight": Z4},
    "a Wan video model": {"patch_embedding.weight": torch.zeros(2, 2, 1, 2, 2), "blocks.0.self_attn.q.weight": Z2},
    "a CLIP text encoder": {"text_model.encoder.layers.0.mlp.fc1.weight": Z2},
    "a T5 text encoder": {"encoder.block.0.layer.0.SelfAttention.q.weight": Z2},
}


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_checkpoints_of_other_families_are_named_as_such(tmp_path, family):
    path = save(tmp_path / "model.safetensors", OTHER_FAMILIES[family])
    with pytest.raises(UnsupportedCheckpointError) as caught:
        load_dit(path)
    assert message_of(caught).startswith(f"{path} looks like {family}, not a SeedVR2 DiT")
    with pytest.raises(UnsupportedCheckpointError) as caught:
        load_vae(path)
    assert message_of(caught).startswith(f"{path} looks like {family}, not the SeedVR2 video VAE")


def test_the_text_embeddings_picked_as_a_model_are_named(files):
    path = files["safetensors"].parent / "embeddings.safetensors"
    with pytest.raises(UnsupportedCheckpointError) as caught:
        load_dit(path)
    assert message_of(caught).startswith(f"{path} looks like the SeedVR2 text embeddings (they belong next to the DiT")


def test_a_3b_file_with_the_7b_config_says_what_its_weights_look_like(files):
    with pytest.raises(StateDictMismatchError) as caught:
        load_dit(files["safetensors"], config="seedvr2-7b")
    text = message_of(caught)
    assert text.startswith(f"{files['safetensors']} does not match the requested config (seedvr2-7b); its weights "
                           f"look like a custom 3B-layout DiT, {TINY_DIT_3B['num_layers']} blocks of width "
                           f"{TINY_DIT_3B['vid_dim']}: ")
    assert "missing keys" in text and "unexpected keys" in text


def without(sd: dict, prefix: str) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith(prefix)}


DAMAGE = {
    "a detection tensor missing": (lambda sd: without(sd, "blocks.0.attn.norm_q.vid."),
                                   "has no tensor blocks.0.attn.norm_q.vid.weight"),
    "a 1-D input projection": (lambda sd: {**sd, "vid_in.proj.weight": torch.zeros(64)},
                               "its tensor vid_in.proj.weight has shape [64]"),
    "a zero-size head": (lambda sd: {**sd, "blocks.0.attn.norm_q.vid.weight": torch.zeros(0)},
                         "has shape [0] (expected 1 dimensions, none of size 0)"),
    "a block missing": (lambda sd: without(sd, "blocks.1."), "not numbered 0 to n-1 (found [0, 2, 3])"),
    "no blocks at all": (lambda sd: without(sd, "blocks."), "not numbered 0 to n-1 (found [])"),
    "heads of 7 dims": (lambda sd: {**sd, "blocks.0.attn.norm_q.vid.weight": torch.ones(7)},
                        "the shapes of its tensors give no valid config (rope_dim"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_an_incomplete_or_malformed_dit_is_named_with_the_tensor_at_fault(files, tmp_path, damage):
    change, reason = DAMAGE[damage]
    path = save(tmp_path / "damaged.safetensors", change(state_dict(files["safetensors"])))
    with pytest.raises(StateDictMismatchError) as caught:
        load_dit(path)
    assert message_of(caught).startswith(f"{path} looks like a SeedVR2 DiT") and reason in message_of(caught)


def test_a_damaged_vae_lists_its_missing_keys_instead_of_looking_unknown(files, tmp_path):
    sd = state_dict(files["vae"])
    del sd["decoder.conv_out.weight"], sd["encoder.conv_in.weight"]  # two of the three marker keys
    path = save(tmp_path / "vae.safetensors", sd)
    with pytest.raises(StateDictMismatchError, match="2 missing keys: encoder.conv_in.weight, decoder.conv_out.weight"):
        load_vae(path, config=TINY_VAE)


@pytest.mark.parametrize("model, key, dtype", [
    ("safetensors", "blocks.0.attn.proj_qkv.vid.weight", torch.int32),
    ("safetensors", "blocks.0.attn.norm_q.vid.weight", torch.bool),
    ("vae", "encoder.conv_in.weight", torch.int8),
])
def test_integer_or_boolean_weights_are_refused_by_name(files, tmp_path, model, key, dtype):
    sd = state_dict(files[model])
    sd[key] = sd[key].to(dtype)
    path = save(tmp_path / "mixed.safetensors", sd)
    load = load_dit if model == "safetensors" else load_vae
    config = TINY_DIT_3B if model == "safetensors" else TINY_VAE
    with pytest.raises(StateDictMismatchError) as caught:
        load(path, config=config)
    assert message_of(caught).startswith(str(path))
    assert f"1 weights stored as integers or booleans: {key} ({dtype})" in message_of(caught)


def test_mixed_float_dtypes_load_as_stored(files, tmp_path):
    """fp32 / fp16 / bf16 tensors in one file give the same float32 model as those values all in fp32."""
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    mixed = {k: v.to(dtypes[i % 3]) for i, (k, v) in enumerate(state_dict(files["safetensors"]).items())}
    path = save(tmp_path / "mixed.safetensors", mixed)
    assert len({t.dtype for t in mixed.values()}) == 3
    model = load_dit(path, config=TINY_DIT_3B)
    reference = load_dit({k: v.float() for k, v in mixed.items()}, config=TINY_DIT_3B)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_two_names_for_one_tensor_are_refused(files, tmp_path):
    sd = state_dict(files["safetensors"])
    sd["model.diffusion_model.vid_in.proj.weight"] = sd["vid_in.proj.weight"]
    path = save(tmp_path / "merged.safetensors", sd)
    with pytest.raises(CheckpointError) as caught:
        load_dit(path)
    assert message_of(caught).startswith(
        f"{path} holds both 'vid_in.proj.weight' and 'model.diffusion_model.vid_in.proj.weight'")


def test_the_config_in_the_metadata_must_fit_the_weights(files, tmp_path):
    sd = state_dict(files["safetensors"])
    path = tmp_path / "meta.safetensors"
    bad = json.dumps({**TINY_DIT_3B, "heads": 4})
    write_safetensors(path, {k: (t.dtype, tuple(t.shape)) for k, t in sd.items()}, sd.__getitem__,
                      {"seedvr2_config": bad})
    with pytest.raises(StateDictMismatchError) as caught:
        load_dit(path)
    assert message_of(caught).startswith(str(path))
