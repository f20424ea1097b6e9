"""Distillation rollouts: beta-mixed collection labelled by the teacher, and policy evaluation.

Both are :func:`robots_ts.rollout.run_episodes` with DAgger's hooks, on one batched env that
produces the union of the teacher's and the student's observation groups; each policy is handed
only its own groups of the same step. Every rollout
reseeds the env from (run seed, iteration, purpose), so an iteration's data depends only on the
seed, the iteration and the student's weights: a resumed run collects exactly what an
uninterrupted one would have.
"""
from __future__ import annotations

import time

import numpy as np

from robots_ts.evaluate import wilson_interval
from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.rollout import run_episodes, split_quota

COLLECT, EVAL_STUDENT, EVAL_TEACHER = 0, 1, 2


def seed_for(seed: int, *tags: int) -> int:
    return int(np.random.SeedSequence([int(seed), *map(int, tags)]).generate_state(1)[0])


def subset(obs: dict[str, np.ndarray], groups) -> dict[str, np.ndarray]:
    return {g: obs[g] for g in groups}


def teacher_label(teacher, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """The teacher's deterministic action (and its policy std when it has one) on its own groups.

    Labels are clipped to the action bounds: the env clips executed actions, so asking the student
    to reproduce the part of a mean beyond +-1 would only spend capacity on nothing.
    """
    mine = subset(obs, teacher.obs_groups)
    if hasattr(teacher, "act_with_std"):
        mean, std = teacher.act_with_std(mine)
        std = np.asarray(std, dtype=np.float32)
    else:
        mean, std = teacher.act(mine), None
    return np.clip(np.asarray(mean, dtype=np.float32), -1.0, 1.0), std


def mixed_actions(teacher, student, obs: dict[str, np.ndarray], beta: float, coin: np.ndarray | None):
    """One step of a beta-mixed rollout: (executed action, teacher label, teacher std or None, mask of
    the worlds where the teacher acted). ``coin``: one uniform draw per world (unused when
    ``beta >= 1``); the teacher acts where it is below ``beta``."""
    label, std = teacher_label(teacher, obs)
    if beta >= 1.0:
        return label, label, std, np.ones(len(label), dtype=bool)
    # The student is queried every step, even where the teacher acts, so that a recurrent
    # student's memory follows the trajectory it is on.
    mine = student.act(subset(obs, student.obs_groups))
    from_teacher = coin < beta
    return np.where(from_teacher[:, None], label, mine), label, std, from_teacher


class EpisodeLedger:
    """Episode ids of one collection (unique across the dataset: the iteration in the high 32 bits,
    then one count over the worlds' episodes in the order they start), which worlds just started
    an episode, and the ids of the successful ones."""

    def __init__(self, iteration: int, num_envs: int):
        self.base = int(iteration) << 32
        self.ids = self.base + np.arange(num_envs, dtype=np.int64)
        self.next_id = num_envs
        self.first = np.ones(num_envs, dtype=bool)
        self.successes: list[int] = []
        self.finished = 0

    def end(self, done: np.ndarray, success) -> None:
        """After a step: worlds ``done`` finished (``success(i)``: whether world i's episode succeeded)."""
        for i in np.flatnonzero(done):
            if success(i):
                self.successes.append(int(self.ids[i]))
            self.ids[i] = self.base + self.next_id
            self.next_id += 1
            self.finished += 1
        self.first = done.copy()


def collect(env, teacher, student, dataset: ChunkDataset, iteration: int, beta: float, steps: int,
            seed: int, chunk_steps: int, progress=None) -> dict:
    """Roll out ``steps`` env steps in which, per world and step, the teacher acts with probability
    ``beta`` and the student otherwise; store every visited state with the teacher's label.

    With ``beta >= 1`` the student is not even queried, so the rollout is exactly the teacher's.
    """
    n = env.num_envs
    coin = np.random.default_rng(seed_for(seed, iteration, COLLECT, 1))
    store = [g for g in (*student.obs_groups, "privileged") if g in env.observation_space.spaces]
    episodes = EpisodeLedger(iteration, n)
    buf: dict[str, list[np.ndarray]] = {}
    # Mutable state of the rollout: the chunks written and the steps where the teacher acted.
    state = {"chunk": 0, "teacher_steps": 0}

    def act(obs):
        action, label, std, from_teacher = mixed_actions(teacher, student, obs, beta,
                                                         coin.random(n) if beta < 1.0 else None)
        state["teacher_steps"] += int(from_teacher.sum())
        sample = {g: obs[g] for g in store}
        sample.update(action=label, first=episodes.first, episode=episodes.ids.copy())
        if std is not None:
            sample["std"] = std
        for k, v in sample.items():
            buf.setdefault(k, []).append(v)
        return action

    def after_step(t, done, infos):
        episodes.end(done, lambda i: infos[i]["is_success"])
        if len(buf["action"]) == chunk_steps or t == steps - 1:
            dataset.write_chunk(iteration, state["chunk"], {k: np.stack(v) for k, v in buf.items()})
            buf.clear()
            state["chunk"] += 1
        if progress is not None:
            progress.update(n)

    t0 = time.perf_counter()
    finished = run_episodes(env, act, [teacher, student], steps=steps, seed=seed_for(seed, iteration, COLLECT),
                            after_step=after_step)
    dataset.mark_episodes(iteration, episodes.successes)
    return collect_summary(len(finished), len(episodes.successes), state["teacher_steps"], steps * n,
                           time.perf_counter() - t0)


def collect_summary(episodes: int, successes: int, teacher_steps: int, samples: int, seconds: float) -> dict:
    """The metrics a collection adds to its iteration's record."""
    return {"rollout_episodes": episodes, "rollout_success": successes / max(1, episodes),
            "teacher_action_fraction": teacher_steps / samples, "collect_steps_per_s": samples / seconds}


def evaluate(env, actor, episodes: int, seed: int, teacher=None, world_tasks: np.ndarray | None = None) -> dict:
    """Success of ``actor`` acting alone over ``episodes`` episodes and, when ``teacher`` is given,
    its agreement with the teacher on the states it visits. ``world_tasks`` (each world's task, in
    a multi-task env) adds ``per_task``: success, and agreement with that task's teacher, per task.

    World i runs a fixed quota of episodes, so quick successes are not over-counted. Agreement is
    ``1 - mean|a_student - a_teacher| / 2`` over steps and action dimensions: 1 when the actions are
    identical, 0 when they sit at opposite bounds everywhere.
    """
    err = {"abs": 0.0, "sq": 0.0, "count": 0}
    # Per world, for the per-task figures (kept apart so the overall sums stay as they always were).
    world_err = {k: np.zeros(env.num_envs) for k in ("abs", "sq", "count")}

    def act(obs):
        return np.clip(actor.act(subset(obs, actor.obs_groups)), -1.0, 1.0)

    def agreement(obs, action, active):
        label, _ = teacher_label(teacher, obs)
        diff = (action - label)[active]
        err["abs"] += float(np.abs(diff).sum())
        err["sq"] += float(np.square(diff).sum())
        err["count"] += diff.size
        if world_tasks is not None:
            full = np.where(active[:, None], action - label, 0.0)
            world_err["abs"] += np.abs(full).sum(1)
            world_err["sq"] += np.square(full).sum(1)
            world_err["count"] += active * full.shape[1]

    resets = [actor] if teacher is None else [actor, teacher]
    records = run_episodes(env, act, resets, quota=split_quota(episodes, env.num_envs), seed=seed,
                           before_step=None if teacher is None else agreement)
    wins = sum(r["success"] for r in records)
    lo, hi = wilson_interval(wins, len(records))
    out = {"success_rate": wins / len(records), "success_ci95": [lo, hi], "episodes": len(records),
           "mean_episode_length": float(np.mean([r["length"] for r in records]))}
    if teacher is not None and err["count"]:
        out["agreement"] = 1.0 - err["abs"] / err["count"] / 2.0
        out["action_mse"] = err["sq"] / err["count"]
    if world_tasks is not None:
        from robots_ts.policies.distill.multi import per_task_summary

        out["per_task"] = per_task_summary(records, world_tasks)
        for task, summary in out["per_task"].items():
            count = world_err["count"][world_tasks == task].sum()
            if teacher is not None and count:
                summary["agreement"] = 1.0 - world_err["abs"][world_tasks == task].sum() / count / 2.0
                summary["action_mse"] = world_err["sq"][world_tasks == task].sum() / count
    return out
