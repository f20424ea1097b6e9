"""Run directories: atomic writes, metrics.jsonl, checkpoint bookkeeping.

A run directory is self-describing: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one
JSON object per log point), ``checkpoints/`` and plots. Every file that a kill could leave half
written is written to a temporary file in the same directory and renamed over the target, so
readers see the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from robots_ts.faults import fault_point


class RunError(ValueError):
    """A run directory's state (or a file in it) does not allow the command; the message names it."""


class CorruptFileError(RunError):
    """A file exists but cannot be parsed (truncated, garbled); the message names the file."""


def read_json(path: Path, what: str = "") -> Any:
    """JSON of ``path``; a missing file is a FileNotFoundError and a torn one a CorruptFileError,
    both naming the file (and ``what`` it should have been)."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{label} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{label} cannot be read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{label} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                               "the file is truncated or damaged") from None


def sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, fsync, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class MetricsLog:
    """Append-only JSON lines; a torn last line (killed mid-write) is ignored when read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a") as f:
            fault_point("metrics.append", partial=lambda: (f.write(line[: len(line) // 2]), f.flush()))
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        return read_jsonl(self.path)

    def truncate_after(self, step_key: str, max_step: int) -> None:
        """Drop records logged after ``max_step`` (they belong to work lost in a kill); with
        ``max_step`` below every record's (nothing checkpointed yet), drop them all."""
        keep = [r for r in self.read() if r.get(step_key, 0) <= max_step]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def to_jsonable(obj: Any) -> Any:
    """Numpy arrays and scalars to tagged JSON values (``from_jsonable`` restores them)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def from_jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"]).reshape(obj["shape"])
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


# 2: config.yaml carries a checksum line and teacher checkpoints are manifested sets.
RUN_FORMAT = 2


def write_run_meta(run_dir: Path, kind: str, **extra: Any) -> None:
    import time

    from robots_ts import __version__

    atomic_write_json(Path(run_dir) / "run.json", {"kind": kind, "robots_ts_version": __version__, "format": RUN_FORMAT,
                                                   "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})


def read_run_meta(run_dir: Path, kind: str | None = None) -> dict:
    """``run.json`` of a run directory; with ``kind``, fail unless the run is of that kind."""
    path = Path(run_dir) / "run.json"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no run.json)")
    meta = read_json(path, "run metadata")
    if not isinstance(meta, dict):
        raise CorruptFileError(f"run metadata {path} is not a JSON object")
    if kind is not None and meta.get("kind") != kind:
        raise RunError(f"{run_dir} is a {meta.get('kind')!r} run, not a {kind} run")
    return meta
