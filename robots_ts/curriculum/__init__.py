"""Curriculum teachers: choose the task parameters of the next episode from past returns.

``make_teacher(name, low, high, seed=0, **hyperparameters)`` builds one by name, so configs and
the CLI can name a teacher as a string. Teachers: "random" (uniform, i.e. plain domain
randomization), "alp_gmm" (Portelas et al. 2019), "covar_gmm" (their Covar-GMM baseline) and
"adr" (automatic domain randomization, OpenAI et al. 2019: per-parameter ranges that start at
a nominal value and widen while the student succeeds at their boundaries).
"""

from __future__ import annotations

from typing import Any

from robots_ts.curriculum.adr import AdrTeacher
from robots_ts.curriculum.alp_gmm import AlpGmmTeacher
from robots_ts.curriculum.base import CurriculumTeacher, validate_bounds
from robots_ts.curriculum.covar_gmm import CovarGmmTeacher
from robots_ts.curriculum.random_teacher import RandomTeacher

TEACHERS: dict[str, type[CurriculumTeacher]] = {
    RandomTeacher.name: RandomTeacher,
    AlpGmmTeacher.name: AlpGmmTeacher,
    CovarGmmTeacher.name: CovarGmmTeacher,
    AdrTeacher.name: AdrTeacher,
}


def make_teacher(name: str, low: Any, high: Any, seed: int | None = 0, **kw: Any) -> CurriculumTeacher:
    """Build the teacher registered as ``name``; hyperparameters go through ``kw``."""
    try:
        cls = TEACHERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown curriculum teacher {name!r}; valid names: {', '.join(sorted(TEACHERS))}"
        ) from None
    try:
        return cls(low, high, seed=seed, **kw)
    except TypeError as err:
        # A misspelt hyperparameter in a config should read as bad input, not a crash.
        raise ValueError(f"curriculum teacher {name!r}: {err}") from None


__all__ = [
    "TEACHERS",
    "AdrTeacher",
    "AlpGmmTeacher",
    "CovarGmmTeacher",
    "CurriculumTeacher",
    "RandomTeacher",
    "make_teacher",
    "validate_bounds",
]
