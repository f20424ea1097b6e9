"""The policies of a run as self-contained torch modules, ready to trace for ONNX or TorchScript.

Each graph takes raw observation groups as positional tensors (in the order of ``input_names``),
applies the run's own normalization and preprocessing, and returns the action clipped to [-1, 1],
as the run's :class:`~robots_ts.policies.Policy` ``act`` does; a recurrent student also takes its
state and returns the next one. The graphs reuse the policy's own modules and arithmetic, so they
compute what ``act`` computes, not a re-derivation of it:

- :class:`TeacherGraph`: SB3 PPO's deterministic action, the mean of its Gaussian, behind the
  VecNormalize transform of the run's statistics, computed in float64 like
  :class:`~robots_ts.policies.teacher.load.ObsNormalizer` (then cast to float32);
- :class:`StudentGraph`: :meth:`Student.encode` (depth: NaN, inf and 0 read as far, clipping to
  [near, far], the pixel or range normalization; points and proprio: standardization; ``history``,
  when the student reads it, an input of that name joining proprio as is, and so does a multi-task
  student's ``task``), the optional GRU step,
  the head and the mean (a fine-tuned student is exported as one);
- :class:`ResidualGraph`: a residual run's base graph and residual actor together, the executed
  action ``clip(a_base + alpha * clip(r, -1, 1), -1, 1)``.

Each graph can also draw plausible random observations (:meth:`sample`): the scale of the run's
normalization statistics, and, for depth, pixels with no return (0, NaN, inf); the parity checks
use them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

ACTION = "action"
HIDDEN_IN, HIDDEN_OUT = "hidden", "hidden_out"


class Normalize(nn.Module):
    """An :class:`~robots_ts.policies.teacher.load.ObsNormalizer` (VecNormalize's transform) over
    ``keys`` as a module: computed in float64 as the normalizer computes it, then cast to float32;
    other keys pass through."""

    def __init__(self, normalizer, keys):
        super().__init__()
        self.keys: list[str] = []
        self.clip = float(normalizer.clip) if normalizer is not None else 0.0
        for k in keys:
            if normalizer is not None and k in normalizer.mean:
                self.register_buffer(f"{k}_mean", torch.as_tensor(normalizer.mean[k], dtype=torch.float64))
                self.register_buffer(f"{k}_scale", torch.as_tensor(np.sqrt(normalizer.var[k] + normalizer.eps),
                                                                   dtype=torch.float64))
                self.keys.append(k)

    def forward(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(obs)
        for k in self.keys:
            z = (obs[k].to(torch.float64) - getattr(self, f"{k}_mean")) / getattr(self, f"{k}_scale")
            out[k] = z.clamp(-self.clip, self.clip).to(torch.float32)
        return out


class TeacherGraph(nn.Module):
    """A PPO teacher (robots_ts.policies.teacher.load.Teacher): normalization, actor, mean, clip."""

    def __init__(self, teacher):
        super().__init__()
        from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution

        policy = teacher.model.policy
        if not isinstance(policy.action_dist, (DiagGaussianDistribution, StateDependentNoiseDistribution)):
            raise ValueError(f"teacher {teacher.run_dir}: cannot export a {type(policy.action_dist).__name__} "
                             "policy; only Gaussian (continuous) actions have a deterministic mean to export")
        self.policy = policy.to("cpu").eval()
        self.groups = tuple(teacher.obs_space.spaces)      # the Dict space's (sorted) key order
        self.shapes = {k: list(teacher.obs_space.spaces[k].shape) for k in self.groups}
        self.norm = Normalize(teacher.normalize, self.groups)
        self.recurrent_size = 0

    @property
    def input_names(self) -> list[str]:
        return list(self.groups)

    @property
    def output_names(self) -> list[str]:
        return [ACTION]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        from stable_baselines3.common.preprocessing import preprocess_obs

        obs = self.norm(dict(zip(self.groups, inputs)))
        p = self.policy
        features = p.pi_features_extractor(preprocess_obs(obs, p.observation_space, p.normalize_images))
        mean = p.action_net(p.mlp_extractor.forward_actor(features))
        return mean.clamp(-1.0, 1.0)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Observations around the normalization statistics: up to 3 standard deviations off, and 5%
        of the entries 15 off, beyond the normalization's clipping."""
        out = {}
        for k in self.groups:
            shape = (n, *self.shapes[k])
            if k in self.norm.keys:
                mean = getattr(self.norm, f"{k}_mean").numpy()
                scale = getattr(self.norm, f"{k}_scale").numpy()
                z = rng.uniform(-3, 3, shape)
                far = rng.random(shape) < 0.05
                z[far] = 15.0 * np.sign(z[far])
                out[k] = (mean + scale * z).astype(np.float32)
            else:
                out[k] = rng.normal(size=shape).astype(np.float32)
        return out


class StudentGraph(nn.Module):
    """A distilled student (robots_ts.policies.students.networks.Student), one step of it."""

    def __init__(self, model, tasks=None):
        super().__init__()
        self.model = model.to("cpu").eval()
        # The inputs are named after their groups: a robot runtime feeds "history" and a multi-task
        # student's "task" (one-hot task id and command, robots_ts.envs.multi_task.task_vector) by name.
        self.tasks = sorted(tasks) if tasks else []
        if bool(model.task_dim) != bool(self.tasks):
            raise ValueError(f"a student reading {model.task_dim} 'task' columns is exported with its tasks, got "
                             f"{self.tasks}")
        self.groups = ("proprio", model.encoder_group, *(("task",) if model.task_dim else ()),
                       *(("history",) if model.history_dim else ()))
        self.shapes = {k: list(model.obs_spec[k]) for k in self.groups}
        self.recurrent_size = int(model.cfg.gru_hidden) if model.recurrent else 0

    @property
    def input_names(self) -> list[str]:
        return [*self.groups, HIDDEN_IN] if self.recurrent_size else list(self.groups)

    @property
    def output_names(self) -> list[str]:
        return [ACTION, HIDDEN_OUT] if self.recurrent_size else [ACTION]

    def forward(self, *inputs: torch.Tensor):
        """The groups' tensors in the order of ``groups``, then a recurrent student's state."""
        m = self.model
        obs = dict(zip(self.groups, inputs))
        hidden = inputs[len(self.groups)] if m.gru is not None else None
        core = m.encode(obs["proprio"], obs[m.encoder_group], task=obs.get("task"), history=obs.get("history"))
        if m.gru is not None:
            # StudentPolicy's one-step forward: the state it keeps between calls, zeros at an episode start.
            hidden = m.gru(core, hidden)
            core = hidden
        action = m.mean(m.head(core)).clamp(-1.0, 1.0)
        return (action, hidden) if m.gru is not None else action

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Proprio and points around the dataset statistics; depth across [near, far] with 10% of
        the pixels reading no return (0, NaN, inf, negative) or out of range."""
        m = self.model
        out = {"proprio": (m.proprio_mean.numpy() + m.proprio_std.numpy()
                           * rng.uniform(-3, 3, (n, *self.shapes["proprio"]))).astype(np.float32)}
        if m.encoder_group == "depth":
            shape = (n, *self.shapes["depth"])
            depth = rng.uniform(m.near, m.far, shape)
            odd = rng.random(shape) < 0.1
            odd_values = np.array([0.0, np.nan, np.inf, -np.inf, -0.5, m.near / 2, m.far * 2])
            depth[odd] = rng.choice(odd_values, int(odd.sum()))
            out["depth"] = depth.astype(np.float32)
        else:
            shape = (n, *self.shapes["points"])
            out["points"] = (m.points_mean.numpy() + m.points_std.numpy() * rng.uniform(-3, 3, shape)
                             ).astype(np.float32)
        if "history" in self.groups:        # actions sent: anywhere in the action bounds
            out["history"] = rng.uniform(-1, 1, (n, *self.shapes["history"])).astype(np.float32)
        if "task" in self.groups:           # a task each, its command anywhere in a metre of the base
            from robots_ts.envs.multi_task import task_commands, task_vector

            commands = task_commands(self.tasks)
            picks = rng.choice(self.tasks, n)
            out["task"] = np.stack([task_vector(self.tasks, t, rng.uniform(-1, 1, len(commands[t]))) for t in picks])
        return out


class ResidualGraph(nn.Module):
    """A refined policy (robots_ts.policies.residual.policy.RefinedPolicy) in one graph: the base's
    graph computes ``a_base`` (a recurrent base's state in and out as the base's own graph has it),
    the residual's actor reads the sensor groups and ``a_base`` behind the run's normalization, and
    the action is ``clip(a_base + alpha * clip(r, -1, 1), -1, 1)``."""

    def __init__(self, refined):
        super().__init__()
        from robots_ts.policies.residual.env import BASE_ACTION

        self.base = policy_graph(refined.base)
        self.policy = refined.policy.to("cpu").eval()
        self.base_action = BASE_ACTION
        self.actor_keys = list(refined.actor_keys)
        self.groups, self.shapes = self.base.groups, self.base.shapes
        self.recurrent_size = self.base.recurrent_size
        self.norm = Normalize(refined.normalize, self.actor_keys)
        self.register_buffer("alpha", torch.as_tensor(refined.alpha, dtype=torch.float32))
        self.near, self.far = float(refined.env_cfg.depth.near), float(refined.env_cfg.depth.far)

    @property
    def input_names(self) -> list[str]:
        return self.base.input_names

    @property
    def output_names(self) -> list[str]:
        return self.base.output_names

    def forward(self, *inputs: torch.Tensor):
        out = self.base(*inputs)
        a_base, hidden = out if self.recurrent_size else (out, None)
        obs = dict(zip(self.groups, inputs))
        if "depth" in obs:      # read as robots_ts.policies.residual.env.depth_reading reads it
            d = torch.nan_to_num(obs["depth"], nan=self.far, posinf=self.far, neginf=self.far)
            obs["depth"] = torch.where(d <= 0, torch.full_like(d, self.far), d).clamp(self.near, self.far)
        obs[self.base_action] = a_base
        obs = self.norm({k: obs[k] for k in self.actor_keys})
        r = self.policy.actor_mean(obs).clamp(-1.0, 1.0)
        action = (a_base + self.alpha * r).clamp(-1.0, 1.0)
        return (action, hidden) if self.recurrent_size else action

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The base graph's observations (the residual reads the same groups)."""
        return self.base.sample(n, rng)


def policy_graph(policy) -> TeacherGraph | StudentGraph | ResidualGraph:
    """The export graph of a loaded run policy (a Teacher, a StudentPolicy or a RefinedPolicy)."""
    from robots_ts.policies.residual.policy import RefinedPolicy
    from robots_ts.policies.students.checkpoint import StudentPolicy
    from robots_ts.policies.teacher.load import Teacher

    if isinstance(policy, Teacher):
        return TeacherGraph(policy)
    if isinstance(policy, StudentPolicy):
        return StudentGraph(policy.model, policy.task_shares)
    if isinstance(policy, RefinedPolicy):
        return ResidualGraph(policy)
    raise ValueError(f"cannot export a {type(policy).__name__}: export knows PPO teachers, distilled students "
                     "and refined (residual) policies")


def graph_inputs(graph, obs: dict[str, np.ndarray], hidden: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
    """Positional float32 tensors for ``graph`` from a dict of observation groups (and state)."""
    args = [torch.as_tensor(np.asarray(obs[k], dtype=np.float32)) for k in graph.groups]
    if graph.recurrent_size:
        n = args[0].shape[0]
        args.append(torch.zeros(n, graph.recurrent_size) if hidden is None else torch.as_tensor(hidden))
    return tuple(args)
