"""DAgger collection on Ray actors (``distill ... env.ray_actors=K``).

The actors are the :class:`~robots_ts.scale.shard.EnvShard` s of a distributed batch. Each holds
the teacher (sent once; the task's scripted controller is built on the actor's own worlds) and a
copy of the student, whose weights the driver broadcasts once per iteration (``ray.put``). An
iteration is :func:`robots_ts.policies.distill.rollout.collect` cut at the seams: the driver draws
the beta coin of every world and step (one generator, as in one process) and keeps the episode
ids, the samplers and the dataset; each actor labels its worlds' states with the teacher's action,
acts with the teacher or the student as the coin says, steps, and keeps its samples until the
driver takes a chunk and appends it to the on-disk dataset.

An actor that dies mid-iteration is restarted by Ray and replays its share of the iteration from
its start: the same seeds, coins, episode parameters and student weights, so it retraces the lost
worlds exactly (the driver checks every replayed step's episode ends against the original ones).
Steps of chunks already written are replayed without being recorded, so the dataset neither loses
nor duplicates a sample. The iteration's record counts the incidents (``actor_restarts``).
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.faults import fault_point
from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.policies.distill.rollout import COLLECT, EpisodeLedger, collect_summary, mixed_actions, seed_for
from robots_ts.scale.pool import DriverSamplers, ShardLost, ShardPool, rows_of

ENDED_KEYS = ("is_success", "episode", "params")   # what the driver hears of a finished episode


def student_meta(model) -> dict:
    """The architecture of a student network, as its checkpoints describe it (no weights)."""
    return {"arch": asdict(model.cfg), "obs_spec": model.obs_spec, "action_dim": int(model.mean.out_features),
            "depth_range": [model.near, model.far], "normalization": model.normalization()}


def student_weights(model) -> dict:
    return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "normalization": model.normalization(), "training": bool(model.training)}


class ShardCollection:
    """The actor's side: its teacher and student, and the samples of the chunk being collected."""

    def __init__(self, shard, teacher, meta: dict):
        import torch

        from robots_ts.policies.scripted import ScriptedTeacher
        from robots_ts.policies.students.checkpoint import StudentPolicy, build_from_meta

        torch.set_num_threads(max(1, shard.env.cfg.num_threads))   # the actor's CPUs, as its worlds
        self.shard = shard
        self.teacher = ScriptedTeacher(shard.env.world) if teacher is None else teacher
        env_cfg: EnvConfig = shard.env.cfg
        self.student = StudentPolicy(build_from_meta(meta), env_cfg, "cpu")
        self.beta, self.store = 1.0, []
        self.first = np.ones(shard.count, dtype=bool)
        self.buf: dict[str, list[np.ndarray]] = {}

    def set_student(self, weights: dict) -> None:
        model = self.student.model
        model.load_state_dict(weights["state_dict"])
        model.set_normalization(weights["normalization"])
        model.train(weights["training"])

    def begin(self, seed: int, beta: float, store: list[str], task_rows, adr_rows) -> None:
        """Reseed the share for this rollout and start every world's first episode."""
        self.shard.seed(seed)
        self.shard.reset(task_rows, adr_rows)
        everyone = np.ones(self.shard.count, dtype=bool)
        for policy in (self.teacher, self.student):
            policy.reset(everyone)
        self.beta, self.store = float(beta), list(store)
        self.first = everyone
        self.buf = {}

    def step(self, coin, restart: bool, record: bool) -> dict:
        fault_point("scale.collect.step")
        obs = self.shard.obs
        action, label, std, from_teacher = mixed_actions(self.teacher, self.student, obs, self.beta, coin)
        if record:
            sample = {g: obs[g] for g in self.store}
            sample.update(action=label, first=self.first)
            if std is not None:
                sample["std"] = std
            for k, v in sample.items():
                self.buf.setdefault(k, []).append(v)
        _, _, dones, infos = self.shard.step(action, restart)
        for policy in (self.teacher, self.student):
            policy.reset(dones)
        self.first = dones.copy()
        ended = {int(i): {k: infos[i][k] for k in ENDED_KEYS} for i in np.flatnonzero(dones)}
        return {"dones": dones, "ended": ended, "teacher_steps": int(from_teacher.sum())}

    def start(self, ids, task_rows, adr_rows) -> None:
        self.shard.start(ids, task_rows, adr_rows)

    def take(self) -> dict[str, np.ndarray]:
        """The recorded steps since the last take, time-major (T, worlds of the share, ...)."""
        out = {k: np.stack(v) for k, v in self.buf.items()}
        self.buf = {}
        return out


class RayCollector:
    """DAgger collection for a distillation run over ``actors`` Ray actors.

    ``env_cfg`` is the rollout env's config (the union of the student's and the teacher's groups).
    ``sampler`` and ``adr_sampler`` are the driver's (the in-process env's, whose evaluations
    update the same ADR sampler, as in one process)."""

    def __init__(self, env_cfg: EnvConfig, seed: int, actors: int, teacher, student, sampler=None,
                 adr_sampler=None, address: str | None = None, max_restarts: int = 3):
        from robots_ts.policies.scripted import ScriptedTeacher

        self.pool = ShardPool(env_cfg, seed, actors, task_from_driver=sampler is not None, address=address,
                              max_restarts=max_restarts)
        ray = self.pool.ray
        d = self.pool.described[0]
        self.spaces = d["observation_space"].spaces
        self.samplers = DriverSamplers(env_cfg, env_cfg.num_envs, sampler, adr_sampler, d["adr_dims"])
        try:
            # The scripted controller reads its own world's state: each actor builds one on its worlds.
            self.teacher_ref = None if isinstance(teacher, ScriptedTeacher) else ray.put(teacher)
            self.meta = student_meta(student.model)
            self.pool.call_all("set_policies", self.teacher_ref, self.meta)
        except Exception:
            self.pool.close()
            raise
        self.weights_ref = None
        self.ops: list[list[dict]] = [[] for _ in range(len(self.pool))]
        self.chunk_start = 0

    @property
    def incidents(self) -> list[dict]:
        return self.pool.incidents

    # ------------------------------------------------------------------ calls and replays
    def _submit(self, k: int, op: dict):
        args = op["args"]
        if op["method"] == "collect_step":       # steps of chunks already written are not recorded again
            args = (*args, op["t"] >= self.chunk_start)
        return self.pool.submit(k, op["method"], *args)

    def _run(self, ops: dict[int, dict]) -> dict:
        """Issue one op per shard at once, logged for replays; their results by shard."""
        refs = {}
        for k, op in ops.items():
            self.ops[k].append(op)
            refs[k] = self._submit(k, op)
        out = {}
        for k, ref in refs.items():
            try:
                out[k] = self.pool.get(k, ref)
            except ShardLost as lost:
                out[k] = self._replay(k, ops[k]["method"], lost.cause)
            if ops[k]["method"] == "collect_step":
                ops[k]["dones"] = out[k]["dones"]     # what a replay must retrace
        return out

    def _replay(self, k: int, during: str, cause: BaseException):
        """Actor ``k`` died: once Ray restarted it, redo its share of the iteration from the
        start, checking it retraces the lost worlds; the last logged op's result."""
        while True:
            self.pool.recover(k, during, cause)
            try:
                self.pool.call(k, "set_policies", self.teacher_ref, self.meta)
                self.pool.call(k, "set_student", self.weights_ref)
                result = None
                for op in self.ops[k]:
                    result = self.pool.get(k, self._submit(k, op))
                    if op["method"] == "collect_step" and "dones" in op \
                            and not np.array_equal(result["dones"], op["dones"]):
                        raise RuntimeError(f"Ray actor {k} did not retrace its worlds after its restart (step "
                                           f"{op['t']} ended other episodes); the iteration cannot be completed "
                                           "without mixing two rollouts")
                self.pool.revived.discard(k)
                return result
            except ShardLost as lost:
                during, cause = "a replay", lost.cause

    def _take(self) -> dict[int, dict]:
        refs = {k: self.pool.submit(k, "collect_take") for k in range(len(self.pool))}
        out = {}
        for k, ref in refs.items():
            try:
                out[k] = self.pool.get(k, ref)
            except ShardLost as lost:
                self._replay(k, "collect_take", lost.cause)
                out[k] = self.pool.call(k, "collect_take")
        return out

    # ------------------------------------------------------------------------ collection
    def collect(self, env, teacher, student, dataset: ChunkDataset, iteration: int, beta: float, steps: int,
                seed: int, chunk_steps: int, progress=None) -> dict:
        """:func:`robots_ts.policies.distill.rollout.collect` on the actors (same arguments and
        record; ``env`` and ``teacher`` are the driver's, the actors hold their own)."""
        pool, ray = self.pool, self.pool.ray
        n = pool.num_envs
        t0 = time.perf_counter()
        incidents = len(pool.incidents)
        coin = np.random.default_rng(seed_for(seed, iteration, COLLECT, 1))
        store = [g for g in (*student.obs_groups, "privileged") if g in self.spaces]
        episodes = EpisodeLedger(iteration, n)
        self.ops = [[] for _ in range(len(pool))]
        self.chunk_start = 0
        self.weights_ref = ray.put(student_weights(student.model))     # one broadcast per iteration
        refs = [pool.submit(k, "set_student", self.weights_ref) for k in range(len(pool))]
        for k, ref in enumerate(refs):
            try:
                pool.get(k, ref)
            except ShardLost as lost:      # died since the last iteration: policies and weights again
                self._replay(k, "set_student", lost.cause)
        active = self.samplers.active
        task, adr = self.samplers.draw(range(n)) if active else (None, None)
        self._run({k: {"method": "collect_begin", "args": (seed_for(seed, iteration, COLLECT), beta, store,
                                                           rows_of(task, sl), rows_of(adr, sl))}
                   for k, sl in enumerate(pool.slices)})
        chunk, ids_per_step, teacher_steps = 0, [], 0
        for t in range(steps):
            draw = coin.random(n) if beta < 1.0 else None
            ids_per_step.append(episodes.ids.copy())
            res = self._run({k: {"method": "collect_step", "t": t,
                                 "args": (None if draw is None else draw[sl], not active)}
                             for k, sl in enumerate(pool.slices)})
            dones = np.concatenate([res[k]["dones"] for k in range(len(pool))])
            ended = {first + i: e for k, (first, _) in enumerate(pool.shares) for i, e in res[k]["ended"].items()}
            teacher_steps += sum(r["teacher_steps"] for r in res.values())
            if active and dones.any():
                self._start(np.flatnonzero(dones), ended)
            episodes.end(dones, lambda i: ended[i]["is_success"])
            if t + 1 - self.chunk_start == chunk_steps or t == steps - 1:
                parts = self._take()
                dataset.write_chunk(iteration, chunk, self._assemble([parts[k] for k in range(len(pool))],
                                                                     ids_per_step))
                chunk += 1
                self.chunk_start, ids_per_step = t + 1, []
            if progress is not None:
                progress.update(n)
        dataset.mark_episodes(iteration, episodes.successes)
        out = collect_summary(episodes.finished, len(episodes.successes), teacher_steps, steps * n,
                              time.perf_counter() - t0)
        out["actor_restarts"] = len(pool.incidents) - incidents
        if pool.balance_record:     # env.ray_split=speed: the worlds each actor steps
            out["worlds_per_actor"] = pool.worlds_per_actor
        out["actor_step_ms"] = pool.actor_step_ms()     # each actor's time per step of this collection
        return out

    def _start(self, ids: np.ndarray, ended: dict[int, dict]) -> None:
        """The driver's samplers hear the finished episodes and choose the next ones."""
        self.samplers.report(ids, ended)
        task, adr = self.samplers.draw(ids)
        self._run({k: {"method": "collect_start", "args": (mine, t, a)}
                   for k, mine, t, a in self.pool.per_shard(ids, task, adr)})

    @staticmethod
    def _assemble(parts: list[dict[str, np.ndarray]], ids_per_step: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The shards' chunks side by side (T, N, ...), with the episode ids, in the key order of an
        in-process collection's chunks."""
        out = {}
        for key in parts[0]:
            out[key] = np.concatenate([p[key] for p in parts], axis=1)
            if key == "first":
                out["episode"] = np.stack(ids_per_step)
        return out

    def close(self) -> None:
        self.pool.close()
