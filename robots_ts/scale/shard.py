"""One Ray actor's share of a batch of worlds: worlds ``first .. first + count - 1`` of ``total``.

The share is an ordinary :class:`~robots_ts.envs.vec_env.BatchedEnv` of ``count`` worlds whose
generators are those the whole batch would give these worlds (:func:`share_generators`), so a
world's draws (task parameters, start pose, randomization, point subsampling) do not depend on how
the batch is split. The samplers stay in the driver: while the driver draws a share's episode
parameters (a curriculum, ADR), the shard's world samples from :class:`GivenParams`, which hands
out the rows the driver sent with the call that starts the episodes.

This module does not import Ray: the driver wraps :class:`EnvShard` with ``ray.remote``.
"""
from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.faults import fault_point


def share_generators(seed, first: int, count: int, total: int, shard: int = 0, shards: int = 1):
    """The generators :meth:`robots_ts.envs.world.WorldBatch.seed` gives worlds ``first ..
    first + count - 1`` of a batch of ``total``: (task generators, randomization generators, point
    cloud generators, the per-step noise generator). The layout is WorldBatch's: one SeedSequence
    spawns ``3 total + 1`` children, the task generators by world index, then the batch's noise,
    then the randomizers' and the clouds' by world index.

    The per-step sensor and action noise is one stream per batch in WorldBatch; a single shard
    gets exactly that stream, and shard ``k`` of several gets child ``k`` of it (with per-step
    noise on, trajectories then depend on the split; the task and randomization draws do not)."""
    children = np.random.SeedSequence(seed).spawn(3 * total + 1)
    rngs = [np.random.default_rng(s) for s in children[first:first + count]]
    rand = [np.random.default_rng(s) for s in children[total + 1 + first: total + 1 + first + count]]
    cloud = [np.random.default_rng(s) for s in children[2 * total + 1 + first: 2 * total + 1 + first + count]]
    noise = children[total] if shards == 1 else children[total].spawn(shards)[shard]
    return rngs, rand, cloud, np.random.default_rng(noise)


def split_worlds(total: int, shards: int) -> list[tuple[int, int]]:
    """(first world, count) of each shard: contiguous, as even as possible, earlier shards larger."""
    base, extra = divmod(total, shards)
    out, first = [], 0
    for k in range(shards):
        count = base + (k < extra)
        out.append((first, count))
        first += count
    return out


class GivenParams:
    """A sampler in a shard standing for one of the driver's: ``sample`` hands out the rows the
    driver drew for the episodes being started, in world order; ``update`` does nothing (the
    driver's sampler hears every episode's result from the infos)."""

    def __init__(self):
        self.rows: list[np.ndarray] = []

    def load(self, rows) -> None:
        self.rows = [] if rows is None else [np.asarray(r, dtype=np.float64) for r in rows]

    def sample(self) -> np.ndarray:
        if not self.rows:
            raise RuntimeError("shard: an episode started without parameters from the driver")
        return self.rows.pop(0)

    def update(self, params, score) -> None:
        pass


def rng_state(g: np.random.Generator) -> dict:
    return g.bit_generator.state


def generator(state: dict) -> np.random.Generator:
    g = np.random.default_rng()
    g.bit_generator.state = state
    return g


class EnvShard:
    """Worlds ``first .. first + count - 1`` of a batch of ``total`` (a Ray actor's state).

    ``task_from_driver``: the driver's curriculum chooses each episode's task parameters; ADR
    dimensions (if the config has any) always come from the driver's ADR sampler.
    """

    def __init__(self, cfg: EnvConfig, first: int, count: int, total: int, seed, shard: int = 0, shards: int = 1,
                 task_from_driver: bool = False, threads: int = 1):
        from robots_ts.envs.vec_env import BatchedEnv

        self.first, self.count, self.total = first, count, total
        self.shard, self.shards = shard, shards
        self.env = BatchedEnv(replace(cfg, num_envs=count, num_threads=threads, ray_actors=0), seed=0)
        w = self.env.world
        self.task_params, self.adr_params = GivenParams(), GivenParams()
        if w.adr_dims:
            w.adr_sampler = self.adr_params
        self.use_driver_sampler(task_from_driver)
        self.seed(seed)
        self.obs: dict[str, np.ndarray] | None = None
        self.collection = None        # robots_ts.scale.collect.ShardCollection, once policies are sent

    # ------------------------------------------------------------------------- the env
    def describe(self) -> dict:
        w = self.env.world
        return {"observation_space": self.env.observation_space, "action_space": self.env.action_space,
                "action_dim": w.action_dim, "adr_dims": tuple(w.adr_dims), "node": _node_id()}

    def ping(self) -> bool:
        return True

    def use_driver_sampler(self, on: bool) -> None:
        self.env.world.sampler = self.task_params if on else None

    def seed(self, seed) -> None:
        w = self.env.world
        w.rngs, w.rand_rngs, w.cloud_rngs, w.noise_rng = share_generators(
            seed, self.first, self.count, self.total, self.shard, self.shards)

    def rng_states(self) -> dict:
        w = self.env.world
        return {"rngs": [rng_state(g) for g in w.rngs], "rand_rngs": [rng_state(g) for g in w.rand_rngs],
                "cloud_rngs": [rng_state(g) for g in w.cloud_rngs], "noise_rng": rng_state(w.noise_rng)}

    def set_rng_states(self, states: dict) -> None:
        w = self.env.world
        w.rngs = [generator(s) for s in states["rngs"]]
        w.rand_rngs = [generator(s) for s in states["rand_rngs"]]
        w.cloud_rngs = [generator(s) for s in states["cloud_rngs"]]
        if states.get("noise_rng") is not None:
            w.noise_rng = generator(states["noise_rng"])

    def _given(self, task_rows, adr_rows) -> None:
        self.task_params.load(task_rows)
        self.adr_params.load(adr_rows)

    def reset(self, task_rows=None, adr_rows=None) -> dict[str, np.ndarray]:
        self._given(task_rows, adr_rows)
        self.obs = self.env.reset()
        return self.obs

    def step(self, actions: np.ndarray, restart: bool):
        """One step of the share. ``restart``: start the finished worlds' next episodes now (their
        parameters come from the worlds' own generators); else they wait for :meth:`start`."""
        fault_point("scale.shard.step")
        self.env.step_async(actions)
        obs, reward, dones, infos = self.env.advance()
        if restart:
            self.env.start_episodes(np.flatnonzero(dones), obs)
        self.obs = obs
        return obs, reward, dones, infos

    def step_packed(self, message: bytes) -> bytes:
        """:meth:`step` with its arguments and results as one pickled message each way. Ray passes
        a numpy argument through its own serialization, which on a small batch costs about as much
        as the call's round trip (``robots-ts bench scale``); one bytes object each way does not."""
        actions, restart = pickle.loads(message)
        return pickle.dumps(self.step(actions, restart), protocol=pickle.HIGHEST_PROTOCOL)

    def start(self, ids, task_rows=None, adr_rows=None) -> dict[str, np.ndarray]:
        """Start episodes in (local) worlds ``ids`` with the driver's parameters; their first
        observations."""
        ids = np.asarray(ids, dtype=np.int64)
        self._given(task_rows, adr_rows)
        self.env.start_episodes(ids, self.obs)
        return {k: v[ids] for k, v in self.obs.items()}

    # ------------------------------------------------------------------- DAgger collection
    def set_policies(self, teacher, student_spec: dict) -> None:
        """The teacher (None: the task's scripted controller on this shard's worlds) and the
        student's architecture; the weights come with :meth:`set_student`."""
        from robots_ts.scale.collect import ShardCollection

        self.collection = ShardCollection(self, teacher, student_spec)

    def set_student(self, weights: dict) -> None:
        self._collection().set_student(weights)

    def collect_begin(self, seed: int, beta: float, store: list[str], task_rows=None, adr_rows=None) -> None:
        self._collection().begin(seed, beta, store, task_rows, adr_rows)

    def collect_step(self, coin, restart: bool, record: bool = True) -> dict:
        return self._collection().step(coin, restart, record)

    def collect_start(self, ids, task_rows=None, adr_rows=None) -> None:
        self._collection().start(ids, task_rows, adr_rows)

    def collect_take(self) -> dict[str, np.ndarray]:
        return self._collection().take()

    def arm_fault(self, name: str, nth: int = 1) -> None:
        """Kill this actor's process (SIGKILL) the ``nth`` time it reaches fault point ``name``
        (:mod:`robots_ts.faults`): the fault tests' way to lose an actor mid-iteration. A
        restarted actor is a new process and is not armed."""
        import os

        from robots_ts.faults import ENV_VAR, POINTS

        if name not in POINTS:
            raise ValueError(f"unknown fault point {name!r}; choose from {list(POINTS)}")
        os.environ[ENV_VAR] = f"{name}:{int(nth)}"

    def _collection(self):
        if self.collection is None:
            raise RuntimeError("shard: DAgger collection before set_policies")
        return self.collection

    def close(self) -> None:
        self.env.close()


def _node_id() -> str | None:
    """The Ray node this shard runs on; None outside Ray."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()
