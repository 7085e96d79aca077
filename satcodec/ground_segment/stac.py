"""STAC metadata of the ground pipeline's products: one Item per COG, one Collection per OUTBOX.

What an Item says (STAC 1.1.0; the fields follow what rio-stac derives from the same COG, see
``tests/test_stac.py``):

* **Extensions** (all validated by the tests against their official JSON schemas, bundled under
  ``tests/data/stac_schemas/``): projection v2.0.0, raster v1.1.0, eo v1.1.0, file v2.1.0,
  processing v1.2.0.
* **Footprint**: ``geometry``/``bbox`` in WGS84 from the corners of the raster; none (null,
  with a warning) without a CRS and geotransform or when they give no valid footprint.
* **Projection**: ``proj:code`` is ``"EPSG:NNNN"`` when the CRS is an EPSG code, else null with
  the CRS as WKT2 (2019) in ``proj:wkt2``; ``proj:shape``, and with a geotransform
  ``proj:transform`` and ``proj:bbox`` (in the CRS).
* **Bands** (on the ``data`` asset, as rio-stac puts them): ``raster:bands`` with
  ``data_type``, ``nodata`` (when the COG has one), ``bits_per_sample`` (the sensor bit depth
  the stream declares), ``sampling`` (from AREA_OR_POINT) and ``statistics`` computed on the
  decoded array without nodata or damaged pixels; ``eo:bands`` with ``name`` from the band
  descriptions (``b1``, ``b2``... without one) and ``common_name`` only when the description
  is one of the eo common names.
* **Time**: ``datetime`` is the acquisition time when the source metadata states it (tags or
  stream metadata keys, first found of :data:`INSTANT_KEYS`, case-insensitive; a TIFF
  ``YYYY:MM:DD HH:MM:SS``, ISO 8601 or date-only value, UTC when no offset is given). A start
  and end (:data:`START_KEYS`/:data:`END_KEYS`) become ``start_datetime``/``end_datetime``
  (with ``datetime`` null when no instant is known); a date without a time becomes
  ``datetime: null`` with the whole UTC day as start/end. When the metadata states no time at
  all, ``datetime`` is the processing time, and ``satcodec:datetime_source`` is
  ``"processing"`` (else it names the key the time came from), so a catalogue can tell a
  real acquisition time from a placeholder. ``processing:datetime`` is always the processing
  time.
* **Processing**: ``processing:software`` ``{"satcodec": version}``, ``processing:level`` (the
  source's level when its metadata states one, else :data:`DEFAULT_LEVEL`),
  ``processing:lineage`` (what was done) and the pipeline's ``satcodec:*`` fields.
* **Links**: ``root``, ``parent`` and ``collection`` to ``./collection.json``, the OUTBOX's
  Collection (:func:`collection_for_outbox`). No ``self`` link unless a ``base_url`` is
  given: the OUTBOX is a *self-contained* catalogue (relative links only, valid wherever the
  folder is moved or served), as STAC best practices describe; a reader gets the self href
  from where it read the file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from satcodec.errors import GroundPipelineError

STAC_VERSION = "1.1.0"
EXT_PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EXT_RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EXT_EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
EXT_FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
EXT_PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
ITEM_EXTENSIONS = (EXT_PROJECTION, EXT_RASTER, EXT_EO, EXT_FILE, EXT_PROCESSING)

COLLECTION_NAME = "collection.json"
COLLECTION_ID = "satcodec-ground"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
DEFAULT_LEVEL = "L1"  # decoded sensor DN, georeferenced as the source was; no correction here

# metadata keys (tags or stream metadata, compared case-insensitively), first found wins
INSTANT_KEYS = (
    "ACQUISITIONDATETIME",  # GDAL's IMAGERY domain name
    "ACQUISITION_DATETIME",
    "ACQUISITION_TIME",
    "DATETIME",
    "ACQUISITION_DATE",
    "TIFFTAG_DATETIME",  # the source file's own time: the last resort, as in rio-stac
)
START_KEYS = ("START_DATETIME", "ACQUISITION_START_DATETIME", "ACQUISITION_START_TIME")
END_KEYS = ("END_DATETIME", "ACQUISITION_END_DATETIME", "ACQUISITION_END_TIME")
LEVEL_KEYS = ("PROCESSING:LEVEL", "PROCESSING_LEVEL", "PRODUCT_LEVEL")
# the eo v1.1.0 common band names: a description equal to one of them is its common name
EO_COMMON_NAMES = frozenset(
    "coastal blue green red rededge yellow pan nir nir08 nir09 cirrus swir16 swir22 lwir "
    "lwir11 lwir12".split()
)
_STATS_CHUNK = 1 << 22  # samples per step: statistics never copy a whole band


# --- small helpers -----------------------------------------------------------------------------
def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _stamp(t: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the STAC schemas require."""
    t = t.astimezone(dt.timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return t.strftime(fmt)


def _number(v: float) -> int | float:
    """An integral float as an int (``0`` rather than ``0.0`` for a uint16 nodata)."""
    return int(v) if float(v).is_integer() else float(v)


def footprint(meta: Any, warnings: list[str]) -> tuple[dict | None, list[float] | None]:
    """GeoJSON footprint (EPSG:4326) and bbox, or (None, None): without a CRS + transform, or
    when the georeferencing gives no valid footprint (non-finite, off the globe: a warning)."""
    if not meta.crs_wkt or meta.transform is None:
        return None, None
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    a, b, c, d, e, f = meta.transform
    corners = [(0, 0), (meta.width, 0), (meta.width, meta.height), (0, meta.height), (0, 0)]
    ring = [[a * col + b * row + c, d * col + e * row + f] for col, row in corners]
    if not all(_finite(*p) for p in ring):
        warnings.append("georeferencing gives a non-finite footprint: no geometry in the Item")
        return None, None
    try:
        geom = transform_geom(
            CRS.from_wkt(meta.crs_wkt), "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}
        )
        pts = [(float(p[0]), float(p[1])) for p in geom["coordinates"][0]]
    except Exception:  # noqa: BLE001 - a CRS GDAL cannot reproject: no footprint, not a failure
        warnings.append("footprint cannot be reprojected to EPSG:4326: no geometry in the Item")
        return None, None
    if not pts or not all(
        _finite(x, y) and -180.0 <= x <= 180.0 and -90.0 <= y <= 90.0 for x, y in pts
    ):
        warnings.append("footprint falls outside EPSG:4326 bounds: no geometry in the Item")
        return None, None
    geom = {"type": "Polygon", "coordinates": [[list(p) for p in pts]]}
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return geom, [min(xs), min(ys), max(xs), max(ys)]


# --- projection --------------------------------------------------------------------------------
def projection_fields(meta: Any) -> dict[str, Any]:
    """The projection extension (v2.0.0) fields of a raster: code or WKT2, shape, transform."""
    out: dict[str, Any] = {"proj:code": None}
    if meta.crs_wkt:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            crs = CRS.from_wkt(meta.crs_wkt)
        except CRSError:
            crs = None  # the stream's metadata was validated: should not happen; stay null
        if crs is not None:
            epsg = crs.to_epsg() if crs.is_epsg_code else None
            if epsg:
                out["proj:code"] = f"EPSG:{epsg}"
            else:  # a CRS without an EPSG code: state it in full, as WKT2
                out["proj:wkt2"] = crs.to_wkt(version="WKT2_2019")
    out["proj:shape"] = [int(meta.height), int(meta.width)]
    if meta.transform is not None and _finite(*meta.transform):
        a, b, c, d, e, f = (float(v) for v in meta.transform)
        out["proj:transform"] = [a, b, c, d, e, f, 0.0, 0.0, 1.0]
        xs = [c, a * meta.width + c, b * meta.height + c, a * meta.width + b * meta.height + c]
        ys = [f, d * meta.width + f, e * meta.height + f, d * meta.width + e * meta.height + f]
        if _finite(*xs, *ys):
            out["proj:bbox"] = [min(xs), min(ys), max(xs), max(ys)]
    return out


# --- bands -------------------------------------------------------------------------------------
def band_statistics(
    band: np.ndarray, nodata: float | None = None, invalid: np.ndarray | None = None
) -> dict[str, float]:
    """min/max/mean/stddev (population)/valid_percent of one band, without nodata or
    ``invalid`` pixels (damaged tiles), computed in chunks (Chan's parallel variance update).
    Only ``valid_percent`` when no pixel is valid."""
    flat = band.reshape(-1)
    bad = None if invalid is None else invalid.reshape(-1)
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi = math.inf, -math.inf
    for start in range(0, flat.size, _STATS_CHUNK):
        chunk = flat[start : start + _STATS_CHUNK]
        keep = np.ones(chunk.shape, bool)
        if nodata is not None:
            keep &= chunk != nodata
        if bad is not None:
            keep &= ~bad[start : start + _STATS_CHUNK]
        if np.issubdtype(chunk.dtype, np.floating):
            keep &= np.isfinite(chunk)
        vals = chunk[keep].astype(np.float64)
        k = vals.size
        if not k:
            continue
        cm = float(vals.mean())
        cm2 = float(((vals - cm) ** 2).sum())
        delta = cm - mean
        total = n + k
        mean += delta * k / total
        m2 += cm2 + delta * delta * n * k / total
        n = total
        lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
    stats: dict[str, float] = {"valid_percent": 100.0 * n / flat.size if flat.size else 0.0}
    if n:
        stats.update(minimum=lo, maximum=hi, mean=mean, stddev=math.sqrt(m2 / n))
    return stats


def raster_bands(
    array: np.ndarray, meta: Any, invalid: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """``raster:bands`` (raster extension v1.1.0) of the decoded array written to the COG."""
    sampling = str(_lookup(meta.tags or {}, ("AREA_OR_POINT",)) or "").lower()
    bands = []
    for i in range(array.shape[0]):
        b: dict[str, Any] = {"data_type": str(array.dtype)}
        if meta.nodata is not None:
            b["nodata"] = _number(meta.nodata)
        if meta.bit_depth:
            b["bits_per_sample"] = int(meta.bit_depth)
        if sampling in ("area", "point"):
            b["sampling"] = sampling
        b["statistics"] = band_statistics(
            array[i], meta.nodata, None if invalid is None else invalid[i]
        )
        bands.append(b)
    return bands


def eo_bands(meta: Any, count: int) -> list[dict[str, Any]]:
    """``eo:bands`` (eo extension v1.1.0): names from the band descriptions, else b1, b2..."""
    descriptions = list(meta.descriptions or [])
    out = []
    for i in range(count):
        d = descriptions[i] if i < len(descriptions) else None
        name = d.strip() if isinstance(d, str) and d.strip() else f"b{i + 1}"
        band: dict[str, Any] = {"name": name}
        if name.lower() in EO_COMMON_NAMES:
            band["common_name"] = name.lower()
        out.append(band)
    return out


# --- time --------------------------------------------------------------------------------------
_TIFF_TIME = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_DATE_ONLY = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def _lookup(
    sources: Mapping[str, Any] | Iterable[Mapping[str, Any]], keys: tuple[str, ...]
) -> str | None:
    """The value of the first of ``keys`` (case-insensitive) in the mappings, else None."""
    maps = [sources] if isinstance(sources, Mapping) else list(sources)
    for key in keys:
        for m in maps:
            for k, v in m.items():
                if isinstance(k, str) and k.upper() == key and isinstance(v, str) and v.strip():
                    return v.strip()
    return None


def _lookup_key(maps: list[Mapping[str, Any]], keys: tuple[str, ...]) -> tuple[str, str] | None:
    for key in keys:
        for m in maps:
            for k, v in m.items():
                if isinstance(k, str) and k.upper() == key and isinstance(v, str) and v.strip():
                    return k, v.strip()
    return None


def parse_time(text: str) -> tuple[dt.datetime, bool]:
    """(UTC datetime, has a time of day) of a metadata time; ValueError when it is none.

    Accepts TIFF ``YYYY:MM:DD HH:MM:SS``, ISO 8601 (``Z`` or an offset; none means UTC) and
    a date alone (``YYYY-MM-DD`` or ``YYYYMMDD``: has no time of day)."""
    s = text.strip()
    m = _TIFF_TIME.fullmatch(s)
    if m:
        t = dt.datetime(*map(int, m.groups()), tzinfo=dt.timezone.utc)
        return t, True
    m = _DATE_ONLY.fullmatch(s)
    if m:
        return dt.datetime(*map(int, m.groups()), tzinfo=dt.timezone.utc), False
    t = dt.datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc), True


def time_fields(
    maps: list[Mapping[str, Any]], processed: dt.datetime, warnings: list[str]
) -> dict[str, Any]:
    """``datetime`` (+ ``start_datetime``/``end_datetime``) and ``satcodec:datetime_source``
    from the source metadata, with the processing time as the documented last resort."""

    def read(keys: tuple[str, ...]) -> tuple[str, dt.datetime, bool] | None:
        remaining = keys
        while remaining:
            found = _lookup_key(maps, remaining)
            if found is None:
                return None
            key, value = found
            try:
                t, timed = parse_time(value)
                return key, t, timed
            except (ValueError, OverflowError):
                warnings.append(f"metadata {key}={value!r} is not a date/time: ignored")
                remaining = remaining[remaining.index(key.upper()) + 1 :]
        return None

    out: dict[str, Any] = {}
    instant, start, end = read(INSTANT_KEYS), read(START_KEYS), read(END_KEYS)
    if start and end and end[1] < start[1]:
        warnings.append("metadata end time is before its start time: both ignored")
        start = end = None
    if start and end:
        s, e = start[1], end[1]
        if not end[2]:  # a date alone ends with its day
            e = e + dt.timedelta(days=1, seconds=-1)
        out["start_datetime"], out["end_datetime"] = _stamp(s), _stamp(e)
    if instant and instant[2]:
        out["datetime"] = _stamp(instant[1])
        out["satcodec:datetime_source"] = instant[0]
    elif instant:  # a day, not an instant: the day as the range
        out["datetime"] = None
        if "start_datetime" not in out:
            day = instant[1]
            out["start_datetime"] = _stamp(day)
            out["end_datetime"] = _stamp(day + dt.timedelta(days=1, seconds=-1))
        out["satcodec:datetime_source"] = instant[0]
    elif "start_datetime" in out:
        out["datetime"] = None
        out["satcodec:datetime_source"] = f"{start[0]}/{end[0]}"
    else:  # nothing known: the processing time, and say so
        out["datetime"] = _stamp(processed)
        out["satcodec:datetime_source"] = "processing"
    return out


# --- Item --------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from satcodec import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover - a broken install
        return "unknown"


def _links(base_url: str | None, self_name: str | None) -> list[dict[str, Any]]:
    def href(name: str) -> str:
        return f"{base_url.rstrip('/')}/{name}" if base_url else f"./{name}"

    links = [
        {"rel": rel, "href": href(COLLECTION_NAME), "type": "application/json"}
        for rel in ("root", "parent", "collection")
    ]
    if base_url and self_name:
        links.insert(0, {"rel": "self", "href": href(self_name), "type": "application/geo+json"})
    return links


def item_for_product(
    stem: str,
    cog: Path,
    cog_sha256: str,
    meta: Any,
    array: np.ndarray,
    props: Mapping[str, Any],
    warnings: list[str],
    *,
    invalid: np.ndarray | None = None,
    stream_metadata: Mapping[str, Any] | None = None,
    lineage: str | None = None,
    processed: dt.datetime | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """The STAC Item (a JSON-ready dict) of one product: ``cog`` written from ``array`` (bands
    x rows x cols) with ``meta``; ``invalid`` marks damaged pixels (left out of statistics);
    ``props`` are the pipeline's ``satcodec:*`` fields; ``stream_metadata`` the stream's other
    metadata keys (searched with the tags for times and levels). Notes go to ``warnings``."""
    if array.ndim != 3 or array.shape[0] != meta.count:
        raise GroundPipelineError(
            f"{stem}: array of shape {array.shape} does not match {meta.count} band(s)"
        )
    processed = processed or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    geom, bbox = footprint(meta, warnings)
    maps = [m for m in (meta.tags or {}, stream_metadata or {}) if isinstance(m, Mapping)]
    properties: dict[str, Any] = {}
    properties.update(time_fields(maps, processed, warnings))
    properties.update(projection_fields(meta))
    properties.update(
        {
            "processing:level": _lookup(maps, LEVEL_KEYS) or DEFAULT_LEVEL,
            "processing:datetime": _stamp(processed),
            "processing:software": {"satcodec": _version()},
        }
    )
    if lineage:
        properties["processing:lineage"] = lineage
    properties.update(props)
    asset = {
        "href": f"./{cog.name}",
        "type": COG_MEDIA_TYPE,
        "title": "Decoded image (Cloud Optimized GeoTIFF)",
        "roles": ["data"],
        "file:checksum": "1220" + cog_sha256,  # multihash: sha2-256, 32 bytes
        "file:size": cog.stat().st_size,
        "raster:bands": raster_bands(array, meta, invalid),
        "eo:bands": eo_bands(meta, array.shape[0]),
    }
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(ITEM_EXTENSIONS),
        "id": stem,
        "geometry": geom,
    }
    if bbox is not None:
        item["bbox"] = bbox
    item.update(
        properties=properties,
        links=_links(base_url, f"{stem}.json"),
        assets={"data": asset},
        collection=COLLECTION_ID,
    )
    return item


# --- Collection --------------------------------------------------------------------------------
def _is_product_item(d: Any) -> bool:
    """An Item this pipeline wrote (other JSON files in OUTBOX are not catalogued)."""
    return (
        isinstance(d, dict)
        and d.get("type") == "Feature"
        and isinstance(d.get("id"), str)
        and isinstance(d.get("properties"), dict)
        and "satcodec:cog_sha256" in d["properties"]
    )


def product_items(outbox: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, Item) of every product Item in ``outbox`` whose COG is there, by name."""
    out = []
    folder = Path(outbox)
    for p in sorted(folder.glob("*.json")):
        if p.name == COLLECTION_NAME or p.name.startswith("."):
            continue
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # being replaced, or not ours: the next rebuild sees it
        if not _is_product_item(d):
            continue
        href = str(((d.get("assets") or {}).get("data") or {}).get("href", ""))
        if not href.startswith("./") or not (folder / href[2:]).is_file():
            continue
        out.append((p.name, d))
    return out


def _item_interval(props: Mapping[str, Any]) -> tuple[str | None, str | None]:
    start = props.get("start_datetime") or props.get("datetime")
    end = props.get("end_datetime") or props.get("datetime")
    return start, end


def collection_for_outbox(
    outbox: str | Path,
    *,
    collection_id: str = COLLECTION_ID,
    base_url: str | None = None,
) -> dict[str, Any]:
    """The Collection of every product Item now in ``outbox``, rebuilt from the Items (so it
    is right after a resumed run, added scenes or removed products): extent = union of the
    Items' bboxes and their time range, one ``item`` link per Item."""
    items = product_items(outbox)
    boxes = [d["bbox"] for _, d in items if isinstance(d.get("bbox"), list) and len(d["bbox"]) == 4]
    if boxes:
        spatial = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
    else:
        spatial = [-180.0, -90.0, 180.0, 90.0]  # nothing located: the whole globe
    starts, ends = [], []
    for _, d in items:
        s, e = _item_interval(d["properties"])
        try:
            ts, te = parse_time(str(s))[0], parse_time(str(e))[0]
        except (ValueError, OverflowError):
            continue  # no usable time (edited by hand?): the Item is listed, not dated
        starts.append(ts)
        ends.append(te)
    interval = [_stamp(min(starts)), _stamp(max(ends))] if starts else [None, None]

    def href(name: str) -> str:
        return f"{base_url.rstrip('/')}/{name}" if base_url else f"./{name}"

    links: list[dict[str, Any]] = [
        {"rel": "root", "href": href(COLLECTION_NAME), "type": "application/json"}
    ]
    if base_url:
        links.insert(0, {"rel": "self", "href": href(COLLECTION_NAME), "type": "application/json"})
    links += [
        {"rel": "item", "href": href(name), "type": "application/geo+json", "title": d["id"]}
        for name, d in items
    ]
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": collection_id,
        "title": "satcodec ground products",
        "description": (
            "Images decoded by the satcodec ground pipeline from downlinked bitstreams, one "
            "Cloud Optimized GeoTIFF and STAC Item per scene."
        ),
        "license": "other",  # the data's licence is the mission's, unknown here
        "extent": {"spatial": {"bbox": [spatial]}, "temporal": {"interval": [interval]}},
        "links": links,
    }
