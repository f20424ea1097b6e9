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


def collect(env, teacher, student, dataset: ChunkDataset, iteration: int, beta: float, steps: int,
            seed: int, chunk_steps: int, progress=None) -> dict:
    """Roll out ``steps`` env steps in which, per world and step, the teacher acts with probability
    ``beta`` and the student otherwise; store every visited state with the teacher's label.

    With ``beta >= 1`` the student is not even queried, so the rollout is exactly the teacher's.
    """
    n = env.num_envs
    coin = np.random.default_rng(seed_for(seed, iteration, COLLECT, 1))
    everyone = np.ones(n, dtype=bool)
    store = [g for g in (*student.obs_groups, "privileged") if g in env.observation_space.spaces]
    base = int(iteration) << 32   # episode ids unique across the whole dataset
    episode = base + np.arange(n, dtype=np.int64)
    buf: dict[str, list[np.ndarray]] = {}
    successes: list[int] = []
    # Mutable state of the rollout: the next episode id, which worlds just started an episode, the
    # chunks written and the steps where the teacher acted.
    state = {"next_id": n, "first": everyone.copy(), "chunk": 0, "teacher_steps": 0}

    def act(obs):
        label, std = teacher_label(teacher, obs)
        if beta >= 1.0:
            action, from_teacher = label, everyone
        else:
            # The student is queried every step, even where the teacher acts, so that a recurrent
            # student's memory follows the trajectory it is on.
            mine = student.act(subset(obs, student.obs_groups))
            from_teacher = coin.random(n) < beta
            action = np.where(from_teacher[:, None], label, mine)
        state["teacher_steps"] += int(from_teacher.sum())
        sample = {g: obs[g] for g in store}
        sample.update(action=label, first=state["first"], episode=episode.copy())
        if std is not None:
            sample["std"] = std
        for k, v in sample.items():
            buf.setdefault(k, []).append(v)
        return action

    def after_step(t, done, infos):
        for i in np.flatnonzero(done):
            if infos[i]["is_success"]:
                successes.append(int(episode[i]))
            episode[i] = base + state["next_id"]
            state["next_id"] += 1
        state["first"] = done.copy()
        if len(buf["action"]) == chunk_steps or t == steps - 1:
            dataset.write_chunk(iteration, state["chunk"], {k: np.stack(v) for k, v in buf.items()})
            buf.clear()
            state["chunk"] += 1
        if progress is not None:
            progress.update(n)

    t0 = time.perf_counter()
    finished = run_episodes(env, act, [teacher, student], steps=steps, seed=seed_for(seed, iteration, COLLECT),
                            after_step=after_step)
    dataset.mark_episodes(iteration, successes)
    seconds = time.perf_counter() - t0
    return {"rollout_episodes": len(finished), "rollout_success": len(successes) / max(1, len(finished)),
            "teacher_action_fraction": state["teacher_steps"] / (steps * n),
            "collect_steps_per_s": steps * n / seconds}


def evaluate(env, actor, episodes: int, seed: int, teacher=None) -> dict:
    """Success of ``actor`` acting alone over ``episodes`` episodes and, when ``teacher`` is given,
    its agreement with the teacher on the states it visits.

    World i runs a fixed quota of episodes, so quick successes are not over-counted. Agreement is
    ``1 - mean|a_student - a_teacher| / 2`` over steps and action dimensions: 1 when the actions are
    identical, 0 when they sit at opposite bounds everywhere.
    """
    err = {"abs": 0.0, "sq": 0.0, "count": 0}

    def act(obs):
        return np.clip(actor.act(subset(obs, actor.obs_groups)), -1.0, 1.0)

    def agreement(obs, action, active):
        label, _ = teacher_label(teacher, obs)
        diff = (action - label)[active]
        err["abs"] += float(np.abs(diff).sum())
        err["sq"] += float(np.square(diff).sum())
        err["count"] += diff.size

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
    return out
