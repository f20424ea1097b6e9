"""The fine-tuning baseline (ResiP's comparison): PPO on the whole student, not on a residual.

:class:`FinetunePolicy` is an SB3 actor-critic whose actor *is* the student: its encoder and head
(:class:`StudentFeatures`, reading raw sensor groups and applying the student's own normalization)
and its mean layer (SB3's ``action_net``, a copy of the student's), so at initialisation its mean
action is the base student's. The exploration log-std is new and learnable; the critic is new (an
MLP on the flattened sensor groups, and the privileged group for an asymmetric critic). The
student's architecture travels as plain data in the policy's constructor arguments
(:func:`student_meta`), and its weights in the SB3 archive's state dict, so a saved run loads with
``PPO.load`` and :func:`as_student` gives back a :class:`Student` that evaluation and export treat as
any distilled student.

Only feed-forward students: a recurrent one would need recurrent rollouts, which SB3's PPO does
not keep (its memory would be the rollout order's, not the episode's).
"""
from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from robots_ts.config import ConfigError
from robots_ts.policies.residual.policy import KeyedFlatten, ResidualActorCriticPolicy
from robots_ts.policies.students.checkpoint import build_from_meta
from robots_ts.policies.students.networks import Student


def student_meta(model: Student) -> dict:
    """What :func:`~robots_ts.policies.students.checkpoint.build_from_meta` needs, as plain data."""
    return {"arch": asdict(model.cfg), "obs_spec": model.obs_spec, "action_dim": int(model.mean.out_features),
            "depth_range": [model.near, model.far], "normalization": model.normalization()}


def actor_groups(meta: dict) -> list[str]:
    """The groups the fine-tuned student reads, from its :func:`student_meta`: proprio, its sensor,
    and ``history`` (the actions it sent) when it was distilled with it."""
    return ["proprio", meta["arch"]["encoder"], *(["history"] if "history" in meta["obs_spec"] else [])]


def check_base(base) -> Student:
    """The base's network, if fine-tuning can take it over: a feed-forward distilled student."""
    model = getattr(base, "model", None)
    if not isinstance(model, Student):
        raise ConfigError(f"mode=finetune: the base must be a distilled student run, got a {type(base).__name__}")
    if model.recurrent:
        raise ConfigError("mode=finetune: the base student is recurrent (student.gru_hidden > 0); PPO here keeps "
                          "no recurrent rollouts, so only feed-forward students can be fine-tuned (mode=residual "
                          "refines recurrent bases)")
    return model


class StudentFeatures(BaseFeaturesExtractor):
    """The student's encoder and head on raw sensor groups: the latent its mean layer reads."""

    def __init__(self, observation_space, meta: dict):
        student = build_from_meta(meta)
        if student.recurrent:
            raise ValueError("StudentFeatures: a recurrent student cannot be fine-tuned with PPO here")
        super().__init__(observation_space, int(student.cfg.head_mlp[-1]))
        self.student = student
        self.groups = tuple(actor_groups(meta))

    def forward(self, obs: dict) -> torch.Tensor:
        m = self.student
        history = obs["history"].float() if m.history_dim else None
        return m.head(m.encode(obs["proprio"].float(), obs[m.encoder_group].float(), history=history))


class FinetunePolicy(ResidualActorCriticPolicy):
    """Actor: the student (encoder, head, mean layer) and a new log-std; critic: a new MLP."""

    def __init__(self, observation_space, action_space, lr_schedule, student_meta: dict | None = None, **kwargs):
        if student_meta is None:
            raise ValueError("FinetunePolicy needs the student's student_meta")
        self.student_meta = student_meta
        kwargs["actor_keys"] = actor_groups(student_meta)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _get_constructor_parameters(self) -> dict:
        return {**super()._get_constructor_parameters(), "student_meta": self.student_meta}

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        # SB3 makes the actor's extractor first, then (not shared) the critic's.
        if "features_extractor" in self._modules:
            return KeyedFlatten(self.observation_space, self.critic_keys)
        return StudentFeatures(self.observation_space, self.student_meta)

    def load_student(self, student: Student, log_std: np.ndarray) -> None:
        """The student's weights into the actor, and the exploration log-std."""
        with torch.no_grad():
            self.pi_features_extractor.student.load_state_dict(student.state_dict())
            self.action_net.load_state_dict(student.mean.state_dict())
            self.log_std.copy_(torch.as_tensor(log_std, dtype=self.log_std.dtype))

    def as_student(self) -> Student:
        """A standalone copy of the actor as a Student (its mean layer is ``action_net``)."""
        student = copy.deepcopy(self.pi_features_extractor.student).cpu()
        student.mean.load_state_dict({k: v.detach().cpu() for k, v in self.action_net.state_dict().items()})
        return student.eval()
