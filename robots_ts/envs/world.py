"""N MuJoCo worlds of one task stepped together, with observations and rewards batched in numpy.

This is the one implementation of the env: :class:`robots_ts.envs.vec_env.BatchedEnv` (an SB3
``VecEnv``, auto-reset) and :class:`robots_ts.envs.gym_env.RobotsTsEnv` (one Gymnasium env) are thin
front ends over it. Each world has its own ``MjModel`` copy (task parameters such as sizes, masses
and frictions differ per world) and ``MjData``; worker threads step disjoint chunks of worlds and
render their depth images, since MuJoCo releases the GIL.
"""
from __future__ import annotations

import copy
import os

import mujoco
import numpy as np
from gymnasium import spaces

from robots_ts.config import EnvConfig
from robots_ts.envs.params import ParamSpace
from robots_ts.envs.sensors import DepthCamera, PointCloudMaker
from robots_ts.envs.tasks import TASKS
from robots_ts.envs.tasks.base import StateBatch
from robots_ts.envs.workers import WorkerPool
from robots_ts.robot.arm import Arm, proprio_layout

OBS_GROUPS = ("proprio", "privileged", "depth", "points")
# MuJoCo's warnings for a state it found non-finite or huge and reset: BADQPOS, BADQVEL, BADQACC.
_BAD = slice(int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQACC) + 1)


def divergence_count(data: mujoco.MjData) -> int:
    return int(data.warning.number[_BAD].sum())


def resolve_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available tasks: {sorted(TASKS)}")
    return TASKS[name]


class WorldBatch:
    def __init__(self, cfg: EnvConfig, seed: int = 0, sampler=None):
        from robots_ts.envs.checks import check_env_config

        check_env_config(cfg)  # every construction parameter, each error naming its key
        task_cls = resolve_task(cfg.task)
        self.cfg = cfg
        self.groups = tuple(dict.fromkeys(cfg.obs_groups))
        self.num_envs = n = int(cfg.num_envs)
        base = copy.copy(task_cls.model())
        self.models = [base] + [copy.copy(base) for _ in range(n - 1)]
        self.datas = [mujoco.MjData(m) for m in self.models]
        self._scratch = mujoco.MjData(base)
        self.task = task_cls(base)
        self.param_space: ParamSpace = task_cls.params.with_bounds(cfg.params)
        self.arm = Arm(base, control=cfg.control)
        self.substeps = max(1, int(round(1.0 / (cfg.control_hz * base.opt.timestep))))
        self.episode_steps = int(cfg.episode_steps or task_cls.episode_steps)
        self.reward_scales = {**task_cls.reward_scales, **cfg.reward_scales}
        self.sampler = sampler
        self.action_dim = self.arm.action_dim
        self.proprio_layout = proprio_layout(cfg.control, task_cls.command_names)
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.observation_space = self._make_obs_space(base)
        threads = cfg.num_threads or (os.cpu_count() or 1)
        self.pool = WorkerPool(max(1, min(threads, n)))
        self._chunks = np.array_split(np.arange(n), self.pool.num_workers)
        nq, nv = base.nq, base.nv
        self.state = StateBatch(qpos=np.zeros((n, nq)), qvel=np.zeros((n, nv)), ee_pos=np.zeros((n, 3)),
                                ee_rot=np.zeros((n, 3, 3)), jac=np.zeros((n, 6, nv)),
                                params=np.zeros((n, self.param_space.dim)),
                                command=np.zeros((n, task_cls.command_dim)), finger=np.zeros((n, 2)))
        self.q_target = np.tile(self.arm.home, (n, 1))
        # MuJoCo's divergence warnings per world: mj_step resets a world's MjData when its state
        # turns non-finite or huge, and counts it here; a rise ends that world's episode.
        self._bad_counts = np.zeros(n, dtype=np.int64)
        self.diverged = np.zeros(n, dtype=bool)
        self.prev_action = np.zeros((n, self.action_dim))
        self.t = np.zeros(n, dtype=np.int64)
        self._init_sensors(base)
        self.seed(seed)

    # ----------------------------------------------------------------------------------- spaces
    def _make_obs_space(self, model) -> spaces.Dict:
        t = self.task
        d = {}
        if "proprio" in self.groups:
            d["proprio"] = spaces.Box(-np.inf, np.inf, (self.proprio_layout.dim,), np.float32)
        if "privileged" in self.groups:
            d["privileged"] = spaces.Box(-np.inf, np.inf, (t.privileged_dim,), np.float32)
        if "depth" in self.groups:
            c = self.cfg.depth
            d["depth"] = spaces.Box(c.near, c.far, (1, c.height, c.width), np.float32)
        if "points" in self.groups:
            d["points"] = spaces.Box(-np.inf, np.inf, (self.cfg.points.num_points, 3), np.float32)
        return spaces.Dict(d)

    def _init_sensors(self, model) -> None:
        n = self.num_envs
        self.depth = np.zeros((n, 1, self.cfg.depth.height, self.cfg.depth.width), np.float32) \
            if "depth" in self.groups else None
        self.points = None
        if "points" in self.groups:
            pc = self.cfg.points
            self.points = np.zeros((n, pc.num_points, 3), np.float32)
            self._points_depth = np.zeros((n, pc.height, pc.width), np.float32)
            d = mujoco.MjData(model)
            mujoco.mj_forward(model, d)  # camera poses come from mj_camlight, part of forward
            cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.cfg.depth.camera)
            if cam < 0:
                raise ValueError(f"camera {self.cfg.depth.camera!r} is not in the model")
            self.cloud = PointCloudMaker(d.cam_xpos[cam].copy(), d.cam_xmat[cam].reshape(3, 3).copy(),
                                         pc.width, pc.height, float(model.cam_fovy[cam]), pc.num_points,
                                         pc.crop_low, pc.crop_high, pc.remove_table, voxel=pc.voxel,
                                         downsample=pc.downsample, far=self.cfg.depth.far)
        self.renders = self.depth is not None or self.points is not None

    def _camera(self, res: dict, key: str, width: int, height: int) -> DepthCamera:
        cam = res.get(key)
        if cam is None:
            c = self.cfg.depth
            cam = res[key] = DepthCamera(self.models[0], c.camera, width, height, c.near, c.far)
        return cam

    def _render(self, i: int, res: dict) -> None:
        m, d = self.models[i], self.datas[i]
        if self.depth is not None:
            c = self.cfg.depth
            self._camera(res, "depth_cam", c.width, c.height).render(m, d, self.depth[i, 0])
        if self.points is not None:
            pc = self.cfg.points
            if self.depth is not None and (pc.width, pc.height) == (self.cfg.depth.width, self.cfg.depth.height):
                img = self.depth[i, 0]
            else:
                img = self._camera(res, "points_cam", pc.width, pc.height).render(m, d, self._points_depth[i])
            self.cloud(img, self.rngs[i], self.points[i])

    # ------------------------------------------------------------------------------ simulation
    def _gather(self, i: int) -> None:
        m, d, s = self.models[i], self.datas[i], self.state
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        s.qpos[i] = d.qpos
        s.qvel[i] = d.qvel
        site = self.arm.ee_site
        s.ee_pos[i] = d.site_xpos[site]
        s.ee_rot[i] = d.site_xmat[site].reshape(3, 3)
        mujoco.mj_jacSite(m, d, s.jac[i, :3], s.jac[i, 3:], site)

    def seed(self, seed: int | None) -> None:
        seq = np.random.SeedSequence(seed)
        self.rngs = [np.random.default_rng(s) for s in seq.spawn(self.num_envs)]

    def reset_worlds(self, ids) -> None:
        """Start a new episode in the given worlds: draw parameters, place objects, render."""
        ids = [int(i) for i in ids]
        if not ids:
            return
        for i in ids:
            m, d, rng = self.models[i], self.datas[i], self.rngs[i]
            params = self.sampler.sample() if self.sampler is not None else self.param_space.sample(rng)
            params = self.param_space.clip(np.asarray(params, dtype=np.float64))
            mujoco.mj_resetData(m, d)
            q = np.clip(self.arm.home + rng.uniform(-1, 1, 7) * self.cfg.init_noise,
                        self.arm.joint_low, self.arm.joint_high)
            d.qpos[self.arm.qpos_idx] = q
            d.qpos[self.arm.finger_qpos_idx] = self.arm.finger_open
            d.ctrl[self.arm.ctrl_idx] = q
            d.ctrl[self.arm.gripper_ctrl] = self.arm.finger_open
            self.state.command[i] = self.task.reset_world(m, d, params, rng)
            self.state.params[i] = params
            if self.task.changes_inertia:
                # Masses changed: refresh the solver's inverse weights (on scratch data, since
                # mj_setConst overwrites the state it is given).
                mujoco.mj_setConst(m, self._scratch)
            mujoco.mj_forward(m, d)
            self._gather(i)
            self.q_target[i] = q
            self.prev_action[i] = 0.0
            self.prev_action[i, -1] = 1.0
            self.t[i] = 0
            self._bad_counts[i] = divergence_count(d)
            self.diverged[i] = False
        self.state.finger[:] = self.state.qpos[:, self.arm.finger_qpos_idx]
        if self.renders:
            chunks = [np.intersect1d(c, ids) for c in self._chunks]
            self.pool.run(lambda k, res: [self._render(i, res) for i in chunks[k]])

    def check_actions(self, actions) -> np.ndarray:
        raw = np.asarray(actions)
        if raw.dtype.kind not in "iuf":
            raise ValueError(f"{self.cfg.task}: actions must be real numbers, got dtype {raw.dtype}")
        a = raw.astype(np.float64, copy=False)
        want = (self.num_envs, self.action_dim)
        if a.shape != want:  # never reshaped: a transposed or flattened batch is a caller's bug
            raise ValueError(f"{self.cfg.task}: action has shape {np.shape(actions)}, expected "
                             f"{want} ({self.cfg.control} control, {self.num_envs} worlds)")
        if not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))[:3].tolist()
            raise ValueError(f"{self.cfg.task}: action contains NaN or inf at (world, index) {bad}")
        return np.clip(a, -1.0, 1.0)

    def step(self, actions) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Advance every world one control step. Returns reward, terms, success, truncated.

        A world whose physics diverged during the step (MuJoCo reset its state) is flagged in
        ``self.diverged``: it scores no reward and no success, and its episode must end.
        """
        a = self.check_actions(actions)
        s = self.state
        q = s.qpos[:, self.arm.qpos_idx]
        self.q_target, finger = self.arm.targets(a, q, self.q_target, s.ee_pos, s.ee_rot, s.jac)
        ctrl_idx, grip, substeps = self.arm.ctrl_idx, self.arm.gripper_ctrl, self.substeps
        q_target = self.q_target

        def work(k, res):
            for i in self._chunks[k]:
                m, d = self.models[i], self.datas[i]
                d.ctrl[ctrl_idx] = q_target[i]
                d.ctrl[grip] = finger[i]
                mujoco.mj_step(m, d, nstep=substeps)
                count = divergence_count(d)
                if count != self._bad_counts[i]:
                    self.diverged[i] = True
                    self._bad_counts[i] = count
                self._gather(i)
                if self.renders:
                    self._render(i, res)

        self.pool.run(work)
        s.finger[:] = s.qpos[:, self.arm.finger_qpos_idx]
        self.t += 1
        terms = self.task.reward_terms(s)
        terms["action_rate"] = np.square(a - self.prev_action).sum(axis=1)
        reward = sum(self.reward_scales[k] * v for k, v in terms.items())
        self.prev_action = a
        success = self.task.success(s)
        if self.diverged.any():
            # The state was teleported to MuJoCo's defaults: nothing about it is the policy's doing.
            bad = self.diverged
            reward = np.where(bad, 0.0, reward)
            success = success & ~bad
            for v in terms.values():
                v[bad] = 0.0
        truncated = self.t >= self.episode_steps
        return reward, terms, success, truncated

    def observe(self, ids=None) -> dict[str, np.ndarray]:
        """Observation groups of all worlds (or of ``ids``), float32, copied."""
        s = self.state
        sel = slice(None) if ids is None else np.asarray(ids)
        out = {}
        if "proprio" in self.groups:
            out["proprio"] = np.concatenate([
                s.qpos[sel][:, self.arm.qpos_idx], s.qvel[sel][:, self.arm.qvel_idx], s.finger[sel],
                s.ee_pos[sel], self.prev_action[sel], s.command[sel]], axis=1).astype(np.float32)
        if "privileged" in self.groups:
            sub = s if ids is None else StateBatch(*(getattr(s, f)[sel] for f in StateBatch.__dataclass_fields__))
            out["privileged"] = self.task.privileged(sub).astype(np.float32)
        if self.depth is not None:
            out["depth"] = self.depth[sel].copy()
        if self.points is not None:
            out["points"] = self.points[sel].copy()
        return out

    def close(self) -> None:
        def free(k, res):
            for cam in res.values():
                cam.close()
            res.clear()
        self.pool.close(free)
