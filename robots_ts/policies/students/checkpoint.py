"""Student checkpoints (safetensors + JSON, no pickled code) and the student as a :class:`Policy`.

A checkpoint ``NAME`` is two files written atomically: ``NAME.safetensors`` (the state dict) and
``NAME.json`` (format, architecture, observation spec, normalization, depth range, the env config,
training counters and the CRC-32 of the tensors file, so a JSON never pairs with other tensors).
In a run directory ``checkpoints/latest.json`` and ``checkpoints/best.json`` point at checkpoints.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robots_ts.config import ConfigError, EnvConfig, to_dict
from robots_ts.policies.students.config import StudentNetConfig
from robots_ts.policies.students.networks import Student, proprio_fields
from robots_ts.runs import CorruptFileError, atomic_write, atomic_write_json, read_json, read_run_meta

FORMAT = "robots_ts.student/1"


def save_student(model: Student, path: str | Path, env_cfg: EnvConfig, **extra) -> Path:
    """Write ``path.safetensors`` then ``path.json``; returns the JSON path."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensor_path = path.with_name(path.name + ".safetensors")
    atomic_write(tensor_path, lambda p: save_file(tensors, str(p)))
    meta = {"format": FORMAT, "arch": asdict(model.cfg), "obs_spec": model.obs_spec,
            "obs_groups": list(model.obs_groups), "action_dim": int(model.mean.out_features),
            "depth_range": [model.near, model.far], "normalization": model.normalization(),
            "env": to_dict(env_cfg), "tensors_crc32": zlib.crc32(tensor_path.read_bytes()), **extra}
    json_path = path.with_name(path.name + ".json")
    atomic_write_json(json_path, meta)
    return json_path


def env_config_from_dict(d: dict, source: str = "checkpoint") -> EnvConfig:
    """The env config a checkpoint recorded; keys this version does not know are a named error."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EnvConfig), d))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: its env config does not fit this version of robots_ts "
                          f"({' '.join(str(exc).split()[:12])}); it was written by another version") from None


def student_proprio_fields(env_cfg: EnvConfig, obs_spec: dict) -> dict[str, slice]:
    """Proprio's fields as a student of ``env_cfg`` reads them: with its task's command, or without
    one for a multi-task student (which reads the ``task`` group instead)."""
    from robots_ts.envs.world import resolve_task

    command = () if "task" in obs_spec else resolve_task(env_cfg.task).command_names
    return proprio_fields(env_cfg.control, command)


def build_from_meta(meta: dict) -> Student:
    arch = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudentNetConfig), meta["arch"]))
    fields = None
    if arch.proprio_exclude:
        env = env_config_from_dict(meta["env"])
        fields = student_proprio_fields(env, meta["obs_spec"])
    model = Student(arch, meta["obs_spec"], int(meta["action_dim"]), tuple(meta["depth_range"]), fields)
    model.set_normalization(meta["normalization"])
    return model


def load_checkpoint(json_path: str | Path, device: str = "cpu") -> tuple[Student, dict]:
    """The network and metadata of checkpoint ``json_path`` (``NAME.json`` beside ``NAME.safetensors``)."""
    from safetensors.torch import load_file

    json_path = Path(json_path)
    if not json_path.exists():
        raise FileNotFoundError(f"student checkpoint {json_path} does not exist")
    meta = read_json(json_path, "student checkpoint")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptFileError(f"{json_path}: not a student checkpoint (format "
                               f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                               f"expected {FORMAT!r})")
    tensor_path = json_path.with_name(json_path.name[: -len(".json")] + ".safetensors")
    if not tensor_path.exists():
        raise FileNotFoundError(f"student checkpoint {json_path}: tensors file {tensor_path} is missing")
    if zlib.crc32(tensor_path.read_bytes()) != meta["tensors_crc32"]:
        raise ValueError(f"student checkpoint {json_path}: {tensor_path.name} does not match the CRC-32 "
                         "recorded in the JSON (a different or damaged tensors file)")
    model = build_from_meta(meta)
    try:
        model.load_state_dict(load_file(str(tensor_path)), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"student checkpoint {tensor_path}: tensors do not fit the architecture in "
                         f"{json_path.name}: {exc}") from None
    return model.to(device), meta


def resolve_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """``best`` (falls back to ``latest``), ``latest``, or a checkpoint's ``.json`` path."""
    run_dir = Path(run_dir)
    if which.endswith(".json") and Path(which).exists():
        return Path(which)
    ck = run_dir / "checkpoints"
    if which.endswith(".json"):
        return ck / which
    if which not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best', 'latest' or a .json file, got {which!r}")
    pointer = ck / f"{which}.json"
    if which == "best" and not pointer.exists():
        pointer = ck / "latest.json"
    if not pointer.exists():
        raise FileNotFoundError(f"student run {run_dir} has no checkpoint yet ({pointer} is missing)")
    target = read_json(pointer, "checkpoint pointer")
    if not isinstance(target, dict) or not isinstance(target.get("name"), str):
        raise CorruptFileError(f"checkpoint pointer {pointer} lacks the checkpoint's 'name'")
    return ck / (target["name"] + ".json")


class StudentPolicy:
    """A student as a :class:`~robots_ts.policies.Policy`: deterministic mean actions, GRU memory
    kept between calls and cleared for worlds that start a new episode."""

    def __init__(self, model: Student, env_cfg: EnvConfig, device: str = "cpu",
                 task_shares: dict[str, float] | None = None):
        self.model = model.to(device)
        self.device = device
        self.obs_groups = model.obs_groups
        # A multi-task student: the tasks it serves and their shares of the worlds it is evaluated on
        # (robots_ts.rollout.policy_env builds a robots_ts.envs.multi_task.MultiTaskEnv for it).
        self.task_shares = dict(task_shares) if task_shares else None
        self.env_cfg = replace(env_cfg, obs_groups=[g for g in self.obs_groups if g != "task"])
        self.hidden: torch.Tensor | None = None

    def check_obs(self, obs: dict[str, np.ndarray]) -> None:
        for group in self.obs_groups:
            want = tuple(self.model.obs_spec[group])
            if group not in obs:
                raise ValueError(f"student reads observation group {group!r}, which the env does not "
                                 f"provide (it provides {sorted(obs)})")
            if tuple(obs[group].shape[1:]) != want:
                raise ValueError(f"student: observation group {group!r} has shape {tuple(obs[group].shape[1:])} "
                                 f"per world, the student was trained on {want}")

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.check_obs(obs)
        p = torch.as_tensor(obs["proprio"], dtype=torch.float32, device=self.device)[:, None]
        s = torch.as_tensor(obs[self.model.encoder_group], dtype=torch.float32, device=self.device)[:, None]
        if self.model.recurrent and (self.hidden is None or self.hidden.shape[0] != p.shape[0]):
            self.hidden = self.model.initial_state(p.shape[0])
        extra = {g: torch.as_tensor(obs[g], dtype=torch.float32, device=self.device)[:, None]
                 for g in self.model.extra_groups}        # task, history: by name, as forward takes them
        mean, _, self.hidden = self.model(p, s, self.hidden, **extra)
        return np.clip(mean[:, 0].cpu().numpy(), -1.0, 1.0).astype(np.float32)

    def reset(self, done: np.ndarray) -> None:
        if self.hidden is not None:
            mask = torch.as_tensor(np.asarray(done, dtype=bool), device=self.hidden.device)
            self.hidden[mask] = 0.0


def load_student(run_dir: str | Path, checkpoint: str = "latest", device: str = "cpu") -> StudentPolicy:
    """The student of a distillation run (or of a checkpoint ``.json`` path) as a Policy.

    ``latest`` by default: the last iteration is the one trained on the whole aggregate (with
    ``dagger.final_epochs``, to convergence), while ``best`` is picked on the few episodes each
    iteration evaluates, a noisy choice (measured on the earlier arm's Reach: 0.68 for best against
    0.87 for latest on the same 100 held-out episodes)."""
    run_dir = Path(run_dir)
    if run_dir.suffix == ".json" and run_dir.is_file():
        json_path = run_dir
    else:
        read_run_meta(run_dir, "student")
        json_path = resolve_checkpoint(run_dir, checkpoint)
    model, meta = load_checkpoint(json_path, device)
    model.eval()
    return StudentPolicy(model, env_config_from_dict(meta["env"], str(json_path)), device, meta.get("task_shares"))
