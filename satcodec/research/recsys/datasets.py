"""The other benchmark data sets: MovieLens 100k (shipped inside RecBole) and one derived from
Last.fm.

**MovieLens 100k** (``movielens-100k``, :func:`load_movielens_100k`): the maintained package
RecBole (``pip install --no-deps recbole``, MIT licence) ships GroupLens' MovieLens 100k
(research use under the GroupLens terms) inside its wheel, in RecBole's atomic-file format
(``ml-100k.inter``, ``.item``, ``.kg``, ``.link``). The files are only located and read here;
RecBole itself is never imported. Implicit feedback: a rating >= 4 (of 1-5) is a positive with
count 1; lower ratings are dropped. Item content, as tag triples from a catalogue "user" that
never rates (so no held-out pair ever removes it): the genres, the release decade and, from the
knowledge graph (Freebase), the linked film's actors, directors, writers, producers, genres,
language, country, production companies, content rating and subjects (``relation=entity``
tags; tags on fewer than 5 items are dropped later by the TF-IDF, as for any data set).

Earlier note (before RecBole's bundled copy was found), kept for the record: no maintained package ships a user × item data set with item content inside its wheel (checked
from the wheels, December 2026: ``lightfm``/``lightfm-next``, ``implicit``, ``cornac``,
``librecommender``, ``lenskit``, ``rectools``, ``cr-learn``, ``recsets`` all download their
data sets at run time, which is not allowed here). So the second data set is built from the
HetRec 2011 Last.fm files, but with a different population and a different kind of content:

**Last.fm, disjoint taggers, dense content** (``lastfm-dense``): the users are split at random
(fixed seed) into two halves. The first half's (user, artist, play count) triples are the
interactions. The item content is a dense matrix: a truncated SVD (``n_components`` dimensions,
standing in for the paper's dense audio descriptors) of the artist × tag TF-IDF built from the
*second* half's tag assignments only. The content therefore never comes from the listeners
being evaluated (no leakage by construction), and a cold artist is described only by what other
people said about it. It goes through the public constructor :func:`from_interactions` with a
dense feature matrix, as any user's data would.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from satcodec.errors import RecsysDataError
from satcodec.research.recsys.data import RawData, from_interactions

DENSE_NAME = "lastfm-dense"
MOVIELENS_NAME = "movielens-100k"
MOVIELENS_INSTALL = "pip install --no-deps recbole"
POSITIVE_RATING = 4.0
CATALOGUE_USER = "catalogue"  # the pseudo-user that gives the item content tags
KG_RELATIONS = (
    "film.film.actor",
    "film.film.directed_by",
    "film.film.written_by",
    "film.film.produced_by",
    "film.film.genre",
    "film.film.language",
    "film.film.country",
    "film.film.production_companies",
    "film.film.rating",
    "film.film.subjects",
)


def movielens_100k_folder() -> Path:
    """The ``ml-100k`` folder inside the installed RecBole wheel, found without importing it
    (``find_spec`` of a top-level package only locates it)."""
    spec = importlib.util.find_spec("recbole")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        folder = Path(loc) / "dataset_example" / "ml-100k"
        if (folder / "ml-100k.inter").is_file():
            return folder
    raise RecsysDataError(
        f"the {MOVIELENS_NAME} data set is read from the RecBole package, which is "
        + ("not installed" if spec is None else "installed without dataset_example/ml-100k")
        + f": {MOVIELENS_INSTALL}"
    )


def _atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    """A RecBole atomic file: tab-separated, header ``name:type``; returns names and rows."""
    if not path.is_file():
        raise RecsysDataError(f"missing {path.name} in {path.parent}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        raise RecsysDataError(f"{path.name}: empty file")
    names = [h.split(":")[0].strip() for h in lines[0].split("\t")]
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    for n, r in enumerate(rows, start=2):
        if len(r) < len(names):
            r.extend([""] * (len(names) - len(r)))
        if not r[0]:
            raise RecsysDataError(f"{path.name}, line {n}: empty id")
    return names, rows


def _col(names: list[str], want: str, path: str) -> int:
    if want not in names:
        raise RecsysDataError(f"{path}: no {want!r} column (columns {names})")
    return names.index(want)


def load_movielens_100k(
    folder: str | Path | None = None,
    min_rating: float = POSITIVE_RATING,
    knowledge_graph: bool = True,
) -> RawData:
    """MovieLens 100k as implicit feedback with item content (see the module docstring).

    ``folder``: a folder with ``ml-100k.inter`` and ``ml-100k.item`` (and optionally
    ``ml-100k.kg`` + ``ml-100k.link``) in RecBole's atomic format; default: the copy inside the
    installed RecBole package. Positives: rating >= ``min_rating`` (count 1)."""
    folder = Path(folder) if folder is not None else movielens_100k_folder()
    prefix = folder.name if (folder / f"{folder.name}.inter").is_file() else "ml-100k"
    names, rows = _atomic(folder / f"{prefix}.inter")
    iu, ii, ir = (_col(names, c, f"{prefix}.inter") for c in ("user_id", "item_id", "rating"))
    try:
        ratings = np.array([float(r[ir]) for r in rows])
    except ValueError as exc:
        raise RecsysDataError(f"{prefix}.inter: a rating is not a number ({exc})") from exc
    pos = [r for r, v in zip(rows, ratings, strict=True) if v >= min_rating]
    if not pos:
        raise RecsysDataError(f"{prefix}.inter: no rating >= {min_rating}")
    users = [r[iu] for r in pos]
    items = [r[ii] for r in pos]
    # content tags: (catalogue, item, tag)
    tags: list[tuple[str, str, str]] = []
    titles: dict[str, str] = {}
    names, rows = _atomic(folder / f"{prefix}.item")
    it = _col(names, "item_id", f"{prefix}.item")
    for r in rows:
        rec = dict(zip(names, r, strict=False))
        item = r[it]
        titles[item] = rec.get("movie_title", "") or item
        for genre in (rec.get("class") or "").split():
            tags.append((CATALOGUE_USER, item, f"genre={genre}"))
        year = (rec.get("release_year") or "").strip()
        if year.isdigit():
            tags.append((CATALOGUE_USER, item, f"decade={int(year) // 10 * 10}s"))
    kg, link = folder / f"{prefix}.kg", folder / f"{prefix}.link"
    if knowledge_graph and kg.is_file() and link.is_file():
        names, rows = _atomic(link)
        li, le = _col(names, "item_id", link.name), _col(names, "entity_id", link.name)
        entity_item = {r[le]: r[li] for r in rows}
        names, rows = _atomic(kg)
        h, rel, t = (_col(names, c, kg.name) for c in ("head_id", "relation_id", "tail_id"))
        wanted = set(KG_RELATIONS)
        for r in rows:
            item = entity_item.get(r[h])
            if item is not None and r[rel] in wanted:
                tags.append((CATALOGUE_USER, item, f"{r[rel].rsplit('.', 1)[-1]}={r[t]}"))
    tags = list(dict.fromkeys(tags))  # a KG triple may repeat a genre
    if not tags:
        raise RecsysDataError(f"{prefix}.item: no item content (genres or release years)")
    tcols = tuple(list(c) for c in zip(*tags, strict=True))
    return from_interactions(
        (users, items, [1] * len(users)),
        item_tags=tcols,
        item_names=titles,
        name=MOVIELENS_NAME,
        folder=folder,
    )


def lastfm_disjoint_taggers(
    raw: RawData, n_components: int = 64, seed: int = 2011, min_tag_items: int = 5
) -> RawData:
    """The ``lastfm-dense`` data set (see the module docstring) from the Last.fm tables."""
    rng = np.random.default_rng(seed)
    users = np.unique(raw.plays[:, 0])
    listeners = np.sort(rng.permutation(users)[: len(users) // 2])
    plays = raw.plays[np.isin(raw.plays[:, 0], listeners)]
    tags = raw.tag_assignments[~np.isin(raw.tag_assignments[:, 0], listeners)]
    items = np.unique(plays[:, 1])
    tags = tags[np.isin(tags[:, 1], items)]
    row = np.searchsorted(items, tags[:, 1])
    tag_vals, col = np.unique(tags[:, 2], return_inverse=True)
    counts = sp.csr_matrix(
        (np.ones(len(row)), (row, col)), shape=(len(items), len(tag_vals))
    )  # duplicates summed: number of taggers
    df = np.asarray((counts > 0).sum(0)).ravel()
    counts = counts[:, df >= min_tag_items].tocsr()
    df = df[df >= min_tag_items]
    tf = counts.copy()
    tf.data = 1.0 + np.log(tf.data)
    x = sp.csr_matrix(tf.multiply(np.log((1.0 + len(items)) / (1.0 + df)) + 1.0))
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    x = sp.diags(1.0 / np.where(norm > 0, norm, 1.0)) @ x
    k = min(n_components, min(x.shape) - 1)
    v0 = np.random.default_rng(seed).standard_normal(min(x.shape))
    u, s, _ = svds(x.astype(np.float64), k=k, v0=v0)
    feats = (u * s)[:, ::-1].astype(np.float32)  # largest component first
    has = norm > 0
    return from_interactions(
        plays,
        item_features=feats[has],
        feature_items=items[has],
        item_names={int(i): n for i, n in raw.artist_names.items()},
        name=DENSE_NAME,
        folder=raw.folder,
    )
