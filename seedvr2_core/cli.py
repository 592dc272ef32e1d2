"""The `seedvr2` command line (also `python -m seedvr2_core`): restore a video, an image or a folder of
images with SeedVR2. This module reads the options and reports errors; `cli_run` does the work.

Exit status: 0 done, 1 a user error (one line naming the file or value and what to do; `--debug` adds
the traceback), 2 bad usage (argparse), 130 stopped by Ctrl-C / SIGTERM (finished batches are kept for
`--resume`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from fractions import Fraction
from pathlib import Path

from .cli_run import run
from .color import COLOR_METHODS
from .errors import InputError, SeedVR2Error
from .memory_options import AUTO, parse_blocks_to_swap, parse_budget, parse_vae_tile
from .models_dir import DEFAULT_MODEL, ENV_VAR, MODELS
from .pipeline import OFFICIAL_SEED, RestoreOptions
from .sizing import FITS, SizeRequest
from .video_io import IMAGE_ENCODERS
from .video_mux import DEFAULT_CRF, DEFAULT_PRESET, VIDEO_FORMATS

log = logging.getLogger("seedvr2")

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DTYPES = ("auto", "float32", "float16", "bfloat16")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
EXAMPLES = """examples:
  seedvr2 in.mp4 -o out.mp4 --resolution 1080
  seedvr2 photo.jpg -o photo_restored.png --scale 2 --model seedvr2-7b
  seedvr2 frames/ -o restored/ --batch-size 5
  seedvr2 long.mp4 -o out.mp4 --resolution 1080 --vram-budget 8GiB
  seedvr2 --download --model seedvr2-3b          (fetch and verify the model files only)
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def _crf(text: str) -> int:
    value = _non_negative_int(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f"{text} is above 51, the largest H.264 CRF")
    return value


def _positive_fraction(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 24, 29.97 or 30000/1001)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def _area(text: str) -> int:
    """'1280x720' or a pixel count -> pixels."""
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give WIDTHxHEIGHT (e.g. 1280x720) or a pixel count")
    return numbers[0] * (numbers[1] if len(numbers) == 2 else 1)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"DiT: a file, or a name looked up in the models folder ({', '.join(MODELS)}; "
                            f"default {DEFAULT_MODEL})")
    group.add_argument("--vae", help="VAE file (default: ema_vae.pth or ema_vae_fp16.safetensors next to the "
                                     "model or in the models folder)")
    group.add_argument("--models-dir", type=Path,
                       help=f"folder with the model files (default: ${ENV_VAR}, the models/SEEDVR2 of the "
                            "ComfyUI this pack is in, ./models/SEEDVR2)")
    group.add_argument("--download", action="store_true",
                       help="fetch missing official files from Hugging Face into the models folder and check "
                            "their SHA-256")


def _add_size_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output size (default: the input size)")
    group.add_argument("--resolution", type=_positive_int, metavar="N",
                       help="short side in pixels, e.g. 1080 (the long side keeps the aspect ratio)")
    group.add_argument("--max-resolution", type=_positive_int, metavar="N",
                       help="cap the long side (with --resolution, --scale or alone)")
    group.add_argument("--width", type=_positive_int, help="width in pixels (alone: the height follows)")
    group.add_argument("--height", type=_positive_int, help="height in pixels (alone: the width follows)")
    group.add_argument("--scale", type=_positive_fraction, help="factor for both sides, e.g. 2")
    group.add_argument("--area", type=_area, metavar="WxH",
                       help="official SeedVR2 resize to this many pixels, e.g. 1280x720 (with --fit crop: "
                            "exactly the official pipeline)")
    group.add_argument("--fit", choices=FITS, default="pad",
                       help="reach multiples of 16 by padding (exact size, default) or by centre-cropping")


def _add_processing_options(parser: argparse.ArgumentParser) -> None:
    defaults = RestoreOptions()
    group = parser.add_argument_group("processing")
    group.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size,
                       help=f"frames restored together (default {defaults.batch_size}; 4n+1 avoids padding)")
    group.add_argument("--overlap", type=_non_negative_int, default=defaults.overlap,
                       help=f"frames shared and crossfaded by consecutive batches (default {defaults.overlap})")
    group.add_argument("--color-fix", choices=COLOR_METHODS, default=defaults.color_fix,
                       help=f"colour correction against the input (default {defaults.color_fix})")
    group.add_argument("--seed", type=int, default=OFFICIAL_SEED, help=f"noise seed (default {OFFICIAL_SEED})")
    group.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda, cuda:1, ...")
    group.add_argument("--dtype", choices=DTYPES, default="auto",
                       help="compute precision (auto: bfloat16 on a GPU, float32 on the CPU)")
    group.add_argument("--threads", type=_positive_int,
                       help="CPU threads for PyTorch (default: its own choice; 1 is often fastest on a busy machine)")


def _parsed(parse):
    """An argparse type from one of memory_options' parsers (their InputError becomes a usage error)."""

    def convert(text: str):
        try:
            return parse(text)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_").replace("_", " ")
    return convert


def _add_memory_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "memory (on a GPU a plan is picked for the free VRAM; on the CPU only when one of these is given)")
    group.add_argument("--vram-budget", type=_parsed(parse_budget), default=None, metavar="SIZE",
                       help="memory the run may use at its peak, weights included, e.g. 8GiB or 7.5G "
                            "(default auto: 90%% of the free VRAM)")
    group.add_argument("--blocks-to-swap", type=_parsed(parse_blocks_to_swap), default=AUTO, metavar="N",
                       help="DiT blocks kept in host memory and streamed to the GPU: auto (default), all, or a count")
    group.add_argument("--vae-tile", type=_parsed(parse_vae_tile), default=AUTO, metavar="PX",
                       help="VAE tiling: auto (default), off, 512 (exact tiles), 512:tile (independent tiles, "
                            "any size fits), 512:tile:96 (with 96 px overlap)")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--crf", type=_crf, default=DEFAULT_CRF, metavar="0-51",
                       help=f"H.264 quality, lower is better, 0 lossless (default {DEFAULT_CRF})")
    group.add_argument("--preset", choices=X264_PRESETS, default=DEFAULT_PRESET,
                       help=f"H.264 speed/size trade-off (default {DEFAULT_PRESET})")
    group.add_argument("--fps", type=_positive_fraction, default=Fraction(24),
                       help="frame rate of a video made from images (default 24)")
    group.add_argument("--image-format", choices=[s[1:] for s in IMAGE_ENCODERS], default="png",
                       help="file type of the frames when the output is a folder (default png)")
    group.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last finished batch")
    group.add_argument("-y", "--overwrite", action="store_true",
                       help="replace an existing output and discard an unfinished run")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    group.add_argument("--debug", action="store_true", help="debug logging, and tracebacks with errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `seedvr2`."""
    parser = argparse.ArgumentParser(
        prog="seedvr2", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Restore and upscale videos and images with SeedVR2 (one-step diffusion).")
    parser.add_argument("input", nargs="?", help="video file, image file, or folder of images")
    parser.add_argument("-o", "--output", help=f"video ({', '.join(VIDEO_FORMATS)}), image file, or folder "
                                               "(default: next to the input, named *_seedvr2)")
    for add in (_add_model_options, _add_size_options, _add_processing_options, _add_memory_options,
                _add_output_options):
        add(parser)
    return parser


def size_request(args: argparse.Namespace) -> SizeRequest:
    """The SizeRequest the size options ask for (InputError for conflicting options)."""
    return SizeRequest(short_side=args.resolution, long_side_max=args.max_resolution, width=args.width,
                       height=args.height, scale=None if args.scale is None else float(args.scale),
                       area=args.area, fit=args.fit)


def restore_options(args: argparse.Namespace) -> RestoreOptions:
    return RestoreOptions(size=size_request(args), batch_size=args.batch_size, overlap=args.overlap,
                          color_fix=args.color_fix, seed=args.seed)


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s" if not args.debug else "%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.input is None and not args.download:
        parser.error("give an input (video, image or folder), or --download to fetch the models only")
    _setup_logging(args)
    try:
        return run(args, restore_options(args))
    except SeedVR2Error as e:
        if args.debug:
            traceback.print_exc()
        print(f"seedvr2: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # disk full, no permission, ...: the OS message names the file
        if args.debug:
            traceback.print_exc()
        print(f"seedvr2: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("seedvr2: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
