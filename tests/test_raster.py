"""Tests for satcodec.raster: GeoTIFF reading/writing, metadata round trips, COG, errors.

Every raster is built here with rasterio (no external data files).
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.rpc import RPC
from rasterio.transform import Affine

from satcodec import raster
from satcodec.errors import RasterError, SatcodecError
from satcodec.raster import (
    RasterMeta,
    create_raster,
    infer_bit_depth,
    is_valid_cog,
    open_raster,
    write_cog,
    write_raster,
)

# rasterio warns about every raster without a geotransform (RPC/GCP imagery): expected here.
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM31 = CRS.from_epsg(32631)
TRANSFORM = Affine(0.5, 0.0, 440720.0, 0.0, -0.5, 3751320.0)

# RPC00B as GDAL reports it; ERR_BIAS 0 is deliberately there (rasterio's RPC.to_gdal drops it).
RPCS = {
    "ERR_BIAS": "0",
    "ERR_RAND": "0.33",
    "HEIGHT_OFF": "31",
    "HEIGHT_SCALE": "501",
    "LAT_OFF": "-34.5043",
    "LAT_SCALE": "0.0531",
    "LINE_OFF": "17495",
    "LINE_SCALE": "17996",
    "LONG_OFF": "-58.6024",
    "LONG_SCALE": "0.0803",
    "SAMP_OFF": "20749",
    "SAMP_SCALE": "21250",
    # real RPCs carry ~7 significant digits (GDAL itself keeps 15 when it reads the tag)
    "LINE_NUM_COEFF": " ".join(f"{0.0011 * (i + 1):.7g}" for i in range(20)),
    "LINE_DEN_COEFF": "1 " + " ".join(f"{1.3e-5 * i:.7g}" for i in range(1, 20)),
    "SAMP_NUM_COEFF": " ".join(f"{-0.0021 * (i + 1):.7g}" for i in range(20)),
    "SAMP_DEN_COEFF": "1 " + " ".join(f"{-3.1e-6 * i:.7g}" for i in range(1, 20)),
}


def make_tif(path, array, *, dtype=None, rpcs=None, gcps=None, tags=None, desc=None, **kw):
    """Write a GeoTIFF source with plain rasterio (what a user's input file looks like)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    profile = {
        "driver": "GTiff",
        "dtype": dtype or array.dtype.name,
        "count": array.shape[0],
        "height": array.shape[1],
        "width": array.shape[2],
    }
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array.astype(profile["dtype"]))
        if rpcs:
            ds.update_tags(ns="RPC", **rpcs)
        if gcps:
            ds.gcps = gcps
        if tags:
            ds.update_tags(**tags)
        for i, d in enumerate(desc or []):
            if d:
                ds.set_band_description(i + 1, d)
    return path


def rng_image(shape, hi, dtype="uint16", seed=0):
    return np.random.default_rng(seed).integers(0, hi + 1, size=shape).astype(dtype)


def listing(folder):
    return sorted(os.listdir(folder))


def meta_json(meta: RasterMeta) -> dict:
    d = meta.to_json_dict()
    d.pop("nbits_tag")  # describes the file (our writer adds NBITS), not the image
    return d


@pytest.fixture
def georef_tif(tmp_path):
    arr = rng_image((3, 40, 50), 1883)
    arr[:, :5, :5] = 0  # nodata corner
    return make_tif(
        tmp_path / "src.tif",
        arr,
        crs=UTM31,
        transform=TRANSFORM,
        nodata=0,
        tags={"AREA_OR_POINT": "Point", "SENSOR": "PHR1B", "ACQ": "2013-06-29"},
        desc=["red", None, "nir"],
    ), arr


# --- reading and metadata round trips --------------------------------------------------------
def test_open_reads_georeferenced_metadata(georef_tif):
    path, arr = georef_tif
    with open_raster(path) as r:
        m = r.meta
        assert (m.height, m.width, m.count, m.dtype) == (40, 50, 3, "uint16")
        assert m.bit_depth == 12  # max 1883 uses 11 bits -> even width 12
        assert m.nodata == 0.0
        assert CRS.from_wkt(m.crs_wkt) == UTM31
        assert m.transform == tuple(TRANSFORM)[:6]
        assert m.rpcs is None and m.gcps is None and m.gcps_crs_wkt is None
        assert m.descriptions == ["red", None, "nir"]
        assert m.tags == {"AREA_OR_POINT": "Point", "SENSOR": "PHR1B", "ACQ": "2013-06-29"}
        assert m.nbits_tag is None
        np.testing.assert_array_equal(r.read(), arr)
        np.testing.assert_array_equal(r.read(2), arr[2])


def test_write_roundtrip_keeps_everything(georef_tif, tmp_path):
    path, arr = georef_tif
    with open_raster(path) as r:
        meta, data = r.meta, r.read()
    out = tmp_path / "out" / "copy.tif"  # missing folder is created
    write_raster(out, data, meta)
    assert listing(out.parent) == ["copy.tif"]  # no temp file, no .aux.xml sidecar
    with open_raster(out) as r2:
        np.testing.assert_array_equal(r2.read(), arr)
        assert meta_json(r2.meta) == meta_json(meta)
        assert r2.meta.nbits_tag == 12  # bit depth travels as NBITS
    with rasterio.open(out) as ds:
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.compression.name == "deflate"


def test_rpc_roundtrip_exact(tmp_path):
    arr = rng_image((30, 20), 2047)
    src = make_tif(tmp_path / "rpc.tif", arr, rpcs=RPCS)
    with open_raster(src) as r:
        meta = r.meta
    assert meta.crs_wkt is None and meta.transform is None
    assert set(meta.rpcs) == set(RPCS)
    assert meta.rpcs["ERR_BIAS"] == "0.0" and meta.rpcs["LINE_OFF"] == "17495.0"
    for k, v in RPCS.items():  # canonical strings hold the very same doubles
        assert [float(t) for t in meta.rpcs[k].split()] == [float(t) for t in v.split()]
    RPC.from_gdal(meta.rpcs)  # usable by rasterio as is
    write_raster(tmp_path / "rpc2.tif", arr[None], meta)
    with open_raster(tmp_path / "rpc2.tif") as r2:
        assert r2.meta.rpcs == meta.rpcs
        assert meta_json(r2.meta) == meta_json(meta)


def test_gcp_roundtrip_exact(tmp_path):
    gcps = [
        GroundControlPoint(row=0.0, col=0.0, x=78.2039030529, y=10.7375483336, z=255.3),
        GroundControlPoint(row=0.0, col=49.5, x=78.5, y=10.75, z=0.0),
        GroundControlPoint(row=29.25, col=0.0, x=78.2, y=10.5, z=-12.125),
    ]
    arr = rng_image((30, 50), 2759)
    src = make_tif(tmp_path / "gcp.tif", arr, gcps=(gcps, CRS.from_epsg(4326)))
    with open_raster(src) as r:
        meta = r.meta
    assert meta.transform is None and meta.crs_wkt is None
    assert CRS.from_wkt(meta.gcps_crs_wkt) == CRS.from_epsg(4326)
    assert [(g["row"], g["col"], g["x"], g["y"], g["z"]) for g in meta.gcps] == [
        (g.row, g.col, g.x, g.y, g.z) for g in gcps
    ]
    assert [g["id"] for g in meta.gcps] == ["1", "2", "3"]  # GeoTIFF numbers its tiepoints
    write_raster(tmp_path / "gcp2.tif", arr[None], meta)
    with open_raster(tmp_path / "gcp2.tif") as r2:
        assert r2.meta.gcps == meta.gcps
        assert meta_json(r2.meta) == meta_json(meta)


def test_json_roundtrip(georef_tif, tmp_path):
    path, _ = georef_tif
    with open_raster(path) as r:
        meta = r.meta
    d = json.loads(json.dumps(meta.to_json_dict()))
    assert RasterMeta.from_json_dict(d) == meta
    rpc_meta = RasterMeta(10, 20, 1, "uint16", 12, rpcs=dict(RPCS), nbits_tag=12)
    back = RasterMeta.from_json_dict(json.loads(json.dumps(rpc_meta.to_json_dict())))
    assert back.rpcs["LAT_OFF"] == "-34.5043" and back.descriptions == [None]


def test_nbits_tag_is_trusted_and_written(tmp_path):
    arr = rng_image((20, 20), 3000)
    src = make_tif(tmp_path / "n.tif", arr, nbits=15)  # odd but plausible: kept as is
    with open_raster(src) as r:
        assert r.meta.nbits_tag == 15 and r.meta.bit_depth == 15
    meta = RasterMeta(20, 20, 1, "uint16", bit_depth=12)
    write_raster(tmp_path / "o.tif", arr[None], meta)
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "12"
    write_raster(tmp_path / "p.tif", arr[None], meta, nbits=False)
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert "NBITS" not in ds.tags(1, ns="IMAGE_STRUCTURE")
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
    with open_raster(tmp_path / "p.tif") as r:
        assert r.meta.bit_depth == 12  # recomputed from the data
    # GDAL would clamp values above the NBITS range: refused instead
    with pytest.raises(RasterError, match="bit_depth"):
        write_raster(tmp_path / "q.tif", np.full((1, 20, 20), 5000, "uint16"), meta)
    assert not (tmp_path / "q.tif").exists()


def test_int16_and_uint8(tmp_path):
    a16 = np.arange(-600, 600, dtype="int16").reshape(30, 40)
    with open_raster(make_tif(tmp_path / "s.tif", a16)) as r:
        assert r.meta.dtype == "int16" and r.meta.bit_depth == 12  # sign + 10 bits -> 12
        meta = r.meta
    write_raster(tmp_path / "s2.tif", a16[None], meta)
    with open_raster(tmp_path / "s2.tif") as r:
        np.testing.assert_array_equal(r.read(0), a16)
    a8 = rng_image((2, 10, 10), 30, "uint8")
    with open_raster(make_tif(tmp_path / "b.tif", a8)) as r:
        assert r.meta.bit_depth == 8


def test_bit_depth_override_and_nodata_excluded(tmp_path):
    arr = rng_image((30, 30), 1000)
    arr[0, :] = 65535  # fill value, not data
    src = make_tif(tmp_path / "f.tif", arr, nodata=65535)
    with open_raster(src) as r:
        assert r.meta.bit_depth == 10  # 1000 -> 10 bits; 65535 fill ignored
    with open_raster(src, bit_depth=14) as r:
        assert r.meta.bit_depth == 14
    with pytest.raises(RasterError):
        open_raster(src, bit_depth=17)


def test_scan_is_windowed(tmp_path, monkeypatch):
    arr = rng_image((2, 300, 270), 5000, seed=3)
    arr[1, 299, 269] = 9000  # max in the very last block of the last band
    src = make_tif(tmp_path / "big.tif", arr, tiled=True, blockxsize=64, blockysize=64)
    calls = []
    monkeypatch.setattr(raster, "_SCAN_BUDGET_BYTES", 64 * 64 * 2)  # one block per read
    orig = rasterio.io.DatasetReader.read

    def spy(self, *a, **k):
        calls.append(k.get("window"))
        return orig(self, *a, **k)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    with open_raster(src) as r:
        assert r.meta.bit_depth == 14
    assert len(calls) > 20 and all(w is not None and w.width * w.height <= 4096 for w in calls)


# --- bit depth rule --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, dtype, nbits, expected",
    [
        (0, "uint16", None, 8),
        (255, "uint16", None, 8),
        (256, "uint16", None, 10),  # 9 bits -> 10
        (1023, "uint16", None, 10),
        (2047, "uint16", None, 12),  # Pleiades/WorldView pan: 11 bits used -> 12
        (4095, "uint16", None, 12),
        (4096, "uint16", None, 14),  # 13 -> 14
        (16384, "uint16", None, 16),  # 15 -> 16
        (65535, "uint16", None, 16),
        (255, "uint8", None, 8),
        (2047, "uint16", 12, 12),
        (2047, "uint16", 11, 11),  # plausible tag wins even when odd
        (5208, "uint16", 15, 15),  # Sentinel-2 file tagged NBITS=15
        (5000, "uint16", 12, 14),  # tag below the data: ignored
        (100, "uint16", 17, 8),  # tag above the dtype: ignored
        (32767, "int16", None, 16),
    ],
)
def test_infer_bit_depth(value, dtype, nbits, expected):
    assert infer_bit_depth(value, dtype, nbits) == expected
    assert infer_bit_depth(np.array([[0, value]], dtype=dtype), dtype, nbits) == expected


def test_infer_bit_depth_arrays_and_errors():
    assert infer_bit_depth(np.array([-100, 1000], "int16"), "int16") == 12  # sign bit counted
    assert infer_bit_depth(np.array([-2048, 2047], "int16"), "int16") == 12
    assert infer_bit_depth(np.array([3, 60000], "uint16"), "uint16", nodata=60000) == 8
    assert infer_bit_depth(np.zeros((0, 4), "uint16"), "uint16") == 8
    with pytest.raises(RasterError):
        infer_bit_depth(300, "uint8")
    with pytest.raises(RasterError):
        infer_bit_depth(10, "float32")
    with pytest.raises(RasterError):
        infer_bit_depth(10.5, "uint16")


# --- boundless windows -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def window_src(tmp_path_factory):
    arr = rng_image((2, 37, 53), 4000, seed=7)
    path = make_tif(
        tmp_path_factory.mktemp("win") / "w.tif", arr, tiled=True, blockxsize=16, blockysize=16
    )
    return path, arr


PAD = 200  # covers every window the strategy draws


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    band=st.integers(0, 1),
    y0=st.integers(-70, 100),
    x0=st.integers(-70, 120),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
)
def test_read_window_matches_numpy_edge_pad(window_src, band, y0, x0, h, w):
    path, arr = window_src
    ref = np.pad(arr[band], PAD, mode="edge")[y0 + PAD : y0 + PAD + h, x0 + PAD : x0 + PAD + w]
    with open_raster(path, bit_depth=12) as r:
        got = r.read_window(band, y0, x0, h, w)
    assert got.shape == (h, w) and got.dtype == arr.dtype
    np.testing.assert_array_equal(got, ref)


def test_read_window_edge_cases(window_src):
    path, arr = window_src
    with open_raster(path, bit_depth=12) as r:
        np.testing.assert_array_equal(r.read_window(0, 0, 0, 37, 53), arr[0])
        np.testing.assert_array_equal(r.read_window(1, 5, 7, 3, 4), arr[1, 5:8, 7:11])
        assert r.read_window(0, 3, 3, 0, 5).shape == (0, 5)
        with pytest.raises(RasterError):
            r.read_window(2, 0, 0, 4, 4)
        with pytest.raises(RasterError):
            r.read_window(0, 0, 0, -1, 4)
    with pytest.raises(RasterError, match="closed"):
        r.read()


# --- errors ----------------------------------------------------------------------------------
def _assert_clean(exc_info, path):
    assert str(path) in str(exc_info.value)
    assert isinstance(exc_info.value, SatcodecError) and isinstance(exc_info.value, ValueError)
    assert exc_info.value.__cause__ is None  # no rasterio traceback chained


def test_missing_file(tmp_path):
    p = tmp_path / "nope.tif"
    with pytest.raises(RasterError) as ei:
        open_raster(p)
    _assert_clean(ei, p)


def test_garbage_file(tmp_path):
    p = tmp_path / "garbage.tif"
    p.write_bytes(b"II*\x00" + os.urandom(500))
    with pytest.raises(RasterError) as ei:
        open_raster(p)
    _assert_clean(ei, p)
    with pytest.raises(RasterError):
        open_raster(tmp_path)  # a directory


def test_truncated_tiff(tmp_path):
    p = make_tif(tmp_path / "t.tif", rng_image((300, 300), 60000, seed=1), compress="deflate")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(RasterError) as ei:
        with open_raster(p) as r:  # fails on open or, at the latest, on reading
            r.read()
    _assert_clean(ei, p)


@pytest.mark.parametrize("dtype", ["float32", "complex64", "uint32", "int32"])
def test_unsupported_dtype(tmp_path, dtype):
    p = make_tif(tmp_path / f"{dtype}.tif", np.ones((8, 8)), dtype=dtype)
    with pytest.raises(RasterError, match=dtype) as ei:
        open_raster(p)
    _assert_clean(ei, p)


def test_too_many_bands(tmp_path):
    p = make_tif(tmp_path / "cube.tif", np.zeros((raster.MAX_BANDS + 1, 1, 1), "uint8"))
    with pytest.raises(RasterError, match="bands") as ei:
        open_raster(p)
    _assert_clean(ei, p)


# --- writers: atomicity, windows, masks ------------------------------------------------------
def test_windowed_writer_matches_write_raster(tmp_path):
    arr = rng_image((2, 300, 520), 4095, seed=5)
    meta = RasterMeta(300, 520, 2, "uint16", 12, crs_wkt=UTM31.to_wkt(), transform=TRANSFORM[:6])
    dest = tmp_path / "tiles.tif"
    with create_raster(dest, meta) as w:
        for b in range(2):
            for y in range(0, 300, 256):
                for x in range(0, 520, 256):
                    w.write_window(b, y, x, arr[b, y : y + 256, x : x + 256])
        assert not dest.exists()  # only the temp file exists until close
    write_raster(tmp_path / "whole.tif", arr, meta)
    with open_raster(dest) as r1, open_raster(tmp_path / "whole.tif") as r2:
        np.testing.assert_array_equal(r1.read(), arr)
        assert r1.meta == r2.meta
    assert listing(tmp_path) == ["tiles.tif", "whole.tif"]


def test_writer_exception_leaves_nothing(tmp_path):
    meta = RasterMeta(64, 64, 1, "uint16", 12)
    dest = tmp_path / "out.tif"
    with pytest.raises(KeyError):
        with create_raster(dest, meta) as w:
            w.write_window(0, 0, 0, np.ones((32, 32), "uint16"))
            raise KeyError("boom")
    assert listing(tmp_path) == []
    # an existing file is left untouched by a failed rewrite
    write_raster(dest, np.full((1, 64, 64), 7, "uint16"), meta)
    before = dest.read_bytes()
    with pytest.raises(RasterError):
        with create_raster(dest, meta) as w:
            w.write_window(0, 40, 40, np.ones((32, 32), "uint16"))  # outside the image
    assert dest.read_bytes() == before and listing(tmp_path) == ["out.tif"]
    w2 = create_raster(tmp_path / "gone.tif", meta)
    w2.abort()
    assert listing(tmp_path) == ["out.tif"]


def test_writer_input_checks(tmp_path):
    meta = RasterMeta(16, 16, 1, "uint16", 16)
    with pytest.raises(RasterError, match="shape"):
        write_raster(tmp_path / "a.tif", np.zeros((16, 16), "uint16"), meta)
    with pytest.raises(RasterError, match="integers"):
        write_raster(tmp_path / "a.tif", np.zeros((1, 16, 16), "float32"), meta)
    with pytest.raises(RasterError, match="fit"):
        write_raster(tmp_path / "a.tif", np.full((1, 16, 16), 70000), meta)
    with pytest.raises(RasterError, match="nodata_mask shape"):
        write_raster(
            tmp_path / "a.tif", np.zeros((1, 16, 16), "uint16"), meta, nodata_mask=np.ones((8, 8))
        )
    bad = copy.deepcopy(meta)
    bad.descriptions = ["a", "b"]
    with pytest.raises(RasterError):
        write_raster(tmp_path / "a.tif", np.zeros((1, 16, 16), "uint16"), bad)
    write_raster(tmp_path / "a.tif", np.full((1, 16, 16), 9, dtype=np.int64), meta)  # cast
    assert listing(tmp_path) == ["a.tif"]


def test_nodata_mask(tmp_path):
    arr = rng_image((2, 20, 20), 4000, seed=2) + 1
    mask = np.zeros((20, 20), bool)
    mask[:4] = True
    meta = RasterMeta(20, 20, 2, "uint16", 12, nodata=0.0)
    write_raster(tmp_path / "m.tif", arr, meta, nodata_mask=mask)
    with rasterio.open(tmp_path / "m.tif") as ds:
        out = ds.read()
        assert ds.nodata == 0
        np.testing.assert_array_equal(ds.dataset_mask() == 0, mask)
    assert (out[:, :4] == 0).all()
    np.testing.assert_array_equal(out[:, 4:], arr[:, 4:])


# --- COG -------------------------------------------------------------------------------------
def test_cog_valid_and_keeps_metadata(tmp_path):
    arr = rng_image((2, 600, 700), 2047, seed=4)
    meta = RasterMeta(
        600,
        700,
        2,
        "uint16",
        12,
        nodata=0.0,
        crs_wkt=UTM31.to_wkt(),
        transform=TRANSFORM[:6],
        descriptions=["pan", None],
        tags={"SENSOR": "WV3", "AREA_OR_POINT": "Area"},  # GDAL adds Area when georeferenced
    )
    dest = tmp_path / "c.tif"
    write_cog(dest, arr, meta)
    assert listing(tmp_path) == ["c.tif"]
    assert is_valid_cog(dest)
    with rasterio.open(dest) as ds:
        assert ds.overviews(1)
    with open_raster(dest) as r:
        np.testing.assert_array_equal(r.read(), arr)
        assert meta_json(r.meta) == meta_json(meta)
    # small image: one tile, no overviews needed; RPCs kept
    small = RasterMeta(100, 90, 1, "uint8", 8, rpcs=dict(RPCS))
    write_cog(tmp_path / "s.tif", rng_image((1, 100, 90), 255, "uint8"), small)
    assert is_valid_cog(tmp_path / "s.tif")
    with open_raster(tmp_path / "s.tif") as r:
        assert r.meta.rpcs == RasterMeta.from_json_dict(small.to_json_dict()).rpcs


def test_not_cog(tmp_path):
    arr = rng_image((1, 600, 700), 2047)
    meta = RasterMeta(600, 700, 1, "uint16", 12)
    write_raster(tmp_path / "plain.tif", arr, meta)
    assert not is_valid_cog(tmp_path / "plain.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    assert not is_valid_cog(tmp_path / "junk.tif")
    assert not is_valid_cog(tmp_path / "missing.tif")


# --- from_json_dict on untrusted input -------------------------------------------------------
def _valid_dict():
    meta = RasterMeta(
        10,
        20,
        2,
        "uint16",
        12,
        nodata=0.0,
        crs_wkt=UTM31.to_wkt(),
        transform=TRANSFORM[:6],
        rpcs=dict(RPCS),
        gcps=[{"row": 1.0, "col": 2.0, "x": 3.0, "y": 4.0, "z": 0.0, "id": "1", "info": ""}],
        gcps_crs_wkt=CRS.from_epsg(4326).to_wkt(),
        descriptions=["a", None],
        tags={"K": "V"},
        nbits_tag=12,
    )
    return json.loads(json.dumps(meta.to_json_dict()))


def _set(path, value):
    def mutate(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value

    return mutate


MALFORMED = {
    "height null": _set(["height"], None),
    "height str": _set(["height"], "10"),
    "height bool": _set(["height"], True),
    "height float": _set(["height"], 10.0),
    "height zero": _set(["height"], 0),
    "height absurd": _set(["height"], 10**12),
    "width negative": _set(["width"], -5),
    "count absurd": _set(["count"], 5000),
    "dtype float": _set(["dtype"], "float32"),
    "dtype not str": _set(["dtype"], 16),
    "dtype null": _set(["dtype"], None),
    "bit_depth null": _set(["bit_depth"], None),
    "bit_depth too big": _set(["bit_depth"], 17),
    "bit_depth zero": _set(["bit_depth"], 0),
    "nbits_tag str": _set(["nbits_tag"], "12"),
    "nodata fraction": _set(["nodata"], 1.5),
    "nodata out of range": _set(["nodata"], 70000),
    "nodata nan": _set(["nodata"], float("nan")),
    "nodata str": _set(["nodata"], "0"),
    "transform short": _set(["transform"], [1.0, 0.0, 0.0, 0.0, 1.0]),
    "transform inf": _set(["transform"], [1.0, 0.0, float("inf"), 0.0, 1.0, 0.0]),
    "transform str": _set(["transform"], "1 0 0 0 1 0"),
    "crs garbage": _set(["crs_wkt"], "PROJCS[garbage"),
    "crs int": _set(["crs_wkt"], 4326),
    "rpcs not dict": _set(["rpcs"], ["LINE_OFF"]),
    "rpcs missing": _set(["rpcs", "LINE_OFF"], KeyError),
    "rpcs number": _set(["rpcs", "LINE_OFF"], 17495.0),
    "rpcs 19 coeffs": _set(["rpcs", "LINE_NUM_COEFF"], " ".join(["1"] * 19)),
    "rpcs text": _set(["rpcs", "LAT_OFF"], "north"),
    "gcps not list": _set(["gcps"], {"row": 1}),
    "gcps empty": _set(["gcps"], []),
    "gcp missing x": _set(["gcps", 0, "x"], KeyError),
    "gcp unknown key": _set(["gcps", 0, "w"], 1.0),
    "gcp z str": _set(["gcps", 0, "z"], "0"),
    "gcp id int": _set(["gcps", 0, "id"], 1),
    "gcp x str": _set(["gcps", 0, "x"], "3"),
    "descriptions length": _set(["descriptions"], ["a"]),
    "descriptions int": _set(["descriptions"], ["a", 1]),
    "descriptions null": _set(["descriptions"], None),
    "tags not dict": _set(["tags"], [["K", "V"]]),
    "tag value int": _set(["tags", "K"], 1),
    "tag key with =": _set(["tags", "A=B"], "x"),
    "tag key empty": _set(["tags", ""], "x"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_from_json_dict_rejects(case):
    d = _valid_dict()
    RasterMeta.from_json_dict(d)  # the base is valid
    MALFORMED[case](d)
    with pytest.raises(RasterError):
        RasterMeta.from_json_dict(d)


@pytest.mark.parametrize("bad", [None, [], "meta", 3])
def test_from_json_dict_rejects_non_objects(bad):
    with pytest.raises(RasterError):
        RasterMeta.from_json_dict(bad)


# --- issue 17: spec-legal metadata objects ---------------------------------------------------
def test_from_json_dict_fills_defaults_for_missing_keys():
    meta = RasterMeta.from_json_dict({})
    assert (meta.height, meta.width, meta.count, meta.dtype, meta.bit_depth) == (None,) * 5
    assert meta.nodata is None and meta.crs_wkt is None and meta.transform is None
    assert meta.rpcs is None and meta.gcps is None and meta.gcps_crs_wkt is None
    assert meta.descriptions == [] and meta.tags == {} and meta.nbits_tag is None
    with pytest.raises(RasterError, match="height"):
        meta.validate()  # unknown sizes must be filled from the bitstream header first
    # what the caller does with the header's fixed fields
    meta.height, meta.width, meta.count, meta.dtype, meta.bit_depth = 8, 9, 3, "uint16", 12
    meta.validate()
    # count present: one (empty) description per band
    assert RasterMeta.from_json_dict({"count": 2}).descriptions == [None, None]


def test_from_json_dict_keeps_unknown_keys_as_tags(tmp_path):
    d = {
        "mission": "SAT-1",
        "orbit": 1234,
        "attitude": {"roll": 0.5, "pitch": -1},
        "bad key=": "x",  # not a usable tag name
        "tags": {"SENSOR": "PHR1B", "mission": "from tags"},  # the key is taken
        "crs_wkt": UTM31.to_wkt(),
    }
    meta = RasterMeta.from_json_dict(d)
    assert meta.tags["SENSOR"] == "PHR1B" and meta.tags["mission"] == "from tags"
    assert meta.tags["SATCODEC_META_mission"] == "SAT-1"
    assert meta.tags["orbit"] == "1234"
    assert json.loads(meta.tags["attitude"]) == {"roll": 0.5, "pitch": -1}
    assert meta.tags["SATCODEC_META_bad_key_"] == "x"
    assert CRS.from_wkt(meta.crs_wkt) == UTM31
    # the stream satcodec.encode(arr, metadata={"mission": "SAT-1"}) makes decodes to a GeoTIFF
    meta = RasterMeta.from_json_dict({"mission": "SAT-1"})
    assert meta.tags == {"mission": "SAT-1"}
    meta.height, meta.width, meta.count, meta.dtype, meta.bit_depth = 6, 7, 2, "uint16", 12
    write_raster(tmp_path / "m.tif", rng_image((2, 6, 7), 4095), meta)
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.tags()["mission"] == "SAT-1"
    too_many = {f"k{i}": "v" for i in range(raster.MAX_TAGS + 1)}
    with pytest.raises(RasterError, match="tags"):
        RasterMeta.from_json_dict(too_many)


def test_from_json_dict_spec_spellings():
    # docs/bitstream.md: band_descriptions; GCP z and id optional
    d = {
        "count": 2,
        "band_descriptions": ["pan", None],
        "gcps": [{"row": 1, "col": 2, "x": 3.5, "y": 4.5}],
    }
    meta = RasterMeta.from_json_dict(d)
    assert meta.descriptions == ["pan", None]
    assert meta.gcps == [
        {"row": 1.0, "col": 2.0, "x": 3.5, "y": 4.5, "z": 0.0, "id": "", "info": ""}
    ]
    for bad in (
        {"count": 2, "band_descriptions": ["pan"]},
        {"band_descriptions": [1]},
        {"gcps": [{"row": 1, "col": 2, "x": 3.5}]},
        {"transform": [1, 2, 3]},
        {"nodata": "0"},
        {"tags": {"K": 1}},
        {"width": True},
    ):
        with pytest.raises(RasterError):
            RasterMeta.from_json_dict(bad)


# --- issue 17: COG validity does not depend on the image width -------------------------------
@pytest.mark.parametrize(
    "width, height",
    [(100, 90), (300, 512), (512, 512), (512, 300), (512, 1000), (600, 512), (1000, 700)],
)
def test_cog_of_any_size_is_valid(tmp_path, width, height):
    arr = rng_image((1, height, width), 2047, seed=width)
    write_cog(tmp_path / "c.tif", arr, RasterMeta(height, width, 1, "uint16", 12), blocksize=512)
    assert is_valid_cog(tmp_path / "c.tif")


def _retag_as_strips(src, dst):
    """Copy a one-tile-wide classic-TIFF COG, turning its first IFD's tile tags into strip tags.

    The pixels and GDAL's LAYOUT=COG stay (each 512-row tile is one strip of full width):
    only the TIFF structure says it is no longer tiled.
    """
    import struct

    b = bytearray(src.read_bytes())
    assert b[:4] == b"II*\x00"
    first = struct.unpack("<I", b[4:8])[0]
    n = struct.unpack("<H", b[first : first + 2])[0]
    entries = [bytes(b[first + 2 + 12 * i : first + 14 + 12 * i]) for i in range(n)]
    renumber = {322: None, 323: 278, 324: 273, 325: 279}  # TileWidth dropped
    out = []
    for e in entries:
        tag = struct.unpack("<H", e[:2])[0]
        if tag in renumber:
            if renumber[tag] is None:
                continue
            e = struct.pack("<H", renumber[tag]) + e[2:]
        out.append(e)
    out.sort(key=lambda e: struct.unpack("<H", e[:2])[0])
    next_ifd = b[first + 2 + 12 * n : first + 6 + 12 * n]
    blob = struct.pack("<H", len(out)) + b"".join(out) + next_ifd
    b[first : first + len(blob)] = blob
    dst.write_bytes(bytes(b))


def test_striped_files_are_not_cogs(tmp_path):
    arr = rng_image((1, 512, 512), 2047)
    make_tif(tmp_path / "strips.tif", arr)  # plain striped GeoTIFF
    assert not is_valid_cog(tmp_path / "strips.tif")
    write_raster(tmp_path / "tiled.tif", arr, RasterMeta(512, 512, 1, "uint16", 12))
    assert not is_valid_cog(tmp_path / "tiled.tif")  # tiled, but not a COG layout
    # a COG whose IFD was rewritten to strips: GDAL still says LAYOUT=COG, reads the same
    # pixels with the same 512x512 blocks -- only the TIFF tags tell
    arr = rng_image((1, 300, 512), 2047, seed=1)
    write_cog(tmp_path / "cog.tif", arr, RasterMeta(300, 512, 1, "uint16", 12))
    _retag_as_strips(tmp_path / "cog.tif", tmp_path / "retagged.tif")
    with rasterio.open(tmp_path / "retagged.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(ds.read(), arr)
    assert is_valid_cog(tmp_path / "cog.tif")
    assert not is_valid_cog(tmp_path / "retagged.tif")


# --- issue 17: a bit depth below the data is an error, an NBITS below it a warning -----------
def test_explicit_bit_depth_below_data_raises(tmp_path, monkeypatch):
    arr = rng_image((2, 40, 30), 2000, seed=6)
    arr[1, 7, 9] = 2047  # 11-bit data
    src = make_tif(tmp_path / "d11.tif", arr)
    with pytest.raises(RasterError, match=r"2047.*11 bits.*8") as ei:
        open_raster(src, bit_depth=8)
    _assert_clean(ei, src)
    with pytest.raises(RasterError, match="2047"):
        open_raster(src, bit_depth=10)
    scans = []
    orig = raster._scan_range
    monkeypatch.setattr(
        raster, "_scan_range", lambda *a: scans.append(1) or orig(*a)
    )  # the check is the one pass over the data
    with open_raster(src, bit_depth=11) as r:
        assert r.meta.bit_depth == 11
    assert len(scans) == 1
    with open_raster(src, bit_depth=16) as r:  # full width: nothing can be clipped, no pass
        assert r.meta.bit_depth == 16
    assert len(scans) == 1
    # nodata pixels do not count
    arr[0, 0, 0] = 65535
    with open_raster(make_tif(tmp_path / "nd.tif", arr, nodata=65535), bit_depth=11) as r:
        assert r.meta.bit_depth == 11


def test_check_bit_depth():
    raster.check_bit_depth(2047, 11, "array")
    raster.check_bit_depth(255, 8, "array")
    raster.check_bit_depth(0, 1, "array")
    raster.check_bit_depth(np.uint16(4095), 12, "array")
    with pytest.raises(RasterError, match=r"array: values reach 2047, which needs 11 bits"):
        raster.check_bit_depth(2047, 8, "array")
    with pytest.raises(RasterError, match="--bit-depth 12"):
        raster.check_bit_depth(4096, 12, "scene.tif")
    with pytest.raises(RasterError):
        raster.check_bit_depth(10, 0, "array")


PAM_NBITS = """<PAMDataset>
  <PAMRasterBand band="1">
    <Metadata domain="IMAGE_STRUCTURE">
      <MDI key="NBITS">{}</MDI>
    </Metadata>
  </PAMRasterBand>
</PAMDataset>
"""


def test_pam_nbits_below_the_data_is_widened_with_a_warning(tmp_path, monkeypatch):
    arr = rng_image((40, 50), 3000, seed=8)
    arr[3, 4] = 4095  # 12-bit data
    src = make_tif(tmp_path / "d12.tif", arr)
    (tmp_path / "d12.tif.aux.xml").write_text(PAM_NBITS.format(8))
    with rasterio.open(src) as ds:  # GDAL reports the sidecar's NBITS as the band's
        assert ds.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "8"
    with pytest.warns(UserWarning, match=r"NBITS=8.*4095.*bit depth 12"):
        with open_raster(src) as r:
            assert r.meta.bit_depth == 12 and r.meta.nbits_tag == 8
            np.testing.assert_array_equal(r.read(0), arr)
    # a sidecar NBITS the data fit is used as is (and checked: one pass)
    (tmp_path / "d12.tif.aux.xml").write_text(PAM_NBITS.format(13))
    with open_raster(src) as r:
        assert r.meta.bit_depth == 13
    # the NBITS of a GeoTIFF that stores its samples with that many bits needs no pass
    write_raster(tmp_path / "packed.tif", arr[None], RasterMeta(40, 50, 1, "uint16", 12))
    monkeypatch.setattr(raster, "_scan_range", lambda *a: pytest.fail("scanned"))
    with open_raster(tmp_path / "packed.tif") as r:
        assert r.meta.bit_depth == 12 and r.meta.nbits_tag == 12


# --- issue 17: nodata for damaged tiles -------------------------------------------------------
@pytest.mark.parametrize(
    "dtype, bit_depth, expected",
    [
        ("uint16", 12, 4096),
        ("uint16", 11, 2048),
        ("uint16", 15, 32768),
        ("uint16", 16, None),  # every value may be a pixel: mask band
        ("uint8", 8, None),
        ("uint8", 7, 128),
        ("int16", 12, 4096),
        ("int16", 15, None),
    ],
)
def test_damaged_fill_value(dtype, bit_depth, expected):
    assert raster.damaged_fill_value(dtype, bit_depth) == expected


def test_damaged_fill_value_rejects():
    with pytest.raises(RasterError):
        raster.damaged_fill_value("float32", 8)
    with pytest.raises(RasterError):
        raster.damaged_fill_value("uint16", 0)


def test_fill_value_nodata_is_representable(tmp_path):
    fill = raster.damaged_fill_value("uint16", 12)
    arr = rng_image((1, 600, 520), 4095, seed=9)
    mask = np.zeros((600, 520), bool)
    mask[256:512, 0:256] = True  # a damaged tile
    meta = RasterMeta(600, 520, 1, "uint16", 12, nodata=float(fill))
    assert meta.nbits_to_write() is None  # NBITS=12 would clamp 4096 to 4095
    write_raster(tmp_path / "w.tif", arr, meta, nodata_mask=mask)
    write_cog(tmp_path / "c.tif", arr, meta, nodata_mask=mask)
    assert is_valid_cog(tmp_path / "c.tif")
    for name in ("w.tif", "c.tif"):
        with rasterio.open(tmp_path / name) as ds:
            assert "NBITS" not in ds.tags(1, ns="IMAGE_STRUCTURE")
            out = ds.read(1)
            np.testing.assert_array_equal(ds.dataset_mask() == 0, mask)
        assert (out[mask] == 4096).all()
        np.testing.assert_array_equal(out[~mask], arr[0][~mask])  # genuine zeros stay data
        with open_raster(tmp_path / name) as r:
            assert r.meta.nodata == 4096 and r.meta.bit_depth == 12


def _two_band_masks():
    mask = np.zeros((2, 600, 700), bool)
    mask[0, 0:256, 256:512] = True  # damaged tile of band 0
    mask[1, 256:512, 512:700] = True  # damaged tile of band 1
    return mask


def test_cog_mask_band_when_no_nodata(tmp_path):
    arr = rng_image((2, 600, 700), 65535, seed=10)  # full 16-bit: no free value
    arr[:, 300:310, 0:10] = 0  # genuine zeros
    mask = _two_band_masks()
    meta = RasterMeta(600, 700, 2, "uint16", 16, crs_wkt=UTM31.to_wkt(), transform=TRANSFORM[:6])
    dest = tmp_path / "c.tif"
    write_cog(dest, arr, meta, nodata_mask=mask)
    assert listing(tmp_path) == ["c.tif"]  # internal mask: no .msk sidecar
    assert is_valid_cog(dest)
    with rasterio.open(dest) as ds:
        assert ds.nodata is None
        assert all(f == [rasterio.enums.MaskFlags.per_dataset] for f in ds.mask_flag_enums)
        dm = ds.dataset_mask()
        np.testing.assert_array_equal(ds.read(), arr)
        assert ds.overviews(1)
    assert set(np.unique(dm)) == {0, 255}
    np.testing.assert_array_equal(dm == 0, mask.any(axis=0))
    # no mask given, or an all-False one: no mask band
    write_cog(tmp_path / "n.tif", arr, meta, nodata_mask=np.zeros((600, 700), bool))
    with rasterio.open(tmp_path / "n.tif") as ds:
        assert ds.mask_flag_enums[0] == [rasterio.enums.MaskFlags.all_valid]


def test_windowed_writer_mask_band_merges_bands(tmp_path):
    arr = rng_image((2, 600, 700), 255, "uint8", seed=11)
    mask = _two_band_masks()
    mask[1, 0:100, 256:300] = True  # overlaps band 0's damaged tile in the same window
    meta = RasterMeta(600, 700, 2, "uint8", 8)
    dest = tmp_path / "w.tif"
    with create_raster(dest, meta) as w:
        for b in range(2):
            for y in range(0, 600, 256):
                for x in range(0, 700, 256):
                    win = (slice(y, y + 256), slice(x, x + 256))
                    w.write_window(b, y, x, arr[b][win], nodata_mask=mask[b][win])
    write_raster(tmp_path / "whole.tif", arr, meta, nodata_mask=mask)
    assert listing(tmp_path) == ["w.tif", "whole.tif"]
    for name in ("w.tif", "whole.tif"):
        with rasterio.open(tmp_path / name) as ds:
            np.testing.assert_array_equal(ds.read(), arr)
            dm = ds.dataset_mask()
        assert set(np.unique(dm)) == {0, 255}
        np.testing.assert_array_equal(dm == 0, mask.any(axis=0))


# --- issue 17: sample types beyond the supported ones -----------------------------------------
@pytest.mark.parametrize("dtype", ["uint32", "int32", "float32"])
def test_writing_unsupported_dtype_is_a_raster_error(tmp_path, dtype):
    meta = RasterMeta(4, 4, 1, dtype, 8)
    for write in (write_raster, write_cog):
        with pytest.raises(RasterError, match="dtype"):
            write(tmp_path / "x.tif", np.zeros((1, 4, 4), dtype), meta)
    with pytest.raises(RasterError):
        create_raster(tmp_path / "x.tif", meta)
    assert listing(tmp_path) == []


def test_encodable_dtypes():
    assert raster.ENCODABLE_DTYPES == ("uint8", "uint16")
    assert set(raster.ENCODABLE_DTYPES) < set(raster.SUPPORTED_DTYPES)


# --- issue 17: special destinations ----------------------------------------------------------
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod of a device needs root"
)
def test_writers_copy_into_a_character_device(tmp_path):
    import stat

    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null clone
    arr = rng_image((1, 40, 50), 4095)
    meta = RasterMeta(40, 50, 1, "uint16", 12)
    write_raster(null, arr, meta)
    write_cog(null, arr, meta)
    with create_raster(null, meta) as w:
        w.write_window(0, 0, 0, arr[0])
    assert stat.S_ISCHR(os.stat(null).st_mode) and listing(tmp_path) == ["null"]


def test_writers_refuse_a_directory(tmp_path):
    from satcodec.errors import ConfigError

    arr = rng_image((1, 40, 50), 4095)
    meta = RasterMeta(40, 50, 1, "uint16", 12)
    (tmp_path / "out.tif").mkdir()
    for write in (write_raster, write_cog):
        with pytest.raises(ConfigError, match="is a directory"):
            write(tmp_path / "out.tif", arr, meta)
    with pytest.raises(ConfigError, match="is a directory"):
        create_raster(tmp_path / "out.tif", meta)
    assert listing(tmp_path) == ["out.tif"] and listing(tmp_path / "out.tif") == []
