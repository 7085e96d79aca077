"""Neural content-aware collaborative filtering (NCACF) for cold-start music recommendation.

Magron & Févotte, "Neural content-aware collaborative filtering for cold-start music
recommendation", Data Mining and Knowledge Discovery 36(5), 2022, on the Last.fm HetRec 2011
listening data with tags as content. Research code: it never imports the codec.

- :mod:`.data`: loader, filtering, warm/cold splits, leakage-free tag TF-IDF content
- :mod:`.models`: NCACF (ψ linear/deep, φ none/deep, relaxed/strict) and its loss
- :mod:`.train`: training with the shared trainer, evaluation, validation-based selection
- :mod:`.metrics`: NDCG@k, recall@k
- :mod:`.recommend`: ``Recommender.recommend(user, k)``
- :mod:`.anchors`: popularity, random, implicit ALS, LightFM
"""

from satcodec.research.recsys.data import (
    Interactions,
    LastfmRaw,
    Split,
    default_data_dir,
    load_lastfm,
    make_split,
    preprocess,
    tfidf_content,
)
from satcodec.research.recsys.metrics import ndcg_from_ranking, rank_metrics, recall_from_ranking
from satcodec.research.recsys.models import NCACF, NCACFConfig, ncacf_loss
from satcodec.research.recsys.recommend import Recommendation, Recommender
from satcodec.research.recsys.train import FitConfig, FitResult, evaluate_split, fit_ncacf

__all__ = [
    "NCACF",
    "FitConfig",
    "FitResult",
    "Interactions",
    "LastfmRaw",
    "NCACFConfig",
    "Recommendation",
    "Recommender",
    "Split",
    "default_data_dir",
    "evaluate_split",
    "fit_ncacf",
    "load_lastfm",
    "make_split",
    "ncacf_loss",
    "ndcg_from_ranking",
    "preprocess",
    "rank_metrics",
    "recall_from_ranking",
    "tfidf_content",
]
