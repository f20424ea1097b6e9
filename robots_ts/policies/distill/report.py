"""Reports of a distillation run, redrawn from its ``metrics.jsonl``: curves PNG and TensorBoard.

metrics.jsonl is the record of truth: the PNG is redrawn from it, and TensorBoard's event files
(append-only) are rebuilt from it when a run starts or resumes, so points of iterations lost in a
kill do not linger beside their redone versions.
"""
from __future__ import annotations

from pathlib import Path

from robots_ts.runs import atomic_write


SCALARS = ("student_success", "teacher_success", "agreement", "action_mse", "train_loss", "train_action_mse",
           "train_aux_loss", "dataset_samples", "beta", "rollout_success", "collect_steps_per_s")
PER_TASK = ("task_success", "task_agreement", "teacher_task_success")


def plot_curves(records: list[dict], out: Path, title: str = "") -> Path | None:
    """Student success, agreement and training loss against teacher-labelled samples."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["labels"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot(x, [r["student_success"] for r in records], "o-", label="student (alone)")
    teacher = [r["teacher_success"] for r in records if "teacher_success" in r]
    if teacher:
        ax.axhline(teacher[-1], color="k", ls="--", lw=1, label="teacher")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right")
    ax = axes[1]
    ax.plot(x, [r.get("agreement", float("nan")) for r in records], "o-")
    ax.set_ylabel("teacher-student agreement")
    ax = axes[2]
    ax.plot(x, [r.get("train_loss", float("nan")) for r in records], "o-", label="loss")
    if any("train_aux_loss" in r for r in records):
        ax.plot(x, [r.get("train_aux_loss", float("nan")) for r in records], "o-", label="aux loss")
    ax.set_yscale("log")
    ax.set_ylabel("training loss (last epoch)")
    ax.legend(loc="upper right")
    for ax in axes:
        ax.set_xlabel("teacher-labelled samples")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return out


class TensorBoardLog:
    """Scalars of each iteration record, indexed by teacher-labelled samples."""

    def __init__(self, log_dir: Path, replay: list[dict] = ()):
        import shutil

        from torch.utils.tensorboard import SummaryWriter  # tensorboard is heavy: load only when logging

        shutil.rmtree(log_dir, ignore_errors=True)
        self.writer = SummaryWriter(str(log_dir))
        for record in replay:
            self.log(record)

    def log(self, record: dict) -> None:
        for key in SCALARS:
            if key in record and record[key] is not None:
                self.writer.add_scalar(f"distill/{key}", float(record[key]), int(record["labels"]))
        for key in PER_TASK:      # a multi-task run: one curve per task
            for task, value in (record.get(key) or {}).items():
                if value is not None:
                    self.writer.add_scalar(f"distill/{key}/{task}", float(value), int(record["labels"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
