"""Gymnasium ids ``robots_ts/<Task>-v0``, registered on ``import robots_ts``.

Registration names the env class by string (``robots_ts.envs.gym_env:RobotsTsEnv``), so it
imports neither MuJoCo nor torch: Gymnasium loads the class only when an env is made. Without an
import of robots_ts, Gymnasium's ``module:id`` form imports it on the way:
``gymnasium.make("robots_ts:robots_ts/Reach-v0")``. (Gymnasium 1.x no longer reads the
``gymnasium.envs`` entry points that 0.2x used to register plugins on ``import gymnasium``.)
"""
from __future__ import annotations

# The keys of robots_ts.envs.tasks.TASKS, spelled out so that registering does not import the task
# modules (they load MuJoCo); a test keeps the two equal.
TASK_NAMES = ("Reach", "Push", "Lift", "PushPrecise", "PegInsert")
ENTRY_POINT = "robots_ts.envs.gym_env:RobotsTsEnv"


def env_id(task: str) -> str:
    return f"robots_ts/{task}-v0"


def register_envs() -> None:
    """Register every task's id (once; a second call changes nothing)."""
    import gymnasium as gym

    for name in TASK_NAMES:
        if env_id(name) not in gym.registry:
            gym.register(id=env_id(name), entry_point=ENTRY_POINT, kwargs={"task": name}, max_episode_steps=None)
