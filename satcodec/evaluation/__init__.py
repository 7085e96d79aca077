"""Rate–distortion evaluation: real bitstreams, PSNR and MS-SSIM on the sensor range, BD metrics.

One module per concept:

* :mod:`.bd` -- :func:`bd_rate` / :func:`bd_psnr` / :func:`bd_overlap`, Bjøntegaard deltas
  (VCEG-M33, PCHIP or cubic) between two RD curves, over their common range only;
* :mod:`.msssim` -- :func:`ms_ssim`, multi-scale SSIM (Wang et al. 2003) for 8–16-bit
  single-band images with the sensor peak ``2**bits - 1`` as the dynamic range, optionally
  masked; :func:`msssim_db`;
* :mod:`.images` -- :func:`load_image`, :func:`valid_mask` (nodata excluded from distortion),
  :func:`band_quality` (PSNR and MS-SSIM of one band);
* :mod:`.anchors` -- JPEG 2000 (OpenJPEG) and JPEG XL rate-matched by bisection on the real
  file size (:func:`jpeg2000_at_bpp`, :func:`jpegxl_at_bpp`), and the on-disk
  :class:`AnchorCache` of their points;
* :mod:`.run` -- :func:`evaluate` (every image × codec × target rate, real file sizes) and
  :func:`run_evaluation` (evaluate, report, CSV and plot: what ``satcodec eval`` runs);
* :mod:`.recompression` -- :func:`wavelet_grid_signature` (does a raster carry the grid of an
  earlier 9/7-wavelet coder, which favours JPEG 2000 on it?) and :func:`grid_neutral_crop`;
* :mod:`.report` -- :func:`bd_table`, :func:`write_csv` / :func:`read_csv`,
  :func:`format_table`, :func:`plot_rd`, :func:`report`;
* :mod:`.peer_hyperprior` -- the full-complexity peer (Ballé et al. 2018 scale hyperprior) the
  reduced model is compared with; not re-exported here (it loads torch and the codec's layers).

Conventions (documented once, used everywhere):

* Rate is the **real file size**: ``8 * len(bitstream) / (bands * H * W)`` bits per pixel and
  band. No likelihoods. Multi-band anchors code each band alone; their sizes are summed.
* Distortion is measured per band and then averaged over bands (PSNR in dB, MS-SSIM linear).
  PSNR uses :func:`satcodec.metrics.psnr` with peak ``2**bit_depth - 1`` where ``bit_depth``
  is the raster's (``open_raster(path).meta.bit_depth``: NBITS tag when plausible, else the
  bits the data use rounded up to an even width).
* Nodata is excluded from distortion: pixels equal to the raster's nodata value in any band,
  or, without a nodata value, pixels that are 0 in every band when they are more than 1% of
  the image (the collars of rotated scenes). The rate still counts every pixel.
* BD metrics: natural log of the rate; piecewise cubic Hermite interpolation (PCHIP,
  Fritsch–Carlson, the default, as in JVET-style Bjøntegaard tools) or the original cubic
  polynomial fit of VCEG-M33 (``method="cubic"``). Integrals are taken over the
  **intersection** of the two curves' ranges only (no extrapolation); when the ranges do not
  overlap the result is NaN. BD-rate is ``exp(mean Δ ln R) − 1`` in percent: negative means
  the test codec needs fewer bits than the anchor for the same PSNR.

Importing this package is light (numpy only): torch, imagecodecs and matplotlib are imported
by the functions that need them, since every ``satcodec`` command builds the ``eval`` parser.
"""

from satcodec.evaluation.anchors import (
    ANCHORS,
    AnchorCache,
    AnchorResult,
    anchor_point,
    jpeg2000_at_bpp,
    jpegxl_at_bpp,
)
from satcodec.evaluation.bd import bd_overlap, bd_psnr, bd_rate
from satcodec.evaluation.images import band_quality, load_image, nan_mean, valid_mask
from satcodec.evaluation.msssim import MSSSIM_WEIGHTS, ms_ssim, msssim_db
from satcodec.evaluation.recompression import (
    WaveletGridSignature,
    grid_neutral_crop,
    wavelet_grid_signature,
)
from satcodec.evaluation.report import (
    LADDER,
    bd_summary,
    bd_table,
    curve_name,
    curves,
    format_table,
    mean_curves,
    plot_rd,
    points_table,
    read_csv,
    report,
    write_csv,
)
from satcodec.evaluation.run import (
    DEFAULT_BPPS,
    DEFAULT_CODECS,
    RATE_TOLERANCE,
    evaluate,
    model_bpp_range,
    run_evaluation,
    wavelet_coded_images,
)

__all__ = [
    "ANCHORS",
    "DEFAULT_BPPS",
    "DEFAULT_CODECS",
    "LADDER",
    "MSSSIM_WEIGHTS",
    "RATE_TOLERANCE",
    "AnchorCache",
    "AnchorResult",
    "WaveletGridSignature",
    "anchor_point",
    "band_quality",
    "bd_overlap",
    "bd_psnr",
    "bd_rate",
    "bd_summary",
    "bd_table",
    "curve_name",
    "curves",
    "evaluate",
    "format_table",
    "grid_neutral_crop",
    "jpeg2000_at_bpp",
    "jpegxl_at_bpp",
    "load_image",
    "mean_curves",
    "model_bpp_range",
    "ms_ssim",
    "msssim_db",
    "nan_mean",
    "plot_rd",
    "points_table",
    "read_csv",
    "report",
    "run_evaluation",
    "valid_mask",
    "wavelet_coded_images",
    "wavelet_grid_signature",
    "write_csv",
]
