"""Multi-teacher DAgger: each world labelled by its task's teacher, config checks, a teacher run of
the wrong task refused, per-task metrics and evaluation, resume."""
import json

import numpy as np
import pytest

from robots_ts.config import ConfigError, EnvConfig, load_config
from robots_ts.evaluate import rollout_policy
from robots_ts.policies.distill.config import StudentConfig, validate
from robots_ts.policies.distill.dagger import distill, distill_main
from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.policies.distill.multi import build_multi
from robots_ts.policies.distill.rollout import evaluate
from robots_ts.policies.students.checkpoint import load_student
from robots_ts.runs import read_jsonl
from tests.policies.test_dagger import TINY_NET, _push_teacher_run

TASKS = ("Lift", "Push", "Reach")       # the env's order: sorted by name
CONSTANT = {"Reach": 0.1, "Push": -0.2, "Lift": 0.3}
OWN_PROPRIO = {"Reach": 23, "Push": 26, "Lift": 23}     # Push's proprio ends with its goal
OWN_PRIVILEGED = {"Reach": 6, "Push": 22, "Lift": 20}
TINY = ["env.num_envs=6", "env.episode_steps=12", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1", "torch_threads=1",
        "dagger.steps_per_iteration=8", "dagger.chunk_steps=4", "dagger.eval_episodes=6", "dagger.batch_size=32",
        "dagger.epochs=1", "dagger.final_epochs=0", "dagger.train_samples=0", "augment.depth_noise=0", *TINY_NET]


def tiny(*overrides: str) -> StudentConfig:
    teachers = [f"teachers.{t}=scripted" for t in TASKS]
    return load_config(StudentConfig, "configs/student/multi_depth.yaml", [*teachers, *TINY, *overrides])


class ConstantTeacher:
    """A stand-in teacher of one task: always the same action, and it checks that it is handed only
    its own task's worlds, in its own task's observation widths."""

    obs_groups = ("proprio", "privileged")

    def __init__(self, task: str, worlds: int):
        self.task, self.worlds = task, worlds
        self.env_cfg = EnvConfig(task=task, episode_steps=12)   # as the tiny runs below
        self.calls = 0

    def act(self, obs):
        assert obs["proprio"].shape == (self.worlds, OWN_PROPRIO[self.task])
        assert obs["privileged"].shape == (self.worlds, OWN_PRIVILEGED[self.task])
        self.calls += 1
        return np.full((self.worlds, 4), CONSTANT[self.task], np.float32)

    def reset(self, done):
        assert len(done) == self.worlds


def test_each_worlds_label_comes_from_its_own_tasks_teacher(tmp_path):
    worlds = {"Lift": 2, "Push": 1, "Reach": 3}
    cfg = tiny("dagger.iterations=2", "task_shares={Reach: 3, Push: 1, Lift: 2}")
    teachers = {t: ConstantTeacher(t, worlds[t]) for t in TASKS}
    distill(cfg, tmp_path / "run", progress=False, teacher=teachers)
    assert all(t.calls for t in teachers.values())
    data = ChunkDataset(tmp_path / "run" / "dataset")
    chunks = [data.load(r) for r in data.records()]
    task = np.concatenate([c["task"] for c in chunks])          # (T, N, 3 + 3)
    action = np.concatenate([c["action"] for c in chunks])      # (T, N, 4): the stored labels
    assert task.shape[:2] == (16, 6)
    for w in range(6):
        ids = set(task[:, w, :3].argmax(-1).tolist())
        assert len(ids) == 1                                      # a world keeps its task
        name = TASKS[ids.pop()]
        np.testing.assert_array_equal(action[:, w], np.full((16, 4), CONSTANT[name], np.float32))
    # Shares split the worlds: Reach 3, Lift 2, Push 1.
    counts = np.bincount(task[0, :, :3].argmax(-1), minlength=3)
    assert dict(zip(TASKS, counts.tolist())) == worlds
    rec = read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert set(rec["task_success"]) == set(rec["task_agreement"]) == set(rec["teacher_task_success"]) == set(TASKS)
    # Agreement is measured per task against that task's teacher: an actor always at +0.1 agrees
    # fully with Reach's, and is 0.3 and 0.2 away from Push's and Lift's (agreement 1 - |diff| / 2).
    router, env, _ = build_multi(cfg, teachers)
    try:
        ev = evaluate(env, Constant(0.1), 6, seed=0, teacher=router, world_tasks=env.world_tasks)
    finally:
        env.close()
    assert {t: round(v["agreement"], 6) for t, v in ev["per_task"].items()} == {"Reach": 1.0, "Push": 0.85,
                                                                                   "Lift": 0.9}
    assert ev["agreement"] == pytest.approx((3 * 1.0 + 1 * 0.85 + 2 * 0.9) / 6, abs=0.02)   # per world-step


class Constant:
    obs_groups = ("proprio",)

    def __init__(self, value):
        self.value = value

    def act(self, obs):
        return np.full((len(obs["proprio"]), 4), self.value, np.float32)

    def reset(self, done):
        pass


def test_teacher_run_of_another_task_fails_naming_both(tmp_path):
    _push_teacher_run(tmp_path / "push_teacher")
    cfg = tiny(f"teachers.Reach={tmp_path / 'push_teacher'}")
    with pytest.raises(ValueError, match=r"teacher .*push_teacher \(for task Reach\) expects observation group "
                                         r"'proprio' of shape \(26,\) \(trained on task Push.*task Reach"):
        distill(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("overrides,message", [
    (["teachers.Stack=scripted"], r"teachers.Stack: unknown task 'Stack'; available tasks"),
    (["task_shares.PushPrecise=1"], r"task_shares.PushPrecise: a share for task 'PushPrecise', which has no teacher"),
    (["teacher=scripted"], r"give either teacher=RUN \(one task\) or teachers.<Task>=RUN \(several\), not both"),
    (["env.obs_groups=[proprio,depth]"], r"reads 'task' \(task id and command\); add it"),
    (["task_shares.Push=0"], r"task_shares.Push: expected a positive number, got 0"),
    (["env.num_envs=2"], r"env.num_envs: 2 worlds cannot hold the 3 tasks"),
    (["env.params={mass: [0.1, 0.2]}"], r"unknown task parameter 'mass'"),
])
def test_bad_multi_teacher_configs_fail_before_any_work(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(tiny(*overrides))


def test_single_teacher_runs_refuse_shares_and_the_task_group():
    base = ["teacher=scripted", "env.num_threads=1"]
    with pytest.raises(ConfigError, match="task_shares .* split the worlds between several teachers"):
        validate(load_config(StudentConfig, "configs/student/reach_depth.yaml", [*base, "task_shares.Reach=1"]))
    with pytest.raises(ConfigError, match="'task' .* exists only in a multi-task run"):
        validate(load_config(StudentConfig, "configs/student/reach_depth.yaml",
                             [*base, "env.obs_groups=[proprio,depth,task]"]))


def test_multi_task_student_evaluates_per_task_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    assert distill_main(["configs/student/multi_depth.yaml", *[f"teachers.{t}=scripted" for t in TASKS], *TINY,
                         "dagger.iterations=1", "--run-dir", str(run), "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["teacher_task_success"].keys() == set(TASKS) and out["labels"] == 8 * 6
    assert json.loads((run / "run.json").read_text())["task"] == "Lift+Push+Reach"
    # What `robots-ts evaluate` does: the student's own tasks, success per task and overall.
    policy = load_student(run)
    assert policy.obs_groups == ("proprio", "depth", "task") and policy.task_shares == {t: 1.0 for t in TASKS}
    res = rollout_policy(policy, policy.env_cfg, episodes=6, num_envs=3)
    assert res["task"] == "Lift+Push+Reach" and res["episodes"] == 6
    assert {t: v["episodes"] for t, v in res["per_task"].items()} == {t: 2 for t in TASKS}
    # Resume extends the run with the same tasks and one-hot columns.
    assert distill_main(["--resume", str(run), "--iterations", "2", "--no-progress"]) == 0
    recs = read_jsonl(run / "metrics.jsonl")
    assert [r["labels"] for r in recs] == [48, 96] and recs[1]["teacher_task_success"] == recs[0]["teacher_task_success"]


def test_bench_budgets_give_single_students_their_share_or_all_worlds():
    from robots_ts.bench.multi_teacher import single_config, single_worlds, worlds_share

    cfg = tiny("env.num_envs=12", "task_shares={Reach: 2, Push: 1, Lift: 1}")
    # sum: each task's labels are the same in the multi run and in its single run.
    assert single_worlds(cfg, "sum") == {"Lift": 3, "Push": 3, "Reach": 6}
    assert worlds_share(cfg, "Reach") == 0.5
    # each: every single student has as many labels as the whole multi-task student.
    assert single_worlds(cfg, "each") == {t: 12 for t in TASKS}
    single = single_config(cfg)
    assert single.teachers == {} and single.task_shares == {} and single.env.obs_groups == ["proprio", "depth"]
    assert single.student == cfg.student and single.dagger == cfg.dagger


def test_a_sweep_resumes_a_multi_teacher_run_given_relative_teacher_paths(tmp_path, monkeypatch):
    from dataclasses import replace

    from robots_ts.config import save_config
    from robots_ts.runs import write_run_meta
    from robots_ts.scale.sweep import check_resumable

    asked = tiny("teachers.Push=runs/push")                     # as a sweep trial's config names it
    other = tiny("teachers.Push=runs/other_push")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    write_run_meta(run, "student")
    # distill records every teacher's full path in the run's config.
    save_config(replace(asked, teachers={**asked.teachers, "Push": str(tmp_path / "runs" / "push")}),
                run / "config.yaml")
    check_resumable("distill", asked, run)
    with pytest.raises(ValueError, match="holds a run with other teachers.Push"):
        check_resumable("distill", other, run)
