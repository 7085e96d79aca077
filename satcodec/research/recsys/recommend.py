"""``Recommender.recommend(user, k)``: top-k artists for a user from a trained NCACF model.

Items with training interactions are scored with their trained factors (relaxed variant) or
φ(content) (strict); items without any — cold catalogue items, or new items added with
:meth:`Recommender.add_items` from their content vector alone — are scored through φ. A model
without φ cannot score an item it never saw, so such items are left out of its candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from satcodec.errors import ConfigError
from satcodec.research.recsys.data import Split
from satcodec.research.recsys.models import NCACF, as_tensor


@dataclass(frozen=True)
class Recommendation:
    item: int  # dataset artist id
    name: str
    score: float  # predicted probability
    cold: bool  # scored through φ (no training interaction)


class Recommender:
    """Wraps a trained model with its catalogue: content rows, ids and the training matrix."""

    def __init__(
        self,
        model: NCACF,
        content: np.ndarray,
        train: sp.csr_matrix,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        item_names: list[str] | None = None,
    ) -> None:
        self.model = model.eval()
        self.content = as_tensor(content)
        self.train = train.tocsr()
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        self.item_names = list(item_names) if item_names else [str(i) for i in item_ids]
        self._user_index = {int(u): i for i, u in enumerate(self.user_ids)}

    @classmethod
    def from_split(cls, model: NCACF, split: Split) -> Recommender:
        inter = split.inter
        return cls(
            model, split.content, split.train, inter.user_ids, inter.item_ids, inter.item_names
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def add_items(
        self, item_ids: np.ndarray, content: np.ndarray, names: list[str] | None = None
    ) -> None:
        """Append new catalogue items known only by their content (same columns as training)."""
        content = np.atleast_2d(np.asarray(content, dtype=np.float32))
        if content.shape != (len(item_ids), self.content.shape[1]):
            raise ConfigError(
                f"content of new items must be {len(item_ids)} x {self.content.shape[1]}, "
                f"got {content.shape[0]} x {content.shape[1]}"
            )
        self.content = torch.cat([self.content, as_tensor(content)])
        self.item_ids = np.concatenate([self.item_ids, np.asarray(item_ids)])
        self.item_names += list(names) if names else [str(i) for i in item_ids]
        self.train = sp.hstack(
            [self.train, sp.csr_matrix((self.train.shape[0], len(item_ids)))]
        ).tocsr()

    def user_index(self, user: int, by_id: bool = True) -> int:
        if not by_id:
            if not 0 <= user < len(self.user_ids):
                raise ConfigError(f"user index {user} out of range")
            return user
        if int(user) not in self._user_index:
            raise ConfigError(f"unknown user id {user}")
        return self._user_index[int(user)]

    def scores(self, user: int, by_id: bool = True) -> np.ndarray:
        """Predicted probabilities of every catalogue item (−inf where it cannot be scored)."""
        u = self.user_index(user, by_id)
        items = torch.arange(self.n_items)
        with torch.no_grad():
            h = self.model.item_factors(items, self.content if self.model.has_content else None)
            p = self.model.interact(self.model.user.weight[u : u + 1], h)[0]
        out = p.numpy().astype(np.float64)
        out[~self.model.can_score(items).numpy()] = -np.inf
        return out

    def recommend(
        self, user: int, k: int = 10, exclude_seen: bool = True, by_id: bool = True
    ) -> list[Recommendation]:
        """The ``k`` best items for ``user`` (a dataset user id, or an index with by_id=False),
        leaving out the items the user has in training when ``exclude_seen``."""
        s = self.scores(user, by_id)
        u = self.user_index(user, by_id)
        if exclude_seen:
            s[self.train[u].indices] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        cold = ~self.model._known(torch.as_tensor(top, dtype=torch.long)).numpy()
        return [
            Recommendation(int(self.item_ids[i]), self.item_names[i], float(s[i]), bool(c))
            for i, c in zip(top, cold, strict=True)
            if np.isfinite(s[i])
        ]
