"""Distillation rollouts: beta-mixed collection labelled by the teacher, and policy evaluation.

Both run on one batched env that produces the union of the teacher's and the student's
observation groups; each policy is handed only its own groups of the same step. Every rollout
reseeds the env from (run seed, iteration, purpose), so an iteration's data depends only on the
seed, the iteration and the student's weights: a resumed run collects exactly what an
uninterrupted one would have.
"""
from __future__ import annotations

import time

import numpy as np

from robots_ts.evaluate import wilson_interval
from robots_ts.policies.dataset import ChunkDataset

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
    env.world.seed(seed_for(seed, iteration, COLLECT))
    coin = np.random.default_rng(seed_for(seed, iteration, COLLECT, 1))
    obs = env.reset()
    everyone = np.ones(n, dtype=bool)
    teacher.reset(everyone)
    student.reset(everyone)
    store = [g for g in (*student.obs_groups, "privileged") if g in obs]
    base = int(iteration) << 32   # episode ids unique across the whole dataset
    episode = base + np.arange(n, dtype=np.int64)
    next_id, first = n, everyone.copy()
    buf: dict[str, list[np.ndarray]] = {}
    successes: list[int] = []
    finished = teacher_steps = chunk = 0
    t0 = time.perf_counter()
    for t in range(steps):
        label, std = teacher_label(teacher, obs)
        if beta >= 1.0:
            action, from_teacher = label, everyone
        else:
            # The student is queried every step, even where the teacher acts, so that a recurrent
            # student's memory follows the trajectory it is on.
            mine = student.act(subset(obs, student.obs_groups))
            from_teacher = coin.random(n) < beta
            action = np.where(from_teacher[:, None], label, mine)
        teacher_steps += int(from_teacher.sum())
        sample = {g: obs[g] for g in store}
        sample.update(action=label, first=first, episode=episode.copy())
        if std is not None:
            sample["std"] = std
        for k, v in sample.items():
            buf.setdefault(k, []).append(v)
        obs, _, done, infos = env.step(action)
        for i in np.flatnonzero(done):
            finished += 1
            if infos[i]["is_success"]:
                successes.append(int(episode[i]))
            episode[i] = base + next_id
            next_id += 1
        first = done.copy()
        teacher.reset(done)
        student.reset(done)
        if len(buf["action"]) == chunk_steps or t == steps - 1:
            dataset.write_chunk(iteration, chunk, {k: np.stack(v) for k, v in buf.items()})
            buf, chunk = {}, chunk + 1
        if progress is not None:
            progress.update(n)
    dataset.mark_episodes(iteration, successes)
    seconds = time.perf_counter() - t0
    return {"rollout_episodes": finished, "rollout_success": len(successes) / max(1, finished),
            "teacher_action_fraction": teacher_steps / (steps * n), "collect_steps_per_s": steps * n / seconds}


def evaluate(env, actor, episodes: int, seed: int, teacher=None) -> dict:
    """Success of ``actor`` acting alone over ``episodes`` episodes and, when ``teacher`` is given,
    its agreement with the teacher on the states it visits.

    World i runs a fixed quota of episodes, so quick successes are not over-counted. Agreement is
    ``1 - mean|a_student - a_teacher| / 2`` over steps and action dimensions: 1 when the actions are
    identical, 0 when they sit at opposite bounds everywhere.
    """
    n = env.num_envs
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    env.world.seed(seed)
    obs = env.reset()
    everyone = np.ones(n, dtype=bool)
    actor.reset(everyone)
    if teacher is not None:
        teacher.reset(everyone)
    done_count = np.zeros(n, dtype=np.int64)
    wins = total = 0
    lengths: list[int] = []
    abs_err = sq_err = 0.0
    counted = 0
    while np.any(done_count < quota):
        action = np.clip(actor.act(subset(obs, actor.obs_groups)), -1.0, 1.0)
        if teacher is not None:
            label, _ = teacher_label(teacher, obs)
            active = done_count < quota
            diff = (action - label)[active]
            abs_err += float(np.abs(diff).sum())
            sq_err += float(np.square(diff).sum())
            counted += diff.size
        obs, _, done, infos = env.step(action)
        for i in np.flatnonzero(done):
            if done_count[i] < quota[i]:
                wins += int(infos[i]["is_success"])
                total += 1
                lengths.append(int(infos[i]["episode"]["l"]))
            done_count[i] += 1
        actor.reset(done)
        if teacher is not None:
            teacher.reset(done)
    lo, hi = wilson_interval(wins, total)
    out = {"success_rate": wins / total, "success_ci95": [lo, hi], "episodes": total,
           "mean_episode_length": float(np.mean(lengths))}
    if teacher is not None and counted:
        out["agreement"] = 1.0 - abs_err / counted / 2.0
        out["action_mse"] = sq_err / counted
    return out
