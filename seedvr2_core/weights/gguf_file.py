"""Reading `.gguf` checkpoints (ComfyUI-GGUF style exports and our converter's output).

The header is validated in full first (`gguf_header.py`). Tensor names may carry a host prefix
(`model.diffusion_model.`), which `canonicalize.py` strips; a tensor's logical shape comes from the
`comfy.gguf.orig_shape.<name>` metadata when present, else from its reversed GGUF dims (FACTS.md
section 1). F32/F16/BF16 tensors load as ordinary tensors. Block-quantised tensors load as
`QuantizedTensor` (their raw bytes) unless a dtype is asked for, in which case they are decoded on
the target device.
"""

from __future__ import annotations

import os

import torch

from .gguf_header import GGUFTensorInfo, fail, read_gguf_header
from .qtensor import QuantizedTensor

PLAIN_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class GGUFFile:
    """A validated GGUF file behind the reader interface; `quant_type(k)` names block-quantised tensors."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.header = read_gguf_header(self.path)
        # Same contract as safetensors metadata: the string-valued entries (e.g. "seedvr2_config").
        self.metadata: dict[str, str] = {k: v for k, v in self.header.fields.items() if isinstance(v, str)}
        self._file = open(self.path, "rb")

    def keys(self) -> list[str]:
        return list(self.header.tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.header.tensors[key].shape

    def dtype(self, key: str) -> torch.dtype:
        """The dtype of the tensor `get(key)` returns: the plain dtype, or uint8 for quantised bytes."""
        return PLAIN_DTYPES.get(self.header.tensors[key].ggml_type, torch.uint8)

    def quant_type(self, key: str) -> str | None:
        """The GGML block format ("Q4_K", ...) of a quantised tensor, None for F32/F16/BF16."""
        ggml_type = self.header.tensors[key].ggml_type
        return None if ggml_type in PLAIN_DTYPES else ggml_type

    def _read(self, info: GGUFTensorInfo, pin: bool) -> torch.Tensor:
        raw = torch.empty(info.nbytes, dtype=torch.uint8, pin_memory=pin)
        if info.nbytes:
            self._file.seek(info.begin)
            got = self._file.readinto(memoryview(raw.numpy()))
            if got != info.nbytes:
                raise fail(self.path, f"tensor {info.name!r} is cut short ({got} of {info.nbytes} bytes)")
        return raw

    def get(self, key: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        """Tensor `key` on `device`: quantised bytes when `dtype` is None, else decoded to `dtype`."""
        info = self.header.tensors[key]
        device = torch.device(device)
        pin = device.type == "cuda"
        raw = self._read(info, pin).to(device, non_blocking=pin)
        plain = PLAIN_DTYPES.get(info.ggml_type)
        if plain is not None:
            return raw.view(plain).reshape(info.shape).to(dtype or plain)
        quantized = QuantizedTensor(raw, info.ggml_type, info.shape)
        return quantized if dtype is None else quantized.dequantize_as(dtype)

    def close(self) -> None:
        self._file.close()
