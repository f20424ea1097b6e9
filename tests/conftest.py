import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
# Ray, started by the tests of sweeps and distributed rollouts: no token authentication (Ray 2.60
# would write a token under the home directory), its session files in a temporary directory
# removed at exit (short: Ray's socket paths must fit 107 characters), never a cluster that
# RAY_ADDRESS names.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
if "RAY_TMPDIR" not in os.environ:
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rts-ray-")
    atexit.register(shutil.rmtree, os.environ["RAY_TMPDIR"], True)
os.environ.pop("RAY_ADDRESS", None)

import robots_ts  # noqa: E402,F401  (sets the GL backend before anything imports mujoco)
