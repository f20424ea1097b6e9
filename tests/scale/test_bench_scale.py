"""``robots-ts bench scale``: a tiny run writes the record the README describes."""
import json

import pytest

from robots_ts.bench.scale import main


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_a_tiny_scale_bench_reports_rates_ratios_and_costs(cluster, tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert main(["--json", "--num-envs", "4", "--blocks", "2", "--block-steps", "5", "--ppo-steps", "256",
                 "--ppo-block-steps", "256", "--ppo-pairs", "1", "--actors", "1", "--settle-s", "0",
                 "--warmup-pairs", "2", "--out", str(out),
                 "ppo.batch_size=64"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads(out.read_text())
    env, ppo = res["env_steps_per_s"], res["ppo_steps_per_s"]
    assert env["in_process_1_thread"] > 0 and env["in_process_all_threads"] > 0 and env["ray"]["1"] > 0
    assert ppo["in_process_1_thread"] > 0 and ppo["ray"]["1"] > 0
    one = res["one_actor"]
    assert len(one["env_ratios"]) == 2 and one["env_cost"] == pytest.approx(1 - one["env_ratio"], abs=1e-3)
    assert res["warmup"]["pairs"] == 2 and len(res["warmup"]["env_ratios"]) == 2   # stepped, not measured
    assert res["parallel_efficiency"] == {} and res["ray_start_s"] is None     # the fixture's instance
