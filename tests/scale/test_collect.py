"""DAgger with collection on Ray actors: with an actor killed in the middle of an iteration, the
run writes the in-process run's dataset (nothing lost, nothing twice) and trains the same student."""
import json
import logging

import numpy as np
import pytest

from robots_ts.config import load_config
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.policies.distill.dagger import distill
from robots_ts.policies.distill.dataset import ChunkDataset

TINY_NET = ["student.cnn_channels=[4,8]", "student.cnn_kernels=[3,3]", "student.cnn_strides=[2,2]",
            "student.feature_dim=16", "student.proprio_mlp=[16]", "student.head_mlp=[16]"]
# Episodes of 6 steps end inside every chunk; teacher and student both act (beta 0.5); an ADR
# dimension makes the episode starts two-phase (the driver's ADR sampler chooses each value).
TINY = ["teacher=scripted", "env.num_envs=4", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1",
        "env.episode_steps=6", "torch_threads=1", "dagger.iterations=1", "dagger.steps_per_iteration=14",
        "dagger.chunk_steps=5", "dagger.eval_episodes=4", "dagger.epochs=1", "dagger.batch_size=16",
        "dagger.beta0=0.5", "env.randomization.adr.dims.gravity_tilt=[0.0,4.0]", *TINY_NET]
STEPS, ITERATIONS, WORLDS = 14, 1, 4
TIMING = ("seconds", "per_s")
KILL_AT = 8    # actor 1 dies in its 8th step, when the iteration's first chunk (steps 0-4) is written


def config(actors: int, *more: str) -> StudentConfig:
    return load_config(StudentConfig, "configs/student/reach_depth.yaml", [*TINY, f"env.ray_actors={actors}", *more])


def chunks(run) -> list[dict]:
    data = ChunkDataset(run / "dataset")
    return [(r["file"], r["samples"], data.load(r)) for r in data.records()]


def records(run) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items()
                    if not any(t in k for t in TIMING) and k not in ("actor_restarts", "worlds_per_actor", "actor_step_ms")})
    return out


@pytest.fixture(scope="session")
def in_process(tmp_path_factory):
    run = tmp_path_factory.mktemp("dagger") / "in_process"
    distill(config(0), run, progress=False)
    return run


def test_dagger_over_two_actors_with_one_killed_writes_the_in_process_dataset_and_student(
        cluster, in_process, tmp_path, monkeypatch, caplog):
    from robots_ts.scale.collect import RayCollector

    armed = RayCollector.__init__

    def arm_after_init(self, *args, **kwargs):
        armed(self, *args, **kwargs)
        self.pool.call(1, "arm_fault", "scale.collect.step", KILL_AT)

    monkeypatch.setattr(RayCollector, "__init__", arm_after_init)
    run = tmp_path / "ray"
    with caplog.at_level(logging.WARNING, logger="robots_ts.scale"):
        distill(config(2), run, progress=False)
    assert "Ray actor 1 (worlds 2-3) died during collect_step" in caplog.text
    restarts = [json.loads(line)["actor_restarts"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert restarts == [1]

    ours, theirs = chunks(run), chunks(in_process)
    assert sum(s for _, s, _ in ours) == STEPS * ITERATIONS * WORLDS
    assert [(f, s) for f, s, _ in ours] == [(f, s) for f, s, _ in theirs]
    episodes = set()
    for (_, _, a), (_, _, b) in zip(ours, theirs):
        assert list(a) == list(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        episodes |= set(np.unique(a["episode"]).tolist())
    assert len(episodes) > ITERATIONS * WORLDS        # episodes ended and started within the iteration
    assert 0.0 < json.loads((run / "metrics.jsonl").read_text())["teacher_action_fraction"] < 1.0
    assert records(run) == records(in_process)        # the same students, evaluated alike
    assert (run / "checkpoints" / "iter_0000.safetensors").read_bytes() == \
        (in_process / "checkpoints" / "iter_0000.safetensors").read_bytes()


@pytest.fixture(scope="session")
def in_process_6(tmp_path_factory):
    run = tmp_path_factory.mktemp("dagger") / "in_process_6"
    distill(config(0, "env.num_envs=6"), run, progress=False)
    return run


def ray_run(path, monkeypatch, kill: bool):
    """A distill run over two actors with env.ray_split=speed whose deal comes out at four worlds
    and two (the probe runs; the choice is fixed, the tests of choose_split check it), actor 1
    killed mid-iteration or not."""
    from robots_ts.scale import pool
    from robots_ts.scale.collect import RayCollector

    armed = RayCollector.__init__

    def arm_after_init(self, *args, **kwargs):
        armed(self, *args, **kwargs)
        self.pool.call(1, "arm_fault", "scale.collect.step", KILL_AT)

    with monkeypatch.context() as m:
        m.setattr(pool, "PROBE_S", 0.2)
        m.setattr(pool, "choose_split", lambda shares, rates, gain: ([(0, 4), (4, 2)], 0.5))
        if kill:
            m.setattr(RayCollector, "__init__", arm_after_init)
        distill(config(2, "env.num_envs=6", "env.ray_split=speed"), path, progress=False)
    return path


@pytest.mark.parametrize("cluster", ["local"], indirect=True)    # two nodes: the test above, test_vec_env
def test_dagger_with_worlds_dealt_by_speed_and_an_actor_killed_loses_and_repeats_nothing(
        cluster, in_process_6, tmp_path, monkeypatch, caplog):
    """env.ray_split=speed, actor 1 holding two worlds of six: when it dies mid-iteration it comes
    back holding them and replays them, and the run writes the dataset and the student of the same
    deal without the kill. Against the in-process run the episodes are the same and the samples
    agree up to float rounding: the student acts on each actor's batch, and a convolution's result
    can differ in its last bits with the batch size."""
    calm = ray_run(tmp_path / "calm", monkeypatch, kill=False)
    with caplog.at_level(logging.WARNING, logger="robots_ts.scale"):
        killed = ray_run(tmp_path / "killed", monkeypatch, kill=True)
    assert "Ray actor 1 (worlds 4-5) died during collect_step" in caplog.text
    for run, restarts in ((calm, 0), (killed, 1)):
        rec = json.loads((run / "metrics.jsonl").read_text())
        assert rec["worlds_per_actor"] == [4, 2] and rec["actor_restarts"] == restarts
        assert len(rec["actor_step_ms"]) == 2 and min(rec["actor_step_ms"]) > 0    # each actor's time per step
    ours, theirs, local = chunks(killed), chunks(calm), chunks(in_process_6)
    assert sum(s for _, s, _ in ours) == STEPS * ITERATIONS * 6
    assert [(f, s) for f, s, _ in ours] == [(f, s) for f, s, _ in theirs] == [(f, s) for f, s, _ in local]
    for (_, _, a), (_, _, b), (_, _, c) in zip(ours, theirs, local):
        assert list(a) == list(b) == list(c)
        for key in b:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            if np.issubdtype(c[key].dtype, np.floating):
                np.testing.assert_allclose(a[key], c[key], rtol=0, atol=1e-4, err_msg=key)
            else:
                np.testing.assert_array_equal(a[key], c[key], err_msg=key)
    assert records(killed) == records(calm)
    assert (killed / "checkpoints" / "iter_0000.safetensors").read_bytes() == \
        (calm / "checkpoints" / "iter_0000.safetensors").read_bytes()
