"""Last.fm HetRec 2011 listening data: loading, filtering, warm/cold splits and tag content.

The folder holds ``user_artists.dat`` (user, artist, play count), ``user_taggedartists.dat[.gz]``
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

import gzip
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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
class LastfmRaw:
    """The raw tables, with the dataset's own ids."""

    plays: np.ndarray  # (n, 3) int64: userID, artistID, play count
    tag_assignments: np.ndarray  # (m, 3) int64: userID, artistID, tagID
    tag_names: dict[int, str]
    artist_names: dict[int, str]
    folder: Path


def load_lastfm(folder: str | Path | None = None) -> LastfmRaw:
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
    return LastfmRaw(
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


def preprocess(raw: LastfmRaw, min_item_users: int = 5, min_user_items: int = 10) -> Interactions:
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
            "tags": int(self.content.shape[1]),
            "items_without_tags": int((self.content.sum(1) == 0).sum()),
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
    content, tag_ids = tfidf_content(inter, pairs, min_tag_items=min_tag_items)
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
