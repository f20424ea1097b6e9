"""Latency: a per-world delay line of whole control steps.

``push(x)`` stores this step's rows (N, ...); ``read()`` gives each world its row from ``delay[i]``
steps ago. ``reset(ids, x)`` fills the worlds' history with ``x`` (an episode starts with a
settled past) and draws their delays from ``[low, high]`` with their own generators. Actions
and observations each have one; teacher labels and student inputs read the same delayed
observation, so DAgger stays consistent.
"""
from __future__ import annotations

import numpy as np


class DelayLine:
    def __init__(self, num_envs: int, low: int, high: int):
        self.low, self.high = int(low), int(high)
        self.num_envs = int(num_envs)
        self.delay = np.zeros(num_envs, dtype=np.int64)
        self.size = self.high + 1
        self.buf: np.ndarray | None = None
        self.head = 0   # slot of the newest rows

    @property
    def active(self) -> bool:
        return self.high > 0

    def _ensure(self, row: np.ndarray) -> None:
        """Allocate the history for rows shaped like ``row`` (one world's value)."""
        if self.buf is None:
            self.buf = np.zeros((self.size, self.num_envs, *row.shape), dtype=row.dtype)

    def reset(self, ids, rows: np.ndarray, rngs, fixed: list | None = None) -> None:
        """``rows``: (len(ids), ...) the value each world's history starts from. ``fixed``: per
        world, a delay chosen by a curriculum teacher (rounded, at most ``high``), or None to draw."""
        ids = np.asarray(ids, dtype=np.int64)
        self._ensure(rows[0])
        self.buf[:, ids] = rows[None]
        for k, i in enumerate(ids):
            if fixed is not None and fixed[k] is not None:
                self.delay[i] = min(self.high, max(0, int(round(fixed[k]))))
            else:
                self.delay[i] = self.low if self.low == self.high else int(rngs[i].integers(self.low, self.high + 1))

    def push(self, x: np.ndarray) -> None:
        self._ensure(x[0])
        self.head = (self.head + 1) % self.size
        self.buf[self.head] = x

    def read(self, ids=None) -> np.ndarray:
        ids = np.arange(self.buf.shape[1]) if ids is None else np.asarray(ids, dtype=np.int64)
        slots = (self.head - self.delay[ids]) % self.size
        return self.buf[slots, ids]
