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
# Every kind load_policy (and so evaluate and export) serves; a residual run loads its best evaluation
# with its base (robots_ts.policies.residual.train.load_residual), a finetune run its best
# evaluation as a student (load_finetune).
RUN_KINDS = {**DEFAULT_CHECKPOINT, "residual": "best", "finetune": "best"}


def load_policy(run_dir: str | Path, checkpoint: str | None = None, device: str = "cpu"):
    """The policy of a teacher, student or residual run; ``checkpoint`` as the run kind's loader takes it."""
    kind = read_run_meta(run_dir).get("kind")
    if kind not in RUN_KINDS:
        raise ValueError(f"{run_dir}: unknown run kind {kind!r}; expected one of {sorted(RUN_KINDS)}")
    checkpoint = checkpoint or RUN_KINDS[kind]
    if kind == "teacher":
        from robots_ts.policies.teacher.load import load_teacher

        return load_teacher(run_dir, checkpoint, device)
    if kind == "residual":
        from robots_ts.policies.residual.train import load_residual

        return load_residual(run_dir, checkpoint, device)
    if kind == "finetune":
        from robots_ts.policies.residual.train import load_finetune

        return load_finetune(run_dir, checkpoint, device)
    from robots_ts.policies.students.checkpoint import load_student

    return load_student(run_dir, checkpoint, device)
