"""Reference recommenders on the same splits: popularity, random, content-only (untrained item
content cosine to the user's profile), ``implicit`` ALS and LightFM.

``implicit`` and ``lightfm`` are optional (``pip install -e '.[recsys]'``; LightFM 1.17 needs old
build tooling, see the README); they are imported lazily and :class:`AnchorUnavailable` says why
one cannot run. Every anchor returns a ``score_fn(users, items) -> array`` for
:func:`satcodec.research.recsys.train.evaluate_split`, and its hyperparameters are chosen on the
validation split only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from satcodec.errors import SatcodecError
from satcodec.research.recsys.data import Split


class AnchorUnavailable(SatcodecError, RuntimeError):
    """An optional anchor library is not installed (the message says how to get it)."""


@dataclass
class AnchorFit:
    score_fn: Any
    params: dict[str, Any] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    train_s: float = 0.0


def popularity(split: Split) -> AnchorFit:
    """Items ranked by their number of training listeners (same list for every user)."""
    pop = np.asarray((split.train > 0).sum(0), dtype=np.float64).ravel()

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(pop[items], (len(users), len(items))).copy()

    return AnchorFit(score_fn, {"score": "training listeners"})


def random_scores(split: Split, seed: int = 0) -> AnchorFit:
    """Uniformly random scores (the chance level; for cold items popularity is all zeros)."""
    table = np.random.default_rng(seed).random((split.n_users, split.n_items))

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return table[np.ix_(users, items)]

    return AnchorFit(score_fn, {"seed": seed})


def content_cosine(split: Split) -> AnchorFit:
    """Content-only, untrained: the cosine between an item's content row and the user's
    profile, the sum of the (L2-normalised) content rows of the user's training items. It
    scores cold items as well as warm ones; it is the floor a trained cold-start model must
    clear (chance is the random ranking)."""
    x = np.asarray(split.content, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norm > 0, norm, 1.0)
    profile = (split.train > 0).astype(np.float64) @ x
    pn = np.linalg.norm(profile, axis=1, keepdims=True)
    profile /= np.where(pn > 0, pn, 1.0)

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return profile[users] @ x[items].T

    return AnchorFit(score_fn, {"score": "cos(content_i, Σ normalised content of u's items)"})


# --- implicit ALS -------------------------------------------------------------------------------
def _implicit():
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError as exc:
        raise AnchorUnavailable(
            "implicit is not installed: pip install implicit (or pip install -e '.[recsys]')"
        ) from exc
    return AlternatingLeastSquares


def als(
    split: Split,
    factors: int = 64,
    regularization: float = 0.1,
    alpha: float = 20.0,
    iterations: int = 15,
    seed: int = 0,
) -> AnchorFit:
    """``implicit`` ALS (Hu, Koren & Volinsky 2008) on the binarised training matrix; warm only
    (an item without training pairs gets no factor)."""
    als_cls = _implicit()
    model = als_cls(
        factors=factors,
        regularization=regularization,
        alpha=alpha,
        iterations=iterations,
        random_state=seed,
        num_threads=1,
        calculate_training_loss=False,
    )
    binary = (split.train > 0).astype(np.float32).tocsr()
    t0 = time.time()
    model.fit(binary, show_progress=False)
    wall = time.time() - t0
    uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return uf[users] @ itf[items].T

    params = dict(factors=factors, regularization=regularization, alpha=alpha)
    return AnchorFit(score_fn, {**params, "iterations": iterations}, train_s=wall)


# --- LightFM --------------------------------------------------------------------------------------
def _lightfm():
    try:
        from lightfm import LightFM
    except ImportError as exc:
        raise AnchorUnavailable(
            "lightfm is not installed; LightFM 1.17 builds only with old tooling: "
            "pip install pip==23.2.1 'setuptools<70' && "
            "pip install --no-build-isolation --no-use-pep517 lightfm==1.17"
        ) from exc
    return LightFM


def lightfm_features(split: Split, identity: bool) -> sp.csr_matrix:
    """Item features: the content rows (tag TF-IDF and/or standardised dense features), plus one
    identity feature per item if ``identity`` (warm hybrid); without identity (cold) every item
    is described by its content alone."""
    tags = sp.csr_matrix(split.content)
    if identity:
        feats = sp.hstack([sp.identity(split.n_items, format="csr"), tags]).tocsr()
        # LightFM sums the feature embeddings weighted by the values: normalise each row (L1:
        # dense standardised content has negative values, whose plain sum can be near 0)
        norms = np.asarray(abs(feats).sum(1)).ravel()
        feats = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ feats
        return feats.astype(np.float32).tocsr()
    return tags.astype(np.float32)


def lightfm_warp(
    split: Split,
    evaluate_val: Any,
    components: int = 64,
    learning_rate: float = 0.05,
    item_alpha: float = 1e-6,
    max_epochs: int = 30,
    eval_every: int = 3,
    seed: int = 0,
) -> AnchorFit:
    """LightFM (Kula 2015) with WARP loss and tag features; the epoch count is chosen on the
    validation split (``evaluate_val(score_fn) -> {"ndcg": ...}``)."""
    lightfm_cls = _lightfm()
    identity = split.protocol == "warm"
    feats = lightfm_features(split, identity)
    model = lightfm_cls(
        no_components=components,
        loss="warp",
        learning_rate=learning_rate,
        item_alpha=item_alpha,
        random_state=np.random.RandomState(seed),
    )
    inter = (split.train > 0).astype(np.float32).tocoo()

    def snapshot() -> Any:
        ib, ie = model.get_item_representations(feats)
        ub, ue = model.get_user_representations()
        ie, ib, ue, ub = ie.copy(), ib.copy(), ue.copy(), ub.copy()

        def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
            return ue[users] @ ie[items].T + ib[items][None, :] + ub[users][:, None]

        return score_fn

    best: dict[str, Any] = {"ndcg": -1.0}
    curve = []
    t0 = time.time()
    for epoch in range(1, max_epochs + 1):
        model.fit_partial(inter, item_features=feats, epochs=1, num_threads=1)
        # every epoch at first (the cold model peaks early), then every ``eval_every``
        if epoch <= 6 or epoch % eval_every == 0 or epoch == max_epochs:
            fn = snapshot()
            val = evaluate_val(fn)
            curve.append((epoch, val["ndcg"]))
            if val["ndcg"] > best["ndcg"]:
                best = {**val, "epoch": epoch, "fn": fn}
    wall = time.time() - t0
    params = dict(
        components=components,
        learning_rate=learning_rate,
        item_alpha=item_alpha,
        features="identity + tag TF-IDF" if identity else "tag TF-IDF only",
        epochs=best["epoch"],
    )
    val = {k: v for k, v in best.items() if k not in ("fn", "epoch")}
    return AnchorFit(best["fn"], {**params, "val_curve": curve}, val, train_s=wall)
