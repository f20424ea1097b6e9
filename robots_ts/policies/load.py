"""Any run directory's policy, chosen by the kind its ``run.json`` records.

The one place that knows which loader serves which run kind: ``robots-ts evaluate``, the demo and
anything else that is handed "a run" call :func:`load_policy` and get a
:class:`~robots_ts.policies.Policy`.
"""
from __future__ import annotations

from pathlib import Path

from robots_ts.runs import read_run_meta

# The checkpoint each kind loads when none is named: a teacher's best evaluation; a student's last
# iteration, its final fit (see robots_ts.policies.students.checkpoint.load_student).
DEFAULT_CHECKPOINT = {"teacher": "best", "student": "latest"}


def load_policy(run_dir: str | Path, checkpoint: str | None = None, device: str = "cpu"):
    """The policy of a teacher or student run; ``checkpoint`` as the run kind's loader takes it."""
    kind = read_run_meta(run_dir).get("kind")
    if kind not in DEFAULT_CHECKPOINT:
        raise ValueError(f"{run_dir}: unknown run kind {kind!r}; expected one of {sorted(DEFAULT_CHECKPOINT)}")
    checkpoint = checkpoint or DEFAULT_CHECKPOINT[kind]
    if kind == "teacher":
        from robots_ts.policies.teacher.load import load_teacher

        return load_teacher(run_dir, checkpoint, device)
    from robots_ts.policies.students.checkpoint import load_student

    return load_student(run_dir, checkpoint, device)
