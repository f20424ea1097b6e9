"""``robots-ts bench residual``: the check from given success figures, and one tiny end-to-end run on
Reach through the CLI (a random-weight depth student as the base, 10-step episodes), extended to a
larger budget by resuming its runs, then reused."""
import json

import pytest

from robots_ts.bench.residual import assemble
from robots_ts.cli import main as cli
from robots_ts.evaluate import wilson_interval
from tests.export.conftest import make_student_run
from tests.policies.test_residual import TINY


def _eval(rate, episodes=200, sha="same"):
    return {"success_rate": rate, "episodes": episodes, "episodes_sha256": sha}


def test_assembly_passes_when_every_seed_gains_15_points():
    res = assemble(_eval(0.40), {"residual": {0: _eval(0.60), 1: _eval(0.58), 2: _eval(0.70)},
                                 "finetune": {0: _eval(0.45), 1: _eval(0.30), 2: _eval(0.50)}}, [0, 1, 2])
    c = res["checks"]["residual_gain"]
    assert c["per_seed_gain"] == pytest.approx([0.2, 0.18, 0.3]) and c["per_seed_passed"] == [True] * 3
    assert c["mean_gain"] == pytest.approx(0.2267, abs=1e-4) and c["mean_passed"] and c["passed"]
    assert res["finetune_beside"]["per_seed_gain"] == pytest.approx([0.05, -0.1, 0.1])
    assert res["finetune_beside"]["residual_minus_finetune"]["mean"] == pytest.approx(0.21)
    assert res["per_seed"]["1"]["residual"]["success_ci95"] == pytest.approx(list(wilson_interval(116, 200)), abs=1e-4)
    assert res["summary"]["residual"]["per_seed"] == [0.6, 0.58, 0.7] and res["episodes"]["identical"]


def test_assembly_fails_on_one_short_seed_and_on_different_episodes():
    evals = {"residual": {0: _eval(0.80), 1: _eval(0.50)}, "finetune": {0: _eval(0.4), 1: _eval(0.4)}}
    c = assemble(_eval(0.40), evals, [0, 1])["checks"]["residual_gain"]
    assert c["per_seed_passed"] == [True, False] and c["mean_passed"] and not c["passed"]   # mean +0.25
    evals["residual"][1] = _eval(0.80, sha="other")
    res = assemble(_eval(0.40), evals, [0, 1])
    assert not res["episodes"]["identical"] and not res["checks"]["residual_gain"]["passed"]


def test_assembly_with_the_finetune_on_some_seeds_only():
    res = assemble(_eval(0.40), {"residual": {0: _eval(0.60), 1: _eval(0.50), 2: _eval(0.70)},
                                 "finetune": {1: _eval(0.45)}}, [0, 1, 2])
    c = res["checks"]["residual_gain"]
    assert c["per_seed_gain"] == pytest.approx([0.2, 0.1, 0.3]) and not c["passed"]    # seed 1 short
    f = res["finetune_beside"]
    assert f["seeds"] == [1] and f["per_seed_gain"] == pytest.approx([0.05]) and f["mean_gain"] == pytest.approx(0.05)
    assert f["residual_minus_finetune"]["per_seed"] == pytest.approx([0.05])     # paired on seed 1 only
    assert "finetune" not in res["per_seed"]["0"] and res["per_seed"]["1"]["residual_minus_finetune"] == 0.05
    assert res["summary"]["finetune"]["per_seed"] == [0.45] and set(res["episodes"]["sha256"]) == \
        {"base", "residual_s0", "residual_s1", "residual_s2", "finetune_s1"}
    none = assemble(_eval(0.40), {"residual": {0: _eval(0.60)}, "finetune": {}}, [0])
    assert none["finetune_beside"] is None and "finetune" not in none["summary"] and none["checks"]["residual_gain"]["passed"]


def test_bench_end_to_end_on_reach(tmp_path, capsys):
    base = make_student_run(tmp_path / "base", "depth", 0, 41)
    out = tmp_path / "bench"
    argv = ["bench", "residual", "configs/residual/reach_depth.yaml", f"base={base}", *TINY, "warmup_steps=32",
            "finetune_ppo.learning_rate=3e-5", "--seeds", "0", "1", "--episodes", "4", "--num-envs", "2",
            "--eval-seed", "5", "--out", str(out), "--json"]
    assert cli([*argv, "--total-steps", "32"]) == 0
    capsys.readouterr()
    # Every evaluation ran on one torch thread, and its cached record says so.
    assert json.loads((out / "evals" / "base.json").read_text())["key"]["torch_threads"] == 1
    assert cli([*argv, "--total-steps", "64"]) == 0         # every run resumed from its checkpoint to 64 steps
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads((out / "residual.json").read_text()) and (out / "residual.png").stat().st_size > 0
    s = res["settings"]
    assert s["seeds"] == [0, 1] and s["total_steps"] == 64 and s["episodes"] == 4 and s["eval_seed"] == 5
    assert res["task"] == "Reach" and res["base_run"] == str(base.resolve())
    assert s["finetune_ppo"] == {"learning_rate": 3e-5}     # the fine-tune's own, resumed and reused with
    # Each refinement is evaluated at the checkpoint its whole budget trained (latest), by default.
    from robots_ts.policies.teacher.load import resolve_checkpoint
    from robots_ts.runs import sha256_of

    assert s["checkpoint"] == "latest"
    key = json.loads((out / "evals" / "finetune_s1_latest.json").read_text())["key"]
    assert key["checkpoint"] == "latest" and key["sha256"] == sha256_of(resolve_checkpoint(out / "finetune_s1", "latest"))
    for seed in ("0", "1"):
        row = res["per_seed"][seed]
        for arm in ("residual", "finetune"):
            assert row[arm]["run"] == str(out / f"{arm}_s{seed}") and row[arm]["mode"] == arm
            assert row[arm]["steps"] == 64 and row[arm]["train_wall_s"] > 0 and row[arm]["episodes"] == 4
            assert json.loads((out / f"{arm}_s{seed}" / "run.json").read_text())["kind"] == arm
        assert row["gain_residual"] == pytest.approx(row["residual"]["success"] - res["base"]["success"])
    # Base, residuals and fine-tuned students ran the same held-out episodes.
    assert res["episodes"]["identical"] and len(res["episodes"]["sha256"]) == 5
    assert len(set(res["episodes"]["sha256"].values())) == 1
    assert set(res["checks"]) == {"residual_gain"} and res["checks"]["residual_gain"]["threshold"] == 0.15
    assert {"per_seed_gain", "mean_gain", "residual_minus_finetune"} <= set(res["finetune_beside"])
    # A rerun reuses runs and evaluations: same figures, nothing retrained.
    stamp = (out / "finetune_s1" / "metrics.jsonl").stat().st_mtime_ns
    assert cli(argv + ["--total-steps", "64"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [again["per_seed"][s][a]["success"] for s in ("0", "1") for a in ("residual", "finetune")] == \
        [res["per_seed"][s][a]["success"] for s in ("0", "1") for a in ("residual", "finetune")]
    assert all(again["per_seed"][s][a]["this_call_s"] < 1.0 for s in ("0", "1") for a in ("residual", "finetune"))
    assert (out / "finetune_s1" / "metrics.jsonl").stat().st_mtime_ns == stamp
    # A budget that is not a whole number of rollouts (of 32 steps here) ends at the next one: runs
    # that trained 64 steps are what --total-steps 50 asks for, and are reused.
    assert cli(argv + ["--total-steps", "50"]) == 0
    odd = json.loads(capsys.readouterr().out)
    assert all(odd["per_seed"][s][a]["steps"] == 64 for s in ("0", "1") for a in ("residual", "finetune"))
    assert (out / "finetune_s1" / "metrics.jsonl").stat().st_mtime_ns == stamp
    # The fine-tuning baseline on seed 0 only: seed 1's fine-tune is neither trained nor reported.
    assert cli(argv + ["--total-steps", "64", "--finetune-seeds", "0"]) == 0
    sub = json.loads(capsys.readouterr().out)
    assert sub["settings"]["finetune_seeds"] == [0] and sub["finetune_beside"]["seeds"] == [0]
    assert "finetune" not in sub["per_seed"]["1"] and sub["per_seed"]["0"]["finetune"]["success"] == \
        res["per_seed"]["0"]["finetune"]["success"]
    # --no-finetune: the residuals alone, reused; no fine-tune is reported, nor counted beside them.
    assert cli(argv + ["--total-steps", "64", "--no-finetune"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["settings"]["finetune_seeds"] == [] and all("finetune" not in alone["per_seed"][s] for s in ("0", "1"))
    assert [alone["per_seed"][s]["residual"]["success"] for s in ("0", "1")] == \
        [res["per_seed"][s]["residual"]["success"] for s in ("0", "1")]


def test_bench_refuses_mode_and_seed_overrides_and_another_run_in_out(tmp_path, capsys):
    base = make_student_run(tmp_path / "base", "depth", 0, 42)
    assert cli(["bench", "residual", "configs/residual/reach_depth.yaml", f"base={base}", "--seeds", "0", "1",
                "--finetune-seeds", "2", "--out", str(tmp_path / "b")]) == 2
    assert "--finetune-seeds [2]: expected some of --seeds [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    # --finetune-seeds names at least one seed, and is not given with --no-finetune.
    for flags in (["--finetune-seeds"], ["--finetune-seeds", "0", "--no-finetune"]):
        with pytest.raises(SystemExit):
            cli(["bench", "residual", "configs/residual/reach_depth.yaml", f"base={base}", *flags,
                 "--out", str(tmp_path / "b")])
        assert "--finetune-seeds" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    for bad in ("mode=finetune", "seed=3"):
        assert cli(["bench", "residual", "configs/residual/reach_depth.yaml", f"base={base}", bad,
                    "--out", str(tmp_path / "b")]) == 2
        assert bad.split("=")[0] in capsys.readouterr().err
    from robots_ts.bench.residual import check_reusable
    from robots_ts.config import ConfigError, load_config, save_config
    from robots_ts.policies.residual.config import ResidualConfig

    cfg = load_config(ResidualConfig, "configs/residual/reach_depth.yaml", [f"base={base}", *TINY])
    (tmp_path / "r").mkdir()
    save_config(cfg, tmp_path / "r" / "config.yaml")
    check_reusable(cfg, tmp_path / "r")                                   # the same run: fine
    from dataclasses import replace

    with pytest.raises(ConfigError, match="alpha"):
        check_reusable(replace(cfg, alpha=[0.3]), tmp_path / "r")
    with pytest.raises(ConfigError, match="mode"):
        check_reusable(replace(cfg, mode="finetune"), tmp_path / "r")
    # A fine-tune records the PPO settings it trained with: finetune_ppo's, which must match too.
    from robots_ts.policies.residual.train import mode_ppo

    ft = replace(cfg, mode="finetune", finetune_ppo={"learning_rate": 1e-5})
    (tmp_path / "f").mkdir()
    save_config(replace(ft, ppo=mode_ppo(ft)), tmp_path / "f" / "config.yaml")
    check_reusable(ft, tmp_path / "f")
    with pytest.raises(ConfigError, match="ppo"):
        check_reusable(replace(ft, finetune_ppo={"learning_rate": 2e-5}), tmp_path / "f")
    check_reusable(replace(cfg, finetune_ppo={"learning_rate": 2e-5}), tmp_path / "r")   # unused by a residual
    with pytest.raises(ConfigError, match="point_mlp"):
        check_reusable(replace(cfg, point_mlp=[8]), tmp_path / "r")
    check_reusable(replace(ft, point_mlp=[8]), tmp_path / "f")                          # unused by a fine-tune
