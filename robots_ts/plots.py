"""Learning-curve plots from metrics.jsonl (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

from robots_ts.runs import read_jsonl


def plot_learning_curve(metrics_path: Path, out: Path, title: str = "", x: str = "steps") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_jsonl(metrics_path)
    if not recs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    train = [r for r in recs if r.get("success_rate") is not None]
    evals = [r for r in recs if "eval_success_rate" in r]
    ax = axes[0]
    if train:
        ax.plot([r[x] for r in train], [r["success_rate"] for r in train], label="training episodes")
    if evals:
        ax.plot([r[x] for r in evals], [r["eval_success_rate"] for r in evals], "o-", label="evaluation")
    ax.set_xlabel(x)
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    ax = axes[1]
    rets = [r for r in recs if r.get("return") is not None]
    if rets:
        ax.plot([r[x] for r in rets], [r["return"] for r in rets])
    ax.set_xlabel(x)
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
