"""The residual's actor-critic, its critic warm-up, and the refined policy (base + residual).

``ResidualActorCriticPolicy`` is SB3's MultiInputPolicy with separate feature extractors: the actor
flattens ``actor_keys`` (sensor groups and ``base_action``), the critic ``critic_keys`` (with
``privileged`` for an asymmetric critic). With ``point_mlp`` the actor reads a ``points`` group as
the set it is instead (:class:`PointSetFeatures`: one MLP shared by every point, then a max over
points), so a cloud's point order carries no meaning for it. Extractors and MLPs are separate, so
nothing is shared between actor and critic. The actor's mean head starts at exactly zero: at
initialisation the refined policy's deterministic action is the base's, whatever the extractors.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from robots_ts.policies.residual.env import BASE_ACTION, alpha_vector, combine, depth_reading
from robots_ts.policies.teacher.load import ObsNormalizer


def _present(observation_space: spaces.Dict, keys) -> list[str]:
    keys = list(keys)
    missing = [k for k in keys if k not in observation_space.spaces]
    if missing:
        raise ValueError(f"residual policy reads keys {missing}, absent from the observation "
                         f"space {list(observation_space.spaces)}")
    return keys


class KeyedFlatten(BaseFeaturesExtractor):
    """The named keys of a Dict observation, flattened and concatenated in the given order."""

    def __init__(self, observation_space: spaces.Dict, keys):
        self.keys = _present(observation_space, keys)
        super().__init__(observation_space, sum(get_flattened_obs_dim(observation_space[k]) for k in self.keys))

    def forward(self, obs: dict) -> torch.Tensor:
        return torch.cat([obs[k].flatten(1).float() for k in self.keys], dim=1)


class PointSetFeatures(BaseFeaturesExtractor):
    """``keys`` in order as :class:`KeyedFlatten` reads them, except ``points`` (B, P, 3): each point
    through one MLP of widths ``point_mlp`` (ReLU), then the max over points. The output is the
    same for any order of the points."""

    def __init__(self, observation_space: spaces.Dict, keys, point_mlp):
        self.keys = _present(observation_space, keys)
        widths = [int(w) for w in point_mlp]
        if "points" not in self.keys or not widths or min(widths) < 1:
            raise ValueError(f"point_mlp {list(point_mlp)}: expected widths >= 1 for an actor that reads "
                             f"'points' (it reads {self.keys})")
        flat = sum(get_flattened_obs_dim(observation_space[k]) for k in self.keys if k != "points")
        super().__init__(observation_space, flat + widths[-1])
        layers, dim = [], observation_space["points"].shape[-1]
        for w in widths:
            layers += [nn.Linear(dim, w), nn.ReLU()]
            dim = w
        self.shared = nn.Sequential(*layers)

    def forward(self, obs: dict) -> torch.Tensor:
        parts = []
        for k in self.keys:
            if k == "points":
                parts.append(self.shared(obs[k].float()).max(dim=-2).values)
            else:
                parts.append(obs[k].flatten(1).float())
        return torch.cat(parts, dim=1)


class SplitMlp(nn.Module):
    """Actor and critic MLPs on features of different widths (SB3's MlpExtractor assumes one)."""

    def __init__(self, pi_dim: int, vf_dim: int, net_arch: dict, activation_fn, device="cpu"):
        super().__init__()

        def mlp(dim, widths):
            layers = []
            for w in widths:
                layers += [nn.Linear(dim, w), activation_fn()]
                dim = w
            return nn.Sequential(*layers).to(device), dim

        self.policy_net, self.latent_dim_pi = mlp(pi_dim, net_arch["pi"])
        self.value_net, self.latent_dim_vf = mlp(vf_dim, net_arch["vf"])

    def forward(self, features):
        pi, vf = features if isinstance(features, tuple) else (features, features)
        return self.forward_actor(pi), self.forward_critic(vf)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features)


class ResidualActorCriticPolicy(MultiInputActorCriticPolicy):
    def __init__(self, observation_space, action_space, lr_schedule, actor_keys=None, critic_keys=None,
                 point_mlp=None, **kwargs):
        keys = list(observation_space.spaces)
        self.actor_keys = list(actor_keys or [k for k in keys if k != "privileged"])
        self.critic_keys = list(critic_keys or self.actor_keys)
        self.point_mlp = [int(w) for w in point_mlp or []]   # empty: the actor flattens points too
        kwargs["share_features_extractor"] = False
        kwargs.pop("features_extractor_class", None)
        kwargs.pop("features_extractor_kwargs", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        with torch.no_grad():
            self.action_net.weight.zero_()
            self.action_net.bias.zero_()

    def _get_constructor_parameters(self) -> dict:
        return {**super()._get_constructor_parameters(), "actor_keys": self.actor_keys,
                "critic_keys": self.critic_keys, "point_mlp": self.point_mlp}

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        # SB3 makes the actor's extractor first, then (not shared) the critic's.
        if "features_extractor" in self._modules:
            return KeyedFlatten(self.observation_space, self.critic_keys)
        if self.point_mlp:
            return PointSetFeatures(self.observation_space, self.actor_keys, self.point_mlp)
        return KeyedFlatten(self.observation_space, self.actor_keys)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SplitMlp(self.pi_features_extractor.features_dim,
                                      self.vf_features_extractor.features_dim, self.net_arch,
                                      self.activation_fn, self.device)

    def actor_mean(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The actor's deterministic output from the actor's keys alone (normalized as the env
        normalizes them): what acting, evaluation and export compute, with no privileged input."""
        return self.action_net(self.mlp_extractor.forward_actor(self.pi_features_extractor(obs)))

    def actor_parameters(self) -> list[nn.Parameter]:
        """Everything only the actor uses: its MLP, the mean head and the log-std."""
        return [*self.pi_features_extractor.parameters(), *self.mlp_extractor.policy_net.parameters(),
                *self.action_net.parameters(), self.log_std]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.vf_features_extractor.parameters(), *self.mlp_extractor.value_net.parameters(),
                *self.value_net.parameters()]


def set_actor_trainable(policy: ResidualActorCriticPolicy, trainable: bool) -> None:
    """Freeze or release the actor. Adam skips parameters without gradients, so a frozen actor
    keeps its exact values (and its optimizer moments) while the critic trains."""
    for p in policy.actor_parameters():
        p.requires_grad_(trainable)
        if not trainable:
            p.grad = None


class CriticWarmup(BaseCallback):
    """For the rollouts that start before ``warmup_steps``: the base acts alone (the residual's
    output is not executed) and only the critic trains, so the actor starts from a value function
    of the base instead of a random one. It also keeps the env's share schedule on the run's step
    count (a resumed run's too)."""

    def __init__(self, residual_env, warmup_steps: int):
        super().__init__()
        self.residual_env, self.warmup_steps = residual_env, int(warmup_steps)
        self.warming: bool | None = None

    def _apply(self) -> None:
        warming = self.num_timesteps < self.warmup_steps
        if warming != self.warming:
            set_actor_trainable(self.model.policy, not warming)
            self.residual_env.residual_enabled = not warming
            self.warming = warming

    def _on_training_start(self) -> None:
        self.residual_env.set_clock(self.num_timesteps)   # the share schedule's clock, on resume too
        self._apply()

    def _on_rollout_start(self) -> None:
        self._apply()

    def _on_step(self) -> bool:
        return True


class RefinedPolicy:
    """Base + residual as a :class:`~robots_ts.policies.Policy`: the base acts, the residual's
    deterministic mean corrects it. It reads the base's sensor groups only (the actor's path; an
    asymmetric critic's privileged input is neither needed nor read), so ``obs_groups`` and
    ``env_cfg`` are the base's: evaluations and exports never compute privileged state."""

    def __init__(self, base, model, alpha, env_cfg, stats: dict | None = None, checkpoint=None):
        self.base, self.model = base, model
        self.policy = model.policy
        self.obs_groups = tuple(base.obs_groups)
        self.env_cfg = replace(env_cfg, obs_groups=list(self.obs_groups))
        self.alpha = alpha_vector(alpha, model.action_space.shape[0])
        self.actor_keys = list(self.policy.actor_keys)
        extra = [k for k in self.actor_keys if k not in (*self.obs_groups, BASE_ACTION)]
        if extra:
            raise ValueError(f"residual actor reads {extra}, which its base's sensor groups "
                             f"{list(self.obs_groups)} do not include")
        # The normalization statistics of the actor's keys (VecNormalize's of the run).
        self.normalize = None
        if stats is not None:
            self.normalize = ObsNormalizer({k: v for k, v in stats["obs"].items() if k in self.actor_keys},
                                           stats["clip_obs"])
        self.checkpoint = checkpoint

    def residual(self, obs: dict, a_base: np.ndarray) -> np.ndarray:
        """The residual's deterministic output in [-1, 1] for the base's action ``a_base``."""
        o = {k: obs[k] for k in self.actor_keys if k != BASE_ACTION}
        if "depth" in o:
            o["depth"] = depth_reading(o["depth"], self.env_cfg.depth.near, self.env_cfg.depth.far)
        o[BASE_ACTION] = a_base
        if self.normalize is not None:
            o = self.normalize(o)
        device = self.policy.device
        with torch.no_grad():
            r = self.policy.actor_mean({k: torch.as_tensor(np.asarray(v, np.float32), device=device)
                                        for k, v in o.items()})
        return np.clip(r.cpu().numpy(), -1.0, 1.0)

    def act_with_base(self, obs: dict) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            a_base = np.asarray(self.base.act({g: obs[g] for g in self.base.obs_groups}), dtype=np.float32)
        return combine(a_base, self.residual(obs, a_base), self.alpha), a_base

    def act(self, obs: dict) -> np.ndarray:
        return self.act_with_base(obs)[0]

    def reset(self, done) -> None:
        self.base.reset(done)
