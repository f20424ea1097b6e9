"""Kickstarted PPO (Schmitt et al. 2018): PPO whose loss adds ``lambda_t * H(pi_teacher, pi_student)``.

The auxiliary term is a cross-entropy (``-log pi_student(mu_teacher | s)``) or a KL
(``KL(pi_teacher || pi_student)``, teacher and student Gaussians) on the states of the rollout,
weighted by ``lambda_t`` from a :class:`KickstartSchedule` evaluated at the env steps collected
before each update. ``lambda_t`` decays (to exactly 0 where its schedule says), so the student is
pulled toward its teachers early and free to overtake them later.

The teacher's action at a state is recorded when the state is visited: the rollout buffer
(:class:`KickstartRolloutBuffer`) asks a *label source* (``source.acting``: the teacher's mean and
std for the observation the student is acting on, see
:class:`robots_ts.policies.teacher.kickstart_run.TeacherLabels`) at every ``add``. The teacher
read its own observation groups with its own normalization, so the student may see other groups.

:meth:`KickstartPPO.train` is SB3's PPO update written out step for step in the same order, plus
the auxiliary term; with ``lambda_t = 0`` the term is never added to the loss and the update is
stock PPO's bit for bit. A KickstartPPO saves as a plain SB3 PPO zip (schedule and label source are
not saved: a resumed run rebuilds them from its config, and its step count restores the schedule).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

SCHEDULES = ("constant", "linear", "exponential")
LOSSES = ("cross_entropy", "kl")


class KickstartSchedule:
    """``lambda_t`` of a :class:`~robots_ts.policies.teacher.config.KickstartConfig` at env step t."""

    def __init__(self, cfg):
        self.weight, self.kind = float(cfg.weight), cfg.schedule
        self.decay_steps, self.half_life = int(cfg.decay_steps), int(cfg.half_life)

    def __call__(self, step: int) -> float:
        if self.decay_steps and step >= self.decay_steps:   # every schedule ends here, exactly at 0
            return 0.0
        if self.kind == "constant":
            return self.weight
        if self.kind == "linear":
            return self.weight * (1.0 - step / self.decay_steps)
        return self.weight * 0.5 ** (step / self.half_life)


def kickstart_loss(kind: str, student: th.distributions.Normal, teacher_mean: th.Tensor,
                   teacher_std: th.Tensor) -> th.Tensor:
    """Per-sample auxiliary loss (summed over action dimensions, as SB3 sums log-probabilities)."""
    if kind == "cross_entropy":
        return -student.log_prob(teacher_mean).sum(-1)
    teacher = th.distributions.Normal(teacher_mean, teacher_std)
    return th.distributions.kl_divergence(teacher, student).sum(-1)


class KickstartSamples(NamedTuple):
    observations: dict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    teacher_mean: th.Tensor
    teacher_std: th.Tensor


class KickstartRolloutBuffer(DictRolloutBuffer):
    """SB3's Dict rollout buffer plus the teacher's action mean and std of every stored state."""

    source = None   # set by KickstartPPO.kickstart: has ``acting`` -> (mean, std), each (n_envs, act_dim)

    def reset(self) -> None:
        super().reset()
        shape = (self.buffer_size, self.n_envs, self.action_dim)
        self.teacher_mean = np.zeros(shape, dtype=np.float32)
        self.teacher_std = np.ones(shape, dtype=np.float32)

    def add(self, obs, action, reward, episode_start, value, log_prob) -> None:
        if self.source is None or self.source.acting is None:
            raise RuntimeError("kickstart: the rollout buffer has no teacher labels for this step "
                               "(the model was not given its TeacherLabels env; see KickstartPPO.kickstart)")
        self.teacher_mean[self.pos], self.teacher_std[self.pos] = self.source.acting
        super().add(obs, action, reward, episode_start, value, log_prob)

    def get(self, batch_size: int | None = None):
        # The parent flattens its arrays on its first batch (and draws the permutation first, as
        # stock PPO does, so the minibatches are the same); ours are flattened alongside.
        if not self.generator_ready:
            self.teacher_mean = self.swap_and_flatten(self.teacher_mean)
            self.teacher_std = self.swap_and_flatten(self.teacher_std)
        yield from super().get(batch_size)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> KickstartSamples:
        base = super()._get_samples(batch_inds, env)
        return KickstartSamples(*base, self.to_torch(self.teacher_mean[batch_inds]),
                                self.to_torch(self.teacher_std[batch_inds]))


class KickstartPPO(PPO):
    """SB3 PPO with the kickstarting term in its loss (see the module's docstring)."""

    def _setup_model(self) -> None:
        super()._setup_model()
        if not isinstance(self.action_space, spaces.Box):
            raise ValueError(f"kickstart: needs a continuous (Box) action space, got {self.action_space}")
        if type(self.rollout_buffer) is not DictRolloutBuffer:   # ours extends exactly that one
            raise ValueError(f"kickstart: needs Dict observations (SB3's DictRolloutBuffer), got "
                             f"{type(self.rollout_buffer).__name__}")
        self.rollout_buffer = KickstartRolloutBuffer(self.n_steps, self.observation_space, self.action_space,
                                                     device=self.device, gamma=self.gamma,
                                                     gae_lambda=self.gae_lambda, n_envs=self.n_envs)
        self.kickstart_schedule, self.kickstart_loss_kind = None, None

    def kickstart(self, source, schedule: KickstartSchedule, loss: str) -> None:
        """Attach the label source (a TeacherLabels env), the schedule and the loss kind."""
        if loss not in LOSSES:
            raise ValueError(f"kickstart.loss: expected one of {list(LOSSES)}, got {loss!r}")
        self.rollout_buffer.source = source
        self.kickstart_schedule, self.kickstart_loss_kind = schedule, loss

    def _excluded_save_params(self) -> list[str]:
        # The zip stays a plain PPO archive: nothing of ours is pickled into it.
        return [*super()._excluded_save_params(), "kickstart_schedule", "kickstart_loss_kind"]

    def _evaluate(self, obs, actions):
        """``policy.evaluate_actions`` that also returns the action distribution (one forward pass)."""
        p = self.policy
        features = p.extract_features(obs)
        if p.share_features_extractor:
            latent_pi, latent_vf = p.mlp_extractor(features)
        else:
            latent_pi = p.mlp_extractor.forward_actor(features[0])
            latent_vf = p.mlp_extractor.forward_critic(features[1])
        dist = p._get_action_dist_from_latent(latent_pi)
        return p.value_net(latent_vf), dist.log_prob(actions), dist.entropy(), dist.distribution

    def kickstart_weight(self) -> float:
        """lambda of the update on the rollout just collected (the schedule at the steps so far)."""
        return float(self.kickstart_schedule(int(self.num_timesteps)))

    def teacher_action_gap(self) -> float:
        """Mean |a_student - a_teacher| over the rollout just collected, of the policy that collected
        it (clipped mean actions, as the env executes them); read before the update flattens the buffer."""
        buf = self.rollout_buffer
        obs = {k: th.as_tensor(v.reshape(-1, *v.shape[2:]), device=self.device) for k, v in buf.observations.items()}
        with th.no_grad():
            mean = self.policy.get_distribution(obs).distribution.mean.clamp(-1.0, 1.0).cpu().numpy()
        return float(np.abs(mean - buf.teacher_mean.reshape(mean.shape)).mean())

    def train(self) -> None:
        if self.kickstart_schedule is None:
            raise RuntimeError("kickstart: KickstartPPO.train before KickstartPPO.kickstart(...) gave it a schedule")
        lam = self.kickstart_weight()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = self.clip_range_vf(self._current_progress_remaining) if self.clip_range_vf is not None else None
        logs: dict[str, list] = {"pg": [], "value": [], "entropy": [], "clip_fraction": [], "kickstart": []}
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for batch in self.rollout_buffer.get(self.batch_size):
                values, log_prob, entropy, student = self._evaluate(batch.observations, batch.actions)
                values = values.flatten()
                advantages = batch.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = th.exp(log_prob - batch.old_log_prob)
                surrogate = th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range))
                policy_loss = -surrogate.mean()
                logs["pg"].append(policy_loss.item())
                logs["clip_fraction"].append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = batch.old_values + th.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(batch.returns, values_pred)
                logs["value"].append(value_loss.item())
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                logs["entropy"].append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                ks = kickstart_loss(self.kickstart_loss_kind, student, batch.teacher_mean, batch.teacher_std).mean()
                logs["kickstart"].append(ks.item())
                if lam > 0.0:   # at 0 the loss is stock PPO's, not PPO's plus a zero (bit-identical updates)
                    loss = loss + lam * ks
                with th.no_grad():   # the estimator of KL(old || new) SB3 uses for early stopping
                    log_ratio = log_prob - batch.old_log_prob
                    approx_kl_divs.append(th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy())
                if self.target_kl is not None and approx_kl_divs[-1] > 1.5 * self.target_kl:
                    continue_training = False
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        self._record(logs, approx_kl_divs, loss, clip_range, clip_range_vf)
        # The weight and the agreement are logged with the rollout they apply to (KickstartCallback).
        self.logger.record("train/kickstart_loss", float(np.mean(logs["kickstart"])))

    def _record(self, logs, approx_kl_divs, loss, clip_range, clip_range_vf) -> None:
        """The metrics stock PPO logs after an update, under its names."""
        rec = self.logger.record
        buf = self.rollout_buffer
        rec("train/entropy_loss", np.mean(logs["entropy"]))
        rec("train/policy_gradient_loss", np.mean(logs["pg"]))
        rec("train/value_loss", np.mean(logs["value"]))
        rec("train/approx_kl", np.mean(approx_kl_divs))
        rec("train/clip_fraction", np.mean(logs["clip_fraction"]))
        rec("train/loss", loss.item())
        rec("train/explained_variance", explained_variance(buf.values.flatten(), buf.returns.flatten()))
        if hasattr(self.policy, "log_std"):
            rec("train/std", th.exp(self.policy.log_std).mean().item())
        rec("train/n_updates", self._n_updates, exclude="tensorboard")
        rec("train/clip_range", clip_range)
        if clip_range_vf is not None:
            rec("train/clip_range_vf", clip_range_vf)
