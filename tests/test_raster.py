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


@pytest.mark.parametrize("dtype", ["float32", "complex64", "uint32"])
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
    with pytest.raises(RasterError, match="nodata"):
        write_raster(
            tmp_path / "a.tif", np.zeros((1, 16, 16), "uint16"), meta, nodata_mask=np.ones((16, 16))
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
    "missing key": _set(["height"], KeyError),
    "unknown key": _set(["extra"], 1),
    "height str": _set(["height"], "10"),
    "height bool": _set(["height"], True),
    "height float": _set(["height"], 10.0),
    "height zero": _set(["height"], 0),
    "height absurd": _set(["height"], 10**12),
    "width negative": _set(["width"], -5),
    "count absurd": _set(["count"], 5000),
    "dtype float": _set(["dtype"], "float32"),
    "dtype not str": _set(["dtype"], 16),
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
    "gcp missing z": _set(["gcps", 0, "z"], KeyError),
    "gcp id int": _set(["gcps", 0, "id"], 1),
    "gcp x str": _set(["gcps", 0, "x"], "3"),
    "descriptions length": _set(["descriptions"], ["a"]),
    "descriptions int": _set(["descriptions"], ["a", 1]),
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
