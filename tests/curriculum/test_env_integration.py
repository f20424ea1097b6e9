"""A curriculum teacher drives the batched env's task parameters and is checkpointed with a run."""
import json

import numpy as np

from robots_ts.cli import main as cli
from robots_ts.config import CurriculumConfig, EnvConfig
from robots_ts.curriculum import make_teacher
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.policies.scripted import ScriptedTeacher


def test_worlds_share_one_teacher_that_sees_every_episode():
    env = BatchedEnv(EnvConfig(task="Reach", num_envs=4, curriculum=CurriculumConfig(name="alp_gmm")), seed=0)
    teacher = make_teacher("alp_gmm", env.param_space.low, env.param_space.high, seed=0, bootstrap=8, fit_rate=8)
    env.sampler = teacher
    obs = env.reset()
    oracle = ScriptedTeacher(env.world)
    ended = []
    while len(ended) < 40:
        obs, _, dones, infos = env.step(oracle.act(obs))
        for i in np.flatnonzero(dones):
            ended.append(infos[i]["params"])
        oracle.reset(dones)
    env.close()
    history = teacher.params_history
    assert len(history) >= 40
    # The parameters each episode ran with are the ones reported back to the teacher, in order.
    np.testing.assert_allclose(history[:40], np.array(ended[:40]))


def test_curriculum_state_is_checkpointed_with_the_teacher_run(tmp_path):
    run = tmp_path / "cur"
    rc = cli(["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run), "--total-steps", "512",
              "env.curriculum.name=alp_gmm", "env.curriculum.kwargs={bootstrap: 4, fit_rate: 4}",
              "env.num_envs=8", "ppo.n_steps=16", "ppo.batch_size=64", "ppo.n_epochs=1", "checkpoint_every=256",
              "eval_every=512", "eval_episodes=8", "eval_envs=8"])
    assert rc == 0
    pointer = json.loads((run / "checkpoints" / "latest.json").read_text())
    state = json.loads((run / "checkpoints" / f"{pointer['name']}.state.json").read_text())
    assert state["curriculum"] is not None
    assert (run / "curriculum_samples.png").exists()
