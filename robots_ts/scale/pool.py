"""The Ray actors of one distributed batch, and what happens when one of them dies.

Each actor is an :class:`~robots_ts.scale.shard.EnvShard` of a contiguous share of the worlds,
reserving ``env.num_threads`` CPUs (1 when 0) and stepping its worlds on as many threads; actors
are spread over the cluster's nodes. The shares are even, or (``env.ray_split=speed``) dealt by
each actor's speed, measured once at the start (:meth:`ShardPool.balance`). An actor that dies
(its process killed, its node lost) is restarted by Ray (``max_restarts``) with the arguments it
was built with, and given back its current share. The pool notices the
lost call, logs the incident (the ``robots_ts.scale`` logger, and :attr:`ShardPool.incidents`),
waits for the actor to come back and leaves the redoing of the lost work to its caller: a
:class:`~robots_ts.scale.vec_env.RayVecEnv` starts the share's worlds afresh, a DAgger collection
replays the share's iteration (:mod:`robots_ts.scale.collect`).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from robots_ts.config import EnvConfig
from robots_ts.envs.checks import check_env_config
from robots_ts.scale.shard import EnvShard, choose_split, split_worlds

log = logging.getLogger("robots_ts.scale")

RESTART_WAIT_S = 120.0   # how long a restarting actor may take to answer again
PLACEMENT_WARN_S = 60.0  # actors not answering by then are slow to start or wait for CPUs: say so
PROBE_S = 2.0            # seconds each actor steps its share to measure its speed (env.ray_split=speed)
MIN_GAIN = 0.05          # a speed split replaces the even one when it shortens the step by this much


class ShardLost(RuntimeError):
    """A call to shard ``k`` was lost with its actor."""

    def __init__(self, k: int, cause: BaseException):
        super().__init__(f"Ray actor {k} died: {cause}")
        self.k, self.cause = k, cause


def score(reward: str, info: dict) -> float:
    """What a finished episode reports to a sampler (``success`` or ``return``), as BatchedEnv does."""
    return float(info["is_success"]) if reward == "success" else float(info["episode"]["r"])


class DriverSamplers:
    """The curriculum (task parameters) and the ADR sampler of a distributed batch, in the driver.

    ``draw`` and ``report`` make the calls :class:`~robots_ts.envs.vec_env.BatchedEnv` makes in
    one process, in its order: each finished world's results (curriculum, then ADR) in world
    order, then each new episode's values (ADR, then curriculum) in world order.
    """

    def __init__(self, cfg: EnvConfig, num_envs: int, sampler=None, adr_sampler=None, adr_dims=()):
        self.cfg, self.sampler, self.adr_sampler = cfg, sampler, adr_sampler
        self.adr_params = np.zeros((num_envs, len(adr_dims)))

    @property
    def active(self) -> bool:
        return self.sampler is not None or self.adr_sampler is not None

    def draw(self, ids) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(task rows, ADR rows) of new episodes in worlds ``ids``; None where the driver has no sampler."""
        task, adr = [], []
        for i in ids:
            if self.adr_sampler is not None:
                v = np.asarray(self.adr_sampler.sample(), dtype=np.float64)
                self.adr_params[i] = v
                adr.append(v)
            if self.sampler is not None:
                task.append(np.asarray(self.sampler.sample(), dtype=np.float64))
        return (np.array(task) if self.sampler is not None else None,
                np.array(adr) if self.adr_sampler is not None else None)

    def report(self, ids, infos: list[dict]) -> None:
        """Episode results of worlds ``ids`` (``infos`` indexed by world) to the samplers."""
        for i in ids:
            info = infos[i]
            if "episode" not in info:      # a share restarted after its actor died: no result
                continue
            if self.sampler is not None and hasattr(self.sampler, "update"):
                self.sampler.update(np.asarray(info["params"], dtype=np.float64).copy(),
                                    score(self.cfg.curriculum.reward, info))
            if self.adr_sampler is not None:
                self.adr_sampler.update(self.adr_params[i].copy(), score(self.cfg.randomization.adr.reward, info))


def rows_of(rows: np.ndarray | None, select) -> np.ndarray | None:
    return None if rows is None else rows[select]


class ShardPool:
    """K actors holding the worlds of ``cfg`` (``cfg.num_envs`` of them), seeded as one batch."""

    def __init__(self, cfg: EnvConfig, seed, actors: int, task_from_driver: bool = False,
                 address: str | None = None, max_restarts: int = 3):
        from robots_ts.scale.cluster import check_cpus, connect

        n = int(cfg.num_envs)
        if not 1 <= actors <= n:
            raise ValueError(f"env.ray_actors: expected 1 to env.num_envs ({n}) actors, got {actors}")
        check_env_config(cfg)       # here, before Ray starts, not in every actor
        if max_restarts < 0:
            raise ValueError(f"max_restarts: expected an integer >= 0, got {max_restarts}")
        ray = connect(address)
        self.ray = ray
        threads = int(cfg.num_threads) or 1
        check_cpus(actors * threads, f"env.ray_actors={actors} (env.num_threads={cfg.num_threads}: "
                                     f"{threads} CPU(s) per actor)")
        self.cfg, self.num_envs, self.max_restarts = cfg, n, int(max_restarts)
        self.shares = split_worlds(n, actors)
        self.built = list(self.shares)    # the shares the actors were built with (and come back with from a restart)
        self.balance_record: dict | None = None
        # seed None: one entropy for the whole batch, chosen here, as WorldBatch.seed(None) would
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy)
        remote = ray.remote(EnvShard)
        self.actors = [remote.options(num_cpus=threads, max_restarts=self.max_restarts, max_task_retries=0,
                                      scheduling_strategy="SPREAD")
                       .remote(cfg, first, count, n, self.seed, task_from_driver, threads)
                       for first, count in self.shares]
        self.restarts = [0] * actors
        self.incidents: list[dict] = []
        self.revived: set[int] = set()    # restarted actors whose worlds their caller has not restarted yet
        try:
            refs = [a.describe.remote() for a in self.actors]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PLACEMENT_WARN_S)
            if len(ready) < len(refs):
                # Not knowing which: an actor that holds its CPUs but is still building its worlds
                # (slow on a loaded machine) looks like one that waits for CPUs held elsewhere.
                log.warning("%d of %d Ray actors (%d CPU(s) each) have not answered after %.0f s: still "
                            "starting, or waiting for CPUs (the cluster has %g of %g unreserved now; this "
                            "batch reserves %d)", len(refs) - len(ready), len(refs), threads, PLACEMENT_WARN_S,
                            ray.available_resources().get("CPU", 0), ray.cluster_resources().get("CPU", 0),
                            actors * threads)
            self.described = ray.get(refs)
            if cfg.ray_split == "speed" and actors > 1:
                self.balance()
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.actors)

    @property
    def worlds_per_actor(self) -> list[int]:
        return [count for _, count in self.shares]

    @property
    def slices(self) -> list[slice]:
        """Each actor's worlds, as slices of the batch."""
        return [slice(first, first + count) for first, count in self.shares]

    @property
    def nodes(self) -> list[str | None]:
        """The node each actor was placed on (when it was built)."""
        return [d["node"] for d in self.described]

    def balance(self, seconds: float | None = None) -> dict:
        """Deal the worlds to the actors by their speed (``env.ray_split=speed``): every actor steps
        its share for ``seconds`` (default :data:`PROBE_S`) at once (:meth:`EnvShard.probe`), and
        the worlds are dealt again in proportion to the measured rates when that shortens a
        synchronous step by :data:`MIN_GAIN` at least (:func:`choose_split`); then :meth:`deal`.
        A world's draws, per-step noise included, depend on its index only, so the deal changes
        no episode. Returns and keeps the record (``balance_record``):
        rates, the old and new world counts, the predicted gain."""
        seconds = PROBE_S if seconds is None else float(seconds)
        probes = self.call_all("probe", seconds)
        rates = [p["worlds"] * p["steps"] / p["seconds"] for p in probes]
        before = list(self.shares)
        shares, gain = choose_split(before, rates, MIN_GAIN)
        self.deal(shares)
        self.balance_record = {"split": "speed", "probe_s": seconds,
                               "rates": [round(r, 1) for r in rates], "steps": [p["steps"] for p in probes],
                               "worlds_before": [c for _, c in before], "worlds": self.worlds_per_actor,
                               "predicted_gain": round(gain, 3), "applied": self.shares != before}
        log.info("Ray actors step %s worlds/s; worlds per actor %s -> %s (predicted step %.0f%% shorter%s)",
                 self.balance_record["rates"], self.balance_record["worlds_before"], self.balance_record["worlds"],
                 100 * gain, "" if self.balance_record["applied"] else f"; under {MIN_GAIN:.0%}, kept")
        return self.balance_record

    def deal(self, shares) -> None:
        """Give actor ``k`` the worlds ``shares[k]`` (first, count; contiguous, covering the batch in
        order) and rebuild every actor as new with its share: worlds seeded as built, no policies,
        no episodes. Reset the batch (or begin a collection) after it."""
        shares = [(int(f), int(c)) for f, c in shares]
        if (len(shares) != len(self) or min(c for _, c in shares) < 1
                or [f for f, _ in shares] != [sum(c for _, c in shares[:k]) for k in range(len(shares))]
                or sum(c for _, c in shares) != self.num_envs):
            raise ValueError(f"deal: expected {len(self)} contiguous shares of at least one world covering "
                             f"{self.num_envs} worlds, got {shares}")
        self.shares = shares
        refs = [self.submit(k, "reshape", *share) for k, share in enumerate(shares)]
        for k, ref in enumerate(refs):
            self.call_again(k, "reshape", *shares[k], ref=ref)
        self.revived.clear()      # rebuilt as new either way

    def actor_step_ms(self) -> list[float | None]:
        """Each actor's mean milliseconds per step of its share since the last call (the work in
        the actor; the call's round trip and the wait for the other actors not counted), None for
        an actor that made no step since (restarted). An actor well above the others holds up
        every synchronous step: ``env.ray_split=speed`` deals it fewer worlds."""
        return [round(1e3 * b["seconds"] / b["steps"], 3) if b["steps"] else None for b in self.call_all("take_busy")]

    def per_shard(self, ids: np.ndarray, task: np.ndarray | None, adr: np.ndarray | None):
        """For each shard holding some of the worlds ``ids`` (global, sorted) whose episodes start
        with the rows ``task`` and ``adr``: (shard, its local world indices, their rows)."""
        for k, (first, count) in enumerate(self.shares):
            sel = (ids >= first) & (ids < first + count)
            if sel.any():
                yield k, ids[sel] - first, rows_of(task, sel), rows_of(adr, sel)

    def submit(self, k: int, method: str, *args):
        return getattr(self.actors[k], method).remote(*args)

    def get(self, k: int, ref):
        """The result of a call to shard ``k``; :class:`ShardLost` if the actor died with it."""
        from ray.exceptions import RayActorError

        try:
            return self.ray.get(ref)
        except RayActorError as exc:
            raise ShardLost(k, exc) from None

    def call(self, k: int, method: str, *args):
        return self.get(k, self.submit(k, method, *args))

    def call_again(self, k: int, method: str, *args, ref=None):
        """A call to shard ``k`` (or the result of ``ref``, its first attempt) for calls that are
        safe to repeat on a restarted actor: a lost one is recovered and asked again."""
        ref = ref if ref is not None else self.submit(k, method, *args)
        while True:
            try:
                return self.get(k, ref)
            except ShardLost as lost:
                self.recover(k, method, lost.cause)
                ref = self.submit(k, method, *args)

    def call_all(self, method: str, *args) -> list:
        """The same call to every shard, at once; see :meth:`call_again`."""
        refs = [self.submit(k, method, *args) for k in range(len(self))]
        return [self.call_again(k, method, *args, ref=ref) for k, ref in enumerate(refs)]

    def recover(self, k: int, during: str, cause: BaseException) -> None:
        """Log the loss of actor ``k``, wait for Ray to restart it; raise once it has died more
        than ``max_restarts`` times or does not come back."""
        from ray.exceptions import RayActorError

        self.restarts[k] += 1
        first, count = self.shares[k]
        incident = {"time": time.time(), "actor": k, "worlds": [first, first + count - 1], "during": during,
                    "restart": self.restarts[k], "error": str(cause).splitlines()[0][:300]}
        self.incidents.append(incident)
        log.warning("Ray actor %d (worlds %d-%d) died during %s; restart %d of %d, its share of the work is "
                    "redone (%s)", k, first, first + count - 1, during, self.restarts[k], self.max_restarts,
                    incident["error"])
        if self.restarts[k] > self.max_restarts:
            raise RuntimeError(f"Ray actor {k} (worlds {first}-{first + count - 1}) died {self.restarts[k]} times, "
                               f"more than max_restarts={self.max_restarts}; last error: {incident['error']}")
        deadline = time.time() + RESTART_WAIT_S
        while True:
            try:
                self.ray.get(self.actors[k].ping.remote(), timeout=10)
                if self.shares[k] != self.built[k]:     # Ray rebuilt it with its first share
                    self.ray.get(self.actors[k].reshape.remote(*self.shares[k]), timeout=RESTART_WAIT_S)
                self.revived.add(k)
                return
            except RayActorError:
                if time.time() > deadline:
                    break
                time.sleep(0.2)
            except self.ray.exceptions.GetTimeoutError:
                if time.time() > deadline:
                    break
        raise RuntimeError(f"Ray actor {k} (worlds {first}-{first + count - 1}) did not come back within "
                           f"{RESTART_WAIT_S:.0f} s of its restart")

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:   # already gone with its node or the cluster
                pass
        self.actors = []
