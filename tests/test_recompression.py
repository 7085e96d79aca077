"""Rasters decoded from an earlier 9/7-wavelet codestream: detection, and the one-pixel crop
that takes JPEG 2000's advantage on them away (satcodec.evaluation.recompression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from satcodec.evaluation import (
    grid_neutral_crop,
    load_image,
    wavelet_coded_images,
    wavelet_grid_signature,
)

DATA = Path(__file__).parent / "data"
WV3 = DATA / "worldview3_buenosaires_rpc.tif"  # a WorldView-3 product: carries the grid
VENTOUX = Path(__file__).parents[1] / "satcodec" / "data" / "pleiades_ventoux.tif"  # does not


def _band(path: Path) -> np.ndarray:
    return load_image(path)[0][0]


def test_a_wavelet_coded_product_is_flagged_on_its_grid_only() -> None:
    sig = wavelet_grid_signature(_band(WV3))
    assert sig.flagged
    assert sig.aligned == (0, 0)
    assert sig.zero_share[(0, 0)] > 0.2
    assert max(v for k, v in sig.zero_share.items() if k != (0, 0)) < 0.06
    # one row and one column off: JPEG 2000's grid (parity 0, 0) no longer sees the spike
    moved = wavelet_grid_signature(grid_neutral_crop(_band(WV3), sig))
    assert moved.aligned == (1, 1)
    assert moved.zero_share[(0, 0)] < 0.06


def test_natural_rasters_and_collars_are_not_flagged() -> None:
    band = _band(VENTOUX)
    assert not wavelet_grid_signature(band).flagged
    # a constant collar is zero at every parity: it must not look like a grid
    collared = band.copy()
    collared[:, : band.shape[1] // 2] = 0
    assert not wavelet_grid_signature(collared).flagged
    mask = collared != 0
    assert not wavelet_grid_signature(collared, mask).flagged
    # ... nor hide one: a wavelet-coded product with a collar is still found
    wv3 = _band(WV3).copy()
    wv3[: wv3.shape[0] // 2] = 0
    assert wavelet_grid_signature(wv3).flagged


def test_jpeg2000_of_wavelet_coded_data_is_favoured_on_the_grid_only() -> None:
    pytest.importorskip("imagecodecs")
    from satcodec.evaluation import jpeg2000_at_bpp
    from satcodec.metrics import psnr

    def gain(band: np.ndarray) -> float:
        """PSNR of JPEG 2000 at 3 bpp on the band as is, less one pixel off its grid."""
        crop = grid_neutral_crop(band, wavelet_grid_signature(band))
        out = []
        for x in (band, crop):
            r = jpeg2000_at_bpp(x, 11, 3.0)
            out.append(psnr(x, r.decoded, 11))
        return out[0] - out[1]

    assert gain(_band(WV3)) > 0.7  # measured 1.2 dB
    assert abs(gain(_band(VENTOUX))) < 0.3  # the same content either way


def test_the_evaluation_names_the_wavelet_coded_images() -> None:
    assert wavelet_coded_images([WV3, VENTOUX]) == [WV3.name]


def test_small_or_malformed_bands() -> None:
    assert not wavelet_grid_signature(np.zeros((8, 8), np.uint16)).flagged
    with pytest.raises(ValueError, match="one band"):
        wavelet_grid_signature(np.zeros((2, 64, 64), np.uint16))
    crop = grid_neutral_crop(np.zeros((3, 10, 12)), wavelet_grid_signature(np.zeros((40, 40))))
    assert crop.shape == (3, 9, 11)


def test_the_evaluation_report_notes_a_wavelet_coded_image() -> None:
    pytest.importorskip("imagecodecs")
    from satcodec.evaluation import run_evaluation

    text = run_evaluation([WV3], ["jpeg2000"], [1.0], progress=False)["text"]
    assert f"{WV3.name} look decoded from an earlier 9/7-wavelet codestream" in text
    assert (
        "9/7-wavelet" not in run_evaluation([VENTOUX], ["jpeg2000"], [1.0], progress=False)["text"]
    )


def test_large_bands_are_tested_on_a_crop_with_the_same_parities() -> None:
    band = _band(WV3)
    big = np.tile(band, (3, 3))  # 1500 x 1500: cropped; the tiles keep the grid at (0, 0)
    sig = wavelet_grid_signature(big)
    assert sig.flagged and sig.aligned == (0, 0)
    odd = wavelet_grid_signature(big[1:, 1:])
    assert odd.flagged and odd.aligned == (1, 1)
    with pytest.raises(ValueError, match="mask shape"):
        wavelet_grid_signature(band, np.ones((3, 3), bool))
