"""DAgger / BC runs: beta mixing, labels, agreement, resume, teacher checks, losses and the CLI."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robots_ts.config import DepthConfig, EnvConfig, load_config, save_config
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.evaluate import rollout_policy
from robots_ts.policies.distill.dagger import distill, distill_main, plan
from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.policies.distill.rollout import COLLECT, collect, evaluate, seed_for
from robots_ts.policies.distill.train import loss_terms
from robots_ts.policies.scripted import ScriptedTeacher
from robots_ts.policies.distill.config import DaggerConfig, StudentConfig, beta_at
from robots_ts.policies.students.checkpoint import StudentPolicy, load_student
from robots_ts.policies.students.networks import Student
from robots_ts.runs import read_jsonl, write_run_meta

TINY_NET = ["student.cnn_channels=[8,16]", "student.cnn_kernels=[3,3]", "student.cnn_strides=[2,2]",
            "student.feature_dim=32", "student.proprio_mlp=[32]", "student.head_mlp=[64]", "student.point_mlp=[16,32]"]
TINY = ["teacher=scripted", "env.num_envs=6", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1",
        "torch_threads=1", "dagger.steps_per_iteration=16", "dagger.chunk_steps=8", "dagger.eval_episodes=6",
        "dagger.batch_size=64", "augment.depth_noise=0", "dagger.epochs=4", "dagger.train_samples=0",
        "dagger.beta_decay=0.5", "student.aux_weight=1.0", *TINY_NET]


def tiny(*overrides: str) -> StudentConfig:
    return load_config(StudentConfig, "configs/student/reach_depth.yaml", [*TINY, *overrides])


class NeverAsked:
    obs_groups = ("proprio", "depth")

    def act(self, obs):
        raise AssertionError("a beta = 1 rollout must not query the student")

    def reset(self, done):
        pass


class HomingTeacher:
    """A smooth privileged-free teacher (moves the hand toward a fixed point): learnable from proprio
    on a tiny budget, so the DAgger loop itself is what the agreement test measures."""

    obs_groups = ("proprio", "privileged")

    def __init__(self, env_cfg):
        self.env_cfg = env_cfg

    def act(self, obs):
        ee = obs["proprio"][:, 16:19]             # proprio: qpos 7, qvel 7, fingers 2, ee position 3, ...
        a = np.ones((len(ee), 4), np.float32)
        a[:, :3] = np.clip((np.array([0.45, 0.15, 0.3]) - ee) * 5.0, -1, 1)
        return a

    def reset(self, done):
        pass


def test_beta_schedules():
    d = DaggerConfig(iterations=5, beta0=1.0, beta_decay=0.5)
    assert [beta_at(replace(d, beta_schedule="exponential"), i) for i in range(3)] == [1.0, 0.5, 0.25]
    assert [beta_at(replace(d, beta_schedule="linear"), i) for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert beta_at(replace(d, beta_schedule="constant", beta0=0.0), 3) == 0.0
    assert beta_at(replace(d, algorithm="bc"), 4) == 1.0
    # BC: one collection with the label budget of the whole DAgger run.
    dagger_steps = sum(s for _, _, s, _, _ in plan(tiny("dagger.iterations=4")))
    assert plan(tiny("dagger.iterations=4", "dagger.algorithm=bc")) == [(0, 1.0, dagger_steps, 4, True)]
    # final_epochs: only the last DAgger iteration trains longer, and without the per-iteration cap.
    steps = plan(tiny("dagger.iterations=3", "dagger.final_epochs=20"))
    assert [(e, capped) for *_, e, capped in steps] == [(4, True), (4, True), (20, False)]


@pytest.mark.parametrize("override,message", [
    ("dagger.loss=huber", r"dagger.loss: expected one of \['mse', 'nll', 'sigma_l2'\], got 'huber'"),
    ("env.obs_groups=[proprio,privileged,depth]", "must not read 'privileged'"),
    ("student.encoder=points", r"a points student reads \['proprio', 'points'\]"),
    ("dagger.train_samples=-1", "dagger.train_samples: expected 0 .off. or a positive integer"),
    ("student.aux_indices=[]", "aux_weight > 0 needs student.aux_indices"),
])
def test_bad_configs_fail_before_any_work(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        distill(tiny(override), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_names_unknown_keys(tmp_path, capsys):
    assert distill_main(["configs/student/reach_depth.yaml", "teacher=scripted", "dagger.beta=0.5",
                         "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown config key 'dagger.beta'" in capsys.readouterr().err


def _env(groups=("proprio", "privileged", "depth")):
    return BatchedEnv(EnvConfig(task="Reach", num_envs=4, obs_groups=list(groups), num_threads=1,
                                depth=DepthConfig(width=16, height=16)), seed=3)


def test_beta_one_rollout_is_exactly_the_teachers(tmp_path):
    env = _env()
    data = ChunkDataset(tmp_path / "beta1")
    collect(env, ScriptedTeacher(env.world), NeverAsked(), data, iteration=2, beta=1.0, steps=20, seed=7,
            chunk_steps=8)
    stored = [data.load(r) for r in data.records()]
    got = {k: np.concatenate([c[k] for c in stored]) for k in ("proprio", "action", "depth")}
    # The same seeded env driven by the teacher alone.
    env.world.seed(seed_for(7, 2, COLLECT))
    obs, teacher = env.reset(), ScriptedTeacher(env.world)
    want = {"proprio": [], "action": [], "depth": []}
    for _ in range(20):
        a = teacher.act(obs)
        for k in want:
            want[k].append(obs[k] if k != "action" else a)
        obs, _, done, _ = env.step(a)
        teacher.reset(done)
    np.testing.assert_array_equal(got["proprio"], np.stack(want["proprio"]))
    np.testing.assert_array_equal(got["action"], np.stack(want["action"]))
    np.testing.assert_allclose(got["depth"], np.stack(want["depth"]), atol=2e-3)  # stored as float16
    # A student that acts (beta 0) visits other states: the comparison above can tell them apart.
    torch.manual_seed(0)
    cfg = tiny()
    student = StudentPolicy(Student(cfg.student, {"proprio": [23], "depth": [1, 16, 16]}, 4), cfg.env)
    other = ChunkDataset(tmp_path / "beta0")
    collect(env, ScriptedTeacher(env.world), student, other, 2, 0.0, 20, 7, 8)
    assert not np.allclose(np.concatenate([other.load(r)["proprio"] for r in other.records()]), got["proprio"])
    env.close()


def test_few_dagger_iterations_raise_agreement(tmp_path):
    cfg = tiny("dagger.iterations=3", "dagger.epochs=8", "dagger.steps_per_iteration=24", "teacher=homing")
    teacher = HomingTeacher(cfg.env)
    env = _env()
    torch.manual_seed(0)
    untrained = StudentPolicy(Student(cfg.student, {"proprio": [23], "depth": [1, 16, 16]}, 4), cfg.env)
    before = evaluate(env, untrained, 6, seed=1, teacher=teacher)
    env.close()
    distill(cfg, tmp_path / "run", progress=False, teacher=teacher)
    recs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["labels"] for r in recs] == [144, 288, 432]
    # Iteration 0 is behaviour cloning: it fits the teacher's states, not the ones the student then
    # visits. The later iterations label those, and agreement on the student's own states rises.
    assert recs[-1]["agreement"] > before["agreement"] + 0.2
    assert recs[-1]["agreement"] > recs[0]["agreement"]
    assert recs[-1]["action_mse"] < 0.1 * before["action_mse"]


def test_cli_run_directory_and_evaluate(tmp_path, capsys):
    cfg = tiny("dagger.iterations=2", "dagger.epochs=1")
    run = tmp_path / "run"
    save_config(cfg, tmp_path / "cfg.yaml")
    torch.set_num_threads(2)
    assert distill_main([str(tmp_path / "cfg.yaml"), "--run-dir", str(run), "--no-progress"]) == 0
    assert torch.get_num_threads() == 2      # torch_threads=1 was the run's own
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["iteration"] == 1 and out["run_dir"] == str(run) and out["labels"] == 2 * 16 * 6
    assert json.loads((run / "run.json").read_text())["kind"] == "student"
    assert (run / "curves.png").stat().st_size > 0 and list((run / "tb").iterdir())
    for key in ("dataset_samples", "student_success", "agreement", "train_loss", "teacher_success"):
        assert key in out
    # What `robots-ts evaluate` does with a student run.
    policy = load_student(run)
    assert policy.obs_groups == ("proprio", "depth")
    assert rollout_policy(policy, policy.env_cfg, episodes=4, num_envs=2)["episodes"] == 4
    # Starting over in a used run directory is refused; --resume of a finished run is a no-op.
    assert distill_main([str(tmp_path / "cfg.yaml"), "--run-dir", str(run), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert distill_main(["--resume", str(run), "--no-progress"]) == 0
    assert len(read_jsonl(run / "metrics.jsonl")) == 2


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    # A recurrent point-cloud student with an aux head and a 2-iteration window covers those paths.
    over = ["env.obs_groups=[proprio,points]", "env.points.num_points=64", "student.encoder=points",
            "student.gru_hidden=16", "dagger.seq_len=4", "student.aux_indices=[0,1,2]", "student.aux_weight=0.5",
            "dagger.keep_last=2", "dagger.epochs=1", "dagger.steps_per_iteration=8", "dagger.chunk_steps=4",
            "dagger.final_epochs=0"]  # the kill is simulated by a shorter run: no final fit to tell them apart
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    distill(tiny("dagger.iterations=3", *over), straight, progress=False)
    distill(tiny("dagger.iterations=2", *over), killed, progress=False)
    # A kill in iteration 2 after some of its chunks and its metrics line, before latest.json moved.
    data = ChunkDataset(killed / "dataset")
    chunk = data.load(data.records()[0])
    data.write_chunk(2, 0, {k: v for k, v in chunk.items()})
    (killed / "metrics.jsonl").open("a").write(json.dumps({"iteration": 2, "labels": -1}) + "\n")
    assert distill_main(["--resume", str(killed), "--iterations", "3", "--no-progress"]) == 0
    a, b = read_jsonl(straight / "metrics.jsonl"), read_jsonl(killed / "metrics.jsonl")
    assert [r["labels"] for r in b] == [48, 96, 144]
    assert b[2]["dataset_samples"] == 2 * 48        # keep_last=2
    for key in ("student_success", "agreement", "train_loss", "beta"):
        assert [r[key] for r in a] == [r[key] for r in b]
    ta, tb = load_file(straight / "checkpoints/iter_0002.safetensors"), load_file(killed / "checkpoints/iter_0002.safetensors")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def _push_teacher_run(path):
    """A real (untrained) PPO teacher run directory for Push, in the teacher's on-disk format."""
    from stable_baselines3 import PPO

    from robots_ts.policies.teacher.config import TeacherConfig

    env_cfg = EnvConfig(task="Push", num_envs=2, obs_groups=["proprio", "privileged"], num_threads=1)
    from robots_ts.policies.teacher.checkpoint import write_set

    env = BatchedEnv(env_cfg, seed=0)
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=16, device="cpu")
    write_set(path / "checkpoints", "best", {"model": lambda p: model.save(p),
                                             "norm": lambda p: p.write_text(json.dumps({"clip_obs": 10.0, "obs": {}}))}, 0)
    env.close()
    save_config(TeacherConfig(env=env_cfg), path / "config.yaml")
    write_run_meta(path, "teacher")


def test_teacher_with_other_observation_spec_fails_clearly(tmp_path, capsys):
    _push_teacher_run(tmp_path / "push_teacher")
    with pytest.raises(ValueError, match=r"'proprio' of shape \(26,\).*task Push.*gives \(23,\).*task Reach"):
        distill(tiny(f"teacher={tmp_path / 'push_teacher'}"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "run.json").exists()   # nothing written for a run that cannot start
    rc = distill_main(["configs/student/reach_depth.yaml", f"teacher={tmp_path / 'no_such_run'}",
                       "--run-dir", str(tmp_path / "r2")])
    assert rc == 2 and "no_such_run" in capsys.readouterr().err


def test_losses():
    cfg = tiny("student.aux_indices=[1]", "student.aux_weight=2.0")
    torch.manual_seed(0)
    m = Student(cfg.student, {"proprio": [23], "depth": [1, 16, 16]}, 4)
    gen = torch.Generator().manual_seed(0)
    b = {"proprio": torch.randn(5, 1, 23), "depth": torch.rand(5, 1, 1, 16, 16) + 0.5,
         "action": torch.rand(5, 1, 4) * 2 - 1, "std": torch.tensor([0.1, 1.0, 1.0, 1.0]).expand(5, 1, 4),
         "privileged": torch.randn(5, 1, 6), "first": torch.ones(5, 1, dtype=torch.bool), "mask": torch.ones(5, 1)}
    with torch.no_grad():
        mean, aux, _ = m(b["proprio"], b["depth"])
    sq = (mean - b["action"]) ** 2
    aux_mse = float(((aux - b["privileged"][..., [1]]) ** 2).mean())
    _, parts = loss_terms(m, b, cfg, gen)
    assert parts["action_loss"] == pytest.approx(float(sq.mean()), rel=1e-5)
    assert parts["loss"] == pytest.approx(float(sq.mean()) + 2.0 * aux_mse, rel=1e-5)
    _, parts = loss_terms(m, b, replace(cfg, dagger=replace(cfg.dagger, loss="sigma_l2")), gen)
    w = torch.tensor([100.0, 1, 1, 1])
    assert parts["action_loss"] == pytest.approx(float((sq * w).sum() / (w.sum() * 5)), rel=1e-5)
    _, parts = loss_terms(m, b, replace(cfg, dagger=replace(cfg.dagger, loss="nll")), gen)
    s = float(np.exp(cfg.student.init_log_std))
    assert parts["action_loss"] == pytest.approx(float((0.5 * sq / s ** 2).mean()) + np.log(s), rel=1e-5)
    # The scripted oracle has no policy std, so the sigma-weighted loss cannot be used with it.
    with pytest.raises(ValueError, match="sigma_l2.*std"):
        distill(tiny("dagger.loss=sigma_l2"), "/nonexistent/never-written", progress=False)


@pytest.mark.slow   # 6 Ray Tune trials, each its own process: 2-8 minutes on 2 cores
def test_bench_compares_at_equal_label_budgets(tmp_path, capsys):
    from robots_ts.bench.distill import bench_distill, bc_epochs_matching

    cfg = tiny("dagger.iterations=3", "dagger.epochs=2", "dagger.steps_per_iteration=8", "dagger.eval_episodes=4",
               "dagger.final_epochs=0")
    res = bench_distill(cfg, seeds=[0, 1], out=tmp_path, bc_points=2)   # 6 trials, each its own process
    assert res["labels"] == [48, 96, 144]
    # BC is trained at DAgger's budgets (its first iteration already is BC), with matched compute.
    assert res["bc_labels"] == [96, 144]
    dagger = read_jsonl(tmp_path / "dagger_s1" / "metrics.jsonl")
    assert [r["train_samples"] for r in dagger] == [96, 192, 288]           # 2 epochs over 48, 96, 144
    assert bc_epochs_matching(dagger, 2) == 4                                 # (96 + 192 + 288) / 144
    bc_meta = read_jsonl(tmp_path / "bc_s1_it002" / "metrics.jsonl")
    assert [r["labels"] for r in bc_meta] == [144] and bc_meta[0]["beta"] == 1.0
    assert len(res["dagger_success_per_seed"]) == 2 and len(res["bc_success_mean"]) == 2
    assert (tmp_path / "distill_bench.png").stat().st_size > 0
    # A rerun reuses the finished runs instead of training again.
    stamp = (tmp_path / "dagger_s0" / "metrics.jsonl").stat().st_mtime_ns
    assert bench_distill(cfg, seeds=[0, 1], out=tmp_path, bc_points=2) == res
    assert (tmp_path / "dagger_s0" / "metrics.jsonl").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_dagger_beats_bc_at_equal_labels_on_a_learnable_teacher(tmp_path):
    """The textbook case: BC fits the teacher's own trajectories; its student drifts off them and has
    no labels there. DAgger labels the states its student visits. Same label budget, same seeds."""
    teacher = HomingTeacher(tiny().env)
    wins = 0
    for seed in (0, 1, 2):
        common = (f"seed={seed}", "dagger.iterations=4", "dagger.epochs=8", "dagger.steps_per_iteration=16",
                  "dagger.eval_episodes=12", "teacher=homing")
        dagger = distill(tiny(*common), tmp_path / f"dagger{seed}", progress=False, teacher=teacher)
        bc = distill(tiny(*common, "dagger.algorithm=bc", "dagger.bc_epochs=20"), tmp_path / f"bc{seed}",
                     progress=False, teacher=teacher)
        assert dagger["labels"] == bc["labels"] == 4 * 16 * 6
        wins += dagger["agreement"] > bc["agreement"]
    assert wins == 3
