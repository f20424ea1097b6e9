"""Registry of tasks: one entry per task name."""
from robots_ts.envs.tasks.lift import Lift
from robots_ts.envs.tasks.peg_insert import PegInsert
from robots_ts.envs.tasks.push import Push
from robots_ts.envs.tasks.push_precise import PushPrecise
from robots_ts.envs.tasks.reach import Reach

TASKS = {cls.name: cls for cls in (Reach, Push, Lift, PushPrecise, PegInsert)}

__all__ = ["TASKS", "Reach", "Push", "Lift", "PushPrecise", "PegInsert"]
