"""``robots-ts bench distill``: the DAgger > BC permutation test on hand-made inputs, and both arms
distilled under the randomization the overrides give."""
import numpy as np
import pytest

from robots_ts.bench.distill import dagger_vs_bc, main, parse_with_overrides, permutation_test


def test_paired_sign_flip_test_is_exact():
    # DAgger above BC on every one of 3 seeds: only the identity of the 2**3 flips is as extreme.
    res = permutation_test([0.6, 0.7, 0.9], [0.5, 0.4, 0.3])
    assert res["p_value"] == pytest.approx(1 / 8) and res["exact"] and res["permutations"] == 8
    assert res["mean_difference_points"] == pytest.approx(100 * (2.2 - 1.2) / 3, abs=0.01)
    assert res["method"] == "paired sign-flip"
    # 5 seeds: 1/32. One seed the other way: the flips reaching the observed mean are 2 of 8.
    assert permutation_test([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])["p_value"] == pytest.approx(1 / 32)
    assert permutation_test([0.5, 0.5, 0.4], [0.3, 0.3, 0.5])["p_value"] == pytest.approx(2 / 8)
    # No difference, or BC ahead, is no evidence.
    assert permutation_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])["p_value"] == 1.0
    assert permutation_test([0.3, 0.4, 0.5], [0.6, 0.7, 0.9])["p_value"] == 1.0
    assert permutation_test([0.6, 0.4, 0.5], [0.5, 0.5, 0.5])["p_value"] >= 0.5


def test_unpaired_label_permutation_test_is_exact():
    # Complete separation: 1 of the C(6, 3) = 20 splits.
    res = permutation_test([0.6, 0.7, 0.9], [0.5, 0.4, 0.3], paired=False)
    assert res["p_value"] == pytest.approx(1 / 20) and res["permutations"] == 20
    assert res["method"] == "label permutation"
    assert permutation_test([0.2] * 3, [0.2] * 3, paired=False)["p_value"] == 1.0
    with pytest.raises(ValueError):
        permutation_test([], [1.0])
    with pytest.raises(ValueError, match="equal lengths"):
        permutation_test([1.0, 2.0], [1.0])


def test_many_seeds_are_resampled_with_a_fixed_generator():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 1.0, 20), rng.uniform(0.0, 0.5, 20)      # 2**20 flips: more than enumerated
    res = permutation_test(a, b)
    assert not res["exact"] and res["permutations"] == 10_000
    assert res["p_value"] == pytest.approx(1 / 10_001)               # no random flip reaches all-positive
    assert permutation_test(a, b) == res                              # the same resamples every time
    null = permutation_test(a, a[::-1])
    assert 0.3 < null["p_value"] <= 1.0


def test_dagger_vs_bc_reports_every_budget():
    dagger = np.array([[0.5, 0.9], [0.4, 0.8], [0.6, 0.95]])
    bc = np.array([[0.5, 0.5], [0.45, 0.6], [0.55, 0.7]])
    rows = dagger_vs_bc([96, 144], dagger, bc)
    assert [r["labels"] for r in rows] == [96, 144]
    assert rows[1]["p_value"] == pytest.approx(1 / 8) and rows[1]["p_value_unpaired"] == pytest.approx(1 / 20)
    assert rows[1]["mean_difference_points"] == pytest.approx(100 * (2.65 - 1.8) / 3, abs=0.01)
    assert rows[0]["mean_difference_points"] == 0.0 and rows[0]["p_value"] >= 0.5


def test_overrides_may_follow_options():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--out")
    args, over = parse_with_overrides(ap, ["c.yaml", "teacher=t", "--out", "d",
                                           "env.randomization=@configs/randomization/default.yaml"])
    assert args.out == "d" and over == ["teacher=t", "env.randomization=@configs/randomization/default.yaml"]
    with pytest.raises(SystemExit):
        parse_with_overrides(ap, ["c.yaml", "--out", "d", "stray"])


def test_dagger_and_bc_both_run_under_the_randomization_override(tmp_path, capsys):
    """The bench's two arms build their envs from one config: with sensor dropout in the override,
    the depth images DAgger and BC store (their teacher-labelled samples) both have lost pixels,
    and both runs record the randomization."""
    import json

    from robots_ts.config import load_run_config
    from robots_ts.policies.distill.config import StudentConfig
    from robots_ts.policies.distill.dataset import ChunkDataset

    preset = tmp_path / "dropout.yaml"
    preset.write_text("depth:\n  dropout: 0.5\naction_delay: [1, 1]\n")
    argv = ["configs/student/reach_depth.yaml", "teacher=scripted", "env.num_envs=4", "env.depth.width=16",
            "env.depth.height=16", "env.num_threads=1", "env.episode_steps=30", "torch_threads=1",
            "dagger.iterations=2", "dagger.steps_per_iteration=8", "dagger.chunk_steps=8", "dagger.eval_episodes=4",
            "dagger.epochs=1", "dagger.final_epochs=0", "dagger.train_samples=0", "dagger.batch_size=32",
            "student.cnn_channels=[4,8]", "student.cnn_kernels=[3,3]", "student.cnn_strides=[2,2]",
            "student.feature_dim=16", "student.proprio_mlp=[16]", "student.head_mlp=[16]",
            "--seeds", "0", "--bc-points", "1", "--out", str(tmp_path / "bench"), f"env.randomization=@{preset}"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["randomization"]["depth"]["dropout"] == 0.5 and res["bc_labels"] == [64]
    assert res["dagger_vs_bc_final"] == res["dagger_vs_bc_test"][-1]
    assert res["dagger_vs_bc_final"]["labels"] == res["labels"][-1] == 64
    assert res["dagger_vs_bc_final"]["permutations"] == 2          # one seed: two sign flips
    for name in ("dagger_s0", "bc_s0_it001"):
        run = tmp_path / "bench" / name
        cfg = load_run_config(StudentConfig, run / "config.yaml")
        assert cfg.env.randomization.depth.dropout == 0.5 and cfg.env.randomization.action_delay == [1, 1]
        data = ChunkDataset(run / "dataset")
        depth = np.concatenate([data.load(r)["depth"] for r in data.records()])
        assert 0.4 < float(np.mean(depth == 0)) < 0.6, name
