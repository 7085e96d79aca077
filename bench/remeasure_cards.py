"""Re-measure the rate–distortion table and native rate of every shipped codec model card.

``satcodec ship codec`` measures a model once, when it is shipped, with the encoder of that
day. When the encoder changes what it writes for the same weights (band normalisation by
texture, bitstream flag 0x0004), the cards' tables go stale. This re-runs the card's
measurement — each held-out scene at each rate, the model forced, real bitstreams, PSNR on
the scene's bit depth, JPEG 2000 (OpenJPEG) at the same file rate — with today's default
encoder and rewrites the card's table and native-rate line in place. The weights' tensors, and
so the model ids, are left alone; with ``--rd`` the ``rd`` metadata the ladder picks models
by is rewritten from the new table (the ids checked unchanged), else it is left alone too.

    python bench/remeasure_cards.py --data ../shared/data/sat [--models NAME ...] [--rd]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "satcodec" / "models"
TABLE_HEAD = "| scene | target bpp | file bpp | satcodec PSNR dB | JPEG 2000 PSNR dB (same rate) |"


def remeasure(card: Path, data: Path) -> str:
    """The card's text with its held-out table and native rate measured again."""
    from satcodec.api import decode, encode
    from satcodec.errors import RateControlError
    from satcodec.evaluation.anchors import jpeg2000_at_bpp
    from satcodec.metrics import bits_per_pixel, psnr
    from satcodec.raster import open_raster

    text = card.read_text()
    lines = text.splitlines()
    start = lines.index(TABLE_HEAD)
    end = start + 2
    while end < len(lines) and lines[end].startswith("| "):
        end += 1
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[start + 2 : end]]
    weights = card.with_suffix(".safetensors")
    new_rows, native = [], {}
    for scene, rate, *_ in rows:
        with open_raster(data / scene) as r:
            arr, bits = r.read(), r.meta.bit_depth
        if scene not in native:
            native[scene] = bits_per_pixel(len(encode(arr, quality=50, model=weights)), arr.size)
        try:
            stream = encode(arr, bpp=float(rate), model=weights)
        except Exception as exc:  # noqa: BLE001 - out of this model's range, as when shipped
            new_rows.append(f"| {scene} | {rate} | – | out of range: {exc} | |")
            continue
        out, _ = decode(stream, model_paths=[weights])
        bpp = bits_per_pixel(len(stream), arr.size)
        try:
            j2k = f"{psnr(arr[0], jpeg2000_at_bpp(arr[0], bits, bpp).decoded, bits):.2f}"
        except RateControlError:
            j2k = "–"
        new_rows.append(f"| {scene} | {rate} | {bpp:.3f} | {psnr(arr, out, bits):.2f} | {j2k} |")
    lines[start + 2 : end] = new_rows
    text = "\n".join(lines) + "\n"
    text = re.sub(
        r"- native rate \(quality 50, quantisation step 1[^)]*\) on the held-out scenes: [0-9.]+ bpp",
        lambda m: (
            "- native rate (quality 50, quantisation step 1 at the bit depth's peak) on the "
            f"held-out scenes: {np.mean(list(native.values())):.3f} bpp"
        ),
        text,
    )
    note = (
        "Re-measured {} with the encoder's defaults (band normalisation by texture, bitstream "
        "flag 0x0004; the quantiser deadzone of each step, `step_deadzone`) by "
        "`python bench/remeasure_cards.py`; the weights, their id and the "
        "`rd` metadata the ladder picks models by are the shipping measurement's."
    ).format(time.strftime("%Y-%m-%d", time.gmtime()))
    text = re.sub(r"\nRe-measured [0-9-]+ with the encoder's default[^\n]*\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)  # one blank line where the old note was
    head = "## Rate–distortion on the held-out scenes (real bitstreams, PSNR peak 4095)\n"
    return text.replace(head, head + "\n" + note + "\n", 1)


def rd_of_card(text: str) -> list[list[float]]:
    """The card's held-out table as ``rd`` metadata: mean (file bpp, PSNR) per target rate
    (what ``satcodec ship codec`` stores)."""
    by_rate: dict[float, list[tuple[float, float]]] = {}
    for m in re.finditer(r"^\| [^|]+ \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", text, re.M):
        by_rate.setdefault(float(m.group(1)), []).append((float(m.group(2)), float(m.group(3))))
    return [
        [float(np.mean([b for b, _ in v])), float(np.mean([p for _, p in v]))]
        for _, v in sorted(by_rate.items())
    ]


def rewrite_rd(weights: Path, rd: list[list[float]]) -> None:
    """Replace the ``rd`` metadata of a weights file (atomically); its tensors, and so its
    model id, stay as they are (checked)."""
    from satcodec.codec.registry import load_model, save_model

    net, info = load_model(weights)
    new_id = save_model(weights, net, {**info.meta, "rd": rd})
    if new_id != info.model_id:
        raise SystemExit(f"{weights}: rewriting the metadata changed the id: not expected")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder of the dev rasters")
    p.add_argument("--models", nargs="*", help="card names (default: every shipped codec)")
    p.add_argument(
        "--rd",
        action="store_true",
        help="also rewrite the weights' rd metadata (the ladder picks models by it) from the "
        "new table; tensors and ids unchanged",
    )
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    from satcodec.shipping import write_card

    cards = [MODELS / f"{n}.md" for n in a.models] if a.models else sorted(MODELS.glob("*.md"))
    for card in cards:
        t0 = time.time()
        text = remeasure(card, a.data)
        if a.rd:
            rewrite_rd(card.with_suffix(".safetensors"), rd_of_card(text))
            text = text.replace(
                "the weights, their id and the `rd` metadata the ladder picks models by are the "
                "shipping measurement's.",
                "the weights and their id are the shipping measurement's, the `rd` metadata the "
                "ladder picks models by is this table's.",
            )
        write_card(card, text)
        print(f"{card.name}: {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
