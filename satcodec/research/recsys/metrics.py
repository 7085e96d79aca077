"""Ranking metrics: NDCG@k and recall@k over held-out items.

Conventions (stated because papers differ):

- binary relevance: an item is relevant to a user when the pair is held out;
- DCG@k = Σ_{rank r ≤ k, relevant} 1 / log2(r + 1); IDCG@k is the DCG of the ideal ranking,
  with min(k, n_relevant) relevant items on top; NDCG@k = DCG@k / IDCG@k;
- recall@k = (relevant items in the top k) / min(k, n_relevant);
- users with no held-out item among the candidates are excluded (their NDCG is undefined);
  users with held-out items but zero NDCG are **kept** (the official NCACF code drops them,
  which inflates the mean);
- items the user already has in training (and, for the test split, in validation) are
  excluded from the ranking, as in the paper's warm evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_from_ranking(ranked: Sequence[int], relevant: set[int] | Sequence[int], k: int) -> float:
    """NDCG@k of one ranked list (best first) against a set of relevant items (reference)."""
    rel = set(relevant)
    if not rel:
        raise ValueError("NDCG is undefined without relevant items")
    d = discounts(k)
    dcg = sum(d[r] for r, item in enumerate(list(ranked)[:k]) if item in rel)
    idcg = d[: min(k, len(rel))].sum()
    return float(dcg / idcg)


def recall_from_ranking(ranked: Sequence[int], relevant: set[int] | Sequence[int], k: int) -> float:
    rel = set(relevant)
    if not rel:
        raise ValueError("recall is undefined without relevant items")
    hits = sum(1 for item in list(ranked)[:k] if item in rel)
    return hits / min(k, len(rel))


def rank_metrics(
    scores: np.ndarray,
    relevant: sp.spmatrix | np.ndarray,
    k: int,
    exclude: sp.spmatrix | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-user NDCG@k and recall@k (NaN for users without relevant items).

    ``scores``: users × candidates; ``relevant`` and ``exclude``: same shape, nonzero = true.
    Excluded candidates are never ranked. Ties are broken by candidate order.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    rel = (sp.csr_matrix(relevant) > 0).toarray()
    if exclude is not None:
        ex = (sp.csr_matrix(exclude) > 0).toarray()
        s[ex] = -np.inf
        rel &= ~ex
    n_users, n_cand = s.shape
    kk = min(k, n_cand)
    if kk < n_cand:
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
    else:
        top = np.argsort(-s, axis=1, kind="stable")
    hit = np.take_along_axis(rel, top, 1) & np.isfinite(np.take_along_axis(s, top, 1))
    n_rel = rel.sum(1)
    d = discounts(k)
    dcg = (hit * d[:kk]).sum(1)
    cum = np.concatenate([[0.0], np.cumsum(d)])
    idcg = cum[np.minimum(n_rel, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndcg = np.where(n_rel > 0, dcg / idcg, np.nan)
        recall = np.where(n_rel > 0, hit.sum(1) / np.minimum(n_rel, k), np.nan)
    return {"ndcg": ndcg, "recall": recall}


ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users, items) -> scores


def evaluate_scores(
    score_fn: ScoreFn,
    relevant: sp.csr_matrix,
    candidates: np.ndarray,
    k: int = 50,
    exclude: sp.csr_matrix | None = None,
    batch_users: int = 256,
) -> dict[str, float]:
    """Mean NDCG@k and recall@k over the users with relevant items among ``candidates``.

    ``score_fn(users, items)`` returns a users × items score array; ``relevant`` and
    ``exclude`` are full users × items matrices (restricted to ``candidates`` here).
    """
    rel = relevant.tocsr()[:, candidates]
    ex = exclude.tocsr()[:, candidates] if exclude is not None else None
    # users with no relevant candidate are skipped here; rank_metrics also turns a user whose
    # relevant items are all excluded into NaN
    active = np.flatnonzero(np.diff(rel.indptr) > 0)
    ndcg: list[np.ndarray] = []
    recall: list[np.ndarray] = []
    for start in range(0, len(active), batch_users):
        users = active[start : start + batch_users]
        s = score_fn(users, candidates)
        m = rank_metrics(s, rel[users], k, ex[users] if ex is not None else None)
        ndcg.append(m["ndcg"])
        recall.append(m["recall"])
    nd = np.concatenate(ndcg) if ndcg else np.array([])
    rc = np.concatenate(recall) if recall else np.array([])
    ok = ~np.isnan(nd)
    return {
        "ndcg": float(nd[ok].mean()) if ok.any() else float("nan"),
        "recall": float(rc[ok].mean()) if ok.any() else float("nan"),
        "users": int(ok.sum()),
        "users_zero_ndcg": int((nd[ok] == 0).sum()),
    }
