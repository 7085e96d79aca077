"""Implicit-feedback data with item content: loading, filtering, warm/cold splits, content.

Any user's data: :func:`from_interactions` takes (user, item, count) interactions plus item
content as tag triples (user, item, tag) and/or a dense feature matrix (one row per item, e.g.
audio descriptors), and :func:`load_dataset` reads a folder in either of two formats:

- **generic**: ``interactions.csv`` (header ``user,item,count``; the count column is optional),
  plus ``item_tags.csv`` (``user,item,tag``) and/or ``item_features.csv`` (``item,f1,…,fd``),
  and optionally ``items.csv`` (``item,name``); ``.tsv`` (tab-separated) works too; ids may be
  any strings;
- **Last.fm HetRec 2011** (below), the development set.

Tag content is TF-IDF built per split without the held-out pairs' own tags; dense features are
standardised per column (they cannot leak held-out listening).

The Last.fm folder holds ``user_artists.dat`` (user, artist, play count), ``user_taggedartists.dat[.gz]``
(user, artist, tag, date) and ``tags.dat`` (tag names, latin-1); ``artists.dat`` (names) is
optional. Items are artists. See ``../shared/data/music/SOURCES.md``: the data may be used for
non-commercial research with citation, so it is read from its folder and never copied.

Protocols (after Magron & Févotte 2022, with a 70/10/20 train/validation/test proportion):

- **warm**: a random 10% of the (user, artist) pairs is held out for validation and 20% for
  test; a held-out pair whose artist (or user) would be left with no training pair goes back to
  training, so every held-out artist is *seen* in training;
- **cold**: the artists themselves are split 70/10/20; every pair of a validation or test artist
  is held out, so those artists have no training interaction at all and can only be scored
  through their content.

Content vectors are TF-IDF over tags. The same users both listen and tag (22% of listening pairs
were also tagged by that user), so a tag assignment (u, a, t) whose pair (u, a) is held out
(validation or test) is dropped before the content is built: held-out pairs cannot leak through
the content. Tags from users who did not listen to the artist, and tags on training pairs, stay.
"""

from __future__ import annotations

import csv
import gzip
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from satcodec.errors import RecsysDataError

DATASET = "hetrec2011-lastfm-2k"
REQUIRED = ("user_artists.dat", "user_taggedartists.dat", "tags.dat")


def default_data_dir() -> Path:
    """``$SATCODEC_MUSIC_DATA`` if set, else ``../shared/data/music`` next to the repository."""
    env = os.environ.get("SATCODEC_MUSIC_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "music"


def resolve_data_dir(folder: str | Path | None = None) -> Path:
    """The folder holding ``user_artists.dat``: ``folder`` itself or its ``hetrec2011-lastfm-2k``."""
    base = Path(folder) if folder is not None else default_data_dir()
    for cand in (base, base / DATASET):
        if (cand / "user_artists.dat").is_file():
            return cand
    raise RecsysDataError(
        f"no Last.fm HetRec 2011 data in {base}: expected {', '.join(REQUIRED)} "
        f"(the tag file may be gzipped) in that folder or in {base / DATASET}"
    )


def _open_text(path: Path, encoding: str = "ascii") -> str:
    gz = path.with_name(path.name + ".gz")
    try:
        if path.is_file():
            return path.read_bytes().decode(encoding)
        if gz.is_file():
            with gzip.open(gz, "rb") as fh:
                return fh.read().decode(encoding)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise RecsysDataError(f"cannot read {path}: {exc}") from exc
    raise RecsysDataError(f"missing {path.name} (or {gz.name}) in {path.parent}")


def _int_table(path: Path, header: tuple[str, ...], keep: int) -> np.ndarray:
    """First ``keep`` columns of a tab-separated integer table with the given header."""
    text = _open_text(path)
    first, _, body = text.partition("\n")
    cols = tuple(first.strip().split("\t"))
    if cols != header:
        raise RecsysDataError(f"{path.name}: header {cols} is not the expected {header}")
    rows = sum(1 for line in body.splitlines() if line.strip())
    with warnings.catch_warnings():
        # numpy's text parser stops (with a warning) at the first non-integer field
        warnings.simplefilter("error")
        try:
            flat = np.fromstring(body, dtype=np.int64, sep=" ")  # 6x faster than split()
        except (ValueError, DeprecationWarning) as exc:
            raise RecsysDataError(f"{path.name}: a non-integer field ({exc})") from exc
    if flat.size != rows * len(header):
        raise RecsysDataError(
            f"{path.name}: {flat.size} integer fields in {rows} rows, expected "
            f"{len(header)} per row"
        )
    return flat.reshape(-1, len(header))[:, :keep]


def _named_table(path: Path, encoding: str, required: bool) -> dict[int, str]:
    if not required and not path.is_file():
        return {}
    out: dict[int, str] = {}
    lines = _open_text(path, encoding).splitlines()
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("\t")
        try:
            out[int(parts[0])] = parts[1] if len(parts) > 1 else ""
        except ValueError as exc:
            raise RecsysDataError(f"{path.name}, line {n}: bad id {parts[0]!r}") from exc
    return out


@dataclass
class RawData:
    """The raw tables with integer ids (Last.fm's own, or codes given by :func:`from_interactions`)."""

    plays: np.ndarray  # (n, 3) int64: user, item, count (> 0)
    tag_assignments: np.ndarray  # (m, 3) int64: user, item, tag (may be empty)
    tag_names: dict[int, str]
    artist_names: dict[int, str]  # item id -> name (the field keeps its Last.fm name)
    folder: Path | None
    features: np.ndarray | None = None  # (f, d) float32 dense item content
    feature_items: np.ndarray | None = None  # (f,) item id of each feature row
    name: str = "lastfm"

    @property
    def item_names(self) -> dict[int, str]:
        return self.artist_names


LastfmRaw = RawData  # the Last.fm loader's name for it


def _codes(values: Any, table: dict[Any, int] | None = None) -> tuple[np.ndarray, dict[Any, int]]:
    """Integer codes for arbitrary ids (integers stay as they are when ``table`` is None)."""
    arr = np.asarray(values)
    if table is None and arr.dtype.kind in "iu":
        return arr.astype(np.int64), {}
    table = {} if table is None else table
    out = np.empty(len(arr), dtype=np.int64)
    for n, v in enumerate(arr.tolist()):
        key = v if isinstance(v, str) else str(v)
        out[n] = table.setdefault(key, len(table))
    return out, table


def from_interactions(
    interactions: Any,
    item_tags: Any = None,
    item_features: Any = None,
    feature_items: Sequence[Any] | np.ndarray | None = None,
    item_names: dict[Any, str] | None = None,
    name: str = "custom",
    folder: str | Path | None = None,
) -> RawData:
    """A dataset from any user's data (nothing here is Last.fm-specific).

    - ``interactions``: (user, item, count) rows — an (n, 3) array, a list of rows, or a tuple of
      three columns (lists or arrays); ids may be
      integers or strings; counts must be positive (use 1 for plain implicit feedback);
    - ``item_tags``: optional (user, item, tag) rows (who gave which tag to which item; a
      user that is not a listener is fine). Tags of held-out pairs are dropped per split;
    - ``item_features``: optional dense matrix, one row per item (``feature_items`` gives the
      item id of each row), e.g. audio descriptors; or a dict ``{item: vector}``.

    At least one kind of content is needed. Items without content get a zero content row.
    """
    cols = _columns(interactions, 3, "interactions")
    try:
        counts = np.asarray(cols[2], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RecsysDataError(f"interactions: counts must be numbers ({exc})") from exc
    if len(counts) == 0:
        raise RecsysDataError("interactions: no rows")
    if not np.isfinite(counts).all() or (counts <= 0).any():
        raise RecsysDataError("interactions: counts must be positive and finite")
    str_ids = (
        np.asarray(cols[1]).dtype.kind not in "iu" or np.asarray(cols[0]).dtype.kind not in "iu"
    )
    users, utab = _codes(cols[0], {} if str_ids else None)
    items, itab = _codes(cols[1], {} if str_ids else None)
    tags = np.zeros((0, 3), dtype=np.int64)
    tag_names: dict[int, str] = {}
    if item_tags is not None:
        tcols = _columns(item_tags, 3, "item_tags")
        tu, _ = _codes(tcols[0], utab if str_ids else None)
        ti, _ = _codes(tcols[1], itab if str_ids else None)
        tt, ttab = _codes(tcols[2], {})
        tags = np.stack([tu, ti, tt], 1) if len(tt) else tags
        tag_names = {v: k for k, v in ttab.items()}
    feats = fitems = None
    if item_features is not None:
        if isinstance(item_features, dict):
            feature_items = list(item_features)
            item_features = [item_features[k] for k in feature_items]
        try:
            feats = np.asarray(item_features, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise RecsysDataError(f"item_features: not a numeric matrix ({exc})") from exc
        if feats.ndim != 2 or feature_items is None or len(feature_items) != len(feats):
            raise RecsysDataError(
                "item_features must be a 2-D matrix with one item id per row (feature_items)"
            )
        if not np.isfinite(feats).all():
            raise RecsysDataError("item_features: NaN or infinite values")
        fitems, _ = _codes(feature_items, itab if str_ids else None)
    if feats is None and len(tags) == 0:
        raise RecsysDataError("no item content: give item_tags and/or item_features")
    names: dict[int, str] = {}
    if str_ids:
        names = {v: k for k, v in itab.items()}
    for k, v in (item_names or {}).items():
        code = itab.get(str(k)) if str_ids else int(k)
        if code is not None:
            names[int(code)] = str(v)
    # fractional counts are rounded (to at least 1): the models binarise them anyway
    plays = np.stack([users, items, np.maximum(1, np.rint(counts)).astype(np.int64)], 1)
    return RawData(
        plays=plays,
        tag_assignments=tags,
        tag_names=tag_names,
        artist_names=names,
        folder=Path(folder) if folder is not None else None,
        features=feats,
        feature_items=fitems,
        name=name,
    )


def _columns(rows: Any, n: int, what: str) -> list[np.ndarray]:
    # a tuple of n lists/arrays is n columns; anything else (an array, a list of rows) is rows
    if (
        isinstance(rows, tuple)
        and len(rows) == n
        and all(isinstance(c, list | np.ndarray) and np.ndim(c) == 1 for c in rows)
    ):
        cols = [np.asarray(c) for c in rows]
    else:
        arr = np.asarray(rows, dtype=object) if not isinstance(rows, np.ndarray) else rows
        if arr.ndim != 2 or arr.shape[1] < n:
            raise RecsysDataError(f"{what}: expected {n} columns, got shape {np.shape(arr)}")
        cols = [np.asarray(arr[:, j].tolist()) for j in range(n)]
    if len({len(c) for c in cols}) != 1:
        raise RecsysDataError(f"{what}: columns of different lengths")
    return cols


GENERIC = ("interactions.csv", "interactions.tsv")


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".csv", ".tsv"):
        if (folder / (stem + ext)).is_file():
            return folder / (stem + ext)
    return None


def _read_table(path: Path, min_cols: int) -> tuple[list[str], list[list[str]]]:
    delim = "\t" if path.suffix == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh, delimiter=delim) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RecsysDataError(f"cannot read {path}: {exc}") from exc
    if not rows:
        raise RecsysDataError(f"{path.name} is empty")
    header, body = [c.strip() for c in rows[0]], rows[1:]
    for n, r in enumerate(body, start=2):
        if len(r) < min_cols:
            raise RecsysDataError(f"{path.name}, line {n}: {len(r)} columns, expected {min_cols}")
    return header, body


def load_folder(folder: str | Path) -> RawData:
    """A dataset folder in the generic format (see the module docstring)."""
    root = Path(folder)
    path = _find(root, "interactions")
    if path is None:
        raise RecsysDataError(
            f"no dataset in {root}: expected interactions.csv (user,item,count) with "
            "item_tags.csv (user,item,tag) and/or item_features.csv (item,f1,…), or the "
            f"Last.fm HetRec 2011 files ({', '.join(REQUIRED)})"
        )
    header, body = _read_table(path, 2)
    if [h.lower() for h in header[:2]] != ["user", "item"]:
        raise RecsysDataError(f"{path.name}: header {header} must start with user,item")
    try:
        counts = [float(r[2]) if len(r) > 2 and r[2].strip() else 1.0 for r in body]
    except ValueError as exc:
        raise RecsysDataError(f"{path.name}: a non-numeric count ({exc})") from exc
    inter = ([r[0].strip() for r in body], [r[1].strip() for r in body], counts)
    tags = None
    tpath = _find(root, "item_tags")
    if tpath is not None:
        _, tbody = _read_table(tpath, 3)
        tags = tuple([r[j].strip() for r in tbody] for j in range(3))
    feats = fitems = None
    fpath = _find(root, "item_features")
    if fpath is not None:
        _, fbody = _read_table(fpath, 2)
        fitems = [r[0].strip() for r in fbody]
        try:
            feats = np.array([[float(v) for v in r[1:]] for r in fbody], dtype=np.float32)
        except ValueError as exc:
            raise RecsysDataError(f"{fpath.name}: a non-numeric feature ({exc})") from exc
    names = None
    npath = _find(root, "items")
    if npath is not None:
        _, nbody = _read_table(npath, 2)
        names = {r[0].strip(): r[1] for r in nbody}
    return from_interactions(
        inter, tags, feats, fitems, item_names=names, name=root.name, folder=root
    )


def save_folder(raw: RawData, folder: str | Path) -> Path:
    """Write ``raw`` in the generic format (the inverse of :func:`load_folder`)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "interactions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user", "item", "count"])
        w.writerows(raw.plays.tolist())
    if len(raw.tag_assignments):
        with (root / "item_tags.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["user", "item", "tag"])
            w.writerows(raw.tag_assignments.tolist())
    if raw.features is not None and raw.feature_items is not None:
        with (root / "item_features.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["item", *(f"f{j}" for j in range(raw.features.shape[1]))])
            for i, row in zip(raw.feature_items.tolist(), raw.features, strict=True):
                w.writerow([i, *(f"{v:.6g}" for v in row.tolist())])
    if raw.artist_names:
        with (root / "items.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["item", "name"])
            w.writerows(sorted(raw.artist_names.items()))
    return root


def load_dataset(folder: str | Path | None = None) -> RawData:
    """A folder in the generic format, or the Last.fm HetRec 2011 files (default folder)."""
    if folder is not None and _find(Path(folder), "interactions") is not None:
        return load_folder(folder)
    return load_lastfm(folder)


def load_lastfm(folder: str | Path | None = None) -> RawData:
    """Read the HetRec 2011 Last.fm tables (raises :class:`RecsysDataError` when unusable)."""
    root = resolve_data_dir(folder)
    plays = _int_table(root / "user_artists.dat", ("userID", "artistID", "weight"), 3)
    tags = _int_table(
        root / "user_taggedartists.dat",
        ("userID", "artistID", "tagID", "day", "month", "year"),
        3,
    )
    if len(plays) == 0:
        raise RecsysDataError(f"{root / 'user_artists.dat'} has no rows")
    if (plays[:, 2] <= 0).any():
        raise RecsysDataError("user_artists.dat: play counts must be positive")
    return RawData(
        plays=plays,
        tag_assignments=tags,
        tag_names=_named_table(root / "tags.dat", "latin-1", required=True),
        artist_names=_named_table(root / "artists.dat", "utf-8", required=False),
        folder=root,
    )


@dataclass
class Interactions:
    """Filtered listening data with contiguous indices (users 0..U-1, items 0..I-1)."""

    user_ids: np.ndarray  # index -> dataset userID
    item_ids: np.ndarray  # index -> dataset artistID
    users: np.ndarray  # per pair: user index
    items: np.ndarray  # per pair: item index
    counts: np.ndarray  # per pair: play count
    tag_users: np.ndarray  # per tag assignment on a kept item: dataset userID (any user)
    tag_items: np.ndarray  # item index
    tag_ids: np.ndarray  # dataset tagID
    tag_names: dict[int, str] = field(default_factory=dict)
    item_names: list[str] = field(default_factory=list)
    features: np.ndarray | None = None  # items x d dense content (zero row: none)
    name: str = "lastfm"

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """users x items CSR matrix of play counts (optionally of the pairs in ``mask``)."""
        m = slice(None) if mask is None else mask
        return sp.csr_matrix(
            (self.counts[m].astype(np.float32), (self.users[m], self.items[m])),
            shape=(self.n_users, self.n_items),
        )


def preprocess(raw: RawData, min_item_users: int = 5, min_user_items: int = 10) -> Interactions:
    """Keep artists with at least ``min_item_users`` listeners and users with at least
    ``min_user_items`` kept artists (repeated until both hold), then index them."""
    u, a, c = raw.plays[:, 0], raw.plays[:, 1], raw.plays[:, 2]
    keep = np.ones(len(u), dtype=bool)
    for _ in range(20):
        ia, na = np.unique(a[keep], return_counts=True)
        ok_items = ia[na >= min_item_users]
        keep &= np.isin(a, ok_items)
        iu, nu = np.unique(u[keep], return_counts=True)
        ok_users = iu[nu >= min_user_items]
        new = keep & np.isin(u, ok_users)
        if new.sum() == keep.sum():
            break
        keep = new
    if not keep.any():
        raise RecsysDataError(
            f"no interaction left after filtering (min {min_item_users} listeners per artist, "
            f"min {min_user_items} artists per user)"
        )
    user_ids = np.unique(u[keep])
    item_ids = np.unique(a[keep])
    ta = raw.tag_assignments
    on_kept = np.isin(ta[:, 1], item_ids)
    names = [raw.artist_names.get(int(i), str(int(i))) for i in item_ids]
    feats = None
    if raw.features is not None and raw.feature_items is not None:
        feats = np.zeros((len(item_ids), raw.features.shape[1]), dtype=np.float32)
        pos = np.searchsorted(item_ids, raw.feature_items)
        ok = (pos < len(item_ids)) & (
            item_ids[np.minimum(pos, len(item_ids) - 1)] == raw.feature_items
        )
        feats[pos[ok]] = raw.features[ok]
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        users=np.searchsorted(user_ids, u[keep]),
        items=np.searchsorted(item_ids, a[keep]),
        counts=c[keep],
        tag_users=ta[on_kept, 0],
        tag_items=np.searchsorted(item_ids, ta[on_kept, 1]),
        tag_ids=ta[on_kept, 2],
        tag_names=raw.tag_names,
        item_names=names,
        features=feats,
        name=raw.name,
    )


def tfidf_content(
    inter: Interactions,
    heldout_pairs: set[tuple[int, int]] | np.ndarray | None = None,
    min_tag_items: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Item x tag TF-IDF matrix (rows L2-normalised) and the dataset tag ids of its columns.

    ``heldout_pairs`` (an (n, 2) array of dataset (userID, item index) pairs) are the held-out
    listening pairs: their own tag assignments are dropped (no leakage). tf = 1 + log(number of
    users who gave the tag), idf = log((1 + I) / (1 + df)) + 1; tags on fewer than
    ``min_tag_items`` items are dropped. Items without any kept tag get a zero row.
    """
    tu, ti, tt = inter.tag_users, inter.tag_items, inter.tag_ids
    keep = np.ones(len(tu), dtype=bool)
    if heldout_pairs is not None and len(heldout_pairs):
        pairs = np.asarray(heldout_pairs, dtype=np.int64)
        key = tu * (inter.n_items + 1) + ti
        hkey = pairs[:, 0] * (inter.n_items + 1) + pairs[:, 1]
        keep &= ~np.isin(key, hkey)
    ti, tt = ti[keep], tt[keep]
    tags, col = np.unique(tt, return_inverse=True)
    # count distinct users per (item, tag): duplicates cannot occur in the source, but be safe
    counts = sp.csr_matrix(
        (np.ones(len(ti), dtype=np.float64), (ti, col)), shape=(inter.n_items, len(tags))
    )
    counts.sum_duplicates()
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    used = df >= min_tag_items
    counts = counts[:, used].tocsr()
    tags, df = tags[used], df[used]
    tf = counts.copy()
    tf.data = 1.0 + np.log(tf.data)
    idf = np.log((1.0 + inter.n_items) / (1.0 + df)) + 1.0
    x = np.asarray(tf.multiply(idf[None, :]).todense(), dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.where(norm > 0, norm, 1.0)
    return x, tags


def dense_content(features: np.ndarray) -> np.ndarray:
    """Dense item features standardised per column (all-zero rows, i.e. no content, stay 0)."""
    x = np.asarray(features, dtype=np.float64)
    has = np.abs(x).sum(1) > 0
    if not has.any():
        return np.zeros_like(x, dtype=np.float32)
    mu, sd = x[has].mean(0), x[has].std(0)
    z = (x - mu) / np.where(sd > 0, sd, 1.0)
    z[~has] = 0.0
    return z.astype(np.float32)


def split_content(
    inter: Interactions, heldout_pairs: np.ndarray | None, min_tag_items: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Content rows of one split: tag TF-IDF without held-out pairs' tags, then dense features
    (standardised), side by side when the dataset has both; and the tag ids of the tag columns."""
    parts: list[np.ndarray] = []
    tag_ids = np.zeros(0, dtype=np.int64)
    if len(inter.tag_ids):
        x, tag_ids = tfidf_content(inter, heldout_pairs, min_tag_items=min_tag_items)
        parts.append(x)
    if inter.features is not None:
        parts.append(dense_content(inter.features))
    if not parts or sum(p.shape[1] for p in parts) == 0:
        raise RecsysDataError("the dataset has no usable item content (tags or features)")
    return (parts[0] if len(parts) == 1 else np.hstack(parts)), tag_ids


@dataclass
class Split:
    """One train/validation/test split of one protocol, with its leakage-free content."""

    protocol: str  # "warm" or "cold"
    seed: int
    train: sp.csr_matrix  # users x items play counts (0 = no pair)
    val: sp.csr_matrix
    test: sp.csr_matrix
    train_items: np.ndarray  # items with training pairs (the only ones with free factors)
    val_items: np.ndarray  # candidate items ranked for validation
    test_items: np.ndarray  # candidate items ranked for test
    content: np.ndarray  # items x tags TF-IDF (float32)
    tag_ids: np.ndarray
    inter: Interactions

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def describe(self) -> dict[str, int | float | str]:
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "users": self.n_users,
            "items": self.n_items,
            "train_pairs": int(self.train.nnz),
            "val_pairs": int(self.val.nnz),
            "test_pairs": int(self.test.nnz),
            "train_items": len(self.train_items),
            "val_candidates": len(self.val_items),
            "test_candidates": len(self.test_items),
            "content_dims": int(self.content.shape[1]),
            "items_without_content": int((np.abs(self.content).sum(1) == 0).sum()),
        }


def make_split(
    inter: Interactions,
    protocol: str,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
    min_tag_items: int = 5,
) -> Split:
    """A ``warm`` or ``cold`` split (see the module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    n = len(inter.users)
    where = np.zeros(n, dtype=np.int8)  # 0 train, 1 val, 2 test
    if protocol == "warm":
        perm = rng.permutation(n)
        n_test, n_val = int(round(test_frac * n)), int(round(val_frac * n))
        where[perm[:n_test]] = 2
        where[perm[n_test : n_test + n_val]] = 1
        # every held-out item and user keeps at least one training pair: give one back
        for idx in (inter.items, inter.users):
            trained = np.zeros(idx.max() + 1, dtype=bool)
            trained[idx[where == 0]] = True
            for j in np.flatnonzero(~trained[idx] & (where > 0)):
                if not trained[idx[j]]:
                    where[j] = 0
                    trained[idx[j]] = True
        train_items = np.unique(inter.items[where == 0])
        val_items = test_items = np.arange(inter.n_items)
    elif protocol == "cold":
        perm = rng.permutation(inter.n_items)
        n_test = int(round(test_frac * inter.n_items))
        n_val = int(round(val_frac * inter.n_items))
        test_items = np.sort(perm[:n_test])
        val_items = np.sort(perm[n_test : n_test + n_val])
        train_items = np.sort(perm[n_test + n_val :])
        where[np.isin(inter.items, val_items)] = 1
        where[np.isin(inter.items, test_items)] = 2
    else:
        raise RecsysDataError(f"unknown protocol {protocol!r} (warm, cold)")
    held = where > 0
    pairs = np.stack([inter.user_ids[inter.users[held]], inter.items[held]], 1)
    content, tag_ids = split_content(inter, pairs, min_tag_items=min_tag_items)
    return Split(
        protocol=protocol,
        seed=seed,
        train=inter.matrix(where == 0),
        val=inter.matrix(where == 1),
        test=inter.matrix(where == 2),
        train_items=train_items,
        val_items=val_items,
        test_items=test_items,
        content=content,
        tag_ids=tag_ids,
        inter=inter,
    )
