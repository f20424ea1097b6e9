"""Evaluation under a randomization other than the one a policy trained with: presets load as a
RandomizationConfig, reach the env, and every summary records the one used."""
import json

import pytest

from robots_ts.cli import main as cli
from robots_ts.config import ConfigError, EnvConfig, RandomizationConfig, load_config
from robots_ts.evaluate import evaluate_run, load_randomization, rollout_policy, with_randomization
from robots_ts.policies.scripted import ScriptedTeacher

DELAYED = "action_delay: [3, 3]\naction_noise: 0.3\n"


def _reach(**kw) -> EnvConfig:
    return EnvConfig(task="Reach", num_threads=1, episode_steps=40, **kw)


def _subset(values: dict, of: dict) -> bool:
    return all(_subset(values[k], v) if isinstance(v, dict) else values[k] == v for k, v in of.items())


def test_presets_load_as_randomization_configs(tmp_path):
    from omegaconf import OmegaConf

    from robots_ts.config import PACKAGED_CONFIGS, to_dict

    assert load_randomization("none") == RandomizationConfig()
    strong = load_randomization("configs/randomization/strong.yaml")
    # Every value the file sets, and the defaults for the rest.
    written = OmegaConf.to_container(OmegaConf.load(PACKAGED_CONFIGS / "randomization" / "strong.yaml"))
    assert written and _subset(to_dict(strong), written) and strong != RandomizationConfig()
    # An @-include names the same file, from the package when not in the working directory.
    assert load_randomization("@configs/randomization/strong.yaml") == strong
    assert load_randomization("@configs/randomization/default.yaml") != strong
    (tmp_path / "mine.yaml").write_text(DELAYED)
    assert load_randomization(str(tmp_path / "mine.yaml")).action_delay == [3, 3]


@pytest.mark.parametrize("text,key", [
    ("action_delay: [0, 1]\nlatency: 2\n", "randomization.latency"),
    ("depth:\n  speckle: 0.1\n", "randomization.depth.speckle"),
    ("action_delay: [2, 1]\n", "randomization.action_delay"),
    ("points:\n  dropout: 1.5\n", "randomization.points.dropout"),
])
def test_bad_presets_raise_a_config_error_naming_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_randomization(str(path))
    with pytest.raises(ConfigError, match="no file"):
        load_randomization(str(tmp_path / "missing.yaml"))


def test_with_randomization_replaces_only_the_randomization():
    cfg = load_config(EnvConfig, None, ["task=Push", "randomization=@configs/randomization/default.yaml"])
    same, rec = with_randomization(cfg, None)
    assert same is cfg and rec["name"] == "as configured" and not rec["nominal"]
    nominal, rec = with_randomization(cfg, "none")
    assert nominal.randomization == RandomizationConfig() and nominal.task == "Push"
    assert rec == {"name": "none", "source": "none", "nominal": True, "values": rec["values"]}
    assert rec["values"]["action_delay"] == [0, 0]
    strong, rec = with_randomization(cfg, "@configs/randomization/strong.yaml")
    want = load_randomization("configs/randomization/strong.yaml")
    assert rec["name"] == "strong.yaml" and rec["values"]["obs_delay"] == want.obs_delay
    assert strong.randomization == want and strong.params == cfg.params


def test_rollout_under_a_preset_differs_from_nominal_for_the_same_seed(tmp_path):
    """Three control steps of action latency plus action noise change what the oracle's episodes do
    on the same seed; the nominal env replays exactly."""
    (tmp_path / "delayed.yaml").write_text(DELAYED)
    run = dict(episodes=6, seed=3, num_envs=3)
    nominal = rollout_policy(ScriptedTeacher(), _reach(), **run)
    again = rollout_policy(ScriptedTeacher(), _reach(), randomization="none", **run)
    delayed = rollout_policy(ScriptedTeacher(), _reach(), randomization=str(tmp_path / "delayed.yaml"), **run)
    assert again["mean_return"] == nominal["mean_return"]
    assert again["mean_episode_length"] == nominal["mean_episode_length"]
    assert delayed["mean_return"] != nominal["mean_return"]
    assert nominal["randomization"]["name"] == "as configured" and nominal["randomization"]["nominal"]
    assert again["randomization"]["name"] == "none"
    assert delayed["randomization"]["name"] == "delayed.yaml" and not delayed["randomization"]["nominal"]
    assert delayed["randomization"]["values"]["action_delay"] == [3, 3]
    assert delayed["randomization"]["values"]["action_noise"] == 0.3


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory):
    """A one-iteration depth student of the scripted teacher, trained with action latency."""
    from robots_ts.policies.distill.config import StudentConfig
    from robots_ts.policies.distill.dagger import distill

    root = tmp_path_factory.mktemp("student")
    (root / "delayed.yaml").write_text(DELAYED)
    cfg = load_config(StudentConfig, "configs/student/reach_depth.yaml", [
        "teacher=scripted", "env.num_envs=4", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1",
        "env.episode_steps=30", "torch_threads=1", "dagger.iterations=1", "dagger.steps_per_iteration=8",
        "dagger.chunk_steps=8", "dagger.eval_episodes=4", "dagger.epochs=1", "dagger.final_epochs=1",
        "dagger.batch_size=32", "student.cnn_channels=[4,8]", "student.cnn_kernels=[3,3]",
        "student.cnn_strides=[2,2]", "student.feature_dim=16", "student.proprio_mlp=[16]", "student.head_mlp=[16]",
        f"env.randomization=@{root / 'delayed.yaml'}"])
    distill(cfg, root / "run", progress=False)
    return root


def test_cli_evaluate_records_the_randomization_it_ran_under(tiny_student, capsys):
    run, preset = tiny_student / "run", tiny_student / "delayed.yaml"
    args = ["evaluate", str(run), "--episodes", "4", "--num-envs", "2", "--seed", "1", "--json"]
    assert cli(args) == 0
    own = json.loads(capsys.readouterr().out)
    # Default: the run's own env config, i.e. the latency it trained with.
    assert own["randomization"]["name"] == "as configured"
    assert own["randomization"]["values"]["action_delay"] == [3, 3]
    assert cli(args + ["--randomization", "none"]) == 0
    nominal = json.loads(capsys.readouterr().out)
    assert nominal["randomization"]["name"] == "none" and nominal["randomization"]["nominal"]
    assert nominal["randomization"]["values"]["action_delay"] == [0, 0]
    assert cli(args + ["--randomization", "@configs/randomization/strong.yaml"]) == 0
    strong = json.loads(capsys.readouterr().out)
    assert strong["randomization"]["name"] == "strong.yaml"
    assert strong["randomization"]["values"]["depth"]["blobs"] == \
        load_randomization("configs/randomization/strong.yaml").depth.blobs > 0
    # The same preset as the run's own replays the default evaluation exactly.
    assert cli(args + ["--randomization", str(preset)]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["mean_return"] == own["mean_return"] and replay["randomization"]["name"] == "delayed.yaml"
    assert nominal["mean_return"] != own["mean_return"]
    # The Python API does the same.
    api = evaluate_run(run, episodes=4, seed=1, num_envs=2, randomization="none")
    assert api["mean_return"] == nominal["mean_return"] and api["randomization"]["nominal"]


def test_cli_evaluate_rejects_a_bad_preset_before_loading_the_run(tiny_student, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("action_delay: [0, 1]\nlatency: 2\n")
    assert cli(["evaluate", str(tmp_path / "no_run"), "--randomization", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'randomization.latency'" in err and "bad.yaml" in err
    with pytest.raises(ConfigError, match="randomization.latency"):
        evaluate_run(tiny_student / "run", episodes=2, randomization=str(bad))
