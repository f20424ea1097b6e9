"""Gymnasium ids: registered by `import robots_ts` without loading the simulator, and reachable with
no import of robots_ts through Gymnasium's `module:id` form."""
import os
import subprocess
import sys

import gymnasium as gym

import robots_ts  # noqa: F401
from robots_ts.envs import TASKS
from robots_ts.envs.registration import TASK_NAMES, env_id


def _python(code: str) -> subprocess.CompletedProcess:
    # Run outside the repository, so the installed package (editable or not) is what gets imported.
    env = dict(os.environ, PYTHONPATH="")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/",
                          env=env)


def test_every_task_is_registered():
    assert set(TASK_NAMES) == set(TASKS)
    for name in TASKS:
        assert gym.spec(env_id(name)).kwargs == {"task": name}


def test_import_robots_ts_registers_without_loading_the_simulator():
    res = _python("import sys, gymnasium as gym, robots_ts\n"
                  "assert 'robots_ts/Reach-v0' in gym.registry\n"
                  "print(sorted(m for m in ('mujoco', 'torch', 'stable_baselines3') if m in sys.modules))\n"
                  "env = gym.make('robots_ts/Reach-v0')\n"
                  "obs, _ = env.reset(seed=0)\n"
                  "print(sorted(obs))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["[]", "['privileged', 'proprio']"]


def test_make_without_importing_robots_ts():
    res = _python("import gymnasium as gym\n"
                  "env = gym.make('robots_ts:robots_ts/Push-v0', obs_groups=['proprio'])\n"
                  "obs, _ = env.reset(seed=0)\n"
                  "print(env.spec.id, sorted(obs))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "robots_ts/Push-v0 ['proprio']"
