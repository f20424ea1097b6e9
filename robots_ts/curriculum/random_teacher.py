"""Uniform sampling over the parameter box: the baseline every curriculum must beat.

It is also plain domain randomization, which is why it shares the teacher interface: a run
can switch between "randomize everything" and a learned curriculum by changing one name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robots_ts.curriculum.base import CurriculumTeacher


class RandomTeacher(CurriculumTeacher):
    """Samples every parameter independently and uniformly in ``[low, high]``.

    It ignores rewards but still validates them, so swapping it for a learning teacher
    never turns silently-accepted bad input into an error later in a run.
    """

    name = "random"

    def __init__(self, low: Any, high: Any, seed: int | None = 0) -> None:
        super().__init__(low, high, seed=seed)

    def sample(self) -> np.ndarray:
        return self._sample_uniform()

    def _observe(self, params: np.ndarray, reward: float) -> None:
        return None
