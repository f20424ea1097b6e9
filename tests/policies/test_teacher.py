"""Teacher training from the command line: checkpoints, evaluation, resume after SIGKILL, bad config."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from robots_ts.cli import main as cli
from robots_ts.evaluate import wilson_interval

TINY = ["env.num_envs=8", "ppo.n_steps=16", "ppo.batch_size=64", "ppo.n_epochs=1", "ppo.net_arch=[32,32]",
        "eval_episodes=8", "eval_envs=8", "torch_threads=1"]


def test_tiny_run_writes_checkpoint_that_ppo_and_evaluate_accept(tmp_path, capsys):
    run = tmp_path / "teacher"
    torch.set_num_threads(2)
    rc = cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), "--total-steps", "512",
              "checkpoint_every=256", "eval_every=512", *TINY])
    assert rc == 0
    assert torch.get_num_threads() == 2      # torch_threads=1 was the run's own
    ck = run / "checkpoints"
    pointer = json.loads((ck / "latest.json").read_text())
    assert pointer["step"] >= 512
    model = PPO.load(ck / "latest.zip")
    assert set(model.observation_space.spaces) == {"proprio", "privileged"}
    assert (run / "learning_curve.png").stat().st_size > 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_success_rate" in r for r in recs)
    assert any("reward_terms" in r and "distance" in r["reward_terms"] for r in recs)
    # The count of physics resets is logged with every rollout (none on Reach).
    assert [r["diverged_episodes"] for r in recs if "reward_terms" in r] == [0] * sum("reward_terms" in r for r in recs)
    capsys.readouterr()
    assert cli(["evaluate", str(run), "--episodes", "6", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["episodes"] == 6 and res["torch_threads"] == 1
    # On another thread count the same episodes run (same digest), and the count is recorded.
    assert cli(["evaluate", str(run), "--episodes", "6", "--json", "--torch-threads", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["torch_threads"] == 2 and two["episodes_sha256"] == res["episodes_sha256"]
    assert res["success_ci95"] == pytest.approx(wilson_interval(round(res["success_rate"] * 6), 6))
    assert res["mean_episode_length"] > 0


def test_run_without_observation_normalization_checkpoints_resumes_and_evaluates(tmp_path, capsys):
    run = tmp_path / "raw_obs"
    args = ["checkpoint_every=256", "eval_every=256", "ppo.norm_obs=false", *TINY]
    assert cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), "--total-steps", "256", *args]) == 0
    stats = json.loads((run / "checkpoints" / "latest.norm.json").read_text()) \
        if (run / "checkpoints" / "latest.norm.json").exists() else None
    assert stats is None or stats["obs"] == {}
    assert cli(["train-teacher", "--resume", str(run), "--total-steps", "512"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] >= 512
    capsys.readouterr()
    assert cli(["evaluate", str(run), "--episodes", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 4


def test_resume_after_sigkill_continues_step_count(tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "robots_ts.cli", "train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run),
           "--total-steps", "100000", "checkpoint_every=256", "eval_every=100000", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pointer = run / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if pointer.exists() and json.loads(pointer.read_text())["step"] >= 768:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(pointer.read_text())["step"]
    assert killed_at >= 768
    # Every checkpoint the pointer names is complete and loadable.
    PPO.load(run / "checkpoints" / json.loads(pointer.read_text())["name"])
    rc = cli(["train-teacher", "--resume", str(run), "--total-steps", str(killed_at + 512)])
    assert rc == 0
    final = json.loads(pointer.read_text())["step"]
    assert killed_at + 512 <= final < killed_at + 512 + 8 * 16 * 2
    model = PPO.load(run / "checkpoints" / "latest.zip")
    assert model.num_timesteps == final
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["steps"] for r in recs]
    assert steps == sorted(steps) and steps[-1] == final
    # Every rollout line after the first carries the losses of the update before it, the first
    # rollout after the resume included (its update ran before the kill, in the killed process).
    rollouts = [r for r in recs if "steps_per_s" in r]
    assert any(r["steps"] > killed_at for r in rollouts[1:])
    assert [r["steps"] for r in rollouts[1:] if not {"value_loss", "policy_gradient_loss"} <= r.keys()] == []


@pytest.mark.parametrize("override,match", [
    (["ppo.learnin_rate=0.1"], r"unknown config key 'ppo.learnin_rate'"),
    (["ppo.n_epochs=lots"], r"'ppo.n_epochs' expects int"),
    (["env.num_envs=2.5"], r"'env.num_envs' expects int"),
    (["ppo.activation=swish"], r"ppo.activation: expected one of"),
])
def test_bad_config_fails_before_training(tmp_path, capsys, override, match):
    run = tmp_path / "bad"
    rc = cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), *override])
    assert rc == 2
    import re

    assert re.search(match, capsys.readouterr().err)
    assert not run.exists()


def test_teacher_rejects_env_with_other_observation_spec(tmp_path):
    run = tmp_path / "t"
    assert cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), "--total-steps", "128",
                "checkpoint_every=128", "eval_every=128", *TINY]) == 0
    from robots_ts.policies.teacher.load import load_teacher

    teacher = load_teacher(run, "latest")
    with pytest.raises(ValueError, match="privileged.*shape"):
        teacher.act({"proprio": np.zeros((2, 23), np.float32), "privileged": np.zeros((2, 22), np.float32)})
    with pytest.raises(ValueError, match="does not provide"):
        teacher.act({"proprio": np.zeros((2, 23), np.float32)})
    pointer = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert Path(teacher.checkpoint).name == f"{pointer['name']}.zip"      # the set latest.json names


def test_checkpoint_loads_and_resumes_when_its_pickled_schedule_module_is_gone(tmp_path, capsys):
    """SB3 pickles the learning-rate schedule by module path; loaders replace it from the config, so
    a checkpoint outlives a moved module (and loading runs no pickled code of ours)."""
    import base64
    import zipfile

    from robots_ts.policies.teacher.checkpoint import publish_manifest

    run = tmp_path / "teacher"
    assert cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), "--total-steps", "256",
                "checkpoint_every=256", "eval_every=100000", *TINY]) == 0
    module = b"robots_ts.policies.teacher.train"
    gone = b"robots_ts.policies.teacher.xxxxx"          # same length: the pickle stays well-formed
    for path in (run / "checkpoints").glob("*.zip"):
        with zipfile.ZipFile(path) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
        data = json.loads(files["data"])
        patched = 0
        for key in ("learning_rate", "lr_schedule"):
            raw = base64.b64decode(data[key][":serialized:"])
            if module in raw:
                data[key][":serialized:"] = base64.b64encode(raw.replace(module, gone)).decode()
                patched += 1
        assert patched, "the saved schedule no longer names our module: this test needs a new target"
        files["data"] = json.dumps(data).encode()
        with zipfile.ZipFile(path, "w") as zf:
            for n, b in files.items():
                zf.writestr(n, b)
        # Re-publish the set (the edit stands for an older save, not for damage the manifest must catch).
        manifest = json.loads((path.parent / f"{path.stem}.manifest.json").read_text())
        publish_manifest(path.parent, path.stem, list(manifest["members"]), manifest["step"])
    with pytest.raises(ModuleNotFoundError):
        PPO.load(run / "checkpoints" / "latest.zip")                # what a plain load would do
    capsys.readouterr()
    assert cli(["evaluate", str(run), "--episodes", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 4
    assert cli(["train-teacher", "--resume", str(run), "--total-steps", "512"]) == 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] >= 512


def test_learning_without_tensorboard_leaves_no_sb3_folder_in_the_temporary_directory(tmp_path, monkeypatch):
    import tempfile

    from robots_ts.config import load_config
    from robots_ts.envs import make_batched_env
    from robots_ts.policies.teacher.config import TeacherConfig
    from robots_ts.policies.teacher.train import make_model, normalized

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    cfg = load_config(TeacherConfig, "configs/teacher/reach.yaml", TINY)
    venv = normalized(make_batched_env(cfg.env, seed=0), cfg)
    model = make_model(cfg, venv)
    model.learn(2 * cfg.ppo.n_steps * cfg.env.num_envs)
    venv.close()
    assert model.num_timesteps == 2 * cfg.ppo.n_steps * cfg.env.num_envs
    assert [p.name for p in tmp_path.glob("SB3-*")] == []
