"""The encoder and decoder as flat lists of steps over named activations.

Each step reads whole-frame activations and produces one; `engine.py` runs a step over the tiles of its
output. Written from the official forward passes (FACTS.md section 5):

* resnet: h = conv1(silu(norm1(x))); out = shortcut(x) + conv2(silu(norm2(h))) (shortcut 1x1x1 or identity)
* encoder: conv_in -> blocks (resnets, then a strided conv on the right/bottom zero-padded input) ->
  mid (resnet, attention, resnet) -> silu(norm_out) -> conv_out (2 x latent channels: mean | logvar)
* decoder: conv_in -> mid -> blocks (resnets, then upscale_conv, depth-to-space, conv) ->
  silu(norm_out) -> conv_out

`last_use` tells the engine when an activation can be freed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .layers import Attention, CausalConv3d, Decoder, Encoder, GroupNorm, ResnetBlock, Upsample


@dataclass(frozen=True)
class ConvStep:
    """dst = conv(prep(src)) [+ residual], prep = silu(norm(.)), upsampling, or nothing.

    With `shortcut`, the step also writes shortcut(src) (a 1x1x1 conv) to activation `shortcut_dst`, so
    that a resnet's input is no longer needed after its first conv.
    """

    name: str  # module path of the conv; keys its temporal cache
    conv: CausalConv3d
    src: str
    dst: str
    norm: GroupNorm | None = None
    up: Upsample | None = None
    down: bool = False  # stride-2 conv on the input zero-padded by one at the right and bottom
    residual: str | None = None
    shortcut: CausalConv3d | None = None
    shortcut_dst: str | None = None
    scale: int = 1  # the step's output resolution is the image's divided by this
    feeds_norm: bool = False  # dst is normalised by a later step (its statistics are wanted)

    @property
    def kind(self) -> str:
        if self.down:
            return "down"
        return "same" if self.conv.kernel_size[1] == 3 else "point"


@dataclass(frozen=True)
class AttentionStep:
    """dst = src + out(attention(norm(src))) over the positions of each frame (always whole-frame)."""

    name: str
    attn: Attention
    src: str
    dst: str
    scale: int = 1


Step = ConvStep | AttentionStep


class _Builder:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.steps: list[Step] = []
        self.count = 0

    def new(self) -> str:
        self.count += 1
        return f"a{self.count}"

    def conv(self, path: str, conv: CausalConv3d, src: str, scale: int, **kw) -> str:
        dst = self.new()
        self.steps.append(ConvStep(f"{self.prefix}.{path}", conv, src, dst, scale=scale, **kw))
        return dst

    def resnet(self, path: str, block: ResnetBlock, x: str, scale: int) -> str:
        skip = x
        kw = {}
        if block.conv_shortcut is not None:
            skip = self.new()
            kw = {"shortcut": block.conv_shortcut, "shortcut_dst": skip}
        h = self.conv(f"{path}.conv1", block.conv1, x, scale, norm=block.norm1, **kw)
        return self.conv(f"{path}.conv2", block.conv2, h, scale, norm=block.norm2, residual=skip)

    def mid(self, path: str, mid, x: str, scale: int) -> str:
        x = self.resnet(f"{path}.resnets.0", mid.resnets[0], x, scale)
        dst = self.new()
        self.steps.append(AttentionStep(f"{self.prefix}.{path}.attentions.0", mid.attentions[0], x, dst, scale))
        return self.resnet(f"{path}.resnets.1", mid.resnets[1], dst, scale)


def encoder_program(enc: Encoder) -> list[Step]:
    """Steps from activation "input" (B, 3, T, H, W) to the last step's (B, 2 * latent, t, H/8, W/8)."""
    b = _Builder("encoder")
    x = b.conv("conv_in", enc.conv_in, "input", 1)
    scale = 1
    for i, block in enumerate(enc.down_blocks):
        for j, resnet in enumerate(block.resnets):
            x = b.resnet(f"down_blocks.{i}.resnets.{j}", resnet, x, scale)
        if hasattr(block, "downsamplers"):
            scale *= 2
            x = b.conv(f"down_blocks.{i}.downsamplers.0.conv", block.downsamplers[0].conv, x, scale, down=True)
    x = b.mid("mid_block", enc.mid_block, x, scale)
    b.conv("conv_out", enc.conv_out, x, scale, norm=enc.conv_norm_out)
    return _mark_normalised(b.steps)


def decoder_program(dec: Decoder, spatial_factor: int) -> list[Step]:
    """Steps from activation "input" (B, latent, t, h, w) to the last step's (B, 3, T, 8h, 8w)."""
    b = _Builder("decoder")
    scale = spatial_factor
    x = b.conv("conv_in", dec.conv_in, "input", scale)
    x = b.mid("mid_block", dec.mid_block, x, scale)
    for i, block in enumerate(dec.up_blocks):
        for j, resnet in enumerate(block.resnets):
            x = b.resnet(f"up_blocks.{i}.resnets.{j}", resnet, x, scale)
        if hasattr(block, "upsamplers"):
            up: Upsample = block.upsamplers[0]
            scale //= 2
            x = b.conv(f"up_blocks.{i}.upsamplers.0.conv", up.conv, x, scale, up=up)
    b.conv("conv_out", dec.conv_out, x, scale, norm=dec.conv_norm_out)
    return _mark_normalised(b.steps)


def _mark_normalised(steps: list[Step]) -> list[Step]:
    normed = {s.src for s in steps if isinstance(s, ConvStep) and s.norm is not None}
    return [replace(s, feeds_norm=True) if isinstance(s, ConvStep) and s.dst in normed else s for s in steps]


def last_use(steps: list[Step]) -> dict[str, int]:
    """Activation name -> index of the last step reading it."""
    last: dict[str, int] = {}
    for i, s in enumerate(steps):
        for name in (s.src, getattr(s, "residual", None)):
            if name is not None:
                last[name] = i
    return last
