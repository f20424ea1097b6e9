"""``robots-ts bench scale``: a tiny run writes the record the README describes."""
import json
import os

import pytest

from robots_ts.bench.scale import main


def efficiency_of(rate_k: float, rate_1: float, k: int):
    """``rate_k / (k rate_1)`` of two rates the record rounds to 0.1 steps/s, as the record's own
    figure (rounded to 3 decimals) may differ from it: by that rounding, relative to the rates. On a
    loaded machine a starved worker steps a few dozen times a second, and it is not small."""
    eff = rate_k / (k * rate_1)
    return pytest.approx(eff, abs=5e-4 + eff * (0.05 / rate_k + 0.05 / rate_1))


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


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_compare_splits_deals_the_worlds_of_a_slow_actor_by_speed_and_times_both_deals(cluster, tmp_path, capsys,
                                                                                       monkeypatch):
    """``--compare-splits --slow-actor 3 --pin-actors``: the last of 2 actors steps three times
    slower, the probe deals it one world of four, and both deals are timed in alternating blocks.
    ``--out`` holds the record so far after each actor count, then the whole one."""
    import robots_ts.runs

    written, write = [], robots_ts.runs.atomic_write_json

    def keep(path, rec):            # what each write put in the file, then the write itself
        written.append(json.loads(json.dumps(rec)))
        write(path, rec)

    monkeypatch.setattr(robots_ts.runs, "atomic_write_json", keep)
    out = tmp_path / "scale.json"
    assert main(["--json", "--num-envs", "4", "--blocks", "2", "--block-steps", "5", "--ppo-steps", "256",
                 "--ppo-block-steps", "256", "--ppo-pairs", "1", "--actors", "1,2", "--settle-s", "0",
                 "--compare-splits", "--slow-actor", "3", "--pin-actors", "--out", str(out), "ppo.batch_size=64"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert [w["complete"] for w in written] == [False, False, True] and written[-1] == res
    assert list(written[0]["env_steps_per_s"]["ray"]) == ["1"] and written[0]["parallel_efficiency"] == {}
    assert written[1]["parallel_efficiency"] == res["parallel_efficiency"] and json.loads(out.read_text()) == res
    assert "bench scale: 2 actors measured" in captured.err
    sp = res["splits"]["2"]
    assert res["pinned_cpus"]["2"] == [[0], [1 % os.cpu_count()]]       # actor k on core k mod cores
    assert res["slow_actor"] == 3.0 and sp["worlds_even"] == [2, 2]
    assert sp["balance"]["worlds"] == [3, 1] and sp["balance"]["applied"]
    assert sp["balance"]["rates"][0] > 1.5 * sp["balance"]["rates"][1]
    assert len(sp["ratios"]) == 2 and sp["even"] > 0 and sp["speed"] > 0
    assert res["parallel_efficiency_speed"]["2"] == efficiency_of(sp["speed"], res["env_steps_per_s"]["ray"]["1"], 2)
    with pytest.raises(SystemExit):
        main(["--slow-actor", "0.5"])
    assert "--slow-actor: expected a factor >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_the_process_ceiling_runs_independent_workers_together_and_needs_the_one_process_baseline(
        cluster, tmp_path, capsys):
    """``--processes``: K workers (Ray tasks) of their own worlds each, whose timed loops start
    together; the efficiency is the summed rate over K times the one worker's. A count list
    without 1, or a count the cluster cannot place at once, is refused by name."""
    out = tmp_path / "ceiling.json"
    assert main(["--processes", "1,2", "--num-envs", "2", "--block-steps", "5", "--json", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads(out.read_text())
    rates = res["env_steps_per_s"]
    assert len(rates["1"]["each"]) == 1 and len(rates["2"]["each"]) == 2
    assert rates["2"]["sum"] == pytest.approx(sum(rates["2"]["each"]), abs=0.2)
    assert res["efficiency"]["2"] == efficiency_of(rates["2"]["sum"], rates["1"]["sum"], 2)
    assert 0 <= res["start_spread_s"]["2"] < 0.5          # behind the barrier, not one after the other
    with pytest.raises(SystemExit):
        main(["--processes", "2,4"])
    assert "--processes: expected positive counts including 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--processes 4 needs 4 CPUs, the Ray cluster has 2"):
        main(["--processes", "1,4", "--num-envs", "2", "--block-steps", "5"])
