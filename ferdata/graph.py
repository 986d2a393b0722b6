"""Graph helpers shared by folds and the leakage check: connected components and key edges."""

from __future__ import annotations

import numpy as np


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label per item (the smallest item index in its component) for edges ``a[i]-b[i]``.

    Vectorised label propagation with pointer jumping: each round every item takes the smallest
    label among its neighbours, then follows its label's own label, until nothing changes.
    """
    labels = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if not len(a):
        return labels
    while True:
        before = labels.copy()
        np.minimum.at(labels, a, labels[b])
        np.minimum.at(labels, b, labels[a])
        labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def key_edges(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every item to the first item with the same key (negative key = none)."""
    key = np.asarray(key, dtype=np.int64)
    items = np.flatnonzero(key >= 0)
    if not len(items):
        return items, items
    _, first, inverse = np.unique(key[items], return_index=True, return_inverse=True)
    return items, items[first][inverse]
