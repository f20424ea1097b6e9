"""A share of a batch (an actor's EnvShard, here without Ray) steps its worlds exactly as the whole
batch does, with every randomizer on: the per-step sensor and action noise included, since each
world draws it from its own stream."""
import numpy as np
import pytest

from robots_ts.config import EnvConfig, load_config
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.scale.shard import EnvShard

STEPS = 24


def rollout(step, n: int, action_dim: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    return [step(rng.uniform(-1, 1, (n, action_dim)).astype(np.float32)) for _ in range(STEPS)]


@pytest.mark.parametrize("groups,shares", [("[proprio,depth]", [(0, 1), (1, 3)]),
                                           ("[proprio,points]", [(0, 2), (2, 1), (3, 1)])])
def test_shares_of_a_randomized_batch_give_the_whole_batch_s_observations(groups, shares):
    cfg = load_config(EnvConfig, None, ["task=Reach", "num_envs=4", "num_threads=1", "episode_steps=9",
                                        f"obs_groups={groups}", "depth.width=32", "depth.height=32",
                                        "randomization=@configs/randomization/default.yaml"])
    whole = BatchedEnv(cfg, seed=11)
    parts = [EnvShard(cfg, first, count, 4, seed=11) for first, count in shares]
    try:
        w = whole.world
        assert w.randomizes_obs and w.proprio_noise.acts and (w.depth_model is None or w.depth_model.active)
        a_dim = whole.action_space.shape[0]
        first_obs = whole.reset()
        split_obs = [p.reset() for p in parts]
        for g in first_obs:
            np.testing.assert_array_equal(first_obs[g], np.concatenate([o[g] for o in split_obs]))
        want = rollout(lambda a: whole.step(a), 4, a_dim)
        cuts = np.cumsum([0] + [c for _, c in shares])

        def split_step(a):
            out = [p.step(a[cuts[k]:cuts[k + 1]], True) for k, p in enumerate(parts)]
            return ({g: np.concatenate([o[0][g] for o in out]) for g in out[0][0]},
                    np.concatenate([o[1] for o in out]), np.concatenate([o[2] for o in out]))

        got = rollout(split_step, 4, a_dim)
        assert sum(d.sum() for _, _, d, _ in want) >= 8          # episodes ended and restarted
        for (obs, reward, dones, _), (obs2, reward2, dones2) in zip(want, got):
            for g in obs:
                np.testing.assert_array_equal(obs[g], obs2[g])
            np.testing.assert_array_equal(reward, reward2)
            np.testing.assert_array_equal(dones, dones2)
        # The noise is on: a sensed joint position is not the simulator's.
        lay = w.proprio_layout
        assert np.abs(want[-1][0]["proprio"][:, lay["joint_pos"]] - w.state.qpos[:, :7]).max() > 1e-3
    finally:
        whole.close()
        for p in parts:
            p.close()
