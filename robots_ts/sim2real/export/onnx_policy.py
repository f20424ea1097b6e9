"""An exported ONNX policy run with onnxruntime and numpy alone (no torch), as a Policy.

What a robot computer runs: :class:`OnnxPolicy` reads an export directory (``manifest.json`` +
``policy.onnx``), feeds the observation groups the manifest lists by name, keeps a recurrent
policy's state between calls and zeros it for worlds that start a new episode, exactly as the
run's own policy object does, so the two can be swapped in a rollout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from robots_ts.sim2real.export.manifest import Manifest, load_manifest


def session_options(threads: int = 1):
    """onnxruntime options for a control loop: ``threads`` intra-op threads, one inter-op thread,
    sequential execution, all graph optimizations; no spinning threads (the CPU is shared with the
    robot's other processes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxPolicy:
    """An export directory's ONNX policy: ``act(obs)`` maps batched observation groups to actions
    (N, A) in [-1, 1]; ``reset(done)`` clears the recurrent state of the flagged worlds."""

    def __init__(self, export_dir: str | Path, threads: int = 1):
        import onnxruntime as ort

        self.export_dir = Path(export_dir)
        self.manifest: Manifest = load_manifest(self.export_dir)
        if self.manifest.policy.format != "onnx":
            raise ValueError(f"{self.export_dir} holds a {self.manifest.policy.format} export, not an ONNX one")
        self.session = ort.InferenceSession(str(self.export_dir / self.manifest.policy.file),
                                            sess_options=session_options(threads), providers=["CPUExecutionProvider"])
        self.obs_groups = tuple(self.manifest.obs_groups)
        self.recurrent = self.manifest.policy.recurrent
        self.hidden: np.ndarray | None = None
        self._outputs = [o.name for o in self.manifest.policy.outputs]

    def check_obs(self, obs: dict[str, np.ndarray]) -> None:
        for g in self.obs_groups:
            want = tuple(self.manifest.observations[g].shape)
            if g not in obs:
                raise ValueError(f"exported policy reads observation group {g!r}, not given (given: {sorted(obs)})")
            if tuple(np.shape(obs[g])[1:]) != want:
                raise ValueError(f"exported policy: observation group {g!r} has shape {tuple(np.shape(obs[g])[1:])} "
                                 f"per world, the policy was exported for {want}")

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.check_obs(obs)
        feed = {g: np.ascontiguousarray(obs[g], dtype=np.float32) for g in self.obs_groups}
        if self.recurrent is not None:
            n = len(feed[self.obs_groups[0]])
            if self.hidden is None or self.hidden.shape[0] != n:
                self.hidden = np.zeros((n, self.recurrent.size), np.float32)
            feed[self.recurrent.input] = self.hidden
        out = dict(zip(self._outputs, self.session.run(self._outputs, feed)))
        if self.recurrent is not None:
            self.hidden = out[self.recurrent.output]
        return out[self.manifest.policy.action_output]

    def reset(self, done: np.ndarray) -> None:
        if self.hidden is not None:
            self.hidden[np.asarray(done, dtype=bool)] = 0.0
