"""What one `seedvr2` command does: check the input, the output and the models (fast, before anything
heavy), then restore batch by batch into a resumable job (jobs.py) and assemble the output.

Ctrl-C and SIGTERM ask for a stop: it happens at the next check between pipeline stages (host
`interrupt_checks`), so every finished batch is committed and `--resume` continues from there. A second
Ctrl-C stops at once (the work folder stays consistent: each commit ends in an atomic rename).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from . import host
from .dit.loader import load_dit
from .download import download_file
from .errors import InputError, ProcessingInterrupted
from .jobs import Job, OutputTarget, file_fingerprint, input_fingerprint
from .memory_options import AUTO, MemoryOptions
from .models_dir import ModelNotFoundError, find_dit, find_embedding, find_vae, model_folders
from .pipeline import RestoreOptions, restore_stream
from .runtime import Runtime
from .residency import resolve_device
from .sizing import plan_size
from .text import find_text_embedding
from .vae import load_vae
from .video_io import IMAGE_ENCODERS, MediaInfo, probe, read_frames
from .video_mux import VIDEO_FORMATS, VideoSettings, check_audio_fits, even_size

log = logging.getLogger("seedvr2")

EXIT_INTERRUPTED = 130
MAX_DOWNLOADS = 3  # DiT, VAE, text embedding


@dataclass(frozen=True)
class ModelPaths:
    dit: Path
    vae: Path
    embedding: Path | None  # None: baked into the DiT file


def locate_models(args: argparse.Namespace) -> ModelPaths:
    """The model files `args` ask for; with --download, missing official files are fetched first."""
    folders = model_folders(args.models_dir)
    for _ in range(MAX_DOWNLOADS + 1):
        try:
            dit, entry = find_dit(args.model, folders)
            vae = find_vae(args.vae, dit, folders, entry)
            return ModelPaths(dit, vae, find_embedding(dit, folders, entry))
        except ModelNotFoundError as missing:
            if not args.download or missing.entry is None:
                raise
            download_file(missing.entry.repo_id, missing.filename, folders[0])
    raise AssertionError("a downloaded file was still not found")


def _default_output(info: MediaInfo, image_format: str) -> Path:
    stem = info.path.name if info.kind == "images" else info.path.stem
    if info.kind == "images":
        return info.path.parent / f"{stem}_seedvr2"
    if info.kind == "image":
        return info.path.with_name(f"{stem}_seedvr2.{image_format}")
    suffix = info.path.suffix if info.path.suffix.lower() in VIDEO_FORMATS else ".mp4"
    return info.path.with_name(f"{stem}_seedvr2{suffix}")


def _frame_stems(info: MediaInfo) -> tuple[str, ...] | None:
    stems = tuple(p.stem for p in info.files)
    return stems if stems and len(set(stems)) == len(stems) else None  # a.png + a.jpg: number them instead


def resolve_output(output: str | None, info: MediaInfo, image_format: str) -> OutputTarget:
    """The output the user named (or the default next to the input) as an OutputTarget."""
    path = Path(output).expanduser() if output else _default_output(info, image_format)
    if path.resolve() == info.path.resolve():
        raise InputError(f"output {path} is the input: pick another output path")
    suffix = path.suffix.lower()
    folder = path.is_dir() or (output or "").endswith(("/", os.sep)) or (info.kind == "images" and not output)
    if folder or not suffix:
        return OutputTarget(path, "images", "." + image_format, _frame_stems(info))
    if suffix in VIDEO_FORMATS:
        return OutputTarget(path, "video")
    if suffix in IMAGE_ENCODERS:
        if info.kind == "video" or info.frames != 1:
            raise InputError(f"output {path} is one image but the input has {info.frames or 'many'} frames: "
                             f"give a folder (a path without suffix) or a video ({', '.join(VIDEO_FORMATS)})")
        return OutputTarget(path, "image", suffix)
    raise InputError(f"output {path}: unknown type {suffix}; use a video ({', '.join(VIDEO_FORMATS)}), "
                     f"an image ({', '.join(IMAGE_ENCODERS)}) or a folder (end the path with /)")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return resolve_device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None


def memory_options(args: argparse.Namespace, device: torch.device) -> MemoryOptions | None:
    """The memory plan's options, or None to run the models where they are loaded: the default on the CPU
    (host RAM, no plan needed) unless a memory option is given."""
    given = args.vram_budget is not None or args.blocks_to_swap != AUTO or args.vae_tile != AUTO
    if device.type == "cpu" and not given:
        return None
    if device.type == "cpu" and args.blocks_to_swap != AUTO:
        log.warning("--blocks-to-swap has no effect on the CPU: the weights already live in host memory")
    return MemoryOptions(budget=args.vram_budget, blocks_to_swap=args.blocks_to_swap, vae_tile=args.vae_tile)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


class StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a stop at the next interrupt check; a second one stops now."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nseedvr2: stopping after the current step (Ctrl-C again to stop now)", file=sys.stderr)

    def check(self) -> None:
        if self.requested:
            raise ProcessingInterrupted("stopped by the user")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within this scope, SIGINT and SIGTERM request a stop between pipeline stages."""
    stop = StopRequest()
    previous = {s: signal.signal(s, stop.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with host.interrupt_checks(stop.check):
            yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fingerprint(info: MediaInfo, target: OutputTarget, models: ModelPaths, options: RestoreOptions,
                 video: VideoSettings | None, device: torch.device, dtype: torch.dtype,
                 memory: MemoryOptions | None) -> dict:
    """Everything the output depends on: a resumed run must match it exactly."""
    return {
        "input": input_fingerprint(info),
        "models": {"dit": file_fingerprint(models.dit), "vae": file_fingerprint(models.vae),
                   "embedding": file_fingerprint(models.embedding) if models.embedding else None},
        "options": {"size": options.size.describe(), "batch_size": options.batch_size, "overlap": options.overlap,
                    "color_fix": options.color_fix, "seed": options.seed, "device": device.type, "dtype": str(dtype),
                    "memory": None if memory is None else repr(memory)},  # the plan may change the batch size
        "output": {"kind": target.kind, "suffix": target.suffix if target.kind != "video" else target.path.suffix,
                   "video": None if video is None else [str(video.fps), video.crf, video.preset, video.rotation]},
    }


def restore_job(job: Job, info: MediaInfo, models: ModelPaths, options: RestoreOptions, device: torch.device,
                dtype: torch.dtype, memory: MemoryOptions | None, quiet: bool) -> None:
    """Restore the frames from the job's next frame on, committing each batch."""
    frames = read_frames(info, job.next_frame)
    first = next(frames, None)
    if first is None:
        if job.next_frame == 0:
            raise InputError(f"{info.path} holds no frames")
        return  # every frame was committed before the previous run stopped
    home = device if memory is None else torch.device("cpu")  # under a plan, the runtime places the weights
    dit = load_dit(models.dit, device=home, dtype=dtype)
    vae = load_vae(models.vae, device=home, dtype=dtype)
    text = find_text_embedding([models.embedding.parent] if models.embedding else [], dit)
    runtime = Runtime(dit, vae, device, memory)
    state = job.state()
    bar = tqdm(total=info.frames, initial=state.next_frame, unit="frame", desc="SeedVR2", disable=quiet,
               dynamic_ncols=True)
    with bar, logging_redirect_tqdm(), stop_on_signals(), runtime:
        chunks = restore_stream(itertools.chain([first], frames), dit, vae, text, options, state=state, runtime=runtime)
        for chunk in chunks:
            job.commit(chunk.numpy(), state)
            bar.update(state.next_frame - bar.n)


def _warn_odd_size(height: int, width: int) -> None:
    if (height, width) != even_size(height, width):
        even_h, even_w = even_size(height, width)
        log.warning("output size %dx%d is odd; H.264 needs even sides, so the video is %dx%d with the last "
                    "row/column repeated (write a folder of images for the exact size)", width, height, even_w, even_h)


def run(args: argparse.Namespace, options: RestoreOptions) -> int:
    """Carry out one command; returns the exit status (errors are raised as SeedVR2Error)."""
    if args.input is None:
        models = locate_models(args)
        log.info("models ready: %s, %s, %s", models.dit, models.vae, models.embedding or "embedding in the DiT")
        return 0
    info = probe(args.input)
    log.info("input %s: %s", info.path, info.describe())
    target = resolve_output(args.output, info, args.image_format)
    plan = plan_size(options.size, info.height, info.width)  # an impossible size fails here, before loading
    video = None
    if target.kind == "video":
        check_audio_fits(info.audio, target.path)
        _warn_odd_size(*plan.output_hw)
        video = VideoSettings(info.fps or args.fps, args.crf, args.preset, info.rotation)
    elif info.audio:
        log.warning("the input's audio is not kept: the output is images")
    models = locate_models(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    memory = memory_options(args, device)
    fingerprint = _fingerprint(info, target, models, options, video, device, dtype, memory)
    job = Job.open(target, fingerprint, video, args.resume, args.overwrite)
    if job is None:
        return 0
    try:
        if not job.complete:
            if job.next_frame:
                log.info("resuming at frame %d from %s", job.next_frame, job.work)
            restore_job(job, info, models, options, device, dtype, memory, args.quiet)
            job.mark_complete()
        job.finish(info.path if info.kind == "video" and info.audio else None)
    except (ProcessingInterrupted, KeyboardInterrupt):
        print(f"seedvr2: stopped; {job.next_frame} finished frames are kept in {job.work}: run the same "
              "command with --resume to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        job.close()
    log.info("wrote %s", target.path)
    return 0
