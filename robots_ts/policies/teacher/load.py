"""PPO teachers: loading a trained teacher from its run directory as a Policy.

A teacher run directory holds ``run.json`` (kind "teacher"), ``config.yaml`` (a TeacherConfig) and
``checkpoints/`` with plain SB3 files (``latest.zip``, ``best.zip``, ``step_*.zip``) and, beside
each, the observation-normalization statistics as JSON (``*.norm.json``): SB3's VecNormalize
would pickle them, and checkpoints here never need unpickling beyond SB3's own format.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from robots_ts.config import load_run_config
from robots_ts.policies.teacher.checkpoint import (CheckpointError, resume_point, uses_manifests, verify_set)
from robots_ts.policies.teacher.config import TeacherConfig
from robots_ts.runs import CorruptFileError, read_json, read_run_meta


class ObsNormalizer:
    """Per-group running mean/var normalization with clipping (the VecNormalize transform)."""

    def __init__(self, stats: dict[str, dict], clip: float, eps: float = 1e-8):
        self.mean = {k: np.asarray(v["mean"], np.float64) for k, v in stats.items()}
        self.var = {k: np.asarray(v["var"], np.float64) for k, v in stats.items()}
        self.clip, self.eps = float(clip), eps

    def __call__(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(obs)
        for k in self.mean:
            out[k] = np.clip((obs[k] - self.mean[k]) / np.sqrt(self.var[k] + self.eps), -self.clip, self.clip
                             ).astype(np.float32)
        return out


def norm_stats_of(vecnorm) -> dict:
    """JSON-able statistics of an SB3 VecNormalize over a Dict observation space."""
    stats = {"clip_obs": float(vecnorm.clip_obs), "obs": {}, "ret": None}
    # Without observation normalization (ppo.norm_obs=false) VecNormalize keeps no statistics.
    rms = vecnorm.obs_rms if vecnorm.norm_obs else {}
    for k in (vecnorm.norm_obs_keys if vecnorm.norm_obs else []):
        stats["obs"][k] = {"mean": rms[k].mean.tolist(), "var": rms[k].var.tolist(), "count": float(rms[k].count)}
    stats["ret"] = {"mean": float(np.asarray(vecnorm.ret_rms.mean)), "var": float(np.asarray(vecnorm.ret_rms.var)),
                    "count": float(vecnorm.ret_rms.count)}
    return stats


def load_norm_stats_into(vecnorm, stats: dict) -> None:
    for k, v in stats["obs"].items():
        vecnorm.obs_rms[k].mean = np.asarray(v["mean"], np.float64)
        vecnorm.obs_rms[k].var = np.asarray(v["var"], np.float64)
        vecnorm.obs_rms[k].count = float(v["count"])
    if stats.get("ret"):
        vecnorm.ret_rms.mean = np.float64(stats["ret"]["mean"])
        vecnorm.ret_rms.var = np.float64(stats["ret"]["var"])
        vecnorm.ret_rms.count = float(stats["ret"]["count"])


def schedule_objects(learning_rate, clip_range) -> dict:
    """SB3 ``custom_objects`` replacing the schedules an SB3 zip stores as pickled callables.

    A schedule pickles a reference to the module that defined it, so a checkpoint would stop
    loading when that module moves; loading also should not run pickled code. The loader passes
    the values from the run's config instead, and SB3 rebuilds its schedules from them.
    """
    return {"learning_rate": learning_rate, "lr_schedule": lambda _: 0.0, "clip_range": clip_range}


def resolve_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """The ``.zip`` of ``best`` (``latest`` when no evaluation has written one), ``latest`` (the step
    checkpoint ``latest.json`` names), or a path to a .zip."""
    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints"
    if which.endswith(".zip"):
        path = Path(which) if Path(which).is_absolute() or Path(which).exists() else ck / which
    elif which == "best" and ((ck / "best.zip").exists() or (ck / "best.manifest.json").exists()):
        path = ck / "best.zip"
    elif which in ("best", "latest"):
        pointer = resume_point(ck)
        path = ck / (f"{pointer['name']}.zip" if pointer is not None else "latest.zip")
    else:
        raise ValueError(f"checkpoint must be 'best', 'latest' or a .zip file, got {which!r}")
    if not path.exists() and not (path.parent / f"{path.name[:-4]}.manifest.json").exists():
        raise FileNotFoundError(f"no checkpoint {path} in teacher run {run_dir}")
    return path


def load_norm_stats(path: Path) -> dict:
    stats = read_json(path, "normalization statistics")
    if not (isinstance(stats, dict) and isinstance(stats.get("obs"), dict) and "clip_obs" in stats):
        raise CorruptFileError(f"normalization statistics {path} lack 'obs' and 'clip_obs'")
    return stats


def load_sb3(path: Path, device: str, custom_objects: dict, env=None, cls=None):
    """``PPO.load`` (or ``cls.load``, a PPO subclass) with a damaged archive reported as a
    CheckpointError naming the file."""
    import zipfile

    from stable_baselines3 import PPO

    try:
        return (cls or PPO).load(path, env=env, device=device, custom_objects=custom_objects)
    except (zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError, RuntimeError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CheckpointError(f"teacher checkpoint {path} cannot be read as an SB3 model "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


class Teacher:
    """A trained PPO teacher: deterministic mean actions from normalized privileged observations."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.cfg: TeacherConfig = load_run_config(TeacherConfig, self.run_dir / "config.yaml",
                                                  require_checksum=uses_manifests(self.run_dir))
        self.env_cfg = self.cfg.env
        self.obs_groups = tuple(self.env_cfg.obs_groups)
        path = resolve_checkpoint(self.run_dir, checkpoint)
        self.checkpoint = path
        stem = path.name[: -len(".zip")]
        norm_path = path.parent / f"{stem}.norm.json"
        if uses_manifests(self.run_dir) or (path.parent / f"{stem}.manifest.json").exists():
            verify_set(path.parent, stem, ("model", "norm"))
        elif self.cfg.ppo.norm_obs and not norm_path.exists():
            # An older run without manifests: the statistics must still be there, never skipped.
            raise CheckpointError(f"teacher checkpoint {path}: normalization file {norm_path} is missing; "
                                  "the policy cannot be evaluated without it")
        self.model = load_sb3(path, device, schedule_objects(0.0, self.cfg.ppo.clip_range))
        self.normalize = None
        if self.cfg.ppo.norm_obs:
            stats = load_norm_stats(norm_path)
            self.normalize = ObsNormalizer(stats["obs"], stats["clip_obs"])
        expected = set(self.model.observation_space.spaces)
        if expected != set(self.obs_groups):
            raise ValueError(f"teacher {self.run_dir}: checkpoint reads groups {sorted(expected)}, "
                             f"config says {sorted(self.obs_groups)}")
        self.obs_space = self.model.observation_space

    def check_obs(self, obs: dict[str, np.ndarray]) -> None:
        for k, space in self.obs_space.spaces.items():
            if k not in obs:
                raise ValueError(f"teacher {self.run_dir} reads observation group {k!r}, which the env "
                                 f"does not provide (it provides {sorted(obs)})")
            if obs[k].shape[1:] != space.shape:
                raise ValueError(f"teacher {self.run_dir}: observation group {k!r} has shape {obs[k].shape[1:]} "
                                 f"in this env, the teacher was trained on {space.shape} (task "
                                 f"{self.env_cfg.task}, control {self.env_cfg.control})")

    def _dist(self, obs: dict[str, np.ndarray]):
        self.check_obs(obs)
        mine = {k: obs[k] for k in self.obs_space.spaces}
        if self.normalize is not None:
            mine = self.normalize(mine)
        with torch.no_grad():
            t = {k: torch.as_tensor(v, device=self.model.device) for k, v in mine.items()}
            return self.model.policy.get_distribution(t).distribution

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip(self._dist(obs).mean.cpu().numpy(), -1.0, 1.0)

    def act_with_std(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        d = self._dist(obs)
        return np.clip(d.mean.cpu().numpy(), -1.0, 1.0), d.stddev.cpu().numpy()

    def reset(self, done: np.ndarray) -> None:
        """Teachers are feed-forward: nothing to clear."""


def load_teacher(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> Teacher:
    read_run_meta(run_dir, "teacher")
    return Teacher(run_dir, checkpoint, device)
