"""Ray for the scale tests: a local instance of 2 CPUs, and a simulated cluster of two 1-CPU nodes.

Both run without token authentication (``RAY_AUTH_MODE=disabled``: no token is written under the
home directory) and keep Ray's session files in a temporary ``RAY_TMPDIR`` (tests/conftest.py).
The ``cluster`` fixture is session-scoped and parametrized, so pytest runs every test that uses it
on the local instance first, then on the two nodes, starting each once; a test for the local
instance only says ``@pytest.mark.parametrize("cluster", ["local"], indirect=True)``.
"""
import json
import os
from pathlib import Path

import pytest

OBJECT_STORE_MB = 200
HOME_ENTRIES = (".ray", "ray_results")


@pytest.fixture(scope="session")
def ray_env():
    """Ray's environment (tests/conftest.py sets it for every test); the home directory stays as it was."""
    home = Path.home()
    before = {e: (home / e).exists() for e in HOME_ENTRIES}
    yield os.environ["RAY_TMPDIR"]
    after = {e: (home / e).exists() for e in HOME_ENTRIES}
    assert after == before, f"Ray wrote under the home directory: {after} (before: {before})"


@pytest.fixture(scope="session", params=["local", "two_nodes"])
def cluster(request, ray_env):
    """Ray connected: ``local`` (ray.init(num_cpus=2)) or ``two_nodes`` (ray.cluster_utils.Cluster,
    a head and a worker node of 1 CPU each). Yields the kind and the number of nodes."""
    import ray

    from robots_ts.scale.cluster import connect

    if ray.is_initialized():       # another test's instance
        ray.shutdown()
    if request.param == "local":
        connect(num_cpus=2, object_store_mb=OBJECT_STORE_MB)
        yield "local", 1
        ray.shutdown()
        return
    from ray.cluster_utils import Cluster

    store = OBJECT_STORE_MB << 20
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=store)
    c.wait_for_nodes()
    ray.init(address=c.address)
    yield "two_nodes", 2
    ray.shutdown()
    c.shutdown()


TIMING = {"wall_time", "steps_per_s", "actor_step_ms"}


def run_metrics(run) -> list[dict]:
    """A run's metrics.jsonl records without their timings (which no two runs share)."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
