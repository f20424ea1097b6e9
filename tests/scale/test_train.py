"""train-teacher over Ray actors (env.ray_actors=2): the metrics of the in-process run, resume included."""
import json

import pytest

from tests.scale.conftest import run_metrics

TINY_PPO = ["env.num_envs=4", "env.num_threads=1", "env.episode_steps=10", "ppo.n_steps=16", "ppo.batch_size=32",
            "ppo.n_epochs=2", "ppo.net_arch=[16,16]", "eval_episodes=2", "eval_envs=2", "checkpoint_every=64",
            "eval_every=128", "torch_threads=1", "--seed", "3"]


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_ppo_over_two_actors_learns_and_resumes_as_in_process(cluster, tmp_path, monkeypatch):
    """train-teacher env.ray_actors=2 writes the metrics an in-process run writes, and its resume
    (the world generators restored into the actors) continues as the in-process resume does; so
    does env.ray_split=speed with the worlds dealt 3 + 1 (the probe runs, the deal is fixed here;
    tests/scale/test_plan.py checks the choice), whose records say so."""
    from robots_ts.cli import main as cli
    from robots_ts.scale import pool

    monkeypatch.setattr(pool, "PROBE_S", 0.2)
    monkeypatch.setattr(pool, "choose_split", lambda shares, rates, gain: ([(0, 3), (3, 1)], 0.5))
    runs = {}
    for name, extra in (("in_process", ["env.ray_actors=0"]), ("even", ["env.ray_actors=2"]),
                        ("speed", ["env.ray_actors=2", "env.ray_split=speed"])):
        run = tmp_path / name
        assert cli(["train-teacher", "configs/teacher/reach.yaml", *TINY_PPO, *extra,
                    "--total-steps", "128", "--run-dir", str(run)]) == 0
        assert cli(["train-teacher", "--resume", str(run), "--total-steps", "192"]) == 0
        runs[name] = run_metrics(run)
        if name != "in_process":        # each actor's time per step, in every rollout's record
            step_ms = [json.loads(line).get("actor_step_ms") for line in (run / "metrics.jsonl").read_text().splitlines()
                       if "diverged_episodes" in json.loads(line)]
            assert len(step_ms) == 3 and all(len(ms) == 2 and min(ms) > 0 for ms in step_ms)
    ours, theirs = runs["even"], runs["in_process"]
    assert [r["steps"] for r in ours if "diverged_episodes" in r] == [64, 128, 192]   # rollouts
    assert any(r.get("success_rate") is not None for r in ours)
    assert ours == theirs
    dealt = [r.pop("worlds_per_actor") for r in runs["speed"] if "diverged_episodes" in r]
    assert dealt == [[3, 1]] * 3 and runs["speed"] == theirs


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_a_randomized_run_over_two_actors_writes_the_in_process_metrics_resume_included(cluster, tmp_path):
    """Under configs/randomization/default.yaml (physics, joint and action noise, delays, kicks)
    each world draws its per-step noise from its own stream, so two actors write the in-process
    run's metrics, and the resume restores every world's noise stream into the actors."""
    from robots_ts.cli import main as cli

    runs = {}
    for actors in (0, 2):
        run = tmp_path / f"actors{actors}"
        assert cli(["train-teacher", "configs/teacher/reach.yaml", *TINY_PPO, f"env.ray_actors={actors}",
                    "env.randomization=@configs/randomization/default.yaml", "--total-steps", "128",
                    "--run-dir", str(run)]) == 0
        assert cli(["train-teacher", "--resume", str(run), "--total-steps", "192"]) == 0
        runs[actors] = run_metrics(run)
    assert [r["steps"] for r in runs[2] if "diverged_episodes" in r] == [64, 128, 192]
    assert runs[2] == runs[0]
