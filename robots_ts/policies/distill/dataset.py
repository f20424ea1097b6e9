"""The DAgger aggregate on disk: append-only chunk files plus a manifest, read a few chunks at a time.

A chunk holds ``steps`` consecutive env steps of all worlds, time-major ``(T, N, ...)``: the
student's observation groups, the privileged group (aux targets), the teacher's labels (``action``
and, when the teacher has one, ``std``), ``first`` (episode starts, for recurrent students) and
``episode`` ids. Depth is stored as float16 metres or uint16 millimetres, points as float16.

Crash safety: a chunk is written to a temporary name and renamed, so only complete files carry a
chunk name; only then is its manifest line (size, CRC-32, per-chunk sums for normalization)
appended. A chunk whose file is missing, of the wrong size or failing its checksum is skipped with
a warning, never half-loaded. Files without a manifest line (a kill between rename and append) are
invisible and removed by :meth:`ChunkDataset.truncate_after` when a run resumes.
"""
from __future__ import annotations

import io
import re
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from robots_ts.faults import fault_point
from robots_ts.runs import MetricsLog, atomic_write, atomic_write_text

CHUNK_RE = re.compile(r"^it(\d{4,})_c(\d{4,})\.npz$")
STAT_KEYS = ("proprio", "privileged", "points")  # points: per axis, over every point


def encode(arrays: dict[str, np.ndarray], depth_storage: str) -> dict[str, np.ndarray]:
    out = dict(arrays)
    if "depth" in out:
        d = out["depth"]
        out["depth"] = (np.round(d * 1000.0).clip(0, 65535).astype(np.uint16) if depth_storage == "uint16_mm"
                        else d.astype(np.float16))
    if "points" in out:
        out["points"] = out["points"].astype(np.float16)
    return out


def decode(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(arrays)
    if "depth" in out:
        d = out["depth"]
        out["depth"] = d.astype(np.float32) / 1000.0 if d.dtype == np.uint16 else d.astype(np.float32)
    if "points" in out:
        out["points"] = out["points"].astype(np.float32)
    return out


class ChunkDataset:
    def __init__(self, root: str | Path, depth_storage: str = "float16"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.depth_storage = depth_storage
        self.manifest = MetricsLog(self.root / "manifest.jsonl")
        self._reported: set[str] = set()

    # ------------------------------------------------------------------------------- writing
    def write_chunk(self, iteration: int, index: int, arrays: dict[str, np.ndarray]) -> dict:
        """Store one time-major chunk; returns its manifest record."""
        steps, n = arrays["action"].shape[:2]
        buf = io.BytesIO()
        np.savez(buf, **encode(arrays, self.depth_storage))
        data = buf.getvalue()
        name = f"it{iteration:04d}_c{index:04d}.npz"
        atomic_write(self.root / name, lambda p: p.write_bytes(data))
        fault_point("dataset.chunk")
        stats = {}
        for key in STAT_KEYS:
            if key in arrays:
                x = arrays[key].reshape(-1, arrays[key].shape[-1]).astype(np.float64)
                stats[key] = {"sum": x.sum(0).tolist(), "sumsq": np.square(x).sum(0).tolist(), "count": len(x)}
        rec = {"type": "chunk", "file": name, "iteration": int(iteration), "index": int(index),
               "steps": int(steps), "num_envs": int(n), "samples": int(steps * n), "bytes": len(data),
               "crc32": zlib.crc32(data), "stats": stats}
        self.manifest.append(rec)
        return rec

    def mark_episodes(self, iteration: int, successful: list[int]) -> None:
        """Record which episodes of ``iteration`` succeeded (written once the iteration's rollout ends)."""
        self.manifest.append({"type": "episodes", "iteration": int(iteration),
                              "success": sorted(int(e) for e in successful)})

    def truncate_after(self, iteration: int) -> None:
        """Forget everything after ``iteration`` (work a kill interrupted) and stray files."""
        keep = [r for r in self.manifest.read() if r.get("iteration", 0) <= iteration]
        atomic_write_text(self.manifest.path, "".join(_dumps(r) + "\n" for r in keep))
        listed = {r["file"] for r in keep if r.get("type") == "chunk"}
        for path in self.root.iterdir():
            if path.name.endswith(".tmp") or (CHUNK_RE.match(path.name) and path.name not in listed):
                path.unlink()

    # ------------------------------------------------------------------------------- reading
    def records(self, first_iteration: int = 0) -> list[dict]:
        """Chunk records of iterations >= ``first_iteration`` whose file has the recorded size."""
        out = []
        for r in self.manifest.read():
            if r.get("type") != "chunk" or r["iteration"] < first_iteration:
                continue
            path = self.root / r["file"]
            size = path.stat().st_size if path.exists() else -1
            if size != r["bytes"]:
                self._warn(r["file"], f"has {size} bytes, the manifest says {r['bytes']}" if size >= 0
                           else "is missing")
                continue
            out.append(r)
        return out

    def successful_episodes(self) -> set[int]:
        return {e for r in self.manifest.read() if r.get("type") == "episodes" for e in r["success"]}

    def num_samples(self, records: list[dict]) -> int:
        return sum(r["samples"] for r in records)

    def stats(self, records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean and std of ``key`` over ``records`` from the manifest sums (no data is read)."""
        parts = [r["stats"][key] for r in records if key in r.get("stats", {})]
        if not parts:
            return None
        count = sum(p["count"] for p in parts)
        mean = np.sum([p["sum"] for p in parts], axis=0) / count
        var = np.sum([p["sumsq"] for p in parts], axis=0) / count - mean ** 2
        # Constant features (a finger that never moves) get unit scale, not a division by ~0.
        std = np.sqrt(np.maximum(var, 0.0))
        return mean, np.where(std < 1e-3, 1.0, std)

    def load(self, rec: dict) -> dict[str, np.ndarray] | None:
        """Decoded arrays of one chunk, or None (with a warning) if the file is not the one recorded."""
        path = self.root / rec["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._warn(rec["file"], f"cannot be read ({exc})")
            return None
        if len(data) != rec["bytes"] or zlib.crc32(data) != rec["crc32"]:
            self._warn(rec["file"], "does not match its manifest size/checksum (interrupted or corrupted write)")
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return decode({k: z[k] for k in z.files})
        except (ValueError, OSError, zlib.error) as exc:
            self._warn(rec["file"], f"is not a readable chunk ({exc})")
            return None

    def batches(self, records: list[dict], batch_size: int, rng: np.random.Generator, chunks_in_memory: int,
                keys: tuple[str, ...], seq_len: int = 0, success_only: bool = False
                ) -> Iterator[dict[str, np.ndarray]]:
        """Minibatches over ``records`` in random order, holding ``chunks_in_memory`` chunks at once.

        Every array is batch-major ``(B, T, ...)`` with ``mask`` (B, T): T = 1 for feed-forward
        training, T = ``seq_len`` windows (padded at the end of a chunk, mask 0) for recurrent.
        """
        good = self.successful_episodes() if success_only else None
        order = rng.permutation(len(records))
        for start in range(0, len(order), chunks_in_memory):
            group = [self.load(records[i]) for i in order[start:start + chunks_in_memory]]
            pieces = [_windows(c, keys, seq_len, good) for c in group if c is not None]
            pieces = [p for p in pieces if len(p["mask"])]
            if not pieces:
                continue
            pool = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
            perm = rng.permutation(len(pool["mask"]))
            for b in range(0, len(perm), batch_size):
                idx = perm[b:b + batch_size]
                yield {k: v[idx] for k, v in pool.items()}

    def _warn(self, name: str, why: str) -> None:
        if name not in self._reported:
            self._reported.add(name)
            warnings.warn(f"dataset {self.root}: chunk {name} {why}; skipping it", RuntimeWarning, stacklevel=3)


def _windows(chunk: dict[str, np.ndarray], keys: tuple[str, ...], seq_len: int,
             good: set[int] | None) -> dict[str, np.ndarray]:
    """Time-major chunk (T, N, ...) -> batch-major samples (B, L, ...) plus ``mask``."""
    steps, n = chunk["action"].shape[:2]
    mask = np.ones((steps, n), dtype=bool)
    if good is not None:
        mask &= np.isin(chunk["episode"], np.fromiter(good, dtype=np.int64, count=len(good)))
    arrays = {k: chunk[k] for k in keys if k in chunk}
    arrays["first"] = chunk["first"]
    arrays["mask"] = mask
    if seq_len <= 0:
        out = {k: v.reshape(steps * n, 1, *v.shape[2:]) for k, v in arrays.items()}
        keep = out["mask"][:, 0]
        return {k: v[keep] for k, v in out.items()}
    pad = (-steps) % seq_len
    out = {}
    for k, v in arrays.items():
        v = np.swapaxes(v, 0, 1)  # (N, T, ...)
        if pad:
            v = np.concatenate([v, np.zeros((n, pad, *v.shape[2:]), dtype=v.dtype)], axis=1)
        out[k] = v.reshape(n * (steps + pad) // seq_len, seq_len, *v.shape[2:])
    keep = out["mask"].any(axis=1)
    return {k: v[keep] for k, v in out.items()}


def _dumps(rec: dict) -> str:
    import json

    return json.dumps(rec, sort_keys=True)
