import os

os.environ.setdefault("MUJOCO_GL", "egl")

import robots_ts  # noqa: E402,F401  (sets the GL backend before anything imports mujoco)
