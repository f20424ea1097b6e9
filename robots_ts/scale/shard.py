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
import time
from dataclasses import replace

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.faults import fault_point


def share_generators(seed, first: int, count: int, total: int):
    """The generators :meth:`robots_ts.envs.world.WorldBatch.seed` gives worlds ``first ..
    first + count - 1`` of a batch of ``total``: (task generators, randomization generators, point
    cloud generators, per-step noise generators). The layout is WorldBatch's: one SeedSequence
    spawns ``3 total + 1`` children, the task generators by world index, then the noise's parent
    (which spawns one child per world), then the randomizers' and the clouds' by world index."""
    children = np.random.SeedSequence(seed).spawn(3 * total + 1)
    rngs = [np.random.default_rng(s) for s in children[first:first + count]]
    rand = [np.random.default_rng(s) for s in children[total + 1 + first: total + 1 + first + count]]
    cloud = [np.random.default_rng(s) for s in children[2 * total + 1 + first: 2 * total + 1 + first + count]]
    noise = [np.random.default_rng(s) for s in children[total].spawn(total)[first:first + count]]
    return rngs, rand, cloud, noise


def split_worlds(total: int, shards: int) -> list[tuple[int, int]]:
    """(first world, count) of each shard: contiguous, as even as possible, earlier shards larger."""
    base, extra = divmod(total, shards)
    return _contiguous([base + (k < extra) for k in range(shards)])


def speed_split(total: int, rates) -> list[tuple[int, int]]:
    """(first world, count) of each shard, contiguous, for shards stepping ``rates`` worlds per
    second each: every shard gets one world, then each further world goes to the shard that would
    finish its share soonest with it (``(count + 1) / rate``; the earlier shard on a tie). A
    synchronous step lasts as long as the slowest share, ``max(count / rate)``; this deal makes
    that as short as whole worlds allow."""
    import heapq

    rates = [float(r) for r in rates]
    if not rates or min(rates) <= 0 or not all(np.isfinite(rates)):
        raise ValueError(f"speed_split: expected positive finite rates, got {rates}")
    if total < len(rates):
        raise ValueError(f"speed_split: {total} worlds cannot give each of {len(rates)} shards one")
    counts = [1] * len(rates)
    heap = [(2 / r, k) for k, r in enumerate(rates)]
    heapq.heapify(heap)
    for _ in range(total - len(rates)):
        _, k = heapq.heappop(heap)
        counts[k] += 1
        heapq.heappush(heap, ((counts[k] + 1) / rates[k], k))
    return _contiguous(counts)


def step_time(shares, rates) -> float:
    """Seconds per synchronous step of shares stepping at ``rates`` worlds per second: the slowest share's."""
    return max(count / float(r) for (_, count), r in zip(shares, rates))


def choose_split(shares, rates, min_gain: float) -> tuple[list[tuple[int, int]], float]:
    """The deal for shards measured at ``rates`` worlds per second while holding ``shares``:
    :func:`speed_split` when it shortens a synchronous step by ``min_gain`` (a fraction) at least,
    else ``shares`` as they are (a re-deal that gains less is within a probe's noise). Returns the
    shares and the predicted gain (the current step time over the speed split's, minus 1)."""
    shares = [tuple(s) for s in shares]
    dealt = speed_split(sum(c for _, c in shares), rates)
    gain = step_time(shares, rates) / step_time(dealt, rates) - 1
    return (dealt if gain >= min_gain else shares), gain


def _contiguous(counts) -> list[tuple[int, int]]:
    out, first = [], 0
    for count in counts:
        out.append((first, int(count)))
        first += int(count)
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


# A world batch's generators, one per world each (WorldBatch.seed): task, randomization, point
# cloud, per-step noise.
GENERATORS = ("rngs", "rand_rngs", "cloud_rngs", "noise_rngs")


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

    def __init__(self, cfg: EnvConfig, first: int, count: int, total: int, seed,
                 task_from_driver: bool = False, threads: int = 1):
        from robots_ts.envs.vec_env import BatchedEnv

        self.cfg, self.built_seed, self.task_from_driver, self.threads = cfg, seed, task_from_driver, threads
        self.first, self.count, self.total = first, count, total
        self.env = BatchedEnv(replace(cfg, num_envs=count, num_threads=threads, ray_actors=0), seed=0)
        w = self.env.world
        self.task_params, self.adr_params = GivenParams(), GivenParams()
        if w.adr_dims:
            w.adr_sampler = self.adr_params
        self.use_driver_sampler(task_from_driver)
        self.seed(seed)
        self.obs: dict[str, np.ndarray] | None = None
        self.collection = None        # robots_ts.scale.collect.ShardCollection, once policies are sent
        self.slowdown = getattr(self, "slowdown", 1.0)   # emulate_slow_core; kept by reshape
        self.busy, self.busy_steps = 0.0, 0              # time in the driver's steps since take_busy

    def reshape(self, first: int, count: int) -> None:
        """Hold worlds ``first .. first + count - 1`` instead, as a new actor built with them would
        (the worlds rebuilt, seeded with the seed it was built with, no policies), still taking
        the episodes' task parameters from the driver or not, as now."""
        from_driver = self.from_driver
        self.close()
        self.__init__(self.cfg, first, count, self.total, self.built_seed, self.task_from_driver, self.threads)
        self.use_driver_sampler(from_driver)

    def probe(self, seconds: float, min_steps: int = 3) -> dict:
        """How fast this actor steps its share: at least ``min_steps`` steps and ``seconds`` of
        stepping under random actions (after one untimed step), the worlds drawing their own
        episodes. Leaves the share mid-episode with its generators advanced: :meth:`reshape` it
        before use. Returns the worlds, steps and seconds."""
        w = self.env.world
        w.sampler = None
        if w.adr_dims:
            from robots_ts.sim2real.randomization.adr import make_adr_sampler

            w.adr_sampler = make_adr_sampler(self.cfg.randomization.adr, 0)
        self.obs = self.env.reset()
        rng = np.random.default_rng(0)
        shape = (self.count, self.env.action_space.shape[0])
        self.step(rng.uniform(-1, 1, shape).astype(np.float32), True)
        steps, t0 = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - t0 < seconds:
            self.step(rng.uniform(-1, 1, shape).astype(np.float32), True)
            steps += 1
        return {"worlds": self.count, "steps": steps, "seconds": time.perf_counter() - t0, "node": _node_id()}

    def pin_cpus(self, cpus) -> list[int]:
        """Keep every thread of this actor's process on the CPUs ``cpus`` (Linux), as a job pinned
        to its cores runs: ``robots-ts bench scale --pin-actors``. Returns the CPUs it now runs on."""
        import os

        cpus = {int(c) for c in cpus}
        for tid in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(tid), cpus)
        return sorted(os.sched_getaffinity(0))

    def emulate_slow_core(self, factor: float) -> None:
        """Make every later step of this actor take ``factor`` times its own stepping time (it
        sleeps the difference), as a share on a core ``factor`` times slower would: how the tests
        and ``robots-ts bench scale --slow-actor`` give a cluster actors of unequal speed. Lost
        when the actor is restarted (a new process)."""
        if not factor >= 1:
            raise ValueError(f"emulate_slow_core: expected a factor >= 1, got {factor}")
        self.slowdown = float(factor)

    # ------------------------------------------------------------------------- the env
    def describe(self) -> dict:
        w = self.env.world
        return {"observation_space": self.env.observation_space, "action_space": self.env.action_space,
                "action_dim": w.action_dim, "adr_dims": tuple(w.adr_dims), "node": _node_id()}

    def ping(self) -> bool:
        return True

    def use_driver_sampler(self, on: bool) -> None:
        self.from_driver = bool(on)
        self.env.world.sampler = self.task_params if on else None

    def seed(self, seed) -> None:
        w = self.env.world
        w.rngs, w.rand_rngs, w.cloud_rngs, w.noise_rngs = share_generators(seed, self.first, self.count, self.total)

    def rng_states(self) -> dict:
        w = self.env.world
        return {k: [rng_state(g) for g in getattr(w, k)] for k in GENERATORS}

    def set_rng_states(self, states: dict) -> None:
        w = self.env.world
        for k in GENERATORS:
            setattr(w, k, [generator(s) for s in states[k]])

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
        t0 = time.perf_counter()
        self.env.step_async(actions)
        obs, reward, dones, infos = self.env.advance()
        if restart:
            self.env.start_episodes(np.flatnonzero(dones), obs)
        self.obs = obs
        if self.slowdown > 1:
            time.sleep((self.slowdown - 1) * (time.perf_counter() - t0))
        return obs, reward, dones, infos

    def step_packed(self, message: bytes) -> bytes:
        """:meth:`step` with its arguments and results as one pickled message each way. Ray passes
        a numpy argument through its own serialization, which on a small batch costs about as much
        as the call's round trip (``robots-ts bench scale``); one bytes object each way does not."""
        actions, restart = pickle.loads(message)
        return pickle.dumps(self._timed(self.step, actions, restart), protocol=pickle.HIGHEST_PROTOCOL)

    def _timed(self, fn, *args):
        """``fn(*args)``, its time counted as one step of this actor's work (:meth:`take_busy`)."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.busy += time.perf_counter() - t0
            self.busy_steps += 1

    def take_busy(self) -> dict:
        """The time this actor spent on the driver's steps (stepping its worlds; in a DAgger
        collection also acting) and their number, since the last call; both start again at 0."""
        out = {"seconds": self.busy, "steps": self.busy_steps}
        self.busy, self.busy_steps = 0.0, 0
        return out

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
        return self._timed(self._collection().step, coin, restart, record)

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
