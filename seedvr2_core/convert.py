"""Convert a SeedVR2 checkpoint between formats, one tensor at a time.

    python -m seedvr2_core.convert IN OUT --to {fp16,bf16,fp8_e4m3fn,fp8_e5m2,q8_0,q4_k}

IN: any supported checkpoint (.pth, .safetensors, .gguf). OUT's suffix picks the format:
* `.safetensors` with fp16 / bf16 (every float tensor) or fp8_* (matrices and convolution kernels in
  fp8, a plain per-tensor cast clamped to the format's range; vectors kept in float32).
* `.gguf` with q8_0 / q4_k (2-D matrices quantised; vectors F32; other tensors F16) or fp16 / bf16.
  A tensor whose GGUF layout differs from its real shape (a row length that is not a whole number of
  blocks, or more than 4 dims) is stored flattened with its shape in `comfy.gguf.orig_shape.<name>`.
Key names are written canonical (official names, host prefixes stripped). String metadata, including
`seedvr2_config` (the config of non-official sizes), is carried over; `--config` sets it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass

import torch

from .errors import InputError, SeedVR2Error
from .host import check_interrupt
from .weights.canonicalize import canonical_key
from .weights.dequant import BLOCK_SIZES
from .weights.quantize import QUANTIZERS
from .weights.safetensors_file import write_safetensors
from .weights.sources import open_source

log = logging.getLogger(__name__)

TARGETS: dict[str, torch.dtype | str] = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
    "q8_0": "Q8_0",
    "q4_k": "Q4_K",
}
CONFIG_KEY = "seedvr2_config"
GGUF_BOOKKEEPING = ("general.", "comfy.gguf.")
GGUF_MAX_DIMS = 4
FLATTEN_ROW = 256  # ComfyUI-GGUF's row length for tensors stored flattened


@dataclass(frozen=True)
class Entry:
    """One output tensor: where it comes from, its real shape, and how it is stored."""

    name: str  # canonical key written to OUT
    raw: str  # key in the input reader
    shape: tuple[int, ...]
    kind: torch.dtype | str  # torch dtype, or "F32"/"F16"/"BF16"/"Q8_0"/"Q4_K" for GGUF
    stored_shape: tuple[int, ...]  # GGUF: may be flattened; safetensors: = shape


def _gguf_kind(target: torch.dtype | str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """GGUF storage type and stored shape of a float tensor of `shape` for `target`."""
    numel = math.prod(shape)
    if len(shape) <= 1:
        return "F32", shape
    flat = (numel // FLATTEN_ROW, FLATTEN_ROW) if numel % FLATTEN_ROW == 0 else (numel,)
    if isinstance(target, str) and len(shape) == 2:
        block = BLOCK_SIZES[target][0]
        if shape[-1] % block == 0:
            return target, shape
        if numel % FLATTEN_ROW == 0:
            return target, flat
    kind = "BF16" if target == torch.bfloat16 else "F16"
    return kind, shape if len(shape) <= GGUF_MAX_DIMS else (shape[0], numel // shape[0])


def _safetensors_kind(target: torch.dtype, shape: tuple[int, ...]) -> torch.dtype:
    if target in (torch.float8_e4m3fn, torch.float8_e5m2) and len(shape) <= 1:
        return torch.float32  # fp8 would cost norm weights and offsets several percent of precision
    return target


def plan(source, to: str, gguf: bool) -> list[Entry]:
    """The output tensors of converting canonical reader `source` to `to` (in GGUF if `gguf`)."""
    target = TARGETS[to]
    raw_keys = [(key, source.raw_key(key)) for key in source.keys()]
    raw_keys += [(canonical_key(raw), raw) for raw in source.extras.values()]
    entries = []
    for name, raw in raw_keys:
        shape = tuple(source.source.shape(raw))
        if gguf and not shape:
            raise InputError(f"{source.path}: tensor {name!r} is a 0-d scalar, which GGUF cannot store")
        stored = source.source.dtype(raw)
        quantized = getattr(source.source, "quant_type", lambda k: None)(raw) is not None
        if not (quantized or stored.is_floating_point):
            if gguf:
                raise InputError(f"{source.path}: tensor {name!r} is {stored}; GGUF output holds float tensors only")
            entries.append(Entry(name, raw, shape, stored, shape))
        elif gguf:
            entries.append(Entry(name, raw, shape, *_gguf_kind(target, shape)))
        else:
            entries.append(Entry(name, raw, shape, _safetensors_kind(target, shape), shape))
    return entries


def _values(source, entry: Entry, device: torch.device) -> torch.Tensor:
    """Entry's tensor as float32 (or its integer dtype) on `device`, in its stored shape."""
    if isinstance(entry.kind, torch.dtype) and not entry.kind.is_floating_point:
        return source.source.get(entry.raw, device)
    return source.source.get(entry.raw, device, torch.float32).reshape(entry.stored_shape)


def _to_fp8(x: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    limit = torch.finfo(dtype).max
    over = int((x.abs() > limit).sum())
    if over:
        log.warning("%s: %d values beyond the %s range were clamped to +-%g", name, over, dtype, limit)
    return x.clamp(-limit, limit).to(dtype)


def _metadata(source, config: dict | None) -> dict[str, str]:
    meta = {k: v for k, v in source.metadata.items() if isinstance(v, str) and not k.startswith(GGUF_BOOKKEEPING)}
    if config:
        merged = {**json.loads(meta.get(CONFIG_KEY, "{}")), **config}
        meta[CONFIG_KEY] = json.dumps(merged, sort_keys=True)
    return meta


def _write_safetensors(source, entries: list[Entry], dst: str, meta: dict[str, str], device) -> None:
    by_name = {e.name: e for e in entries}

    def produce(name: str) -> torch.Tensor:
        check_interrupt()
        entry = by_name[name]
        x = _values(source, entry, device)
        if entry.kind in (torch.float8_e4m3fn, torch.float8_e5m2):
            return _to_fp8(x, entry.kind, name)
        return x.to(entry.kind)

    write_safetensors(dst, {e.name: (e.kind, e.shape) for e in entries}, produce, meta or None)


def _gguf_array(source, entry: Entry, device) -> "object":
    """Entry's bytes for GGUF as a numpy array (uint8 blocks for quantised and BF16 tensors)."""
    x = _values(source, entry, device)
    if entry.kind in QUANTIZERS:
        try:
            return QUANTIZERS[entry.kind](x).numpy()
        except ValueError as e:
            raise InputError(f"{source.path}: tensor {entry.name!r} cannot be stored as {entry.kind}: {e}") from None
    if entry.kind == "BF16":
        return x.to(torch.bfloat16).cpu().contiguous().view(torch.uint8).numpy()
    return x.to(torch.float32 if entry.kind == "F32" else torch.float16).cpu().contiguous().numpy()


def _write_gguf(source, entries: list[Entry], dst: str, meta: dict[str, str], device) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter

    from .weights.gguf_header import ORIG_SHAPE_PREFIX

    tmp = dst + ".part"
    writer = GGUFWriter(tmp, arch="seedvr2")
    for key, value in meta.items():
        writer.add_string(key, value)
    for e in entries:
        if e.stored_shape != e.shape:
            writer.add_array(ORIG_SHAPE_PREFIX + e.name, list(e.shape))
        numel = math.prod(e.shape)
        if e.kind in ("F32", "F16"):
            np_dtype = np.float32 if e.kind == "F32" else np.float16
            writer.add_tensor_info(e.name, e.stored_shape, np.dtype(np_dtype), numel * np.dtype(np_dtype).itemsize)
            continue
        row = e.stored_shape[-1]
        if e.kind == "BF16":
            values, nbytes = 1, 2
        else:
            values, nbytes = BLOCK_SIZES[e.kind]
        byte_shape = (*e.stored_shape[:-1], row // values * nbytes)
        writer.add_tensor_info(e.name, byte_shape, np.dtype(np.uint8), numel // values * nbytes,
                               raw_dtype=GGMLQuantizationType[e.kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for e in entries:
        check_interrupt()
        writer.write_tensor_data(_gguf_array(source, e, device))
    writer.close()
    os.replace(tmp, dst)


def convert_checkpoint(src, dst, to: str, config: dict | None = None, device: str = "cpu") -> list[Entry]:
    """Convert checkpoint `src` to `dst` (.safetensors or .gguf) storing weights as `to`; returns the plan."""
    if to not in TARGETS:
        raise InputError(f"--to {to!r} is not one of {', '.join(TARGETS)}")
    dst = os.fspath(dst)
    gguf = dst.lower().endswith(".gguf")
    if not gguf and not dst.lower().endswith(".safetensors"):
        raise InputError(f"output {dst} must end in .safetensors or .gguf")
    if gguf and to.startswith("fp8"):
        raise InputError(f"GGUF has no fp8 type: write {to} to a .safetensors file")
    if not gguf and isinstance(TARGETS[to], str):
        raise InputError(f"{to} is a GGUF block format: write it to a .gguf file")
    source = open_source(src)
    try:
        entries = plan(source, to, gguf)
        meta = _metadata(source, config)
        write = _write_gguf if gguf else _write_safetensors
        write(source, entries, dst, meta, torch.device(device))
    finally:
        source.close()
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m seedvr2_core.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="checkpoint to read (.pth, .safetensors, .gguf)")
    parser.add_argument("output", help="file to write (.safetensors or .gguf)")
    parser.add_argument("--to", required=True, choices=sorted(TARGETS), help="storage format of the weights")
    parser.add_argument("--config", help="JSON of official DiT config fields to store as seedvr2_config metadata")
    parser.add_argument("--device", default="cpu", help="device that quantises (cuda is much faster for q4_k)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = json.loads(args.config) if args.config else None
        if config is not None and not isinstance(config, dict):
            raise InputError("--config must be a JSON object of config fields")
        entries = convert_checkpoint(args.input, args.output, args.to, config, args.device)
    except json.JSONDecodeError as e:
        print(f"error: --config is not valid JSON ({e})", file=sys.stderr)
        return 2
    except SeedVR2Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    kinds = Counter(str(e.kind).removeprefix("torch.") for e in entries)
    log.info("wrote %s: %d tensors (%s), %.1f MiB", args.output, len(entries),
             ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), os.path.getsize(args.output) / 2**20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
