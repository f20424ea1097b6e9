"""A multi-task student (one network for Reach, Push and Lift) exported and run on the robot side:
the export reads the ``task`` group and describes it; the ONNX graph acts as the student on every
task's real observations; the runtime, asked for a task, builds the observations the multi-task
env gives that task's worlds (one-hot id, command, proprio without it), and refuses what it cannot
serve, by name."""
from __future__ import annotations

import numpy as np
import pytest

from robots_ts.envs.multi_task import MultiTaskEnv, task_vector
from robots_ts.policies.distill.dagger import distill_main
from robots_ts.policies.students.checkpoint import load_student
from robots_ts.sim2real.deploy.observe import DeployError
from robots_ts.sim2real.export.exporter import export_run
from robots_ts.sim2real.export.manifest import load_manifest
from robots_ts.sim2real.export.onnx_policy import OnnxPolicy
from tests.deploy.test_core import FakeClock, export_for, feed, live_runtime
from tests.policies.test_multi_teacher import TASKS, TINY


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """(run dir, ONNX export dir) of a multi-task depth student distilled for one tiny iteration."""
    run = tmp_path_factory.mktemp("multi") / "run"
    assert distill_main(["configs/student/multi_depth.yaml", *[f"teachers.{t}=scripted" for t in TASKS], *TINY,
                         "dagger.iterations=1", "--run-dir", str(run), "--no-progress"]) == 0
    return run, export_run(run, "onnx", tmp_path_factory.mktemp("multi_export"))


def test_export_reads_and_describes_the_task_group(multi):
    _, export = multi
    man = load_manifest(export)
    assert man.obs_groups == ["proprio", "depth", "task"]
    assert man.source.tasks == sorted(TASKS) and man.source.task == "Lift+Push+Reach"
    assert [i.name for i in man.policy.inputs] == ["proprio", "depth", "task"]
    assert man.policy.parity.max_abs_diff <= 1e-5
    task = {f.field: f for f in man.observations["task"].fields}
    assert man.observations["task"].shape == [6]          # 3 tasks, then Push's 3-wide goal
    assert (task["task_id"].start, task["task_id"].stop, task["task_id"].names) == (0, 3, ["Lift", "Push", "Reach"])
    assert (task["Push.command"].start, task["Push.command"].stop) == (3, 6)
    assert "Reach.command" not in task and "Lift.command" not in task
    # proprio is the columns every task shares: no command in it.
    proprio = {f.field: f for f in man.observations["proprio"].fields}
    assert man.observations["proprio"].shape == [23] and proprio["command"].start == proprio["command"].stop


def test_onnx_acts_as_the_student_on_every_tasks_observations(multi):
    run, export = multi
    policy = load_student(run)
    onnx = OnnxPolicy(export)
    env = MultiTaskEnv(policy.env_cfg, {t: 2 for t in TASKS}, seed=3, obs_groups=policy.obs_groups)
    try:
        obs = env.reset()
        rows = []
        for _ in range(10):
            want = policy.act(obs)
            np.testing.assert_allclose(onnx.act(obs), want, rtol=0, atol=1e-5)
            rows.append(obs["task"])
            obs = env.step(want)[0]
        # The env's task rows are what task_vector makes of each world's task and command.
        goals = env.envs["Push"].world.state.command
        for i, t in enumerate(env.world_tasks):
            command = goals[list(np.flatnonzero(env.world_tasks == "Push")).index(i)] if t == "Push" else ()
            np.testing.assert_array_equal(rows[-1][i], task_vector(TASKS, t, command))
    finally:
        env.close()


@pytest.mark.parametrize("task", ["Push", "Reach"])
def test_runtime_builds_the_multi_task_envs_observations_for_the_task_asked(multi, task):
    run, export = multi
    policy = load_student(run)
    env = MultiTaskEnv(policy.env_cfg, {t: 1 for t in TASKS}, seed=5, obs_groups=policy.obs_groups)
    try:
        obs = env.reset()
        row = env.tasks.index(task)
        w = env.envs[task].world
        command = w.state.command[0].copy() if w.state.command.shape[1] else None
        clock = FakeClock()
        rt = live_runtime(export, clock, task=task, command=command)
        rng = np.random.default_rng(1)
        for _ in range(8):                   # within the tiny env's 12-step episodes: no reset
            feed(rt, w, rng, "32FC1")
            cmd = rt.tick()
            assert not cmd.interventions, cmd.interventions
            assert sorted(cmd.obs) == ["depth", "proprio", "task"]
            np.testing.assert_allclose(cmd.obs["proprio"], obs["proprio"][row:row + 1], rtol=0, atol=2e-6)
            np.testing.assert_array_equal(cmd.obs["task"], obs["task"][row:row + 1])
            np.testing.assert_array_equal(cmd.obs["depth"], obs["depth"][row:row + 1])
            np.testing.assert_allclose(cmd.action, policy.act(obs)[row], rtol=0, atol=1e-5)
            actions = np.zeros((len(TASKS), 4), np.float32)
            actions[row] = cmd.action
            obs = env.step(actions)[0]
            np.testing.assert_allclose(cmd.target, w.q_target[0], rtol=0, atol=1e-6)
            clock.t += rt.period
    finally:
        env.close()


def test_runtime_refuses_a_task_it_cannot_serve(multi, tmp_path_factory):
    _, export = multi
    clock = FakeClock()
    with pytest.raises(DeployError, match=r"serves several tasks \['Lift', 'Push', 'Reach'\]: choose one"):
        live_runtime(export, clock)
    with pytest.raises(DeployError, match=r"serves several tasks .*: not 'Stack'"):
        live_runtime(export, clock, task="Stack")
    with pytest.raises(DeployError, match="the Reach policy takes no task command"):
        live_runtime(export, clock, task="Reach", command=[0.5, 0.0, 0.02])
    with pytest.raises(DeployError, match=r"the Push policy reads a task command \['goal_x', 'goal_y', 'goal_z'\]"):
        live_runtime(export, clock, task="Push")
    # A single-task export does its own task only.
    with pytest.raises(DeployError, match="is a Reach policy; it cannot do task 'Push'"):
        live_runtime(export_for(tmp_path_factory, "reach_depth"), clock, task="Push")


def test_deploy_command_line_asks_the_runtime_for_its_task(multi):
    from robots_ts.sim2real.deploy.node import DeployOptions, make_runtime, parser

    _, export = multi
    args = parser().parse_args([str(export), "--ros1", "--task", "Push", "--task-command", "0.55", "-0.1", "0.02"])
    rt = make_runtime(DeployOptions(**vars(args)), log=lambda s: None)
    assert rt.task == "Push"
    np.testing.assert_array_equal(rt.task_row, task_vector(TASKS, "Push", [0.55, -0.1, 0.02]))
