"""Write a small corpus of real bitstreams (crops of the shipped Pleiades sample and of the
WorldView-3 test raster, 1 and 2 bands, several tile sizes, with nodata) for fuzzing.

``--bounded``: the corpus of the bounded-memory decoder campaign
(bench/results/fuzz_decoder_bounded.md, ``--out bench/results/fuzz_corpus_bounded``): the same
crops, also coded with the per-channel entropy model, and one 200x200 image in a single 512-px
tile -- all small, so a full decode of a mutant costs tens of milliseconds."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import satcodec
from satcodec.raster import open_raster

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "fuzz_corpus"))
    ap.add_argument(
        "--model", default=None, help="model name or path (default: shipped, nearest rate)"
    )
    ap.add_argument(
        "--bounded", action="store_true", help="the bounded-memory campaign's corpus (see above)"
    )
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open_raster(REPO / "satcodec" / "data" / "pleiades_ventoux.tif") as r:
        pleiades = r.read()
    with open_raster(REPO / "tests" / "data" / "worldview3_buenosaires_rpc.tif") as r:
        wv3, wv3_meta = r.read(), r.meta
    cases = {
        "pleiades_96_t64": (pleiades[:, :96, :96], dict(tile=64, bpp=1.0)),
        "pleiades_130x200_t64": (pleiades[:, 100:230, 50:250], dict(tile=64, bpp=2.0)),
        "wv3_rpc_128_t128": (
            wv3[:, :128, :128],
            dict(
                tile=128,
                quality=50,
                metadata=wv3_meta.to_json_dict() | {"height": 128, "width": 128},
            ),
        ),
        "two_band_nodata_80": (
            np.concatenate([pleiades[:, :80, :80], wv3[:, :80, :80]]),
            dict(tile=64, quality=40, nodata=0),
        ),
    }
    cases["two_band_nodata_80"][0][:, :20, :20] = 0
    if a.bounded:
        cases.pop("pleiades_130x200_t64")  # 12 tiles: slow to decode for every mutant
        cases["pleiades_200_t512"] = (pleiades[:, 150:350, 150:350], dict(tile=512, bpp=1.5))
        for name in ["pleiades_96_t64", "two_band_nodata_80"]:
            arr, kw = cases[name]
            cases[f"{name}_per_channel"] = (arr, dict(kw, channel_context=False))
    for name, (arr, kw) in cases.items():
        data = satcodec.encode(np.ascontiguousarray(arr), model=a.model, **kw)
        (out / f"{name}.satc").write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
