"""Training a PPO teacher on the batched env: run directory, checkpoints, evaluation, resume.

Checkpoint protocol (survives SIGKILL): for step N write ``step_N.zip`` (SB3), ``step_N.norm.json``
(observation/return normalization) and ``step_N.state.json`` (RNG states, curriculum, counters),
each by temp file + rename; only then replace ``latest.json`` (the pointer resume trusts) and the
convenience copies ``latest.zip`` / ``latest.norm.json``. A kill at any point leaves the previous
checkpoint complete and the pointer on it.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from robots_ts.config import save_config
from robots_ts.envs import make_batched_env
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.policies.teacher.config import TeacherConfig
from robots_ts.policies.teacher.load import (ObsNormalizer, load_norm_stats_into, norm_stats_of,
                                           schedule_objects)
from robots_ts.progress import Progress
from robots_ts.runs import (MetricsLog, atomic_write, atomic_write_json, from_jsonable, to_jsonable,
                            write_run_meta)

ACTIVATIONS = {"elu": torch.nn.ELU, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


class LinearSchedule:
    """Learning rate decaying linearly to zero over the run (SB3 passes progress remaining)."""

    def __init__(self, start: float):
        self.start = float(start)

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining


def learning_rate(p) -> LinearSchedule | float:
    return LinearSchedule(p.learning_rate) if p.lr_schedule == "linear" else p.learning_rate


def make_curriculum(cfg: TeacherConfig, param_space, seed: int):
    c = cfg.env.curriculum
    if c.name == "none":
        return None
    from robots_ts.curriculum import make_teacher

    return make_teacher(c.name, param_space.low, param_space.high, seed=seed, **dict(c.kwargs))


def validate(cfg: TeacherConfig) -> None:
    """Cheap semantic checks, before any env or model is built."""
    p = cfg.ppo
    if p.activation not in ACTIVATIONS:
        raise ValueError(f"ppo.activation: expected one of {sorted(ACTIVATIONS)}, got {p.activation!r}")
    if p.lr_schedule not in ("linear", "constant"):
        raise ValueError(f"ppo.lr_schedule: expected 'linear' or 'constant', got {p.lr_schedule!r}")
    if cfg.env.curriculum.reward not in ("success", "return"):
        raise ValueError(f"env.curriculum.reward: expected 'success' or 'return', got {cfg.env.curriculum.reward!r}")
    for key in ("total_steps", "checkpoint_every", "eval_every", "eval_episodes"):
        if getattr(cfg, key) <= 0:
            raise ValueError(f"{key}: expected a positive integer, got {getattr(cfg, key)}")
    if (p.n_steps * cfg.env.num_envs) % p.batch_size:
        raise ValueError(f"ppo.batch_size ({p.batch_size}) must divide ppo.n_steps * env.num_envs "
                         f"({p.n_steps} * {cfg.env.num_envs})")


def normalized(env, cfg: TeacherConfig) -> VecNormalize:
    p = cfg.ppo
    return VecNormalize(env, norm_obs=p.norm_obs, norm_reward=p.norm_reward, clip_obs=p.clip_obs,
                        gamma=p.gamma, norm_obs_keys=list(env.observation_space.spaces))


def make_model(cfg: TeacherConfig, venv, tensorboard_log: str | None = None) -> PPO:
    """SB3 PPO with the config's hyperparameters on any (normalized) VecEnv."""
    p = cfg.ppo
    lr = learning_rate(p)
    return PPO("MultiInputPolicy", venv, learning_rate=lr, n_steps=p.n_steps, batch_size=p.batch_size,
               n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_range,
               ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
               target_kl=p.target_kl or None, seed=cfg.seed, device=cfg.device, verbose=0,
               tensorboard_log=tensorboard_log,
               policy_kwargs=dict(net_arch=dict(pi=list(p.net_arch), vf=list(p.net_arch)),
                                  activation_fn=ACTIVATIONS[p.activation], log_std_init=p.log_std_init))


def build(cfg: TeacherConfig, run_dir: Path):
    """The normalized training env and a fresh PPO model for ``cfg``."""
    env = make_batched_env(cfg.env, seed=cfg.seed)
    env.sampler = make_curriculum(cfg, env.param_space, cfg.seed)
    venv = normalized(env, cfg)
    return env, venv, make_model(cfg, venv, str(run_dir / "tb"))


class LivePolicy:
    """The model being trained, as a Policy for evaluation (current normalization statistics)."""

    def __init__(self, model: PPO, venv: VecNormalize, env_cfg):
        self.model, self.env_cfg = model, env_cfg
        self.obs_groups = tuple(env_cfg.obs_groups)
        stats = norm_stats_of(venv)
        self.normalize = ObsNormalizer(stats["obs"], stats["clip_obs"]) if venv.norm_obs else None

    def act(self, obs):
        o = self.normalize(obs) if self.normalize else obs
        a, _ = self.model.predict(o, deterministic=True)
        return np.clip(a, -1, 1)

    def reset(self, done):
        pass


class TeacherCallback(BaseCallback):
    """Progress, metrics.jsonl, periodic checkpoints and evaluations."""

    def __init__(self, cfg: TeacherConfig, run_dir: Path, env: BatchedEnv, venv: VecNormalize, state: dict):
        super().__init__()
        self.cfg, self.run_dir, self.env, self.venv = cfg, run_dir, env, venv
        self.ck_dir = run_dir / "checkpoints"
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")
        self.successes: deque = deque(maxlen=200)
        self.returns: deque = deque(maxlen=200)
        self.terms: dict[str, deque] = {}
        self.state = state  # wall time so far, best success, next checkpoint/eval steps
        self.bar = Progress(disable=True)  # replaced by a live one while training

    def _on_training_start(self) -> None:
        self.t_start = time.time() - self.state["wall_time"]
        self.t_seg, self.steps_seg = time.time(), self.num_timesteps
        self.bar = Progress(self.cfg.total_steps, initial=self.num_timesteps, unit="step",
                            desc=f"teacher {self.cfg.env.task}")

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.successes.append(float(info["is_success"]))
                self.returns.append(info["episode"]["r"])
                for k, v in info["episode_terms"].items():
                    self.terms.setdefault(k, deque(maxlen=200)).append(v)
                if info.get("diverged"):
                    self.state["diverged_episodes"] = self.state.get("diverged_episodes", 0) + 1
        self.bar.update(self.cfg.env.num_envs)
        if self.num_timesteps >= self.state["next_eval"]:
            self.evaluate()
            self.state["next_eval"] += self.cfg.eval_every
        if self.num_timesteps >= self.state["next_checkpoint"]:
            self.save_checkpoint()
            self.state["next_checkpoint"] += self.cfg.checkpoint_every
        return True

    def _on_rollout_end(self) -> None:
        now = time.time()
        fps = (self.num_timesteps - self.steps_seg) / max(now - self.t_seg, 1e-9)
        rec = {"steps": int(self.num_timesteps), "wall_time": round(now - self.t_start, 2), "steps_per_s": round(fps, 1),
               "success_rate": float(np.mean(self.successes)) if self.successes else None,
               "return": float(np.mean(self.returns)) if self.returns else None,
               "reward_terms": {k: float(np.mean(v)) for k, v in self.terms.items()},
               "diverged_episodes": int(self.state.get("diverged_episodes", 0))}   # physics resets so far
        for k, v in self.model.logger.name_to_value.items():
            if k.startswith("train/"):
                rec[k[6:]] = float(v)
        self.metrics.append(rec)
        self.bar.set_postfix(success=f"{rec['success_rate'] or 0:.2f}", sps=f"{fps:.0f}")

    def evaluate(self) -> dict:
        from robots_ts.evaluate import rollout_policy

        res = rollout_policy(LivePolicy(self.model, self.venv, self.cfg.env), self.cfg.env,
                             episodes=self.cfg.eval_episodes, seed=self.cfg.seed + 10_000,
                             num_envs=self.cfg.eval_envs)
        rec = {"steps": int(self.num_timesteps), "wall_time": round(time.time() - self.t_start, 2),
               "eval_success_rate": res["success_rate"], "eval_return": res["mean_return"],
               "eval_episode_length": res["mean_episode_length"]}
        self.metrics.append(rec)
        if res["success_rate"] >= self.state["best_success"]:
            self.state["best_success"] = res["success_rate"]
            self._save_model_files("best")
        self.bar.write(f"[{self.num_timesteps} steps] eval success {res['success_rate']:.2f} "
                       f"(best {self.state['best_success']:.2f})")
        return res

    def _save_model_files(self, name: str) -> None:
        atomic_write(self.ck_dir / f"{name}.zip", lambda p: self.model.save(p))
        atomic_write_json(self.ck_dir / f"{name}.norm.json", norm_stats_of(self.venv))

    def save_checkpoint(self) -> None:
        step = int(self.num_timesteps)
        name = f"step_{step:010d}"
        self._save_model_files(name)
        self.state["wall_time"] = time.time() - self.t_start
        atomic_write_json(self.ck_dir / f"{name}.state.json", to_jsonable(capture_state(self, step)))
        shutil.copyfile(self.ck_dir / f"{name}.zip", self.ck_dir / ".latest.zip.tmp")
        (self.ck_dir / ".latest.zip.tmp").replace(self.ck_dir / "latest.zip")
        shutil.copyfile(self.ck_dir / f"{name}.norm.json", self.ck_dir / ".latest.norm.tmp")
        (self.ck_dir / ".latest.norm.tmp").replace(self.ck_dir / "latest.norm.json")
        atomic_write_json(self.ck_dir / "latest.json", {"step": step, "name": name})
        old = sorted(self.ck_dir.glob("step_*.zip"))[: -self.cfg.keep_checkpoints]
        for z in old:
            for f in (z, z.with_suffix(".norm.json"), z.with_suffix(".state.json")):
                f.unlink(missing_ok=True)

    def _on_training_end(self) -> None:
        self.bar.close()
        self.bar = Progress(disable=True)  # later evaluations still write their line


def capture_state(cb: TeacherCallback, step: int) -> dict:
    env = cb.env
    sampler = env.sampler
    return {"step": step, "torch_rng": torch.get_rng_state().numpy(), "numpy_rng": np.random.get_state()[1],
            "numpy_rng_pos": int(np.random.get_state()[2]),
            "world_rngs": [r.bit_generator.state for r in env.world.rngs],
            "curriculum": sampler.state_dict() if sampler is not None else None,
            "callback": dict(cb.state)}


def restore_state(state: dict, env: BatchedEnv, cb_state: dict) -> None:
    torch.set_rng_state(torch.as_tensor(np.asarray(state["torch_rng"], dtype=np.uint8)))
    np.random.set_state(("MT19937", np.asarray(state["numpy_rng"], dtype=np.uint32), state["numpy_rng_pos"], 0, 0.0))
    for r, s in zip(env.world.rngs, state["world_rngs"]):
        r.bit_generator.state = s
    if state.get("curriculum") is not None and env.sampler is not None:
        env.sampler.load_state_dict(state["curriculum"])
    cb_state.update(state["callback"])


def train_teacher(cfg: TeacherConfig | None = None, run_dir: str | Path | None = None, resume: bool = False,
                  total_steps: int | None = None) -> Path:
    """Train (or, with ``resume``, continue) a teacher; returns the run directory.

    On resume, ``total_steps`` may extend (or shorten) the run; the learning-rate schedule then
    follows the new total.
    """
    from robots_ts.config import load_config

    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"{run_dir} holds no teacher run to resume (no config.yaml)")
        cfg = load_config(TeacherConfig, run_dir / "config.yaml")
        if total_steps is not None:
            cfg.total_steps = int(total_steps)
            save_config(cfg, run_dir / "config.yaml")
    validate(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    ck_dir = run_dir / "checkpoints"
    ck_dir.mkdir(parents=True, exist_ok=True)
    env, venv, model = build(cfg, run_dir)
    cb_state = {"wall_time": 0.0, "best_success": -1.0, "next_checkpoint": cfg.checkpoint_every,
                "next_eval": cfg.eval_every, "diverged_episodes": 0}
    if resume and (ck_dir / "latest.json").exists():
        pointer = json.loads((ck_dir / "latest.json").read_text())
        name = pointer["name"]
        model = PPO.load(ck_dir / f"{name}.zip", env=venv, device=cfg.device,
                         custom_objects={"tensorboard_log": str(run_dir / "tb"),
                                         **schedule_objects(learning_rate(cfg.ppo), cfg.ppo.clip_range)})
        load_norm_stats_into(venv, json.loads((ck_dir / f"{name}.norm.json").read_text()))
        state = from_jsonable(json.loads((ck_dir / f"{name}.state.json").read_text()))
        restore_state(state, env, cb_state)
        MetricsLog(run_dir / "metrics.jsonl").truncate_after("steps", pointer["step"])
    elif resume:
        print(f"resume: no checkpoint in {run_dir} yet; starting from scratch")
    else:
        if (ck_dir / "latest.json").exists():
            raise FileExistsError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir")
        save_config(cfg, run_dir / "config.yaml")
        write_run_meta(run_dir, "teacher", task=cfg.env.task)
    cb = TeacherCallback(cfg, run_dir, env, venv, cb_state)
    remaining = cfg.total_steps - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(remaining, callback=cb, reset_num_timesteps=not resume, tb_log_name="ppo",
                        progress_bar=False)
        else:  # resuming a finished run: nothing to learn, the final checkpoint and evaluation remain
            cb.init_callback(model)
            cb.t_start = time.time() - cb_state["wall_time"]
        if cb_state["next_checkpoint"] - cfg.checkpoint_every < model.num_timesteps:
            cb.save_checkpoint()
            cb_state["next_checkpoint"] = model.num_timesteps + cfg.checkpoint_every
        cb.evaluate()
    finally:
        venv.close()
    from robots_ts.plots import plot_learning_curve

    plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", title=f"teacher {cfg.env.task}")
    plot_curriculum(env.sampler, run_dir)
    return run_dir


def plot_curriculum(sampler, run_dir: Path) -> None:
    """Sampled parameters over time coloured by ALP, and the GMM's components, when there are any."""
    if sampler is None or not hasattr(sampler, "params_history"):
        return
    from robots_ts.curriculum.plots import plot_gmm, plot_samples

    # ALP-GMM colours samples by learning progress; Covar-GMM keeps rewards instead.
    values = sampler.alp_history if hasattr(sampler, "alp_history") else getattr(sampler, "reward_history", None)
    if len(sampler.params_history) and values is not None:
        plot_samples(sampler.params_history, values, run_dir / "curriculum_samples.png")
    if getattr(sampler, "gmm", None) is not None:
        plot_gmm(sampler, run_dir / "curriculum_gmm.png")
