"""Offensive-language scores of documents from alt-profanity-check's offline linear classifier."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def _predict_prob() -> Any:
    with warnings.catch_warnings():  # the shipped model was pickled by an older scikit-learn
        warnings.simplefilter("ignore")
        from profanity_check import predict_prob

    return predict_prob


def toxicity_scores(texts: Sequence[str]) -> np.ndarray:
    """P(offensive) of each text, in [0, 1] (0.0 for empty texts)."""
    if not texts:
        return np.zeros(0, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = np.asarray(_predict_prob()([t or " " for t in texts]), dtype=np.float64)
    return np.where([bool(t.strip()) for t in texts], scores, 0.0)
