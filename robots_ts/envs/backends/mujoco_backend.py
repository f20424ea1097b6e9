"""MuJoCo backend: N worlds of one compiled scene, stepped by worker threads.

Each world has its own ``MjModel`` copy (sizes, masses and frictions differ per world) and
``MjData``. MuJoCo releases the GIL in ``mj_step`` and in rendering, so worker threads stepping
disjoint chunks of worlds run in parallel; each thread renders its worlds' depth images with its
own OpenGL context (:mod:`robots_ts.envs.backends.mujoco_render`).

Divergence: ``mj_step`` resets a world whose state turned non-finite or huge and counts it in its
BADQPOS/BADQVEL/BADQACC warnings; a rise in that count flags the world.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import mujoco
import numpy as np

from robots_ts.envs.workers import WorkerPool
from robots_ts.robot.description import panda
from robots_ts.robot.dynamics import LINK_INERTIALS
from robots_ts.robot.mujoco_scene import scene_model, set_body_mass, set_geom_size
from robots_ts.envs.backends.backend import Backend, ImageRequest, StateBatch
from robots_ts.envs.backends.scene import camera, state_layout

_BAD = slice(int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQACC) + 1)


def divergence_count(data: mujoco.MjData) -> int:
    return int(data.warning.number[_BAD].sum())


def task_model(task_cls) -> mujoco.MjModel:
    """The compiled scene of a task (cached per process; copy it before changing values)."""
    return scene_model(tuple(task_cls.bodies))


# Robot edits that change the solver's constants (mj_setConst recomputes them).
_INERTIAL_EDITS = ("link_mass", "link_com", "joint")


class MujocoBackend(Backend):
    name = "mujoco"

    def __init__(self, task_cls, num_envs: int, control_hz: float, state: StateBatch,
                 images: dict[str, ImageRequest], num_workers: int):
        super().__init__(task_cls, num_envs, control_hz, state, images, num_workers)
        base = copy.copy(task_model(task_cls))
        self.nominal = task_model(task_cls)
        n = self.num_envs
        self.models = [base] + [copy.copy(base) for _ in range(n - 1)]
        self.datas = [mujoco.MjData(m) for m in self.models]
        self._scratch = mujoco.MjData(base)
        desc = panda()
        layout = state_layout(tuple(task_cls.bodies))
        self._check_layout(base, layout)
        self.arm_qpos = np.array([base.joint(j).qposadr[0] for j in desc.arm_joints])
        self.finger_qpos = np.array([base.joint(j).qposadr[0] for j in desc.finger_joints])
        self.arm_dof = np.array([base.joint(j).dofadr[0] for j in desc.arm_joints])
        self.ctrl_idx = np.array([base.actuator(j).id for j in desc.arm_joints])
        self.gripper_ctrl = base.actuator("gripper").id
        self.ee_site = base.site("ee").id
        self._geoms = {base.geom(k).name: k for k in range(base.ngeom) if base.geom(k).name}
        self._bodies = {b.name: base.body(b.name).id for b in task_cls.bodies}
        self._mocap = {b.name: base.body(b.name).mocapid[0] for b in task_cls.bodies if not b.free}
        self._free_qpos = {name: sl for name, sl in layout.qpos.items()}
        self._free_lin_vel = [np.arange(sl.start, sl.start + 3) for sl in layout.qvel.values()]
        self._free_geoms = {b.name: [self._geoms[s.name] for s in b.shapes] for b in task_cls.bodies if b.free}
        self.changes_inertia = any(b.free for b in task_cls.bodies)
        self._links = {name: base.body(name).id for name in LINK_INERTIALS}
        self._dofs = {j: base.joint(j).dofadr[0] for j in desc.arm_joints + desc.finger_joints}
        self._actuators = {j: base.actuator(j).id for j in desc.arm_joints}
        self._cameras = {base.camera(k).name: k for k in range(base.ncam)}
        self._jac = np.zeros((n, 6, base.nv))
        self._bad_counts = np.zeros(n, dtype=np.int64)
        for key, r in self.requests.items():
            if mujoco.mj_name2id(base, mujoco.mjtObj.mjOBJ_CAMERA, r.camera) < 0:
                raise ValueError(f"camera {r.camera!r} is not in the model")
        self.pool = WorkerPool(max(1, min(num_workers, n)))
        self._chunks = np.array_split(np.arange(n), self.pool.num_workers)

    @staticmethod
    def _check_layout(model: mujoco.MjModel, layout) -> None:
        if (model.nq, model.nv) != (layout.nq, layout.nv):
            raise RuntimeError(f"MuJoCo scene has nq={model.nq}, nv={model.nv}; the state layout expects "
                               f"{layout.nq}, {layout.nv}")
        for name, sl in layout.qpos.items():
            if model.joint(name).qposadr[0] != sl.start:
                raise RuntimeError(f"free body {name!r} sits at qpos {model.joint(name).qposadr[0]}, not {sl.start}")

    @property
    def renderer(self) -> str:
        import os

        return f"mujoco-opengl ({os.environ.get('MUJOCO_GL', 'default')})"

    # ------------------------------------------------------------------------------ internals
    def _camera(self, res: dict, key: str):
        cam = res.get(key)
        if cam is None:
            from robots_ts.envs.backends.mujoco_render import DepthCamera

            r = self.requests[key]
            cam = res[key] = DepthCamera(self.models[0], r.camera, r.width, r.height, r.near, r.far)
        return cam

    def _render(self, i: int, res: dict, post) -> None:
        for key in self.requests:
            self._camera(res, key).render(self.models[i], self.datas[i], self.images[key][i])
        if post is not None:
            post(i)

    def _gather(self, i: int) -> None:
        m, d, s = self.models[i], self.datas[i], self.state
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        s.qpos[i] = d.qpos
        s.qvel[i] = d.qvel
        s.ee_pos[i] = d.site_xpos[self.ee_site]
        s.ee_rot[i] = d.site_xmat[self.ee_site].reshape(3, 3)
        jac = self._jac[i]
        mujoco.mj_jacSite(m, d, jac[:3], jac[3:], self.ee_site)
        s.jac[i] = jac[:, self.arm_dof]

    def _apply(self, i: int, ops: list) -> None:
        m, d = self.models[i], self.datas[i]
        for op in ops:
            kind, name = op[0], op[1]
            if kind == "pose":
                pos, quat = op[2], op[3]
                if name in self._mocap:
                    d.mocap_pos[self._mocap[name]] = pos
                    d.mocap_quat[self._mocap[name]] = quat
                else:
                    d.qpos[self._free_qpos[name]] = [*pos, *quat]
            elif kind == "size":
                set_geom_size(m, self._geoms[name], op[2], op[3])
            elif kind == "mass":
                set_body_mass(m, self._bodies[name], op[2])
            elif kind == "friction":
                for g in self._free_geoms[name]:
                    m.geom_friction[g, 0] = op[2]
            elif kind == "link_mass":
                b = self._lookup(self._links, name, "robot link")
                m.body_mass[b] *= op[2]
                m.body_inertia[b] *= op[2]
                m.body_gravcomp[b] = 1.0 / op[2]   # the controller compensates the nominal weight
            elif kind == "link_com":
                m.body_ipos[self._lookup(self._links, name, "robot link")] += op[2]
            elif kind == "joint":
                dof = self._lookup(self._dofs, name, "robot joint")
                m.dof_damping[dof] *= op[2]
                m.dof_armature[dof] *= op[3]
                m.dof_frictionloss[dof] += op[4]
            elif kind == "gains":
                a = self._lookup(self._actuators, name, "arm joint")
                m.actuator_gainprm[a, 0] *= op[2]
                m.actuator_biasprm[a, 1] *= op[2]
                m.actuator_biasprm[a, 2] *= op[3]
            elif kind == "gravity":
                m.opt.gravity[:] = op[2]
            elif kind == "camera":
                cam = self._lookup(self._cameras, name, "camera")
                moved = camera(name).moved(op[2], op[3])
                m.cam_pos[cam] = moved.pos
                mujoco.mju_mat2Quat(m.cam_quat[cam], moved.rotation().reshape(-1))
            else:
                raise ValueError(f"unknown world edit {kind!r}")

    @staticmethod
    def _lookup(table: dict, name: str, what: str) -> int:
        if name not in table:
            raise ValueError(f"world edit names {what} {name!r}; known: {sorted(table)}")
        return table[name]

    def _restore_nominal(self, i: int) -> None:
        """Undo every earlier edit of world ``i``'s model (sizes, offsets, masses, frictions)."""
        m, nom = self.models[i], self.nominal
        m.geom_size[:] = nom.geom_size
        m.geom_pos[:] = nom.geom_pos
        m.geom_rbound[:] = nom.geom_rbound
        m.geom_aabb[:] = nom.geom_aabb
        m.geom_friction[:] = nom.geom_friction
        m.body_mass[:] = nom.body_mass
        m.body_inertia[:] = nom.body_inertia
        m.body_ipos[:] = nom.body_ipos
        m.body_gravcomp[:] = nom.body_gravcomp
        m.dof_damping[:] = nom.dof_damping
        m.dof_armature[:] = nom.dof_armature
        m.dof_frictionloss[:] = nom.dof_frictionloss
        m.actuator_gainprm[:] = nom.actuator_gainprm
        m.actuator_biasprm[:] = nom.actuator_biasprm
        m.opt.gravity[:] = nom.opt.gravity
        m.cam_pos[:] = nom.cam_pos
        m.cam_quat[:] = nom.cam_quat

    # ---------------------------------------------------------------------------------- seam
    def reset(self, ids: Sequence[int], q_arm: np.ndarray, finger: float, edits: Sequence[list],
              post: Callable[[int], None] | None = None) -> None:
        ids = [int(i) for i in ids]
        for k, i in enumerate(ids):
            m, d = self.models[i], self.datas[i]
            self._restore_nominal(i)
            mujoco.mj_resetData(m, d)
            d.qpos[self.arm_qpos] = q_arm[k]
            d.qpos[self.finger_qpos] = finger
            d.ctrl[self.ctrl_idx] = q_arm[k]
            d.ctrl[self.gripper_ctrl] = finger
            self._apply(i, edits[k])
            if self.changes_inertia or any(op[0] in _INERTIAL_EDITS for op in edits[k]):
                # Masses may have changed: refresh the solver's inverse weights (on scratch data,
                # since mj_setConst overwrites the state it is given).
                mujoco.mj_setConst(m, self._scratch)
            mujoco.mj_forward(m, d)
            self._gather(i)
            self._bad_counts[i] = divergence_count(d)
        if self.requests:
            chunks = [np.intersect1d(c, ids) for c in self._chunks]
            self.pool.run(lambda w, res: [self._render(i, res, post) for i in chunks[w]])
        elif post is not None:
            for i in ids:
                post(i)

    def step(self, q_target: np.ndarray, finger: np.ndarray,
             post: Callable[[int], None] | None = None, kicks: np.ndarray | None = None) -> np.ndarray:
        ctrl_idx, grip, substeps = self.ctrl_idx, self.gripper_ctrl, self.substeps
        diverged = np.zeros(self.num_envs, dtype=bool)
        renders = bool(self.requests)

        def work(w, res):
            for i in self._chunks[w]:
                m, d = self.models[i], self.datas[i]
                d.ctrl[ctrl_idx] = q_target[i]
                d.ctrl[grip] = finger[i]
                if kicks is not None:
                    for vel in self._free_lin_vel:
                        d.qvel[vel] += kicks[i]
                mujoco.mj_step(m, d, nstep=substeps)
                count = divergence_count(d)
                if count != self._bad_counts[i]:
                    diverged[i] = True
                    self._bad_counts[i] = count
                self._gather(i)
                if renders:
                    self._render(i, res, post)

        self.pool.run(work)
        if post is not None and not renders:
            for i in range(self.num_envs):
                post(i)
        return diverged

    def rgb(self, i: int, width: int, height: int, camera: str = "scene", markers: bool = True) -> np.ndarray:
        key = (width, height)
        cache = self.__dict__.setdefault("_rgb", {})
        r = cache.get(key)
        if r is None:
            r = cache[key] = mujoco.Renderer(self.models[0], height, width)
        opt = mujoco.MjvOption()
        opt.geomgroup[3] = int(markers)
        r._model = self.models[i]   # per-world sizes: the renderer reads them at update time
        r.update_scene(self.datas[i], camera=camera, scene_option=opt)
        return r.render()

    def physics_rate(self, seconds: float) -> float:
        chunk = 50

        def work(w, res):
            ids = self._chunks[w]
            datas = [mujoco.MjData(self.models[i]) for i in ids]
            for i, d in zip(ids, datas):
                d.qpos[:] = self.datas[i].qpos
                d.ctrl[:] = self.datas[i].ctrl
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for i, d in zip(ids, datas):
                    mujoco.mj_step(self.models[i], d, nstep=chunk)
                count += chunk * len(ids)
            return count, time.perf_counter() - t0

        res = self.pool.run(work)
        return sum(c for c, _ in res) / max(t for _, t in res) / self.substeps

    def render_rate(self, key: str, seconds: float) -> float:
        from robots_ts.envs.backends.mujoco_render import DepthCamera

        r = self.requests[key]

        def work(w, res):
            ids = self._chunks[w]
            cam = DepthCamera(self.models[0], r.camera, r.width, r.height, r.near, r.far)
            datas = [mujoco.MjData(self.models[i]) for i in ids]
            for i, d in zip(ids, datas):
                d.qpos[:] = self.datas[i].qpos
                d.ctrl[:] = self.datas[i].ctrl
                d.mocap_pos[:] = self.datas[i].mocap_pos
            try:
                for i, d in zip(ids, datas):   # warm up: the first frames of a new context cost more
                    cam.render_raw(self.models[i], d)
                count, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    for i, d in zip(ids, datas):
                        mujoco.mj_step(self.models[i], d, nstep=self.substeps)
                        cam.render_raw(self.models[i], d)
                    count += len(ids)
                return count, time.perf_counter() - t0
            finally:
                cam.close()

        res = self.pool.run(work)
        return sum(c for c, _ in res) / max(t for _, t in res)

    @property
    def num_workers(self) -> int:
        return self.pool.num_workers

    def close(self) -> None:
        def free(k, res):
            for cam in res.values():
                cam.close()
            res.clear()
        self.pool.close(free)
        for r in self.__dict__.pop("_rgb", {}).values():
            r.close()
