"""STAC metadata of the ground pipeline: Items and the OUTBOX Collection, validated offline
against the official JSON schemas bundled in tests/data/stac_schemas (see SOURCES.md there)."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
from functools import lru_cache
from pathlib import Path

import jsonschema  # a test dependency: validation must not be skipped silently
import numpy as np
import pytest
import rasterio
import referencing.exceptions
from rasterio.crs import CRS
from rasterio.transform import from_origin

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.ground_segment import stac
from satcodec.ground_segment.pipeline import STATE_NAME, run_ground

SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
CORE = "https://schemas.stacspec.org/v1.1.0"
TILE = 64
QUIET = {"progress": False, "log": lambda _: None}
# a Transverse Mercator with a central meridian no EPSG code has
CUSTOM_CRS = CRS.from_proj4(
    "+proj=tmerc +lat_0=0 +lon_0=-8.3 +k=0.9996 +x_0=500000 +y_0=0 +datum=WGS84 +units=m"
)


# --- offline validation ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _registry():
    """Every bundled schema under the URL it is published at (its ``$id``): no network."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    resources = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        contents = json.loads(path.read_text())
        resource = Resource.from_contents(contents, default_specification=DRAFT7)
        resources.append((contents["$id"].rstrip("#"), resource))
        if path.name == "common.json":  # its $id lacks the dot (upstream); refs use the URL
            resources.append((f"{CORE}/item-spec/json-schema/common.json", resource))
    return Registry().with_resources(resources)


def validate_stac(doc: dict) -> None:
    """Validate an Item or Collection against STAC core 1.1.0 and each extension it declares
    (an extension whose schema is not bundled fails: it cannot be fetched here)."""
    kind = {"Feature": "item", "Collection": "collection"}[doc["type"]]
    urls = [f"{CORE}/{kind}-spec/json-schema/{kind}.json", *doc.get("stac_extensions", [])]
    for url in urls:
        validator = jsonschema.Draft7Validator(
            {"$ref": url},
            registry=_registry(),
            format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{doc['id']} fails {url}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
        )


def test_the_validator_rejects_what_the_schemas_forbid():
    good = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [stac.EXT_PROJECTION],
        "id": "x",
        "geometry": None,
        "properties": {"datetime": "2024-06-15T10:22:05Z", "proj:code": "EPSG:32629"},
        "links": [],
        "assets": {},
    }
    validate_stac(good)
    for bad in (
        {**good, "properties": {"datetime": "2024-06-15T10:22:05+02:00"}},  # not UTC
        {**good, "properties": {**good["properties"], "proj:code": 32629}},  # v2: a string
        {**good, "stac_extensions": ["https://example.com/unbundled/v1.0.0/schema.json"]},
    ):
        with pytest.raises((AssertionError, referencing.exceptions.Unresolvable)):
            validate_stac(bad)


# --- scenes -------------------------------------------------------------------------------------
def _tile_payload_offset(data: bytes, band: int, row: int, col: int) -> tuple[int, int]:
    h = StreamReader(data).header
    idx = h.tile_index(band, row, col)
    table_start = 72 + 4 * h.bands + struct.unpack_from("<I", data, 68)[0]
    off, length = struct.unpack_from("<QI", data, table_start + 12 * idx)
    head = 20 + h.latent_channels
    return off + head + 4, off + length - 4


def _flip_tile_byte(path: Path, band: int, row: int, col: int) -> None:
    data = bytearray(path.read_bytes())
    a, b = _tile_payload_offset(bytes(data), band, row, col)
    data[(a + b) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def _scene(
    path: Path,
    seed: int,
    crs: CRS,
    origin: tuple[float, float],
    *,
    bands: int = 1,
    descriptions: tuple[str | None, ...] = (),
    tags: dict[str, str] | None = None,
    nodata: float | None = None,
) -> None:
    """A small 12-bit GeoTIFF (128 x 160) with smooth structure and texture."""
    h, w = 128, 160
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [
            900 + 500 * np.sin(xx / (9 + seed + b)) * np.cos(yy / 13) + rng.normal(0, 30, (h, w))
            for b in range(bands)
        ]
    )
    img = np.clip(img, 1, 4095).astype(np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=h,
        width=w,
        count=bands,
        dtype="uint16",
        crs=crs,
        transform=from_origin(origin[0], origin[1], 10.0, 10.0),
        nodata=nodata,
        nbits=12,
    ) as ds:
        ds.write(img)
        for i, d in enumerate(descriptions, 1):
            if d:
                ds.set_band_description(i, d)
        if tags:
            ds.update_tags(**tags)


@pytest.fixture(scope="module")
def ground(tiny_model, tmp_path_factory):
    """One ground run over three scenes (one with a damaged tile); returns (inbox, outbox)."""
    tmp = tmp_path_factory.mktemp("stac")
    src, inbox, outbox = tmp / "src", tmp / "inbox", tmp / "outbox"
    src.mkdir()
    inbox.mkdir()
    _scene(  # UTM 29N (Portugal), two named bands, an acquisition time and a file time
        src / "utm.tif",
        1,
        CRS.from_epsg(32629),
        (500000, 4300000),
        bands=2,
        descriptions=("red", "B08 NIR"),
        tags={
            "TIFFTAG_DATETIME": "2024:05:01 09:00:00",
            "ACQUISITION_DATETIME": "2024-06-15T10:22:05Z",
        },
    )
    _scene(  # a CRS without EPSG code, nodata 0, the acquisition day only
        src / "custom.tif",
        2,
        CUSTOM_CRS,
        (520000, 4310000),
        nodata=0,
        tags={"ACQUISITION_DATE": "2024-06-20"},
    )
    _scene(src / "plain.tif", 3, CRS.from_epsg(32629), (540000, 4290000))  # no time at all
    for name in ("utm", "custom", "plain"):
        satcodec.encode_file(
            src / f"{name}.tif", inbox / f"{name}.satc", quality=50, model=tiny_model, tile=TILE
        )
    _flip_tile_byte(inbox / "utm.satc", band=0, row=1, col=1)  # one damaged tile in band 1
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    s = run_ground(inbox, outbox, **QUIET)
    assert sorted(s.produced) == ["custom.satc", "plain.satc", "utm.satc"], s
    assert s.flagged == ["utm.satc"]
    return inbox, outbox, before


def _item(outbox: Path, stem: str) -> dict:
    return json.loads((outbox / f"{stem}.json").read_text())


def test_items_and_collection_validate_against_the_official_schemas(ground):
    _, outbox, _ = ground
    for stem in ("utm", "custom", "plain"):
        item = _item(outbox, stem)
        validate_stac(item)
        assert set(item["stac_extensions"]) == set(stac.ITEM_EXTENSIONS)
        assert "processing:datetime_note" not in item["properties"]
    validate_stac(json.loads((outbox / stac.COLLECTION_NAME).read_text()))


def test_projection_code_or_wkt2(ground):
    _, outbox, _ = ground
    utm = _item(outbox, "utm")["properties"]
    assert utm["proj:code"] == "EPSG:32629" and "proj:wkt2" not in utm
    assert utm["proj:shape"] == [128, 160]
    assert utm["proj:transform"] == [10.0, 0.0, 500000.0, 0.0, -10.0, 4300000.0, 0.0, 0.0, 1.0]
    assert utm["proj:bbox"] == [500000.0, 4300000.0 - 1280.0, 500000.0 + 1600.0, 4300000.0]
    custom = _item(outbox, "custom")["properties"]
    assert custom["proj:code"] is None
    wkt2 = custom["proj:wkt2"]
    assert wkt2.startswith("PROJCRS[") and "BASEGEOGCRS[" in wkt2  # WKT2, not WKT1's PROJCS[
    assert CRS.from_wkt(wkt2) == CUSTOM_CRS
    # the WGS84 footprint of a scene near 9 degrees west, 38.8 north
    west, south, east, north = _item(outbox, "utm")["bbox"]
    assert -9.1 < west < east < -8.9 and 38.8 < south < north < 38.9


def test_raster_bands_describe_the_cog(ground):
    _, outbox, _ = ground
    utm = _item(outbox, "utm")["assets"]["data"]
    custom = _item(outbox, "custom")["assets"]["data"]
    with rasterio.open(outbox / "utm.tif") as ds:
        nodata = ds.nodata
        cog = ds.read(masked=True)
    assert nodata == 4096  # the damaged tile's fill: a value 12-bit data cannot take
    rb = utm["raster:bands"]
    assert [b["data_type"] for b in rb] == ["uint16", "uint16"]
    assert [b["nodata"] for b in rb] == [4096, 4096]
    assert [b["bits_per_sample"] for b in rb] == [12, 12]  # the sensor's, not the container's
    assert [b["sampling"] for b in rb] == ["area", "area"]
    # statistics of the decoded pixels, without the damaged tile (band 1 only)
    assert rb[0]["statistics"]["valid_percent"] == pytest.approx(100 * (1 - 64 * 64 / (128 * 160)))
    assert rb[1]["statistics"]["valid_percent"] == 100.0
    for b, band in zip(rb, cog, strict=True):
        st = b["statistics"]
        valid = band.compressed().astype(np.float64)
        assert st["minimum"] == valid.min() and st["maximum"] == valid.max()
        assert st["mean"] == pytest.approx(valid.mean(), rel=1e-12)
        assert st["stddev"] == pytest.approx(valid.std(), rel=1e-9)
    assert custom["raster:bands"][0]["nodata"] == 0
    with rasterio.open(outbox / "custom.tif") as ds:
        zeros = int((ds.read(1) == 0).sum())
    expected = 100 * (1 - zeros / (128 * 160))
    assert custom["raster:bands"][0]["statistics"]["valid_percent"] == pytest.approx(expected)


def test_eo_bands_are_named_from_the_band_descriptions(ground):
    _, outbox, _ = ground
    assert _item(outbox, "utm")["assets"]["data"]["eo:bands"] == [
        {"name": "red", "common_name": "red"},
        {"name": "B08 NIR"},  # not a common name as it is: none is guessed
    ]
    assert _item(outbox, "custom")["assets"]["data"]["eo:bands"] == [{"name": "b1"}]


def test_datetime_is_the_acquisition_time_when_the_metadata_has_one(ground):
    _, outbox, before = ground
    after = dt.datetime.now(dt.timezone.utc)
    utm = _item(outbox, "utm")["properties"]
    assert utm["datetime"] == "2024-06-15T10:22:05Z"  # not TIFFTAG_DATETIME, the file's time
    assert utm["satcodec:datetime_source"] == "ACQUISITION_DATETIME"
    custom = _item(outbox, "custom")["properties"]  # a day: null datetime, the day as range
    assert custom["datetime"] is None
    assert custom["start_datetime"] == "2024-06-20T00:00:00Z"
    assert custom["end_datetime"] == "2024-06-20T23:59:59Z"
    plain = _item(outbox, "plain")["properties"]  # nothing known: the processing time, said so
    assert plain["satcodec:datetime_source"] == "processing"
    assert plain["datetime"] == plain["processing:datetime"]
    processed = stac.parse_time(plain["processing:datetime"])[0]
    assert before <= processed <= after
    for props in (utm, custom, plain):
        assert props["processing:software"] == {"satcodec": satcodec.__version__}
        assert props["processing:level"] == stac.DEFAULT_LEVEL
        assert "satcodec ground pipeline" in props["processing:lineage"]
        assert props["satcodec:model_id"] and props["satcodec:bpp"] > 0
    assert "1 tile(s) failing their CRC written as nodata 4096" in utm["processing:lineage"]


def test_collection_extent_and_links_cover_the_items(ground):
    _, outbox, _ = ground
    coll = json.loads((outbox / stac.COLLECTION_NAME).read_text())
    items = {stem: _item(outbox, stem) for stem in ("utm", "custom", "plain")}
    assert sorted(link["href"] for link in coll["links"] if link["rel"] == "item") == [
        "./custom.json",
        "./plain.json",
        "./utm.json",
    ]
    (bbox,) = coll["extent"]["spatial"]["bbox"]
    for item in items.values():
        w, s, e, n = item["bbox"]
        assert bbox[0] <= w and bbox[1] <= s and bbox[2] >= e and bbox[3] >= n
        assert item["collection"] == coll["id"]
        rels = {link["rel"]: link["href"] for link in item["links"]}
        assert rels["collection"] == rels["root"] == rels["parent"] == "./collection.json"
    assert bbox[0] == min(i["bbox"][0] for i in items.values())
    assert bbox[3] == max(i["bbox"][3] for i in items.values())
    ((start, end),) = coll["extent"]["temporal"]["interval"]
    assert start == "2024-06-15T10:22:05Z"  # the earliest acquisition
    assert end == items["plain"]["properties"]["datetime"]  # the latest: processing time


def test_resume_and_later_runs_keep_the_collection_consistent(tiny_model, tmp_path):
    src, inbox, outbox = tmp_path / "src", tmp_path / "inbox", tmp_path / "outbox"
    src.mkdir()
    inbox.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        _scene(
            src / f"{name}.tif",
            i,
            CRS.from_epsg(32629),
            (500000 + 20000 * i, 4300000),
            tags={"ACQUISITION_DATETIME": f"2024-06-1{i}T10:00:00Z"},
        )
        satcodec.encode_file(
            src / f"{name}.tif", tmp_path / f"{name}.satc", quality=50, model=tiny_model, tile=TILE
        )
    for name in ("a", "b"):
        os.replace(tmp_path / f"{name}.satc", inbox / f"{name}.satc")
    run_ground(inbox, outbox, **QUIET)
    coll_path = outbox / stac.COLLECTION_NAME

    def collection() -> dict:
        return json.loads(coll_path.read_text())

    assert [link["href"] for link in collection()["links"] if link["rel"] == "item"] == [
        "./a.json",
        "./b.json",
    ]
    # a run killed after writing its products but before the state file and the Collection
    coll_path.unlink()
    (outbox / STATE_NAME).unlink()
    s = run_ground(inbox, outbox, **QUIET)
    assert sorted(s.adopted) == ["a.satc", "b.satc"] and not s.produced
    first = collection()
    assert [link["href"] for link in first["links"] if link["rel"] == "item"] == [
        "./a.json",
        "./b.json",
    ]
    validate_stac(first)
    # nothing changed: the Collection is left alone
    stamp = coll_path.stat().st_mtime_ns
    run_ground(inbox, outbox, **QUIET)
    assert coll_path.stat().st_mtime_ns == stamp
    # a scene added in a later run: the extent grows to cover it
    os.replace(tmp_path / "c.satc", inbox / "c.satc")
    s = run_ground(inbox, outbox, **QUIET)
    assert s.produced == ["c.satc"]
    later = collection()
    validate_stac(later)
    assert [link["href"] for link in later["links"] if link["rel"] == "item"] == [
        "./a.json",
        "./b.json",
        "./c.json",
    ]
    c_bbox = _item(outbox, "c")["bbox"]
    assert (
        later["extent"]["spatial"]["bbox"][0][2]
        == c_bbox[2]
        > first["extent"]["spatial"]["bbox"][0][2]
    )
    assert later["extent"]["temporal"]["interval"] == [
        ["2024-06-10T10:00:00Z", "2024-06-12T10:00:00Z"]
    ]
    # a product removed by an operator leaves the Collection at the next run
    (outbox / "b.json").unlink()
    (outbox / "b.tif").unlink()
    (inbox / "b.satc").unlink()
    run_ground(inbox, outbox, **QUIET)
    assert [link["href"] for link in collection()["links"] if link["rel"] == "item"] == [
        "./a.json",
        "./c.json",
    ]


def test_a_scene_named_like_the_collection_is_refused(tiny_model, tmp_path):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    arr = (np.arange(96 * 128).reshape(96, 128) % 4000).astype(np.uint16)
    (inbox / "collection.satc").write_bytes(
        satcodec.encode(arr, bit_depth=12, quality=50, model=tiny_model, tile=TILE)
    )
    s = run_ground(inbox, outbox, **QUIET)
    assert s.refused == ["collection.satc"] and not s.produced
    coll = json.loads((outbox / stac.COLLECTION_NAME).read_text())
    assert coll["type"] == "Collection" and not [x for x in coll["links"] if x["rel"] == "item"]
    validate_stac(coll)


def test_time_fields_from_metadata():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    notes: list[str] = []
    f = stac.time_fields([{"tifftag_datetime": "2023:07:08 09:10:11"}], now, notes)
    assert f == {"datetime": "2023-07-08T09:10:11Z", "satcodec:datetime_source": "tifftag_datetime"}
    f = stac.time_fields([{"ACQUISITION_TIME": "2023-07-08T11:10:11+02:00"}], now, notes)
    assert f["datetime"] == "2023-07-08T09:10:11Z"
    f = stac.time_fields(
        [{}, {"start_datetime": "2023-07-08T09:10:00Z", "end_datetime": "2023-07-08T09:10:30Z"}],
        now,
        notes,
    )
    assert f["datetime"] is None and f["start_datetime"] == "2023-07-08T09:10:00Z"
    assert f["end_datetime"] == "2023-07-08T09:10:30Z"
    assert not notes
    f = stac.time_fields([{"DATETIME": "yesterday", "ACQUISITION_DATE": "20230708"}], now, notes)
    assert f["datetime"] is None and f["start_datetime"] == "2023-07-08T00:00:00Z"
    assert notes == ["metadata DATETIME='yesterday' is not a date/time: ignored"]
    f = stac.time_fields([{"mission": "SAT-1"}], now, notes)
    assert f == {"datetime": "2026-01-02T03:04:05Z", "satcodec:datetime_source": "processing"}


def test_items_agree_with_rio_stac(ground):
    """proj/raster fields as rio-stac derives them from the same COG (where both define them;
    the differences are by design, see the comments)."""
    rio_stac = pytest.importorskip("rio_stac")
    _, outbox, _ = ground
    for stem in ("utm", "custom"):
        ours = _item(outbox, stem)
        theirs = rio_stac.create_stac_item(
            str(outbox / f"{stem}.tif"), with_proj=True, with_raster=True, with_eo=True
        ).to_dict()
        p, q = ours["properties"], theirs["properties"]
        assert p["proj:shape"] == q["proj:shape"]
        assert p["proj:transform"] == pytest.approx(q["proj:transform"])
        assert p["proj:bbox"] == pytest.approx(q["proj:bbox"])
        # rio-stac writes projection v1.1.0 (proj:epsg, an int; WKT1 in proj:wkt2)
        assert p["proj:code"] == (f"EPSG:{q['proj:epsg']}" if q["proj:epsg"] else None)
        assert ours["bbox"] == pytest.approx(theirs["bbox"], abs=1e-9)
        a, b = ours["assets"]["data"], theirs["assets"]["asset"]
        assert len(a["raster:bands"]) == len(b["raster:bands"])
        for x, y in zip(a["raster:bands"], b["raster:bands"], strict=True):
            assert x["data_type"] == y["data_type"] and x["nodata"] == y["nodata"]
            assert x.get("sampling") == y.get("sampling")
            for k in ("minimum", "maximum", "mean", "stddev", "valid_percent"):
                assert x["statistics"][k] == pytest.approx(y["statistics"][k], rel=1e-9), k
        # rio-stac always names bands b1, b2..., the description going to "description"
        assert [e["name"] for e in b["eo:bands"]] == [
            f"b{i + 1}" for i in range(len(b["eo:bands"]))
        ]


def test_items_without_georeferencing_still_validate(tiny_model, tmp_path):
    from satcodec.raster import RasterMeta

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    arr = (np.arange(96 * 128).reshape(96, 128) % 4000).astype(np.uint16)
    (inbox / "bare.satc").write_bytes(
        satcodec.encode(arr, metadata={"mission": "SAT-1"}, quality=50, model=tiny_model, tile=64)
    )
    huge = RasterMeta(
        height=96,
        width=128,
        count=1,
        dtype="uint16",
        bit_depth=12,
        crs_wkt=CRS.from_epsg(4326).to_wkt(),
        transform=(1e308, 0.0, 0.0, 0.0, -1e308, 0.0),  # corners overflow to inf
    ).to_json_dict()
    (inbox / "huge.satc").write_bytes(
        satcodec.encode(arr, metadata=huge, bit_depth=12, quality=50, model=tiny_model, tile=64)
    )
    # full-range 8-bit data: no value is free for the damaged tile, an internal mask marks it
    u8 = np.random.default_rng(0).integers(0, 256, (128, 192), dtype=np.uint8)
    (inbox / "u8.satc").write_bytes(satcodec.encode(u8, quality=50, model=tiny_model, tile=TILE))
    _flip_tile_byte(inbox / "u8.satc", band=0, row=1, col=1)
    s = run_ground(inbox, outbox, **QUIET)
    assert sorted(s.produced) == ["bare.satc", "huge.satc", "u8.satc"]
    masked = _item(outbox, "u8")
    validate_stac(masked)
    (band,) = masked["assets"]["data"]["raster:bands"]
    assert "nodata" not in band and band["bits_per_sample"] == 8
    assert band["statistics"]["valid_percent"] == pytest.approx(100 * (1 - 64 * 64 / (128 * 192)))
    with rasterio.open(outbox / "u8.tif") as ds:
        valid = ds.read(1)[ds.read_masks(1) > 0].astype(np.float64)
    assert band["statistics"]["mean"] == pytest.approx(valid.mean(), rel=1e-12)
    bare, hostile = _item(outbox, "bare"), _item(outbox, "huge")
    for item in (bare, hostile):
        validate_stac(item)
        assert item["geometry"] is None and "bbox" not in item
        assert "proj:bbox" not in item["properties"]  # nothing finite to state
    assert bare["properties"]["proj:code"] is None and "proj:wkt2" not in bare["properties"]
    assert "proj:transform" not in bare["properties"]
    assert bare["properties"]["proj:shape"] == [96, 128]
    assert hostile["properties"]["proj:code"] == "EPSG:4326"
    coll = json.loads((outbox / stac.COLLECTION_NAME).read_text())
    validate_stac(coll)
    assert coll["extent"]["spatial"]["bbox"] == [[-180.0, -90.0, 180.0, 90.0]]  # none located
