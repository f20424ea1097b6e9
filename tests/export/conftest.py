"""Tiny runs to export: a teacher trained for 128 steps (as tests/test_cli_errors.py trains one) and
students of random weights with non-trivial normalization, saved the way distillation saves them
(feed-forward depth, recurrent depth, points, and depth reading the `history` group of its last
actions, which also fills lost pixels: `depth_fill`). Exported once per session in both formats."""
import numpy as np
import pytest
import torch

from robots_ts.bench.faults import TEACHER
from robots_ts.cli import main as cli
from robots_ts.config import DepthConfig, EnvConfig, PointsConfig
from robots_ts.policies.students.checkpoint import save_student
from robots_ts.policies.students.config import StudentNetConfig
from robots_ts.policies.students.networks import Student
from robots_ts.runs import atomic_write_json, write_run_meta

SMALL = dict(cnn_channels=[4, 8], cnn_kernels=[3, 3], cnn_strides=[2, 2], point_mlp=[16, 32], feature_dim=16,
             proprio_mlp=[16], head_mlp=[32])
KINDS = ("teacher", "depth", "depth_gru", "points", "depth_history")
FORMATS = ("onnx", "torchscript")


def student_env(encoder: str, history: bool = False) -> EnvConfig:
    # 10-step episodes: a 25-step rollout crosses two resets (recurrent state cleared mid-batch);
    # with history, 3 actions of 4 (not the default 4: the width comes from the run, not a constant).
    return EnvConfig(task="Reach", num_envs=2, obs_groups=["proprio", encoder, *(["history"] if history else [])],
                     num_threads=1, episode_steps=10, action_history=3,
                     depth=DepthConfig(width=16, height=12), points=PointsConfig(num_points=64, width=32, height=24))


def make_student_run(run, encoder: str, gru: int, seed: int, history: bool = False, depth_fill: int = 0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = student_env(encoder, history)
    spec = {"proprio": [23], "depth": [1, env.depth.height, env.depth.width]} if encoder == "depth" \
        else {"proprio": [23], "points": [env.points.num_points, 3]}
    if history:
        spec["history"] = [env.action_history * 4]
    model = Student(StudentNetConfig(encoder=encoder, gru_hidden=gru, depth_norm="pixel", depth_fill=depth_fill,
                                     **SMALL), spec, 4,
                    (env.depth.near, env.depth.far))
    norm = {"proprio_mean": rng.normal(0, 0.5, 23).tolist(), "proprio_std": rng.uniform(0.2, 2.0, 23).tolist()}
    if encoder == "depth":
        norm["depth_mean"] = rng.uniform(0.8, 1.6, spec["depth"][1:]).tolist()
        norm["depth_std"] = [0.4]
    else:
        norm["points_mean"] = [0.5, 0.0, 0.2]
        norm["points_std"] = [0.2, 0.3, 0.15]
    model.set_normalization(norm)
    write_run_meta(run, "student", task="Reach", backend="mujoco", encoder=encoder, obs_groups=list(env.obs_groups))
    save_student(model, run / "checkpoints" / "iter_0000", env, iteration=0)
    atomic_write_json(run / "checkpoints" / "latest.json", {"name": "iter_0000", "iteration": 0})
    return run


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_runs")
    teacher = root / "teacher"
    assert cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(teacher), "--total-steps", "128",
                *TEACHER]) == 0
    return {"teacher": teacher,
            "depth": make_student_run(root / "depth", "depth", 0, 1),
            "depth_gru": make_student_run(root / "depth_gru", "depth", 8, 2),
            "points": make_student_run(root / "points", "points", 0, 3),
            "depth_history": make_student_run(root / "depth_history", "depth", 0, 4, history=True, depth_fill=2)}


@pytest.fixture(scope="session")
def exports(runs, tmp_path_factory):
    """(kind, format) -> export directory, outside the run directories."""
    from robots_ts.sim2real.export.exporter import export_run

    root = tmp_path_factory.mktemp("exports")
    return {(k, f): export_run(runs[k], f, root / f"{k}_{f}") for k in KINDS for f in FORMATS}
