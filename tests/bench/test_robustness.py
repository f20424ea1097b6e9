"""``robots-ts bench robustness``: retained success and the two checks from given success figures,
and one tiny end-to-end run through the CLI (runs reused on a rerun)."""
import json

import pytest

from robots_ts.bench.robustness import assemble, retained
from robots_ts.cli import main as cli
from robots_ts.config import ConfigError, RandomizationConfig, to_dict
from robots_ts.evaluate import load_randomization, wilson_interval


def _evals(figures: dict, episodes: int = 200) -> dict:
    """{condition: {seed: (nominal, strong)}} -> the evaluation results assemble() reads."""
    return {cond: {seed: {"nominal": {"success_rate": n, "episodes": episodes},
                          "strong": {"success_rate": s, "episodes": episodes, "wall_s": 1.5}}
                   for seed, (n, s) in seeds.items()} for cond, seeds in figures.items()}


def test_retained_is_strong_over_nominal():
    assert retained(0.8, 0.6) == pytest.approx(0.75)
    assert retained(0.5, 0.6) == pytest.approx(1.2)      # better under noise: kept, not capped
    assert retained(0.0, 0.3) is None                   # nothing to retain


def test_assembly_passes_both_checks_when_randomized_students_hold_up():
    res = assemble(_evals({"randomized": {0: (0.90, 0.81), 1: (0.80, 0.76), 2: (1.00, 0.85)},
                           "nominal": {0: (0.95, 0.38), 1: (0.90, 0.45), 2: (1.00, 0.60)}}), [0, 1, 2])
    r0 = res["per_seed"]["randomized"]["0"]
    assert r0["retained"] == pytest.approx(0.9) and r0["success_strong"] == 0.81
    assert r0["success_strong_ci95"] == pytest.approx(list(wilson_interval(162, 200)), abs=1e-4)
    assert r0["success_nominal_ci95"] == pytest.approx(list(wilson_interval(180, 200)), abs=1e-4)
    assert r0["eval_strong_wall_s"] == 1.5 and r0["episodes_strong"] == 200
    rand, nom = res["conditions"]["randomized"], res["conditions"]["nominal"]
    assert rand["retained"]["per_seed"] == pytest.approx([0.9, 0.95, 0.85])
    assert rand["retained"]["mean"] == pytest.approx(0.9) and rand["retained"]["std"] == pytest.approx(0.0408, abs=1e-4)
    assert rand["success_nominal"]["mean"] == pytest.approx(0.9) and rand["success_strong"]["per_seed"] == [0.81, 0.76, 0.85]
    assert rand["retained_of_means"] == pytest.approx(2.42 / 2.7)
    assert nom["retained"]["per_seed"] == pytest.approx([0.4, 0.5, 0.6])
    assert nom["retained"]["mean"] == pytest.approx(0.5)
    a, b = res["checks"]["randomized_keep_80pct"], res["checks"]["nominal_loses_more"]
    assert a["passed"] and a["mean_passed"] and a["per_seed_passed"] == [True, True, True]
    assert a["mean_retained"] == pytest.approx(0.9) and a["threshold"] == 0.8
    assert b["passed"] and b["difference"] == pytest.approx(0.4)
    assert b["nominal_mean_retained"] == pytest.approx(0.5) and b["randomized_mean_retained"] == pytest.approx(0.9)
    assert b["p_value"] == pytest.approx(1 / 8)          # every seed's randomized student retains more


def test_assembly_fails_check_a_on_one_weak_seed_and_check_b_when_nominal_holds_up():
    res = assemble(_evals({"randomized": {0: (1.0, 0.95), 1: (0.8, 0.56), 2: (0.9, 0.9)},
                           "nominal": {0: (1.0, 1.0), 1: (0.9, 0.9), 2: (0.8, 0.8)}}), [0, 1, 2])
    a, b = res["checks"]["randomized_keep_80pct"], res["checks"]["nominal_loses_more"]
    # Mean retained (0.95 + 0.7 + 1) / 3 = 0.883 >= 0.8, but seed 1 keeps only 70%.
    assert a["mean_retained"] == pytest.approx(0.8833, abs=1e-4) and a["mean_passed"]
    assert a["per_seed_passed"] == [True, False, True] and not a["passed"]
    assert b["nominal_mean_retained"] == pytest.approx(1.0) and not b["passed"] and b["p_value"] == 1.0


def test_assembly_with_a_seed_that_never_succeeds_nominally():
    res = assemble(_evals({"randomized": {0: (0.0, 0.0), 1: (0.9, 0.9)}, "nominal": {0: (0.5, 0.1), 1: (0.5, 0.2)}},
                          episodes=10), [0, 1])
    rand = res["conditions"]["randomized"]
    assert rand["retained"]["per_seed"] == [None, 1.0] and rand["retained"]["mean"] == 1.0
    a = res["checks"]["randomized_keep_80pct"]
    # Seed 0 does not work nominally: neither check can pass on it, whatever the ratios say.
    assert a["per_seed_working"] == [False, True]
    assert a["per_seed_passed"] == [False, True] and not a["passed"] and not a["mean_passed"]
    assert res["per_seed"]["randomized"]["0"]["success_nominal_ci95"] == [0.0, pytest.approx(0.2775, abs=1e-4)]
    assert not res["checks"]["nominal_loses_more"]["passed"]


TINY = ["teacher=scripted", "env.num_envs=4", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1",
        "env.episode_steps=30", "torch_threads=1", "dagger.iterations=1", "dagger.steps_per_iteration=8",
        "dagger.chunk_steps=8", "dagger.eval_episodes=4", "dagger.epochs=1", "dagger.final_epochs=1",
        "dagger.batch_size=32", "student.cnn_channels=[4,8]", "student.cnn_kernels=[3,3]", "student.cnn_strides=[2,2]",
        "student.feature_dim=16", "student.proprio_mlp=[16]", "student.head_mlp=[16]"]


def test_bench_end_to_end_on_a_tiny_config(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "robustness", "configs/student/reach_depth.yaml", *TINY, "--seeds", "0", "1",
            "--episodes", "4", "--num-envs", "2", "--eval-seed", "7", "--out", str(out), "--json", "--no-progress",
            "dagger.lr=0.002"]
    assert cli(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads((out / "robustness.json").read_text())
    assert (out / "robustness.png").stat().st_size > 0
    s = res["settings"]
    assert s["seeds"] == [0, 1] and s["episodes"] == 4 and s["eval_seed"] == 7 and "dagger.lr=0.002" in s["overrides"]
    assert s["train_preset"]["name"] == "default.yaml" and s["eval_preset"]["name"] == "strong.yaml"
    strong, default = (load_randomization(f"configs/randomization/{n}.yaml") for n in ("strong", "default"))
    assert s["eval_preset"]["values"] == to_dict(strong) and s["train_preset"]["values"] == to_dict(default)
    for seed in ("0", "1"):
        for cond, prefix in (("randomized", "rand"), ("nominal", "nominal")):
            row = res["per_seed"][cond][seed]
            assert row["run"] == str(out / f"{prefix}_s{seed}") and row["episodes_strong"] == 4
            assert row["train_wall_s"] > 0 and 0 <= row["success_strong"] <= 1
    # Each condition trained under its own randomization; the evaluations ran under the one named.
    from robots_ts.config import load_run_config
    from robots_ts.policies.distill.config import StudentConfig

    assert load_run_config(StudentConfig, out / "rand_s1" / "config.yaml").env.randomization == default
    assert load_run_config(StudentConfig, out / "nominal_s1" / "config.yaml").env.randomization == RandomizationConfig()
    cached = json.loads((out / "evals" / "nominal_s0_strong.json").read_text())
    assert cached["result"]["randomization"]["name"] == "strong.yaml"
    assert json.loads((out / "evals" / "rand_s0_nominal.json").read_text())["result"]["randomization"]["nominal"]
    assert set(res["checks"]) == {"randomized_keep_80pct", "nominal_loses_more"}
    # A rerun reuses the runs and the cached evaluations: same figures, nothing retrained.
    stamp = (out / "rand_s0" / "metrics.jsonl").stat().st_mtime_ns
    assert cli(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["per_seed"] == res["per_seed"] and again["checks"] == res["checks"]
    assert (out / "rand_s0" / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_bench_refuses_a_randomization_override_and_a_reused_run_of_another_condition(tmp_path, capsys):
    argv = ["bench", "robustness", "configs/student/reach_depth.yaml", *TINY, "--out", str(tmp_path),
            "env.randomization=@configs/randomization/default.yaml"]
    assert cli(argv) == 2
    assert "--train" in capsys.readouterr().err
    from robots_ts.bench.distill import check_reusable
    from robots_ts.bench.robustness import condition_config
    from robots_ts.config import load_config, save_config
    from robots_ts.policies.distill.config import StudentConfig

    cfg = load_config(StudentConfig, "configs/student/reach_depth.yaml", TINY)
    (tmp_path / "rand_s0").mkdir()
    save_config(condition_config(cfg, 0, RandomizationConfig()), tmp_path / "rand_s0" / "config.yaml")
    (tmp_path / "rand_s0" / "run.json").write_text(json.dumps({"kind": "student", "format": 1}))
    with pytest.raises(ConfigError, match="env.randomization"):
        check_reusable(condition_config(cfg, 0, RandomizationConfig(action_delay=[0, 1])), tmp_path / "rand_s0")
    with pytest.raises(ConfigError, match="seed"):
        check_reusable(condition_config(cfg, 1, RandomizationConfig()), tmp_path / "rand_s0")
    check_reusable(condition_config(cfg, 0, RandomizationConfig()), tmp_path / "rand_s0")   # the same: fine


def test_a_student_that_fails_in_the_nominal_env_is_not_called_robust():
    """0.09 under the preset over 0.01 nominal is a ratio of 9, not robustness."""
    evals = {"randomized": {s: {"nominal": {"success_rate": 0.01, "episodes": 200},
                                "strong": {"success_rate": 0.09, "episodes": 200}} for s in (0, 1, 2)},
             "nominal": {s: {"nominal": {"success_rate": 0.94, "episodes": 200},
                             "strong": {"success_rate": 0.03, "episodes": 200}} for s in (0, 1, 2)}}
    res = assemble(evals, [0, 1, 2])
    a, b = res["checks"]["randomized_keep_80pct"], res["checks"]["nominal_loses_more"]
    assert a["per_seed_working"] == [False, False, False] and not a["passed"] and not a["mean_passed"]
    assert not b["passed"]
