"""Worlds of several tasks as one batch: one :class:`~robots_ts.envs.vec_env.BatchedEnv` per task,
stepped together and presented as N worlds (task k's worlds are a contiguous block, in the order
the tasks are given).

Tasks share the robot, the camera and the action mapping, but not every observation width: Push
puts its goal (a command) at the end of proprio, Reach and Lift have none, and each task's
privileged state has its own size. So the groups this env presents are

- ``proprio``: the task-independent part of each task's proprio (joints, fingers, hand, previous
  action), the same columns for every task; the command moves to ``task``;
- ``task``: one-hot task id, then the task's command zero-padded to the widest command of the
  tasks (only computed when asked for): how one student network knows what it is asked to do;
- ``depth`` / ``points``: as each task renders them (the same shape for every task);
- ``privileged``: each task's privileged state zero-padded to the widest (only aux targets read it;
  Reach, Push and Lift all start it with the object's position, so ``aux_indices: [0, 1, 2]``
  means the same thing for every task);
- ``<Task>/<group>``: a task's own group exactly as its single-task env gives it, zero in the rows
  of other tasks' worlds: what that task's teacher reads (see
  :class:`robots_ts.policies.distill.multi.TaskRouter`).

Tasks are held in sorted order of their names, whatever order a config or a checkpoint lists them
in: the one-hot column of a task, and which worlds are its, are the same in training and evaluation.

Randomness: task k's worlds are seeded from ``SeedSequence([seed, k])``, so a seed fixes every
task's episodes, and adding worlds to one task leaves the others' unchanged.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from gymnasium import spaces

from robots_ts.config import EnvConfig

SHARED = ("depth", "points")          # the same per world whatever the task
PADDED = ("privileged",)              # per-task widths, zero-padded to the widest


def split_worlds(num_envs: int, shares: dict[str, float]) -> dict[str, int]:
    """Worlds per task: ``num_envs`` split in proportion to ``shares`` (largest remainders first,
    ties to the earlier task name), then at least one world each (taken from the task holding the
    most); tasks in sorted order."""
    tasks = sorted(shares)
    if num_envs < len(tasks):
        raise ValueError(f"env.num_envs: {num_envs} worlds cannot hold the {len(tasks)} tasks {tasks}; "
                         "give at least one world per task")
    w = np.array([float(shares[t]) for t in tasks])
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"task_shares: expected positive numbers, got {dict(shares)}")
    exact = num_envs * w / w.sum()
    counts = np.floor(exact).astype(int)
    order = sorted(range(len(tasks)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: num_envs - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero(counts == 0):
        counts[int(np.argmax(counts))] -= 1
        counts[i] = 1
    return {t: int(c) for t, c in zip(tasks, counts)}


def task_commands(tasks) -> dict[str, tuple[str, ...]]:
    """Each task's command names, tasks in the ``task`` group's (sorted) order."""
    from robots_ts.envs.world import resolve_task

    return {t: tuple(resolve_task(t).command_names) for t in sorted(tasks)}


def task_vector(tasks, task: str, command=()) -> np.ndarray:
    """The ``task`` group's row of one world of ``task`` among ``tasks``: the one-hot task id, then
    ``command`` zero-padded to the widest command of the tasks (what a robot runtime feeds a
    multi-task student)."""
    commands = task_commands(tasks)
    names = list(commands)
    if task not in commands:
        raise ValueError(f"task {task!r} is not one of {names}")
    command = np.asarray(command, dtype=np.float64).reshape(-1)
    if len(command) != len(commands[task]):
        raise ValueError(f"task {task} takes the command {list(commands[task])}, got {command.tolist()}")
    row = np.zeros(len(names) + max(len(c) for c in commands.values()), np.float32)
    row[names.index(task)] = 1.0
    row[len(names):len(names) + len(command)] = command
    return row


def task_group(name: str, group: str) -> str:
    """The key of task ``name``'s own observation group ``group`` (what its teacher reads)."""
    return f"{name}/{group}"


class MultiWorlds:
    """What DAgger and the rollout loop ask of ``env.world``, over every task's worlds."""

    adr_sampler = None                # ADR chooses per task run; a multi-task run refuses it

    def __init__(self, env: "MultiTaskEnv"):
        self.env = env
        self.cfg = env.cfg
        self.num_envs = env.num_envs
        self.action_dim = env.action_dim

    def seed(self, seed: int | None) -> None:
        for k, sub in enumerate(self.env.envs.values()):
            sub.world.seed(None if seed is None else int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0]))


class MultiTaskEnv:
    """N worlds of several tasks (``worlds``: task -> number of worlds) as one batched env with
    auto-reset, like :class:`~robots_ts.envs.vec_env.BatchedEnv`."""

    def __init__(self, cfg: EnvConfig, worlds: dict[str, int], seed: int = 0, obs_groups=None):
        from robots_ts.envs import make_batched_env
        from robots_ts.envs.world import resolve_task

        if cfg.curriculum.name != "none" or cfg.randomization.adr.dims or cfg.ray_actors:
            raise ValueError("a multi-task env steps every task's worlds in this process with uniform task "
                             "parameters: env.curriculum, env.randomization.adr and env.ray_actors are not "
                             "supported with several tasks")
        self.cfg = cfg
        self.tasks = tuple(sorted(worlds))
        self.groups = tuple(dict.fromkeys(obs_groups if obs_groups is not None else cfg.obs_groups))
        own: dict[str, list[str]] = {t: [] for t in self.tasks}
        for g in self.groups:
            task, _, sub = g.rpartition("/")
            if task and task not in own:
                raise ValueError(f"observation group {g!r} names task {task!r}, which this env does not hold "
                                 f"(tasks {list(self.tasks)})")
            for t in ([task] if task else self.tasks):
                need = {"task": ["proprio"], "proprio": ["proprio"]}.get(sub, [sub])
                own[t] += [n for n in need if n not in own[t]]
        self.envs = {}
        try:
            for t in self.tasks:
                self.envs[t] = make_batched_env(replace(cfg, task=t), num_envs=worlds[t], obs_groups=own[t] or
                                                ["proprio"])
        except Exception:
            self.close()
            raise
        dims = {t: e.world.action_dim for t, e in self.envs.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(f"tasks {list(self.tasks)} act in different action spaces {dims}; one student "
                             "cannot serve them")
        self.action_dim = next(iter(dims.values()))
        self.world_tasks = np.array([t for t in self.tasks for _ in range(worlds[t])])
        self.num_envs = len(self.world_tasks)
        self.rows = {t: np.flatnonzero(self.world_tasks == t) for t in self.tasks}
        self.task_cls = {t: resolve_task(t) for t in self.tasks}
        self.command_width = max(c.command_dim for c in self.task_cls.values())
        # The columns of each task's proprio shared by every task: all but the command.
        self.common = {t: np.delete(np.arange(e.world.proprio_layout.dim), e.world.proprio_layout["command"])
                       for t, e in self.envs.items()}
        self.observation_space = self._spaces()
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.world = MultiWorlds(self)
        self.world.seed(seed)
        self._actions = None

    def _spaces(self) -> spaces.Dict:
        d = {}
        for g in self.groups:
            task, _, sub = g.rpartition("/")
            if task:
                d[g] = self.envs[task].observation_space.spaces[sub]
            elif g == "proprio":
                d[g] = spaces.Box(-np.inf, np.inf, (len(next(iter(self.common.values()))),), np.float32)
            elif g == "task":
                d[g] = spaces.Box(-np.inf, np.inf, (len(self.tasks) + self.command_width,), np.float32)
            elif g in PADDED:
                width = max(e.observation_space.spaces[g].shape[0] for e in self.envs.values())
                d[g] = spaces.Box(-np.inf, np.inf, (width,), np.float32)
            else:
                shapes = {t: e.observation_space.spaces[g].shape for t, e in self.envs.items()}
                if len(set(shapes.values())) != 1:
                    raise ValueError(f"observation group {g!r} has different shapes across tasks {shapes}")
                d[g] = next(iter(self.envs.values())).observation_space.spaces[g]
        return spaces.Dict(d)

    @property
    def sampler(self):
        return None

    @sampler.setter
    def sampler(self, value) -> None:
        if value is not None:
            raise ValueError("a multi-task env draws each task's parameters uniformly; it takes no sampler")

    def _merge(self, per_task: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """One observation dict over all worlds from each task's own."""
        out = {}
        for g, space in self.observation_space.spaces.items():
            batch = np.zeros((self.num_envs, *space.shape), np.float32)
            for k, t in enumerate(self.tasks):
                obs, rows = per_task[t], self.rows[t]
                task, _, sub = g.rpartition("/")
                if task:
                    if task == t:
                        batch[rows] = obs[sub]
                elif g == "proprio":
                    batch[rows] = obs["proprio"][:, self.common[t]]
                elif g == "task":
                    batch[rows, k] = 1.0
                    command = obs["proprio"][:, self.envs[t].world.proprio_layout["command"]]
                    batch[rows, len(self.tasks):len(self.tasks) + command.shape[1]] = command
                else:
                    batch[rows, ..., :obs[g].shape[-1]] = obs[g]
            out[g] = batch
        return out

    def reset(self):
        return self._merge({t: e.reset() for t, e in self.envs.items()})

    def step_async(self, actions) -> None:
        a = np.asarray(actions)
        if a.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"multi-task env {list(self.tasks)}: action has shape {a.shape}, expected "
                             f"{(self.num_envs, self.action_dim)}")
        self._actions = a

    def step_wait(self):
        per_task, rewards, dones, infos = {}, [], [], []
        for t, e in self.envs.items():
            obs, r, d, info = e.step(self._actions[self.rows[t]])
            per_task[t] = obs
            rewards.append(r)
            dones.append(d)
            for i in info:
                i["task"] = t
                if "terminal_observation" in i:   # in the task's own groups, as its env reported them
                    i["terminal_observation"] = {task_group(t, g): v for g, v in i["terminal_observation"].items()}
            infos += info
        return self._merge(per_task), np.concatenate(rewards), np.concatenate(dones), infos

    def step(self, actions):
        self.step_async(actions)
        return self.step_wait()

    def close(self) -> None:
        for e in self.envs.values():
            e.close()
