"""Kickstarted PPO (``train-teacher ... kickstart.teachers=[RUN]``): with weight 0 it is plain PPO bit
for bit; the weight at every update is logged and follows its schedule, also across a resume; the
auxiliary loss pulls the student toward its teacher; a teacher of another task or observation spec
is refused by name before any file is written."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from robots_ts.bench.faults import TEACHER
from robots_ts.cli import main as cli
from robots_ts.config import ConfigError, load_config
from robots_ts.policies.teacher import kickstart_run
from robots_ts.policies.teacher import train as teacher_train
from robots_ts.policies.teacher.checkpoint import publish_manifest, step_stems
from robots_ts.policies.teacher.config import KickstartConfig, TeacherConfig
from robots_ts.policies.teacher.kickstart import KickstartSchedule

PUSH = "configs/teacher/push.yaml"
CONST = np.array([0.6, -0.4, 0.3, -0.7], np.float32)   # the stand-in teacher's action on Push (ee control)
ROLLOUT = 64                                          # env steps per update with TEACHER's overrides


def tiny_teacher(root, name, config, *extra):
    run = root / name
    assert cli(["train-teacher", config, "--run-dir", str(run), "--total-steps", "64", *TEACHER, *extra]) == 0
    return run


@pytest.fixture(scope="module")
def const_teacher(tmp_path_factory):
    """A Push teacher run whose every checkpoint acts CONST whatever it sees (zero action weights)."""
    run = tiny_teacher(tmp_path_factory.mktemp("ks"), "const", PUSH)
    ck = run / "checkpoints"
    for stem in ["best", "latest", *(s for _, s in step_stems(ck))]:
        if not (ck / f"{stem}.zip").exists():
            continue
        model = PPO.load(ck / f"{stem}.zip")
        with torch.no_grad():
            model.policy.action_net.weight.zero_()
            model.policy.action_net.bias.copy_(torch.as_tensor(CONST))
        model.save(ck / f"{stem}.zip")
        man = json.loads((ck / f"{stem}.manifest.json").read_text())
        publish_manifest(ck, stem, list(man["members"]), man["step"])
    return run


@pytest.fixture(scope="module")
def other_teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("ks_other")
    return {"reach": tiny_teacher(root, "reach", "configs/teacher/reach.yaml"),
            "joint": tiny_teacher(root, "joint", PUSH, "env.control=joint")}


def ks_config(teacher, *extra):
    return load_config(TeacherConfig, PUSH, [*TEACHER, f"kickstart.teachers=[{teacher}]", *extra])


@pytest.mark.parametrize("kind,extra,expect", [
    ("constant", {}, lambda t: 0.5),
    ("constant", {"decay_steps": 300}, lambda t: 0.5 if t < 300 else 0.0),
    ("linear", {"decay_steps": 300}, lambda t: 0.5 * max(0.0, 1 - t / 300)),
    ("exponential", {"half_life": 100}, lambda t: 0.5 * 0.5 ** (t / 100)),
    ("exponential", {"half_life": 100, "decay_steps": 250}, lambda t: 0.5 * 0.5 ** (t / 100) if t < 250 else 0.0),
])
def test_schedule_matches_its_formula_and_ends_at_exactly_zero(kind, extra, expect):
    schedule = KickstartSchedule(KickstartConfig(teachers=["x"], weight=0.5, schedule=kind, **extra))
    for t in (0, 1, 64, 100, 249, 250, 299, 300, 301, 10_000):
        assert schedule(t) == pytest.approx(expect(t), abs=0, rel=1e-12)
    if "decay_steps" in extra:
        assert schedule(extra["decay_steps"]) == 0.0 and schedule(extra["decay_steps"] + 1) == 0.0


def _learn(cfg, run_dir, steps, kickstarted: bool):
    env, venv, model = (kickstart_run.build if kickstarted else teacher_train.build)(cfg, run_dir)
    try:
        model.learn(steps)
    finally:
        venv.close()
    return model


def test_weight_zero_reproduces_plain_ppo_bit_for_bit(const_teacher, tmp_path):
    cfg = ks_config(const_teacher, "kickstart.weight=0", "kickstart.schedule=constant", "ppo.n_epochs=2",
                    "ppo.batch_size=32")
    plain = _learn(load_config(TeacherConfig, PUSH, [*TEACHER, "ppo.n_epochs=2", "ppo.batch_size=32"]),
                   tmp_path / "plain", 3 * ROLLOUT, False)
    zero = _learn(cfg, tmp_path / "zero", 3 * ROLLOUT, True)
    pulled = _learn(ks_config(const_teacher, "kickstart.weight=1", "kickstart.schedule=constant", "ppo.n_epochs=2",
                              "ppo.batch_size=32"), tmp_path / "pulled", 3 * ROLLOUT, True)
    a, b, c = plain.policy.state_dict(), zero.policy.state_dict(), pulled.policy.state_dict()
    assert zero._n_updates == plain._n_updates == 6
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not all(torch.equal(a[k], c[k]) for k in a)   # the comparison can tell a kickstarted update apart


@pytest.mark.parametrize("schedule", [["kickstart.schedule=constant", "kickstart.decay_steps=256"],
                                      ["kickstart.schedule=linear", "kickstart.decay_steps=320"],
                                      ["kickstart.schedule=exponential", "kickstart.half_life=96"]])
def test_weight_of_every_update_is_logged_by_formula_across_a_resume(const_teacher, tmp_path, schedule):
    run = tmp_path / "run"
    assert cli(["train-teacher", PUSH, f"kickstart.teachers=[{const_teacher}]", "kickstart.weight=0.8", *schedule,
                "--run-dir", str(run), "--total-steps", "256", *TEACHER]) == 0
    assert cli(["train-teacher", "--resume", str(run), "--total-steps", "448"]) == 0
    cfg = load_config(TeacherConfig, run / "config.yaml")
    assert cfg.kickstart.teachers == [str(const_teacher.resolve())]
    formula = KickstartSchedule(cfg.kickstart)
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["steps"]: r["kickstart_weight"] for r in recs if "kickstart_weight" in r}
    # Each rollout's record carries the weight of the update on that rollout: every update, once.
    assert sorted(logged) == [r["steps"] for r in recs if "steps_per_s" in r] == list(range(ROLLOUT, 449, ROLLOUT))
    for step, weight in logged.items():
        assert weight == pytest.approx(formula(step), rel=1e-6, abs=1e-9), step
    if cfg.kickstart.decay_steps:
        assert [logged[s] for s in logged if s >= cfg.kickstart.decay_steps] == [0.0] * sum(
            s >= cfg.kickstart.decay_steps for s in logged)
    assert all(0 <= r["teacher_action_gap"] <= 2 for r in recs if "kickstart_weight" in r)
    assert any(np.isfinite(r.get("kickstart_loss", np.nan)) for r in recs)   # the previous update's, as train/*
    events = b"".join(p.read_bytes() for p in (run / "tb").rglob("events.out.tfevents*"))
    assert all(k in events for k in (b"kickstart/kickstart_weight", b"kickstart/teacher_action_gap",
                                     b"train/kickstart_loss"))


@pytest.mark.parametrize("loss", ["cross_entropy", "kl"])
def test_auxiliary_loss_pulls_student_actions_toward_the_teacher(const_teacher, tmp_path, loss):
    def gap_after(weight, run_dir):
        cfg = ks_config(const_teacher, f"kickstart.weight={weight}", "kickstart.schedule=constant",
                        f"kickstart.loss={loss}", "ppo.n_epochs=10", "ppo.batch_size=16", "ppo.learning_rate=3e-3",
                        "ppo.lr_schedule=constant")
        env, venv, model = kickstart_run.build(cfg, run_dir)
        try:
            obs = venv.reset()   # normalized student observations

            def gap():
                mean = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.mean
                return float(np.abs(mean.detach().clamp(-1, 1).numpy() - CONST).mean())

            before = gap()
            model.learn(6 * ROLLOUT)
            return before, gap()
        finally:
            venv.close()

    before, pulled = gap_after(5.0, tmp_path / "pulled")
    _, free = gap_after(0.0, tmp_path / "free")
    assert pulled < 0.5 * before, (before, pulled)
    assert pulled < 0.5 * free, (free, pulled)


def test_student_may_read_other_groups_than_its_teacher(const_teacher, tmp_path):
    """A student without privileged state, kickstarted by a teacher that reads it."""
    cfg = ks_config(const_teacher, "env.obs_groups=[proprio]")
    env, venv, model = kickstart_run.build(cfg, tmp_path)
    try:
        assert set(env.observation_space.spaces) == {"proprio", "privileged"}   # the env steps both
        assert set(model.observation_space.spaces) == {"proprio"}              # the student reads one
        model.learn(ROLLOUT)
        labels = model.rollout_buffer.teacher_mean
        np.testing.assert_allclose(labels.reshape(-1, 4), np.broadcast_to(CONST, (labels.size // 4, 4)), atol=1e-6)
    finally:
        venv.close()


@pytest.mark.parametrize("which,words", [
    ("reach", ["trained on task Reach", "this run trains Push", "one teacher run per task"]),
    ("joint", ["task Push, control joint", "'proprio': (30,)", "task Push, control ee", "'proprio': (26,)"]),
    ("twice", ["both teach Push", "one teacher run per task"]),
])
def test_mismatched_teacher_is_refused_by_name_before_any_file(const_teacher, other_teachers, tmp_path, capsys,
                                                               which, words):
    teachers = f"{const_teacher},{const_teacher}" if which == "twice" else str(other_teachers[which])
    run = tmp_path / "refused"
    argv = ["train-teacher", PUSH, f"kickstart.teachers=[{teachers}]", "--run-dir", str(run), "--total-steps", "64",
            *TEACHER]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    if which != "twice":
        assert str(other_teachers[which]) in err
    assert not run.exists()


@pytest.mark.parametrize("override,key", [("kickstart.schedule=cosine", "kickstart.schedule"),
                                          ("kickstart.loss=mse", "kickstart.loss"),
                                          ("kickstart.weight=-1", "kickstart.weight"),
                                          ("kickstart.schedule=exponential", "kickstart.half_life")])
def test_bad_kickstart_settings_name_their_key(const_teacher, override, key):
    with pytest.raises(ConfigError, match=key):
        teacher_train.validate(ks_config(const_teacher, "kickstart.decay_steps=100", override))


def test_a_sweep_resumes_a_kickstarted_run_given_a_relative_teacher_path(const_teacher, other_teachers, tmp_path,
                                                                          monkeypatch):
    from robots_ts.scale.sweep import check_resumable

    config = str(Path(PUSH).resolve())
    monkeypatch.chdir(const_teacher.parent)
    run = tmp_path / "ks_run"
    assert cli(["train-teacher", config, "kickstart.teachers=[const]", "--total-steps", "64", *TEACHER,
                "--run-dir", str(run)]) == 0
    assert load_config(TeacherConfig, run / "config.yaml").kickstart.teachers == [str(const_teacher)]

    def asked(teacher):       # the trial's config as the sweep loads it, the teacher named as given
        return load_config(TeacherConfig, config, [*TEACHER, f"kickstart.teachers=[{teacher}]"])

    check_resumable("train-teacher", asked("const"), run)
    with pytest.raises(ValueError, match="holds a run with other kickstart.teachers"):
        check_resumable("train-teacher", asked(other_teachers["reach"]), run)
