"""train-teacher over Ray actors (env.ray_actors=2): the metrics of the in-process run, resume included."""
import json

import pytest

TINY_PPO = ["env.num_envs=4", "env.num_threads=1", "env.episode_steps=10", "ppo.n_steps=16", "ppo.batch_size=32",
            "ppo.n_epochs=2", "ppo.net_arch=[16,16]", "eval_episodes=2", "eval_envs=2", "checkpoint_every=64",
            "eval_every=128", "torch_threads=1", "--seed", "3"]
TIMING = {"wall_time", "steps_per_s"}


def metrics(run) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_ppo_over_two_actors_learns_and_resumes_as_in_process(cluster, tmp_path):
    """train-teacher env.ray_actors=2 writes the metrics an in-process run writes, and its resume
    (the world generators restored into the actors) continues as the in-process resume does."""
    from robots_ts.cli import main as cli

    runs = {}
    for actors in (0, 2):
        run = tmp_path / f"actors{actors}"
        assert cli(["train-teacher", "configs/teacher/reach.yaml", *TINY_PPO, f"env.ray_actors={actors}",
                    "--total-steps", "128", "--run-dir", str(run)]) == 0
        assert cli(["train-teacher", "--resume", str(run), "--total-steps", "192"]) == 0
        runs[actors] = run
    ours, theirs = metrics(runs[2]), metrics(runs[0])
    assert [r["steps"] for r in ours if "diverged_episodes" in r] == [64, 128, 192]   # rollouts
    assert any(r.get("success_rate") is not None for r in ours)
    assert ours == theirs
