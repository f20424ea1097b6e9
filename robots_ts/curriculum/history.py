"""Episode history for the learning teachers: nearest earlier task, and the recent window.

``BufferedNearestNeighbours`` answers "reward of the closest earlier task" without a scan
over all history. ALP-GMM needs, for every finished episode, the reward of the closest previously seen task
parameters. History grows by one point per episode, and a k-d tree cannot take insertions,
so points live in two parts:

* a ``scipy.spatial.cKDTree`` over the older points, rebuilt from scratch now and then;
* a small buffer of the most recent points (at most ``buffer_size``), scanned linearly.

A query asks both and keeps the closer. The tree is rebuilt when the buffer fills, so the
rebuild cost, O(n log n), is paid once per ``buffer_size`` insertions and each query costs
O(log n + buffer_size). This mirrors the "buffered k-d tree" of the ALP-GMM authors' code.

``RecentRows`` keeps the last N rows of per-episode data (what the GMMs are fitted on and
what the plots draw), bounded in memory however long a run is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree


class BufferedNearestNeighbours:
    """Points with one scalar value each; ``nearest_value(x)`` returns the closest one's value.

    With ``max_size`` set, a rebuild drops the oldest points so at most ``max_size`` stay in
    the tree (the buffer can hold up to ``buffer_size`` more until the next rebuild).
    """

    def __init__(self, dim: int, buffer_size: int = 500, max_size: int | None = None) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1; got {buffer_size}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None; got {max_size}")
        self.dim = dim
        self.buffer_size = buffer_size
        self.max_size = max_size
        # Growable storage (doubling) so appends are amortised O(1) without Python lists.
        self._points = np.empty((1024, dim), dtype=np.float64)
        self._values = np.empty(1024, dtype=np.float64)
        self._size = 0
        self._tree_size = 0  # the first _tree_size stored points are in the tree
        self._tree: cKDTree | None = None

    def __len__(self) -> int:
        return self._size

    def nearest_value(self, point: np.ndarray) -> float | None:
        """Value stored with the point closest to ``point``; at equal distance the tree wins."""
        if self._size == 0:
            return None
        best_dist_sq = np.inf
        best_value = None
        if self._tree is not None:
            dist, index = self._tree.query(point)
            best_dist_sq = float(dist) ** 2
            best_value = float(self._values[index])
        if self._size > self._tree_size:
            recent = self._points[self._tree_size : self._size] - point
            dist_sq = np.einsum("ij,ij->i", recent, recent)
            j = int(np.argmin(dist_sq))
            if dist_sq[j] < best_dist_sq:
                best_value = float(self._values[self._tree_size + j])
        return best_value

    def add(self, point: np.ndarray, value: float) -> None:
        if self._size == self._points.shape[0]:
            self._grow()
        self._points[self._size] = point
        self._values[self._size] = value
        self._size += 1
        if self._size - self._tree_size >= self.buffer_size:
            self._rebuild()

    def _grow(self) -> None:
        capacity = 2 * self._points.shape[0]
        points = np.empty((capacity, self.dim), dtype=np.float64)
        values = np.empty(capacity, dtype=np.float64)
        points[: self._size] = self._points[: self._size]
        values[: self._size] = self._values[: self._size]
        self._points, self._values = points, values

    def _rebuild(self) -> None:
        if self.max_size is not None and self._size > self.max_size:
            drop = self._size - self.max_size
            kept = self._size - drop
            self._points[:kept] = self._points[drop : self._size]
            self._values[:kept] = self._values[drop : self._size]
            self._size = kept
        self._tree_size = self._size
        # balanced_tree=False builds several times faster and queries as fast on
        # the low-dimensional, roughly uniform point sets curricula produce.
        self._tree = cKDTree(self._points[: self._tree_size].copy(), balanced_tree=False)

    def state(self) -> dict[str, Any]:
        return {
            "points": self._points[: self._size].copy(),
            "values": self._values[: self._size].copy(),
            "tree_size": self._tree_size,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        points = np.asarray(state["points"], dtype=np.float64).reshape(-1, self.dim)
        values = np.asarray(state["values"], dtype=np.float64).reshape(-1)
        tree_size = int(state["tree_size"])
        if points.shape[0] != values.shape[0] or not 0 <= tree_size <= points.shape[0]:
            raise ValueError(
                f"nearest-neighbour state is inconsistent: {points.shape[0]} points, "
                f"{values.shape[0]} values, tree_size={tree_size}"
            )
        capacity = max(1024, 2 * points.shape[0])
        self._points = np.empty((capacity, self.dim), dtype=np.float64)
        self._values = np.empty(capacity, dtype=np.float64)
        self._points[: points.shape[0]] = points
        self._values[: values.shape[0]] = values
        self._size = points.shape[0]
        # Rebuild on exactly the saved split so queries, ties included, answer as before.
        self._tree_size = tree_size
        self._tree = (
            cKDTree(self._points[:tree_size].copy(), balanced_tree=False) if tree_size else None
        )


class RecentRows:
    """The last ``capacity`` rows appended, oldest first, in O(1) amortised per append.

    Rows go into an array twice the capacity; when it fills, the newest ``capacity`` rows
    move to the front. That costs one copy per ``capacity`` appends instead of a shift per
    append (a deque of small arrays would cost a Python object per row).
    """

    def __init__(self, width: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.width = width
        self.capacity = capacity
        self._rows = np.empty((2 * capacity, width), dtype=np.float64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, row: np.ndarray) -> None:
        if self._end == self._rows.shape[0]:
            kept = self._end - self._start
            self._rows[:kept] = self._rows[self._start : self._end]
            self._start, self._end = 0, kept
        self._rows[self._end] = row
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1

    def last(self, n: int | None = None) -> np.ndarray:
        """A copy of the newest ``n`` rows (all kept rows when ``n`` is None), oldest first."""
        count = len(self) if n is None else min(n, len(self))
        return self._rows[self._end - count : self._end].copy()

    def state(self) -> np.ndarray:
        return self.last()

    def load_state(self, rows: Any) -> None:
        rows_arr = np.asarray(rows, dtype=np.float64).reshape(-1, self.width)
        if rows_arr.shape[0] > self.capacity:
            raise ValueError(
                f"saved history has {rows_arr.shape[0]} rows; this teacher keeps at most "
                f"{self.capacity}"
            )
        self._start, self._end = 0, rows_arr.shape[0]
        self._rows[: self._end] = rows_arr
