"""N worlds of one task stepped together, with observations and rewards batched in numpy.

This is the one implementation of the env: :class:`robots_ts.envs.vec_env.BatchedEnv` (an SB3
``VecEnv``, auto-reset) and :class:`robots_ts.envs.gym_env.RobotsTsEnv` (one Gymnasium env) are thin
front ends over it. It holds everything above the simulator seam (parameter sampling, the task's
reset, the action mapping, observations, rewards, success) and asks a backend
(:mod:`robots_ts.envs.backends.backend`, chosen by ``env.backend``) to simulate and render.
"""
from __future__ import annotations

import os

import numpy as np
from gymnasium import spaces

from robots_ts.config import EnvConfig
from robots_ts.envs.params import ParamSpace
from robots_ts.envs.sensors import PointCloudMaker
from robots_ts.envs.tasks import TASKS
from robots_ts.robot.arm import Arm, proprio_layout
from robots_ts.robot.description import panda
from robots_ts.envs.backends.backend import ImageRequest, StateBatch, make_backend
from robots_ts.envs.backends.scene import WorldEdit, camera

# history: the last env.action_history actions the policy sent, newest first (the controller's own
# memory, so never delayed): what a policy needs to act through action and observation latency.
OBS_GROUPS = ("proprio", "privileged", "depth", "points", "history")


def resolve_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available tasks: {sorted(TASKS)}")
    return TASKS[name]


class WorldBatch:
    def __init__(self, cfg: EnvConfig, seed: int = 0, sampler=None):
        from robots_ts.envs.checks import check_env_config

        check_env_config(cfg)  # every construction parameter, each error naming its key
        task_cls = resolve_task(cfg.task)
        if cfg.backend in task_cls.unsupported_backends:
            raise ValueError(f"env.backend={cfg.backend!r}: task {task_cls.name} does not run on it: "
                             f"{task_cls.unsupported_backends[cfg.backend]}")
        self.cfg = cfg
        self.groups = tuple(dict.fromkeys(cfg.obs_groups))
        self.num_envs = n = int(cfg.num_envs)
        self.task = task_cls()
        self.param_space: ParamSpace = task_cls.params.with_bounds(cfg.params)
        self.arm = Arm(control=cfg.control)
        self.desc = panda()
        self.episode_steps = int(cfg.episode_steps or task_cls.episode_steps)
        self.reward_scales = {**task_cls.reward_scales, **cfg.reward_scales}
        self.sampler = sampler
        self.action_dim = self.arm.action_dim
        self.proprio_layout = proprio_layout(cfg.control, task_cls.command_names)
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.observation_space = self._make_obs_space()
        layout = self.task.layout
        self.state = StateBatch(qpos=np.zeros((n, layout.nq)), qvel=np.zeros((n, layout.nv)), ee_pos=np.zeros((n, 3)),
                                ee_rot=np.zeros((n, 3, 3)), jac=np.zeros((n, 6, 7)),
                                params=np.zeros((n, self.param_space.dim)),
                                command=np.zeros((n, task_cls.command_dim)), finger=np.zeros((n, 2)))
        threads = cfg.num_threads or (os.cpu_count() or 1)
        self.backend = make_backend(cfg.backend, task_cls, n, cfg.control_hz, self.state, self._image_requests(),
                                    max(1, min(threads, n)))
        self.substeps = self.backend.substeps
        self.q_target = np.tile(self.arm.home, (n, 1))
        self.diverged = np.zeros(n, dtype=bool)
        self.prev_action = np.zeros((n, self.action_dim))
        self.history = np.zeros((n, int(cfg.action_history), self.action_dim)) if "history" in self.groups else None
        self.t = np.zeros(n, dtype=np.int64)
        self.episode_edits: list[list] = [[] for _ in range(n)]   # each world's world edits this episode
        self._init_sensors()
        self._init_randomization()
        self.seed(seed)

    # ----------------------------------------------------------------------------------- spaces
    def _make_obs_space(self) -> spaces.Dict:
        t = self.task
        d = {}
        if "proprio" in self.groups:
            d["proprio"] = spaces.Box(-np.inf, np.inf, (self.proprio_layout.dim,), np.float32)
        if "privileged" in self.groups:
            d["privileged"] = spaces.Box(-np.inf, np.inf, (t.privileged_dim,), np.float32)
        if "depth" in self.groups:
            c = self.cfg.depth
            # A randomized depth sensor loses pixels, which read 0 (no data), as a 16UC1 driver's do.
            from robots_ts.sim2real.randomization.depth import loses_pixels

            low = 0.0 if loses_pixels(self.cfg.randomization.depth) else c.near
            d["depth"] = spaces.Box(low, c.far, (1, c.height, c.width), np.float32)
        if "points" in self.groups:
            d["points"] = spaces.Box(-np.inf, np.inf, (self.cfg.points.num_points, 3), np.float32)
        if "history" in self.groups:
            d["history"] = spaces.Box(-1.0, 1.0, (int(self.cfg.action_history) * self.action_dim,), np.float32)
        return spaces.Dict(d)

    def _image_requests(self) -> dict[str, ImageRequest]:
        c, pc = self.cfg.depth, self.cfg.points
        req = {}
        if "depth" in self.groups:
            req["depth"] = ImageRequest(c.camera, c.width, c.height, c.near, c.far)
        if "points" in self.groups and ("depth" not in req or (pc.width, pc.height) != (c.width, c.height)):
            req["points"] = ImageRequest(c.camera, pc.width, pc.height, c.near, c.far)
        return req

    def _init_sensors(self) -> None:
        n, images = self.num_envs, self.backend.images
        self.depth = images["depth"][:, None] if "depth" in images else None   # (N, 1, H, W) view
        self.points, self._post = None, None
        if "points" in self.groups:
            pc = self.cfg.points
            self.points = np.zeros((n, pc.num_points, 3), np.float32)
            cam = camera(self.cfg.depth.camera)
            self.cloud = PointCloudMaker(np.asarray(cam.pos), cam.rotation(), pc.width, pc.height, cam.fovy,
                                         pc.num_points, pc.crop_low, pc.crop_high, pc.remove_table, voxel=pc.voxel,
                                         downsample=pc.downsample, far=self.cfg.depth.far,
                                         table_fit=pc.table_fit)
            img = images["points"] if "points" in images else images["depth"]
            self._post = lambda i: self.cloud(img[i], self.cloud_rngs[i], self.points[i])
        self.renders = bool(images)

    def _init_randomization(self) -> None:
        """The randomizers of ``cfg.randomization`` (robots_ts.sim2real.randomization); all off by default."""
        from robots_ts.sim2real.randomization import DelayLine, DepthSensorModel, ProprioNoise

        r = self.cfg.randomization
        n = self.num_envs
        # ADR: a curriculum teacher chooses these dimensions' values per episode (see seed()).
        self.adr_dims = tuple(r.adr.dims)
        self.adr_sampler = None
        self.adr_params = np.zeros((n, len(self.adr_dims)))
        limit = {d: int(np.ceil(r.adr.dims[d][1])) for d in ("action_delay", "obs_delay") if d in r.adr.dims}
        self.proprio_noise = ProprioNoise(n, r.joint_pos_noise, r.joint_pos_bias, r.joint_vel_noise, r.action_noise,
                                          adaptive=self.adr_dims)
        self.action_delay = DelayLine(n, r.action_delay[0], max(r.action_delay[1], limit.get("action_delay", 0)))
        obs_high = max(r.obs_delay[1], limit.get("obs_delay", 0))
        # What the sensors report goes through the delay; `history` is the controller's memory and never does.
        self.obs_delay = {g: DelayLine(n, r.obs_delay[0], obs_high) for g in self.observation_space.spaces
                          if g != "history"}
        c = self.cfg.depth
        self.depth_model = DepthSensorModel(r.depth, c.near, c.far) if "depth" in self.groups else None
        # Each world's depth sensor strength this episode (drawn at reset when it varies).
        self.depth_strength = np.ones(n)
        self.depth_strength_varies = self.depth_model is not None and self.depth_model.active and \
            (list(r.depth.strength) != [1, 1] or "depth_strength" in self.adr_dims)
        p = r.points
        self.points_noisy = "points" in self.groups and any(v > 0 for v in (p.jitter, p.dropout, p.outliers))
        # Velocity kicks of the free objects at intervals: the step each world's next kick is due.
        self.pushes = r.push_interval[1] > 0 and any(b.free for b in self.task.bodies)
        self.next_push = np.zeros(n, dtype=np.int64)
        self.push_speed = np.full(n, r.push_velocity)
        self.push_exact = "push_velocity" in self.adr_dims
        # Observations go through the sensor models and the delay line: computed once per step.
        self.randomizes_obs = (self.proprio_noise.active and "proprio" in self.groups) or self.points_noisy \
            or (self.depth_model is not None and self.depth_model.active) or obs_high > 0

    def seed(self, seed: int | None) -> None:
        n = self.num_envs
        children = np.random.SeedSequence(seed).spawn(3 * n + 1)
        self.rngs = [np.random.default_rng(s) for s in children[:n]]        # one per world: the task's draws
        # One per world for the per-step sensor and action noise: a world's noise depends on
        # neither the batch's other worlds nor how a batch is split over processes.
        self.noise_rngs = [np.random.default_rng(s) for s in children[n].spawn(n)]
        # One more per world for the randomizers' per-episode draws: a world's task parameters and
        # start pose are the same whatever randomization it runs under (paired evaluations).
        self.rand_rngs = [np.random.default_rng(s) for s in children[n + 1:2 * n + 1]]
        # And one per world for the point cloud's random subset, whose draws depend on how much of
        # the scene is in view, so on the policy: kept off the task's stream, every policy
        # evaluated with a seed meets the same episodes.
        self.cloud_rngs = [np.random.default_rng(s) for s in children[2 * n + 1:]]
        if self.adr_dims and self.adr_sampler is None:   # built once: it learns over the whole run
            from robots_ts.sim2real.randomization.adr import make_adr_sampler

            self.adr_sampler = make_adr_sampler(self.cfg.randomization.adr, seed)

    def reset_worlds(self, ids) -> None:
        """Start a new episode in the given worlds: draw parameters, place objects, render."""
        ids = [int(i) for i in ids]
        if not ids:
            return
        q_arm = np.empty((len(ids), 7))
        edits, fixed = [], []
        for k, i in enumerate(ids):
            rng = self.rngs[i]
            fixed.append(self._adr_values(i))
            params = self.sampler.sample() if self.sampler is not None else self.param_space.sample(rng)
            params = self.param_space.clip(np.asarray(params, dtype=np.float64))
            q_arm[k] = np.clip(self.arm.home + rng.uniform(-1, 1, 7) * self.cfg.init_noise,
                               self.arm.joint_low, self.arm.joint_high)
            edit = WorldEdit()
            self.state.command[i] = self.task.reset_world(edit, params, rng)
            self.state.params[i] = params
            edits.append(self._randomize_physics(i, edit.ops, fixed[k]))
            self.episode_edits[i] = edits[-1]
        self.backend.reset(ids, q_arm, self.arm.finger_open, edits, self._post)
        self.q_target[ids] = q_arm
        self.prev_action[ids] = 0.0
        self.prev_action[ids, -1] = 1.0
        if self.history is not None:       # an episode starts from a settled past: the reset action
            self.history[ids] = self.prev_action[ids][:, None]
        self.t[ids] = 0
        self.diverged[ids] = False
        self.state.finger[:] = self.state.qpos[:, self.arm.finger_qpos_idx]
        self.proprio_noise.reset(ids, self.rand_rngs, fixed if self.adr_dims else None)
        self.action_delay.reset(ids, self.prev_action[ids], self.rand_rngs,
                                [f.get("action_delay") for f in fixed] if self.adr_dims else None)
        if self.pushes:
            r = self.cfg.randomization
            for k, i in enumerate(ids):
                self.next_push[i] = self.rand_rngs[i].integers(r.push_interval[0], r.push_interval[1] + 1)
                self.push_speed[i] = fixed[k].get("push_velocity", r.push_velocity)
        if self.depth_strength_varies:
            lo, hi = self.cfg.randomization.depth.strength
            for k, i in enumerate(ids):
                self.depth_strength[i] = fixed[k]["depth_strength"] if "depth_strength" in fixed \
                    else self.rand_rngs[i].uniform(lo, hi)
        if self.randomizes_obs:
            fresh = self._sensed(self._clean_obs(ids), ids)
            for g, line in self.obs_delay.items():
                line.reset(ids, fresh[g], self.rand_rngs, [f.get("obs_delay") for f in fixed] if self.adr_dims else None)

    def _adr_values(self, i: int) -> dict:
        """This episode's values of the ADR dimensions for world ``i`` (empty without ADR)."""
        if self.adr_sampler is None:
            return {}
        v = np.asarray(self.adr_sampler.sample(), dtype=np.float64)
        self.adr_params[i] = v
        return dict(zip(self.adr_dims, v.tolist()))

    def _randomize_physics(self, i: int, ops: list, fixed: dict) -> list:
        from robots_ts.sim2real.randomization.physics import draw_scale, robot_edits, scale_object_edits

        r = self.cfg.randomization
        rng = self.rand_rngs[i]
        mass = fixed["object_mass_scale"] if "object_mass_scale" in fixed else draw_scale(rng, r.object_mass_scale)
        friction = fixed["object_friction_scale"] if "object_friction_scale" in fixed \
            else draw_scale(rng, r.object_friction_scale)
        ops = scale_object_edits(ops, self.task.bodies, mass, friction)
        cam = self.cfg.depth.camera if self.renders else None
        return ops + robot_edits(r, rng, self.desc.arm_joints, self.desc.finger_joints, cam, fixed)

    def _kicks(self) -> np.ndarray | None:
        """Velocity kicks due this step (N, 3), drawing each kicked world's next interval."""
        due = np.flatnonzero(self.t + 1 == self.next_push)
        if not len(due):
            return None
        from robots_ts.sim2real.randomization.physics import kick

        r = self.cfg.randomization
        kicks = np.zeros((self.num_envs, 3))
        for i in due:
            rng = self.rand_rngs[i]
            kicks[i] = kick(rng, self.push_speed[i], exact=self.push_exact)
            self.next_push[i] += rng.integers(max(1, r.push_interval[0]), r.push_interval[1] + 1)
        return kicks

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
        executed = a
        if self.action_delay.active:   # the robot runs the action of delay[i] steps ago
            self.action_delay.push(a)
            executed = self.action_delay.read()
        executed = self.proprio_noise.actions(executed, self.noise_rngs)
        q = s.qpos[:, self.arm.qpos_idx]
        self.q_target, finger = self.arm.targets(executed, q, self.q_target, s.ee_pos, s.ee_rot, s.jac)
        self.diverged |= self.backend.step(self.q_target, finger, self._post, self._kicks() if self.pushes else None)
        s.finger[:] = s.qpos[:, self.arm.finger_qpos_idx]
        self.t += 1
        terms = self.task.reward_terms(s)
        terms["action_rate"] = np.square(a - self.prev_action).sum(axis=1)
        reward = sum(self.reward_scales[k] * v for k, v in terms.items())
        self.prev_action = a
        if self.history is not None:
            self.history[:, 1:] = self.history[:, :-1]
            self.history[:, 0] = a
        success = self.task.success(s)
        if self.diverged.any():
            # The backend put the world back: nothing about its state is the policy's doing.
            bad = self.diverged
            reward = np.where(bad, 0.0, reward)
            success = success & ~bad
            for v in terms.values():
                v[bad] = 0.0
        truncated = self.t >= self.episode_steps
        if self.randomizes_obs:
            sensed = self._sensed(self._clean_obs())
            for g, line in self.obs_delay.items():
                line.push(sensed[g])
        return reward, terms, success, truncated

    def observe(self, ids=None) -> dict[str, np.ndarray]:
        """Observation groups of all worlds (or of ``ids``), float32, copied: as the sensors report
        them (noise, delay) when the env randomizes them, else the simulator's values."""
        if self.randomizes_obs:
            out = {g: line.read(ids).copy() for g, line in self.obs_delay.items()}
            # The actions the policy sent and its command are the controller's own memory, not
            # sensor readings: they are never stale (as on the robot, robots_ts.sim2real.deploy).
            sel = slice(None) if ids is None else np.asarray(ids)
            if "proprio" in out and self.obs_delay["proprio"].active:
                lay, p = self.proprio_layout, out["proprio"]
                p[:, lay["prev_action"]] = self.prev_action[sel]
                p[:, lay["command"]] = self.state.command[sel]
            if self.history is not None:
                out["history"] = self._history(sel)
            return out
        return self._clean_obs(ids)

    def _sensed(self, obs: dict[str, np.ndarray], ids=None) -> dict[str, np.ndarray]:
        """Sensor models on clean observations of all worlds (or ``ids``): proprio noise, the
        depth sensor, point noise. Privileged state stays exact."""
        noise = self.noise_rngs if ids is None else [self.noise_rngs[i] for i in ids]   # one per row
        if "proprio" in obs and self.proprio_noise.active:
            lay = self.proprio_layout
            p = obs["proprio"]
            q, qd = self.proprio_noise.observe(p[:, lay["joint_pos"]], p[:, lay["joint_vel"]], noise, ids)
            p[:, lay["joint_pos"]], p[:, lay["joint_vel"]] = q, qd
        if "depth" in obs and self.depth_model.active:
            strength = None
            if self.depth_strength_varies:
                strength = self.depth_strength if ids is None else self.depth_strength[np.asarray(ids)]
            obs["depth"] = self.depth_model(obs["depth"][:, 0], noise, strength)[:, None]
        if "points" in obs and self.points_noisy:
            from robots_ts.sim2real.randomization.points import noisy_points

            pc = self.cfg.points
            obs["points"] = noisy_points(obs["points"], self.cfg.randomization.points, noise,
                                         pc.crop_low, pc.crop_high)
        return obs

    def _clean_obs(self, ids=None) -> dict[str, np.ndarray]:
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
        if self.history is not None:
            out["history"] = self._history(sel)
        return out

    def _history(self, sel) -> np.ndarray:
        h = self.history[sel]
        return h.reshape(len(h), -1).astype(np.float32)

    def close(self) -> None:
        self.backend.close()
