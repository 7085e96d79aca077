"""The codec: ``encode``, ``decode``, ``info``, ``models``, ``demo``."""

from __future__ import annotations

import argparse
import json
import sys

from satcodec.cli.export import add_runtime_options
from satcodec.cli.options import (
    STDIO,
    add_command,
    add_output,
    input_path,
    output_path,
    progress,
    say,
)


def cmd_encode(a: argparse.Namespace) -> int:
    from satcodec.api import encode_file

    with input_path(a.input, ".tif") as src, output_path(a.output, ".satc") as dst:
        r = encode_file(
            src,
            dst,
            bit_depth=a.bit_depth,
            bpp=a.bpp,
            max_bpp=a.max_bpp,
            quality=a.quality,
            model=a.model,
            tile=a.tile,
            progress=progress(a, "encode"),
            runtime=a.runtime,
            precision=a.precision,
            export_dir=a.export_dir,
            threads=a.threads,
            channel_context=not a.per_channel_entropy,
            overwrite=a.overwrite,
            max_encoder_macs=a.max_encoder_macs,
            spectral=a.spectral,
            normalisation=a.normalisation,
            deadzone=a.deadzone,
        )
    name = "<stdout>" if a.output == STDIO else r.path
    say(
        a,
        f"{name}: {r.bytes} bytes, {r.bpp:.4f} bpp, step {r.quant_step:.4f}, "
        f"model {r.model} ({r.model_id}), {r.tiles} tiles"
        + (", bands coded jointly (KLT)" if r.spectral else ""),
    )
    if r.bands > 1 and not r.spectral:
        say(
            a,
            f"note: {r.bands} bands coded one by one; --spectral klt codes them jointly "
            "(-33 % BD-rate on the multi-band dev scenes, bench/results/rd.md)",
        )
    return 0


def cmd_decode(a: argparse.Namespace) -> int:
    from satcodec.api import decode_file

    with input_path(a.input, ".satc") as src, output_path(a.output, ".tif") as dst:
        r = decode_file(
            src,
            dst,
            allow_damaged=a.allow_damaged,
            model=a.model,
            progress=progress(a, "decode"),
            runtime=a.runtime,
            precision=a.precision,
            export_dir=a.export_dir,
            threads=a.threads,
            overwrite=a.overwrite,
        )
    name = "<stdout>" if a.output == STDIO else r.path
    say(a, f"{name}: {r.bands}x{r.height}x{r.width}")
    for b, row, col in r.damaged_tiles:
        print(
            f"warning: tile (band {b}, row {row}, col {col}) is damaged and written as nodata",
            file=sys.stderr,
        )
    return 1 if r.damaged_tiles else 0


def cmd_info(a: argparse.Namespace) -> int:
    from satcodec.api import describe

    with input_path(a.input, ".satc") as src:
        info = describe(src)
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            if k == "metadata":
                v = ", ".join(sorted(v)) or "-"
            print(f"{k:16s} {v}")
    return 1 if info["damaged_tiles"] else 0


def cmd_models(a: argparse.Namespace) -> int:
    from satcodec.codec.models import complexity
    from satcodec.codec.registry import list_models, load_model

    rows = []
    for info in list_models():
        c, m = complexity(load_model(info.path)[0]), info.meta
        rows.append(
            f"{info.name:20s} {info.model_id}  λ={m.get('lmbda', '?'):<7} "
            f"steps={m.get('steps', '?'):<6} stride {info.config.downsampling:<2} "
            f"M={info.config.latent:<3} native≈{m.get('native_bpp', float('nan')):.2f} bpp  "
            f"enc {c['encoder_mac_per_pixel'] / 1e3:.1f}k MAC/px "
            f"{c['encoder_params'] / 1e3:.0f}k params  "
            f"dec {c['decoder_mac_per_pixel'] / 1e3:.1f}k MAC/px"
        )
    print("\n".join(rows) if rows else "no models installed")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from satcodec.demo import run_demo

    run_demo(a.image, bpp=a.bpp, model=a.model)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    e = add_command(
        sub,
        "encode",
        cmd_encode,
        "compress a GeoTIFF into a satcodec bitstream",
        epilog="'-' as INPUT reads the GeoTIFF from standard input; '-o -' writes the "
        "bitstream to standard output (then messages go to standard error).",
    )
    e.add_argument("input", help="GeoTIFF ('-': standard input)")
    add_output(e, "bitstream file", stdout=True)
    rate = e.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, help="target bits per pixel (within ±3%%)")
    rate.add_argument("--max-bpp", type=float, help="never exceed this many bits per pixel")
    rate.add_argument(
        "--quality", type=float, help="fixed quality 0-100 (50 = model's native point)"
    )
    e.add_argument("--model", help="shipped model name or weights path (default: nearest the rate)")
    e.add_argument(
        "--max-encoder-macs",
        type=float,
        metavar="MACS",
        help="without --model: choose among models whose analysis costs at most MACS per pixel "
        "(e.g. 4000: the fast encoders)",
    )
    e.add_argument("--tile", type=int, default=512, help="tile size in pixels (multiple of 16)")
    e.add_argument(
        "--bit-depth", type=int, help="override the bit depth (default: NBITS or inferred)"
    )
    e.add_argument(
        "--per-channel-entropy",
        action="store_true",
        help="code each latent channel with one scale (no cross-channel context): 0.5-15%% more "
        "bits, for readers that predate bitstream flag 0x0001",
    )
    e.add_argument(
        "--spectral",
        choices=["klt"],
        help="multispectral scenes: code a Karhunen-Loeve transform of the bands instead of "
        "the bands (bitstream flag 0x0002; bench/results/spectral.md)",
    )
    e.add_argument(
        "--normalisation",
        choices=["texture", "bit-depth"],
        default="texture",
        help="divide each band by the peak that brings its texture to the amplitude the models "
        "code best (default; bitstream flag 0x0004 when that is not the bit depth's peak; "
        "bench/results/band_peaks.md), or by 2^bit_depth - 1 (streams readers before flag "
        "0x0004 decode)",
    )
    e.add_argument(
        "--deadzone",
        type=float,
        default=None,
        metavar="STEPS",
        help="quantiser deadzone in steps, -0.5 to 0.5, at every step (negative rounds "
        "magnitudes up; default for codec models: -0.06 to 0.12 growing with the step, 0-5%% fewer bits at equal PSNR, "
        "bench/results/quantiser_offsets.md; 0: plain rounding, the streams of earlier "
        "versions); the decoder is the same either way",
    )
    add_runtime_options(e)

    d = add_command(
        sub,
        "decode",
        cmd_decode,
        "decode a bitstream into a GeoTIFF",
        epilog="'-' as INPUT reads the bitstream from standard input; '-o -' writes the GeoTIFF "
        "to standard output. Exit status 1: damaged tiles written as nodata (--allow-damaged).",
    )
    d.add_argument("input", help="bitstream file ('-': standard input)")
    add_output(d, "GeoTIFF", stdout=True)
    d.add_argument(
        "--allow-damaged",
        action="store_true",
        help="write damaged tiles (and those a truncated stream lacks) as nodata instead of "
        "failing; exit status 1 when there were any",
    )
    d.add_argument("--model", help="weights path if the model is not shipped")
    add_runtime_options(d)

    i = add_command(
        sub,
        "info",
        cmd_info,
        "describe a bitstream and check every tile's CRC",
        epilog="Exit status 1: some tile is damaged or missing (listed as damaged_tiles).",
    )
    i.add_argument("input", help="bitstream file ('-': standard input)")
    i.add_argument("--json", action="store_true", help="one JSON object")

    add_command(sub, "models", cmd_models, "list the shipped models")

    demo = add_command(
        sub, "demo", cmd_demo, "encode+decode the shipped Pleiades crop, compare with JPEG 2000"
    )
    demo.add_argument("--image", help="GeoTIFF to use instead of the shipped sample")
    demo.add_argument("--bpp", type=float, default=1.5)
    demo.add_argument("--model")
