"""``robots-ts bench scale``: env steps/s and PPO steps/s against the number of Ray actors, next to
the in-process BatchedEnv.

    robots-ts bench scale --json [--config configs/teacher/reach.yaml] [--num-envs 32] [--actors 1,2,4,8]

The worlds of the teacher config (state observations) are stepped under random actions:

- ``env_steps_per_s``: the in-process BatchedEnv on one thread (one core, as one actor has) and on
  every core, and a RayVecEnv of K actors (one CPU each) for each K of ``--actors`` that the
  cluster can place; medians of ``--blocks`` blocks of ``--block-steps`` steps.
  ``parallel_efficiency`` at K is the rate of K actors over K times the rate of one;
- ``one_actor``: the cost of the Ray path with one actor against the in-process env on one thread,
  measured interleaved (alternating blocks, the order flipped every pair) so both see the same
  machine: the median of the per-pair ratios, and ``cost = 1 - ratio``; the same for PPO
  (``ppo_ratio``: alternating ``learn`` calls of ``--ppo-block-steps`` steps on two models).
  The measured pairs start once Ray has settled: a new local instance starts its idle worker
  processes and registers them for several seconds after ``ray.init`` returns, on the same cores.
  Unmeasured pairs are stepped until ``--settle-s`` seconds have passed since the instance was
  started (or joined), and at least ``--warmup-pairs`` of them; ``warmup`` records their ratios;
- ``ppo_steps_per_s``: PPO (the config's hyperparameters, one torch thread) learning on the
  in-process env and on each K actors, ``--ppo-steps`` steps each after one warm-up rollout;
- ``ray_start_s``: how long starting the local Ray instance (or joining the cluster) took.

``--compare-splits`` adds, for each K >= 2, the worlds dealt by speed (``env.ray_split=speed``)
against the even deal on the same K actors: the actors are probed once
(:meth:`~robots_ts.scale.pool.ShardPool.balance`), then the two deals alternate block by block
(each re-dealt, reset and warmed before its block): ``splits[K]`` holds both medians, the median of
the per-pair ratios (speed over even), the probe's record, and ``parallel_efficiency_speed``.
``--slow-actor F`` makes the last actor of every K >= 2 step F times slower than its work takes
(:meth:`~robots_ts.scale.shard.EnvShard.emulate_slow_core`): a cluster of unequal cores on a
machine of equal ones. ``--pin-actors`` keeps actor k of every K >= 2 on core ``k mod cores`` of
its machine (with a process pinned to one of the cores beside it, a real cluster of unequal cores).

``--processes 1,2,4,8`` measures the machine's ceiling instead: K independent worker processes
(Ray tasks of one CPU; nothing of Ray inside their timed loops), each stepping its own in-process
env of ``--num-envs`` worlds for ``--block-steps`` steps, started together behind a barrier;
efficiency = summed rate / (K x one process's rate). A new local instance is left ``--settle-s``
seconds first.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import replace

import numpy as np

DEFAULT_CONFIG = "configs/teacher/reach.yaml"


def _rate(env, steps: int, rng: np.random.Generator) -> float:
    n, dim = env.num_envs, env.action_space.shape[0]
    t = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, (n, dim)).astype(np.float32))
    return steps * n / (time.perf_counter() - t)


def _model(cfg, env):
    from robots_ts.policies.teacher.train import make_model, normalized

    model = make_model(cfg, normalized(env, cfg))
    model.learn(cfg.ppo.n_steps * cfg.env.num_envs, progress_bar=False)   # warm up: first rollout and update
    return model


def _ppo_rate(model, steps: int) -> float:
    t = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False, progress_bar=False)
    return steps / (time.perf_counter() - t)


def _interleaved(measure_a, measure_b, pairs: int) -> tuple[list[float], list[float]]:
    """Rates of two measurements taken in alternating order, ``pairs`` times each."""
    a, b = [], []
    for i in range(pairs):
        if i % 2 == 0:
            a.append(measure_a())
            b.append(measure_b())
        else:
            b.append(measure_b())
            a.append(measure_a())
    return a, b


def bench_scale(config: str = DEFAULT_CONFIG, num_envs: int = 32, actors: list[int] | None = None,
                block_steps: int = 50, blocks: int = 7, ppo_steps: int = 8192, ppo_block_steps: int = 4096,
                ppo_pairs: int = 5, seed: int = 0, address: str | None = None, overrides: list[str] = (),
                settle_s: float = 30.0, warmup_pairs: int = 1, compare_splits: bool = False,
                slow_actor: float = 1.0, pin_actors: bool = False, progress=None) -> dict:
    """The record (``complete``: true). ``progress``: called with the record so far (``complete``:
    false) after the one-actor baseline and after each further actor count, so a run stopped
    by a time limit keeps what it measured (``--out`` writes each)."""
    import ray
    import torch

    from robots_ts.config import load_config
    from robots_ts.envs.vec_env import BatchedEnv
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.policies.teacher.train import validate
    from robots_ts.scale.cluster import cluster_cpus, connect
    from robots_ts.scale.vec_env import RayVecEnv

    t0 = time.time()
    torch.set_num_threads(1)
    cfg = load_config(TeacherConfig, config, [*overrides, f"env.num_envs={num_envs}", "env.num_threads=1",
                                              "torch_threads=1", f"seed={seed}", "env.ray_actors=0"])
    validate(cfg)
    started = None if ray.is_initialized() else time.perf_counter()
    settled_at = time.perf_counter() + settle_s
    connect(address)
    ray_start_s = None if started is None else round(time.perf_counter() - started, 2)
    cpus = cluster_cpus()
    wanted = actors or [k for k in (1, 2, 4, 8, 16) if k <= cpus]
    placeable = [k for k in wanted if k <= min(cpus, num_envs)]
    skipped = [k for k in wanted if k not in placeable]
    if 1 not in placeable:
        raise ValueError(f"--actors: the one-actor baseline must be measured, got {wanted} on a cluster of {cpus} CPUs")
    rng = np.random.default_rng(seed)

    def warm(env):
        env.reset()
        _rate(env, 10, rng)
        return env

    out = {"benchmark": "scale", "config": config, "overrides": list(overrides), "task": cfg.env.task,
           "num_envs": num_envs, "cluster_cpus": cpus, "machine_cores": os.cpu_count(), "ray_start_s": ray_start_s,
           "block_steps": block_steps, "blocks": blocks, "actors_skipped": skipped,
           "env_steps_per_s": {"ray": {}}, "ppo_steps_per_s": {"ray": {}}, "parallel_efficiency": {}}
    if slow_actor != 1.0:
        out["slow_actor"] = slow_actor
    if pin_actors:
        out["pinned_cpus"] = {}
    if compare_splits:
        out["splits"], out["parallel_efficiency_speed"] = {}, {}

    def measured(what: str) -> None:
        print(f"bench scale: {what} measured ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        if progress is not None:
            progress(copy.deepcopy({**out, "load_average": [round(x, 2) for x in os.getloadavg()],
                                    "wall_s": round(time.time() - t0, 1), "complete": False}))

    # One actor against one in-process thread, interleaved; then PPO on both, interleaved.
    local = warm(BatchedEnv(cfg.env, seed=seed))
    one = warm(RayVecEnv(cfg.env, seed=seed, actors=1))
    try:
        block_local, block_one = lambda: _rate(local, block_steps, rng), lambda: _rate(one, block_steps, rng)
        warm_ratios, t_warm = [], time.perf_counter()
        while len(warm_ratios) < warmup_pairs or time.perf_counter() < settled_at:
            wa, wb = _interleaved(block_local, block_one, 1)
            warm_ratios.append(wb[0] / wa[0])
        out["warmup"] = {"pairs": len(warm_ratios), "seconds": round(time.perf_counter() - t_warm, 1),
                         "settle_s": settle_s, "env_ratios": [round(x, 3) for x in warm_ratios]}
        a, b = _interleaved(block_local, block_one, blocks)
        env_ratios = [y / x for x, y in zip(a, b)]
        out["env_steps_per_s"]["in_process_1_thread"] = round(statistics.median(a), 1)
        out["env_steps_per_s"]["ray"]["1"] = round(statistics.median(b), 1)
        ma, mb = _model(cfg, local), _model(cfg, one)
        pa, pb = _interleaved(lambda: _ppo_rate(ma, ppo_block_steps), lambda: _ppo_rate(mb, ppo_block_steps), ppo_pairs)
        ppo_ratios = [y / x for x, y in zip(pa, pb)]
        out["ppo_steps_per_s"]["in_process_1_thread"] = round(statistics.median(pa), 1)
        out["ppo_steps_per_s"]["ray"]["1"] = round(statistics.median(pb), 1)
    finally:
        local.close()
        one.close()
    r, p = statistics.median(env_ratios), statistics.median(ppo_ratios)
    out["one_actor"] = {"env_ratio": round(r, 3), "env_cost": round(1 - r, 3),
                        "env_ratios": [round(x, 3) for x in env_ratios],
                        "ppo_ratio": round(p, 3), "ppo_cost": round(1 - p, 3),
                        "ppo_ratios": [round(x, 3) for x in ppo_ratios]}
    # Every core in one process: the best a single machine's BatchedEnv does.
    every = warm(BatchedEnv(replace(cfg.env, num_threads=0), seed=seed))
    try:
        out["env_steps_per_s"]["in_process_all_threads"] = round(
            statistics.median(_rate(every, block_steps, rng) for _ in range(blocks)), 1)
    finally:
        every.close()
    measured("the in-process env and 1 actor")
    for k in placeable:
        if k == 1:
            continue
        env = RayVecEnv(cfg.env, seed=seed, actors=k)
        try:
            if slow_actor != 1.0:
                env.pool.call(k - 1, "emulate_slow_core", slow_actor)
            if pin_actors:
                cores = os.cpu_count() or 1
                out["pinned_cpus"][str(k)] = [env.pool.call(j, "pin_cpus", [j % cores]) for j in range(k)]
            warm(env)
            out["env_steps_per_s"]["ray"][str(k)] = round(
                statistics.median(_rate(env, block_steps, rng) for _ in range(blocks)), 1)
            model = _model(cfg, env)
            out["ppo_steps_per_s"]["ray"][str(k)] = round(_ppo_rate(model, ppo_steps), 1)
            if compare_splits:
                out["splits"][str(k)] = _compare_splits(env, blocks, block_steps, rng)
        finally:
            env.close()
        one_rate = out["env_steps_per_s"]["ray"]["1"]
        out["parallel_efficiency"][str(k)] = round(out["env_steps_per_s"]["ray"][str(k)] / (k * one_rate), 3)
        if compare_splits:
            out["parallel_efficiency_speed"][str(k)] = round(out["splits"][str(k)]["speed"] / (k * one_rate), 3)
        measured(f"{k} actors")
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["wall_s"] = round(time.time() - t0, 1)
    out["complete"] = True
    return out


def _compare_splits(env, blocks: int, block_steps: int, rng) -> dict:
    """The worlds of ``env`` (a RayVecEnv of K actors, dealt evenly) dealt by the actors' speed
    against evenly: one probe, then ``blocks`` pairs of blocks alternating the two deals (the order
    flipped every pair), each deal made, reset and warmed before its block."""
    even = list(env.pool.shares)
    record = env.pool.balance()
    speed = list(env.pool.shares)

    def block(shares):
        def measure():
            env.pool.deal(shares)
            env.reset()
            _rate(env, 5, rng)
            return _rate(env, block_steps, rng)
        return measure

    a, b = _interleaved(block(even), block(speed), blocks)
    ratios = [y / x for x, y in zip(a, b)]
    return {"even": round(statistics.median(a), 1), "speed": round(statistics.median(b), 1),
            "ratio": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios],
            "worlds_even": [c for _, c in even], "balance": record}


def _ceiling_worker(cfg_env, steps: int, seed: int, barrier) -> tuple[float, float]:
    """One worker of :func:`bench_processes` (a Ray task of one CPU): its own in-process env,
    warmed, then timed once every worker of its count has arrived at ``barrier``. Returns the
    rate and the wall-clock time its timed loop started."""
    import ray

    from robots_ts.envs.vec_env import BatchedEnv

    env = BatchedEnv(cfg_env, seed=seed)
    try:
        env.reset()
        rng = np.random.default_rng(seed)
        _rate(env, 10, rng)
        ray.get(barrier.wait.remote())
        started = time.time()
        return _rate(env, steps, rng), started
    finally:
        env.close()


class _Barrier:
    """An asynchronous Ray actor (no CPU) whose ``wait`` returns once ``n`` callers are waiting."""

    def __init__(self, n: int):
        import asyncio

        self.n, self.arrived, self.all_in = n, 0, asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.n:
            self.all_in.set()
        await self.all_in.wait()


def bench_processes(config: str = DEFAULT_CONFIG, num_envs: int = 32, counts: list[int] = (1, 2),
                    steps: int = 60, seed: int = 0, overrides: list[str] = (), address: str | None = None,
                    settle_s: float = 30.0) -> dict:
    """The machine's own parallel ceiling: K independent workers, each stepping its own in-process
    env of ``num_envs`` worlds on one thread, started together behind a barrier. The workers are
    Ray tasks of one CPU each, but nothing of Ray runs inside the timed loops (no messages, no
    shared worlds). ``efficiency`` at K is their summed rate over K times the one-worker rate:
    what any scale-out of these worlds over K cores could reach at best on this machine (or, on a
    joined cluster, on the cores Ray gives the tasks). The first count starts ``settle_s`` seconds
    after a local instance was started, once its own start-up work is done (as in
    :func:`bench_scale`)."""
    import ray

    from robots_ts.config import load_config
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.scale.cluster import check_cpus, connect

    if 1 not in counts:
        raise ValueError(f"--processes: the one-process baseline must be measured, got {list(counts)}")
    t0 = time.time()
    cfg = load_config(TeacherConfig, config, [*overrides, f"env.num_envs={num_envs}", "env.num_threads=1",
                                              "env.ray_actors=0"])
    settled_at = None if ray.is_initialized() else time.perf_counter() + settle_s
    connect(address)
    check_cpus(max(counts), f"--processes {max(counts)}")
    if settled_at is not None:
        time.sleep(max(0.0, settled_at - time.perf_counter()))
    worker = ray.remote(num_cpus=1, max_retries=0)(_ceiling_worker)
    barrier_actor = ray.remote(num_cpus=0)(_Barrier)
    rates, spread = {}, {}
    for k in sorted(counts):
        barrier = barrier_actor.remote(k)
        done = ray.get([worker.remote(cfg.env, steps, seed + i, barrier) for i in range(k)], timeout=600)
        ray.kill(barrier)
        rates[k] = [rate for rate, _ in done]
        spread[k] = max(t for _, t in done) - min(t for _, t in done)
    one = rates[1][0]
    return {"benchmark": "scale_processes", "config": config, "overrides": list(overrides), "task": cfg.env.task,
            "num_envs_per_process": num_envs, "steps": steps, "machine_cores": os.cpu_count(),
            "settle_s": None if settled_at is None else settle_s,
            "env_steps_per_s": {str(k): {"sum": round(sum(r), 1), "each": [round(x, 1) for x in r]}
                                for k, r in rates.items()},
            "efficiency": {str(k): round(sum(r) / (k * one), 3) for k, r in rates.items() if k != 1},
            "start_spread_s": {str(k): round(s, 4) for k, s in spread.items() if k != 1},
            "load_average": [round(x, 2) for x in os.getloadavg()], "wall_s": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="teacher config whose env and PPO are measured")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the config, e.g. ppo.batch_size=256")
    ap.add_argument("--num-envs", type=int, default=32)
    ap.add_argument("--actors", help="comma-separated actor counts (default: 1, 2, 4, ... up to the cluster's CPUs)")
    ap.add_argument("--block-steps", type=int, default=50, help="env steps per measured block")
    ap.add_argument("--blocks", type=int, default=7, help="blocks per measurement (medians)")
    ap.add_argument("--ppo-steps", type=int, default=8192, help="PPO steps measured per actor count")
    ap.add_argument("--ppo-block-steps", type=int, default=4096, help="PPO steps per interleaved block (one actor)")
    ap.add_argument("--ppo-pairs", type=int, default=5, help="interleaved PPO block pairs (one actor)")
    ap.add_argument("--settle-s", type=float, default=30.0,
                    help="unmeasured one-actor pairs until this many seconds after Ray started (default 30); "
                         "with --processes, the wait before the first count")
    ap.add_argument("--warmup-pairs", type=int, default=1, help="unmeasured one-actor pairs at least (default 1)")
    ap.add_argument("--compare-splits", action="store_true",
                    help="for each K >= 2 also deal the worlds by the actors' speed (env.ray_split=speed) and "
                         "measure it against the even deal, alternating blocks")
    ap.add_argument("--slow-actor", type=float, default=1.0, metavar="F",
                    help="the last actor of each K >= 2 steps F times slower than its work takes (default 1: "
                         "as fast); an emulated cluster of unequal cores")
    ap.add_argument("--pin-actors", action="store_true",
                    help="keep actor k of each K >= 2 on core k mod cores (Linux)")
    ap.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    ap.add_argument("--processes", help="instead: the machine's ceiling, K independent worker processes (Ray "
                                        "tasks, no Ray in their timed loops) of --num-envs worlds each for these comma-separated K (must include 1), "
                                        "--block-steps steps each")
    ap.add_argument("--out", help="also write the JSON record here (after each actor count, marked complete: "
                                  "false, so a stopped run keeps what it measured)")
    ap.add_argument("--json", action="store_true", help="print the record as JSON")
    args = ap.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        ap.error(f"overrides must be key=value, got {bad}")
    try:
        actors = [int(k) for k in args.actors.split(",")] if args.actors else None
    except ValueError:
        ap.error(f"--actors: expected comma-separated integers, got {args.actors!r}")
    if args.settle_s < 0:
        ap.error(f"--settle-s: expected seconds >= 0, got {args.settle_s}")
    for name in ("num_envs", "block_steps", "blocks", "ppo_steps", "ppo_block_steps", "ppo_pairs", "warmup_pairs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    if not args.slow_actor >= 1:
        ap.error(f"--slow-actor: expected a factor >= 1, got {args.slow_actor}")
    if args.processes and (args.compare_splits or args.slow_actor != 1.0 or args.pin_actors):
        ap.error("--compare-splits, --slow-actor and --pin-actors measure Ray actors; --processes measures "
                 "independent workers")
    if actors is not None and min(actors) < 1:
        ap.error(f"--actors: expected positive counts, got {args.actors!r}")
    save = None
    if args.out:            # the record so far after each stage, then the whole one
        from pathlib import Path

        from robots_ts.runs import atomic_write_json

        def save(rec: dict) -> None:
            atomic_write_json(Path(args.out), rec)
    if args.processes:
        try:
            counts = [int(k) for k in args.processes.split(",")]
        except ValueError:
            ap.error(f"--processes: expected comma-separated integers, got {args.processes!r}")
        if min(counts) < 1 or 1 not in counts:
            ap.error(f"--processes: expected positive counts including 1, got {args.processes!r}")
        res = bench_processes(args.config, args.num_envs, counts, args.block_steps, overrides=args.overrides,
                              address=args.ray_address, settle_s=args.settle_s)
    else:
        res = bench_scale(args.config, args.num_envs, actors, args.block_steps, args.blocks, args.ppo_steps,
                          args.ppo_block_steps, args.ppo_pairs, address=args.ray_address, overrides=args.overrides,
                          settle_s=args.settle_s, warmup_pairs=args.warmup_pairs,
                          compare_splits=args.compare_splits, slow_actor=args.slow_actor,
                          pin_actors=args.pin_actors, progress=save)
    if save is not None:
        save(res)
    if args.json:
        print(json.dumps(res, indent=1))
    elif args.processes:
        print(f"env steps/s: {res['env_steps_per_s']}; efficiency {res['efficiency']}")
    else:
        e, o = res["env_steps_per_s"], res["one_actor"]
        print(f"env steps/s: in-process 1 thread {e['in_process_1_thread']}, "
              f"all threads {e['in_process_all_threads']}, "
              f"Ray {e['ray']}; one actor costs {o['env_cost']:.1%} (PPO {o['ppo_cost']:.1%}); "
              f"parallel efficiency {res['parallel_efficiency']}", file=sys.stdout)
        for k, sp in res.get("splits", {}).items():
            print(f"{k} actors: worlds {sp['worlds_even']} even {sp['even']}/s, {sp['balance']['worlds']} by speed "
                  f"{sp['speed']}/s (ratio {sp['ratio']})")
    return 0
