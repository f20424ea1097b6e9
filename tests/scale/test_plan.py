"""The parts of robots_ts.scale that need no Ray: splitting worlds, per-world seeding, sweep plans,
and that nothing outside the scale code imports Ray."""
import subprocess
import sys

import numpy as np
import pytest

from robots_ts.scale.shard import choose_split, share_generators, speed_split, split_worlds, step_time
from robots_ts.scale.sweep import detect_command, parse_grid, parse_seeds, plan_trials, split_values


def test_worlds_split_contiguously_earlier_shares_larger():
    assert split_worlds(5, 2) == [(0, 3), (3, 2)]
    assert split_worlds(4, 4) == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert split_worlds(7, 1) == [(0, 7)]


def test_a_speed_split_gives_faster_shards_more_worlds_and_the_shortest_step():
    """env.ray_split=speed: contiguous shares in proportion to the rates, one world at least each,
    and no contiguous deal of whole worlds steps faster (checked against every deal of 9 worlds
    over 3 shards)."""
    assert speed_split(8, [3, 1]) == [(0, 6), (6, 2)]
    assert speed_split(8, [1, 1]) == split_worlds(8, 2)
    assert speed_split(3, [1, 100, 1]) == [(0, 1), (1, 1), (2, 1)]      # every shard keeps a world
    assert speed_split(1024, [3000, 2000, 2500, 2000]) == [(0, 324), (324, 216), (540, 269), (809, 215)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        rates = rng.uniform(100, 1000, 3)
        best = min(step_time([(0, a), (a, b), (a + b, 9 - a - b)], rates)
                   for a in range(1, 8) for b in range(1, 9 - a))
        assert step_time(speed_split(9, rates), rates) == pytest.approx(best)
    for bad_rates, total in (([1, 0], 4), ([1, float("nan")], 4), ([1, 1, 1], 2)):
        with pytest.raises(ValueError, match="speed_split"):
            speed_split(total, bad_rates)


def test_the_worlds_are_dealt_again_only_when_that_shortens_the_step_enough():
    even = split_worlds(64, 2)
    assert choose_split(even, [1000, 1030], 0.05) == (even, pytest.approx(0.0))     # probe noise: kept
    shares, gain = choose_split(even, [1000, 500], 0.05)
    assert shares == [(0, 43), (43, 21)] and gain == pytest.approx(64 / 43 - 1)
    assert choose_split(even, [1000, 900], 0.05)[0] == even                       # 4.6% shorter: kept
    assert choose_split(even, [1000, 850], 0.05)[0] == [(0, 35), (35, 29)]        # 7.6% shorter: dealt


def test_a_share_gets_the_generators_the_whole_batch_gives_its_worlds():
    """WorldBatch.seed spawns 3N+1 children of one SeedSequence: task generators by world index,
    the per-step noise's parent (one child per world), then the randomizers' and the point
    clouds' by world index."""
    n, seed = 6, 17
    children = np.random.SeedSequence(seed).spawn(3 * n + 1)
    whole = [np.random.default_rng(s).random() for s in children[:n]]
    noise = [np.random.default_rng(s).random() for s in children[n].spawn(n)]
    rand = [np.random.default_rng(s).random() for s in children[n + 1:2 * n + 1]]
    cloud = [np.random.default_rng(s).random() for s in children[2 * n + 1:]]
    got = {"task": [], "rand": [], "cloud": [], "noise": []}     # share_generators' order
    for first, count in split_worlds(n, 4):
        for name, gens in zip(got, share_generators(seed, first, count, n)):
            got[name] += [g.random() for g in gens]
    assert got == {"task": whole, "noise": noise, "rand": rand, "cloud": cloud}
    assert len(set(noise)) == n


def test_seeds_and_grids_parse_and_bad_ones_name_the_option():
    assert parse_seeds("0..3") == [0, 1, 2, 3] and parse_seeds("5") == [5] and parse_seeds("0,2,7") == [0, 2, 7]
    for bad in ("3..1", "a..b", "", "-1", "1,1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert split_values("[64,64],[128,128]") == ["[64,64]", "[128,128]"]
    assert parse_grid(["ppo.learning_rate=1e-3,3e-4", "ppo.net_arch=[32],[64,64]"]) == \
        [("ppo.learning_rate", ["1e-3", "3e-4"]), ("ppo.net_arch", ["[32]", "[64,64]"])]
    for bad in (["ppo.learning_rate"], ["x=1,"], ["seed=1,2"], ["a=1", "a=2"]):
        with pytest.raises(ValueError, match="--grid"):
            parse_grid(bad)


def test_a_plan_runs_every_grid_combination_per_seed_with_the_threads_of_its_cpus():
    trials = plan_trials([0, 1], parse_grid(["ppo.gamma=0.9,0.99", "ppo.n_epochs=1,2"]), ["env.num_envs=4"], threads=2)
    assert len(trials) == 8 and len({t.name for t in trials}) == 8
    t = trials[0]
    assert t.name == "ppo.gamma=0.9_ppo.n_epochs=1_s0" and t.seed == 0
    assert t.overrides == ["env.num_envs=4", "env.num_threads=2", "ppo.gamma=0.9", "ppo.n_epochs=1"]
    # The user's own env.num_threads wins.
    mine = plan_trials([0], [], ["env.num_threads=3"], threads=2)[0]
    assert mine.overrides == ["env.num_threads=3"] and mine.name == "s0"


def test_the_command_is_told_by_the_config_sections():
    assert detect_command("configs/teacher/reach.yaml") == "train-teacher"
    assert detect_command("configs/student/reach_depth.yaml") == "distill"


def test_importing_robots_ts_and_its_cli_does_not_import_ray():
    code = ("import sys, robots_ts, robots_ts.cli, robots_ts.envs, robots_ts.scale, robots_ts.policies.teacher.train, "
            "robots_ts.policies.distill.dagger; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
