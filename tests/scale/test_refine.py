"""refine over Ray actors (env.ray_actors=2): the residual run of the in-process refinement, resume included."""
import json

import pytest

from tests.export.conftest import make_student_run
from tests.scale.conftest import run_metrics

TINY = ["env.num_envs=4", "env.num_threads=1", "ppo.n_steps=16", "ppo.batch_size=32", "ppo.n_epochs=2",
        "ppo.net_arch=[16]", "eval_episodes=2", "eval_envs=2", "checkpoint_every=64", "eval_every=128",
        "warmup_steps=64", "torch_threads=1", "--seed", "3"]


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_a_residual_over_two_actors_refines_and_resumes_as_in_process(cluster, tmp_path):
    """The base (a recurrent depth student) acts in the driver on every world's observations,
    which the actors render: the run's metrics, its checkpoint and its resume are the in-process
    run's."""
    from robots_ts.cli import main as cli

    base = make_student_run(tmp_path / "base", "depth", 8, 12)
    runs = {}
    for actors in (0, 2):
        run = tmp_path / f"actors{actors}"
        assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={base}", *TINY,
                    f"env.ray_actors={actors}", "--total-steps", "128", "--run-dir", str(run)]) == 0
        assert cli(["refine", "--resume", str(run), "--total-steps", "192"]) == 0
        runs[actors] = run
    # The run stepped its worlds on the actors: each rollout's record times them.
    raw = {a: [json.loads(line) for line in (runs[a] / "metrics.jsonl").read_text().splitlines()] for a in runs}
    assert all(len(r["actor_step_ms"]) == 2 for r in raw[2] if "residual_share" in r)
    assert not any("actor_step_ms" in r for r in raw[0])
    ours, theirs = run_metrics(runs[2]), run_metrics(runs[0])
    assert [r["steps"] for r in ours if "residual_share" in r] == [64, 128, 192]
    assert [r["residual_share"] for r in ours if "residual_share" in r] == [0.0, 1.0, 1.0]   # after the warm-up
    assert any(r.get("eval_success_rate") is not None for r in ours)
    assert ours == theirs
    assert (runs[2] / "checkpoints" / "best.zip").exists()
