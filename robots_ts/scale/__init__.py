"""Scale-out on Ray: distributed rollouts for PPO and DAgger, and seed/config sweeps.

Nothing here imports Ray until it is used, and nothing else in robots_ts imports this package
unless a run asks for it (``env.ray_actors=K``, ``robots-ts sweep``, ``robots-ts bench scale``).

- :mod:`robots_ts.scale.cluster`: start a local Ray instance or join a cluster (``--ray-address``,
  ``RAY_ADDRESS``);
- :mod:`robots_ts.scale.shard`: the Ray actor holding a batched env of a share of the worlds;
- :mod:`robots_ts.scale.vec_env`: :class:`~robots_ts.scale.vec_env.RayVecEnv`, an SB3 ``VecEnv``
  over those actors, with the curriculum and ADR samplers in the driver;
- :mod:`robots_ts.scale.collect`: DAgger collection through the same actors;
- :mod:`robots_ts.scale.sweep`: ``robots-ts sweep``, runs as Ray Tune trials.
"""
