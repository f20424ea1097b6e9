"""Starting or joining Ray, once per process.

``connect(address)`` joins the cluster at ``address`` (``--ray-address``), else the one
``RAY_ADDRESS`` names, else starts a local instance of this machine's cores. A local instance is
always a fresh one (Ray's address ``"local"``): robots_ts never attaches by accident to a cluster
some other program left running here; ``--ray-address auto`` joins the one ``ray start`` started.

A local instance runs without the dashboard (Ray's own processes then take about 1 GiB) and with
an object store of ``object_store_mb`` (Ray would reserve several GB). Authentication is Ray's
2.60 default: a new local instance uses token authentication with a token Ray keeps in
``~/.ray/auth_token``; ``RAY_AUTH_MODE=disabled`` turns it off (the tests do, for their local
and two-node clusters, and keep Ray's session files under a temporary ``RAY_TMPDIR``).
"""
from __future__ import annotations

import os

ADDRESS_ENV = "RAY_ADDRESS"
DEFAULT_OBJECT_STORE_MB = 512


def ray_address(address: str | None = None) -> str | None:
    """The cluster to join: the argument, else ``RAY_ADDRESS``; None means a local instance."""
    return address or os.environ.get(ADDRESS_ENV) or None


def connect(address: str | None = None, num_cpus: int | None = None,
            object_store_mb: int = DEFAULT_OBJECT_STORE_MB):
    """Ray for this process: the instance already connected, the cluster at ``address`` (or
    ``RAY_ADDRESS``), or a new local instance with ``num_cpus`` CPUs (default: all cores).
    Returns the ``ray`` module."""
    import ray

    if ray.is_initialized():
        return ray
    target = ray_address(address)
    if target is None:
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"a local Ray instance needs at least one CPU, got num_cpus={num_cpus}")
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=int(object_store_mb) << 20, log_to_driver=True)
    else:
        try:
            ray.init(address=target, log_to_driver=True)
        except ConnectionError as exc:
            raise ValueError(f"--ray-address / {ADDRESS_ENV} {target!r}: no Ray cluster answers there "
                                  f"({exc}); start one with `ray start --head`, or leave the address out "
                                  "to run on a local instance") from None
    return ray


def cluster_cpus() -> int:
    """CPUs the connected cluster has in all (alive nodes)."""
    import ray

    return int(ray.cluster_resources().get("CPU", 0))


def check_cpus(needed: float, what: str) -> None:
    """Fail at once, naming ``what``, when the cluster could never place ``needed`` CPUs (Ray would
    otherwise wait for them forever)."""
    have = cluster_cpus()
    if needed > have:
        raise ValueError(f"{what} needs {needed:g} CPUs, the Ray cluster has {have}; ask for fewer, "
                         "or join a larger cluster with --ray-address / RAY_ADDRESS")
