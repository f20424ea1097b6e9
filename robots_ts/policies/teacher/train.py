"""Training a PPO teacher on the batched env: run directory, checkpoints, evaluation, resume.

Checkpoint protocol (survives SIGKILL): for step N the set ``step_N.zip`` (SB3), ``step_N.norm.json``
(observation/return normalization) and ``step_N.state.json`` (RNG states, curriculum, counters) is
written member by member, then published by ``step_N.manifest.json`` with each member's SHA-256
(:mod:`robots_ts.policies.teacher.checkpoint`); only then is ``latest.json`` (the pointer resume
trusts) replaced. A kill at any point leaves the previous checkpoint complete and the pointer on it.

Per rollout the order is: rollout metrics line (``_on_rollout_end``), training update, then at the
next rollout's start any due evaluation and checkpoint, so a checkpoint at step N follows every
record of steps <= N, and resume truncates ``metrics.jsonl`` to exactly the checkpoint's records.
"""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from robots_ts.config import ConfigError, load_run_config, save_config
from robots_ts.evaluate import keeps_torch_threads
from robots_ts.envs import make_training_env
from robots_ts.envs.vec_env import BatchedEnv
from robots_ts.faults import fault_point
from robots_ts.policies.teacher.checkpoint import (CheckpointError, copy_set, read_pointer, remove_set, resume_point,
                                                   step_stems, uses_manifests, verify_set, write_set)
from robots_ts.policies.teacher.config import TeacherConfig
from robots_ts.policies.teacher.load import (ObsNormalizer, load_norm_stats, load_norm_stats_into, load_sb3,
                                           norm_stats_of, schedule_objects)
from robots_ts.progress import Progress
from robots_ts.runs import (CorruptFileError, MetricsLog, RunError, atomic_write_json, from_jsonable, read_json,
                            read_jsonl, read_run_meta, to_jsonable, write_run_meta)

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
    """Every semantic check of a teacher config, before any env, model or file is made."""
    from robots_ts.envs.checks import check_env_config

    check_env_config(cfg.env)
    p = cfg.ppo
    if p.activation not in ACTIVATIONS:
        raise ConfigError(f"ppo.activation: expected one of {sorted(ACTIVATIONS)}, got {p.activation!r}")
    if p.lr_schedule not in ("linear", "constant"):
        raise ConfigError(f"ppo.lr_schedule: expected 'linear' or 'constant', got {p.lr_schedule!r}")
    for key in ("total_steps", "checkpoint_every", "eval_every", "eval_episodes", "eval_envs", "keep_checkpoints"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key}: expected a positive integer, got {getattr(cfg, key)}")
    if cfg.seed < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {cfg.seed}")
    if cfg.torch_threads < 0:
        raise ConfigError(f"torch_threads: expected 0 (torch's default) or a positive integer, got {cfg.torch_threads}")
    for key in ("n_steps", "batch_size", "n_epochs"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"ppo.{key}: expected a positive integer, got {getattr(p, key)}")
    for key in ("learning_rate", "clip_range", "clip_obs"):
        if not np.isfinite(getattr(p, key)) or getattr(p, key) <= 0:
            raise ConfigError(f"ppo.{key}: expected a positive number, got {getattr(p, key)}")
    for key in ("gamma", "gae_lambda"):
        if not 0.0 < getattr(p, key) <= 1.0:
            raise ConfigError(f"ppo.{key}: expected a number in (0, 1], got {getattr(p, key)}")
    for key in ("ent_coef", "vf_coef", "max_grad_norm", "target_kl"):
        if not np.isfinite(getattr(p, key)) or getattr(p, key) < 0:
            raise ConfigError(f"ppo.{key}: expected a number >= 0, got {getattr(p, key)}")
    if not p.net_arch or any(w <= 0 for w in p.net_arch):
        raise ConfigError(f"ppo.net_arch: expected a list of positive layer widths, got {list(p.net_arch)}")
    if (p.n_steps * cfg.env.num_envs) % p.batch_size:
        raise ConfigError(f"ppo.batch_size ({p.batch_size}) must divide ppo.n_steps * env.num_envs "
                          f"({p.n_steps} * {cfg.env.num_envs})")
    try:
        torch.device(cfg.device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected a torch device such as 'cpu' or 'cuda:0', got {cfg.device!r}") from None
    if cfg.env.curriculum.name != "none":
        try:  # a misspelt curriculum hyperparameter is a config error, found before any file is written
            from robots_ts.envs.world import resolve_task

            space = resolve_task(cfg.env.task).params.with_bounds(cfg.env.params)
            make_curriculum(cfg, space, cfg.seed)
        except ValueError as exc:
            raise ConfigError(f"env.curriculum: {exc}") from None
    if cfg.kickstart.teachers:
        from robots_ts.policies.teacher.kickstart_run import validate_kickstart

        validate_kickstart(cfg)


def normalized(env, cfg: TeacherConfig) -> VecNormalize:
    p = cfg.ppo
    return VecNormalize(env, norm_obs=p.norm_obs, norm_reward=p.norm_reward, clip_obs=p.clip_obs,
                        gamma=p.gamma, norm_obs_keys=list(env.observation_space.spaces))


def make_model(cfg: TeacherConfig, venv, tensorboard_log: str | None = None, cls=PPO) -> PPO:
    """SB3 PPO (or a subclass, ``cls``) with the config's hyperparameters on any (normalized) VecEnv."""
    p = cfg.ppo
    lr = learning_rate(p)
    model = cls("MultiInputPolicy", venv, learning_rate=lr, n_steps=p.n_steps, batch_size=p.batch_size,
                n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_range,
                ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
                target_kl=p.target_kl or None, seed=cfg.seed, device=cfg.device, verbose=0,
                tensorboard_log=tensorboard_log,
                policy_kwargs=dict(net_arch=dict(pi=list(p.net_arch), vf=list(p.net_arch)),
                                   activation_fn=ACTIVATIONS[p.activation], log_std_init=p.log_std_init))
    return in_memory_logger(model, tensorboard_log)


def in_memory_logger(model, tensorboard_log: str | None):
    """``model``, logging in memory when it has no TensorBoard directory: SB3 would otherwise create an
    empty ``SB3-<time>`` folder in the temporary directory at every ``learn()``."""
    if tensorboard_log is None:
        from stable_baselines3.common.logger import Logger

        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def build(cfg: TeacherConfig, run_dir: Path):
    """The normalized training env and a fresh PPO model for ``cfg``."""
    env = make_training_env(cfg.env, seed=cfg.seed)
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
    kind = "teacher"   # the progress bar's label

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
                            desc=f"{self.kind} {self.cfg.env.task}")

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
        return True

    def _on_rollout_start(self) -> None:
        # After the previous rollout's metrics line and training update: the model, statistics and
        # RNGs are those a resumed run starts from. The update's losses go into the state the
        # checkpoint keeps, so the next rollout's line carries them after a resume too (a resumed
        # model's logger starts empty).
        update = {k[6:]: float(v) for k, v in self.model.logger.name_to_value.items() if k.startswith("train/")}
        if update:
            self.state["last_update"] = update
        self.due()

    def due(self) -> None:
        """Evaluate and checkpoint if their step has come (evaluation first: the checkpoint then
        holds the best-success and last-evaluation counters it changed)."""
        if self.num_timesteps >= self.state["next_eval"] and self.state.get("last_eval") != self.num_timesteps:
            self.evaluate()
            self.state["next_eval"] += self.cfg.eval_every
        if self.num_timesteps >= self.state["next_checkpoint"]:
            self.state["next_checkpoint"] += self.cfg.checkpoint_every   # before: the checkpoint records it
            self.save_checkpoint()

    def _on_rollout_end(self) -> None:
        now = time.time()
        fps = (self.num_timesteps - self.steps_seg) / max(now - self.t_seg, 1e-9)
        rec = {"steps": int(self.num_timesteps), "wall_time": round(now - self.t_start, 2), "steps_per_s": round(fps, 1),
               "success_rate": float(np.mean(self.successes)) if self.successes else None,
               "return": float(np.mean(self.returns)) if self.returns else None,
               "reward_terms": {k: float(np.mean(v)) for k, v in self.terms.items()},
               "diverged_episodes": int(self.state.get("diverged_episodes", 0))}   # physics resets so far
        if getattr(self.env, "actor_restarts", 0):   # Ray actors lost and restarted so far (env.ray_actors)
            rec["actor_restarts"] = self.env.actor_restarts
        if getattr(self.env, "balance_record", None):   # env.ray_split=speed: the worlds each actor steps
            rec["worlds_per_actor"] = self.env.worlds_per_actor
        if hasattr(self.env, "actor_step_ms"):          # Ray actors: each one's time per step this rollout
            rec["actor_step_ms"] = self.env.actor_step_ms()
        if self.env.world.adr_sampler is not None:
            from robots_ts.sim2real.randomization.adr import adr_summary

            rec["adr"] = adr_summary(self.env.world)
        rec.update(self.state.get("last_update", {}))   # the update that made the policy of this rollout
        rec.update(self.extra_metrics())
        self.metrics.append(rec)
        self.bar.set_postfix(success=f"{rec['success_rate'] or 0:.2f}", sps=f"{fps:.0f}")

    def extra_metrics(self) -> dict:
        """Fields a run that wraps this loop adds to each rollout's record (a hook; none here)."""
        return {}

    def live_policy(self):
        """The policy being trained, as evaluations roll it out (a hook for runs that wrap it)."""
        return LivePolicy(self.model, self.venv, self.cfg.env)

    def evaluate(self) -> dict:
        from robots_ts.evaluate import rollout_policy

        res = rollout_policy(self.live_policy(), self.cfg.env,
                             episodes=self.cfg.eval_episodes, seed=self.cfg.seed + 10_000,
                             num_envs=self.cfg.eval_envs)
        rec = {"steps": int(self.num_timesteps), "wall_time": round(time.time() - self.t_start, 2),
               "eval_success_rate": res["success_rate"], "eval_return": res["mean_return"],
               "eval_episode_length": res["mean_episode_length"]}
        self.metrics.append(rec)
        self.state["last_eval"] = int(self.num_timesteps)
        if res["success_rate"] >= self.state["best_success"]:
            self.state["best_success"] = res["success_rate"]
            self._save_model_files("best")
        self.bar.write(f"[{self.num_timesteps} steps] eval success {res['success_rate']:.2f} "
                       f"(best {self.state['best_success']:.2f})")
        return res

    def _save_model_files(self, name: str) -> None:
        """``best``: model and statistics, published by their manifest (a kill between the two
        leaves a set the loader refuses, never a model with other statistics)."""
        write_set(self.ck_dir, name, {"model": lambda p: self.model.save(p),
                                      "norm": lambda p: p.write_text(json.dumps(norm_stats_of(self.venv)))},
                  int(self.num_timesteps), fault="teacher.best.member")

    def save_checkpoint(self) -> None:
        step = int(self.num_timesteps)
        name = f"step_{step:010d}"
        self.state["wall_time"] = time.time() - self.t_start
        self.state["last_checkpoint"] = step
        state = to_jsonable(capture_state(self, step))
        write_set(self.ck_dir, name, {"model": lambda p: self.model.save(p),
                                      "norm": lambda p: p.write_text(json.dumps(norm_stats_of(self.venv))),
                                      "state": lambda p: p.write_text(json.dumps(state))}, step)
        copy_set(self.ck_dir, name, "latest", ["model", "norm"], step)   # plain-SB3 convenience copies
        fault_point("teacher.checkpoint.pointer")
        atomic_write_json(self.ck_dir / "latest.json", {"step": step, "name": name})
        complete = [(s, stem) for s, stem in step_stems(self.ck_dir)
                    if (self.ck_dir / f"{stem}.manifest.json").exists() and stem != name]
        for _, stem in complete[: max(0, len(complete) - (self.cfg.keep_checkpoints - 1))]:
            remove_set(self.ck_dir, stem)

    def _on_training_end(self) -> None:
        self.bar.close()
        self.bar = Progress(disable=True)  # later evaluations still write their line


def capture_state(cb: TeacherCallback, step: int) -> dict:
    env = cb.env
    sampler = env.sampler
    return {"step": step, "torch_rng": torch.get_rng_state().numpy(), "numpy_rng": np.random.get_state()[1],
            "numpy_rng_pos": int(np.random.get_state()[2]),
            "world_rngs": [r.bit_generator.state for r in env.world.rngs],
            "randomization_rngs": [r.bit_generator.state for r in env.world.rand_rngs],
            "cloud_rngs": [r.bit_generator.state for r in env.world.cloud_rngs],
            "noise_rngs": [r.bit_generator.state for r in env.world.noise_rngs],
            "curriculum": sampler.state_dict() if sampler is not None else None,
            "adr": env.world.adr_sampler.state_dict() if env.world.adr_sampler is not None else None,
            "callback": dict(cb.state)}


def restore_state(state: dict, env: BatchedEnv, cb_state: dict) -> None:
    torch.set_rng_state(torch.as_tensor(np.asarray(state["torch_rng"], dtype=np.uint8)))
    np.random.set_state(("MT19937", np.asarray(state["numpy_rng"], dtype=np.uint32), state["numpy_rng_pos"], 0, 0.0))
    for r, s in zip(env.world.rngs, state["world_rngs"]):
        r.bit_generator.state = s
    for r, s in zip(env.world.rand_rngs, state.get("randomization_rngs", [])):   # absent before randomization
        r.bit_generator.state = s
    for r, s in zip(env.world.cloud_rngs, state.get("cloud_rngs", [])):          # absent before their own stream
        r.bit_generator.state = s
    # Checkpoints before per-world noise streams kept one batch stream ("noise_rng"): it has no
    # per-world equivalent, so such a run resumes with the streams its seed gives.
    for r, s in zip(env.world.noise_rngs, state.get("noise_rngs", [])):
        r.bit_generator.state = s
    if state.get("curriculum") is not None and env.sampler is not None:
        env.sampler.load_state_dict(state["curriculum"])
    if state.get("adr") is not None and env.world.adr_sampler is not None:
        env.world.adr_sampler.load_state_dict(state["adr"])
    cb_state.update(state["callback"])


def check_fresh_run_dir(run_dir: Path) -> None:
    """A new run needs a directory that does not exist yet or is empty."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--run-dir {run_dir} is a file, not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        hint = f"use --resume {run_dir} to continue it" if (run_dir / "run.json").exists() else "it is not empty"
        raise FileExistsError(f"{run_dir} already holds a run; {hint}, or pick another --run-dir")


class Runner:
    """What differs between runs this loop trains: their kind, config class, checks, how the env
    and model are built and which callbacks watch them. The teacher's is the default; residual
    refinement (robots_ts.policies.residual.train) passes its own."""
    kind = "teacher"
    config_cls = TeacherConfig

    def validate(self, cfg) -> None:
        validate(cfg)

    def build(self, cfg, run_dir: Path):
        return build(cfg, run_dir)

    def callbacks(self, cfg, run_dir: Path, env, venv, state: dict):
        """(the metrics/checkpoint callback, the list model.learn gets)."""
        cb = TeacherCallback(cfg, run_dir, env, venv, state)
        return cb, cb

    def load_model(self, cfg, path: Path, venv, run_dir: Path, built):
        """The model of checkpoint ``path`` (of the class of ``built``, the freshly built model), on ``venv``."""
        return load_sb3(path, cfg.device, env=venv, cls=type(built),
                        custom_objects={"tensorboard_log": str(run_dir / "tb"),
                                        **schedule_objects(learning_rate(cfg.ppo), cfg.ppo.clip_range)})

    def meta(self, cfg) -> dict:
        return {"task": cfg.env.task, "backend": cfg.env.backend, **({"init": cfg.init} if cfg.init else {})}


def runner_for(cfg: TeacherConfig) -> Runner:
    """The runner of a teacher config: kickstarted PPO when it names teachers, else plain PPO."""
    if cfg.kickstart.teachers:
        from robots_ts.policies.teacher.kickstart_run import KickstartRunner

        return KickstartRunner()
    return Runner()


def prepare_resume(run_dir: Path, total_steps: int | None = None,
                   runner: Runner | None = None) -> tuple[TeacherConfig, dict | None, bool]:
    """Everything a resume needs, checked before anything is written: the run (kind, config), the
    checkpoint set it starts from (every member against its manifest, the state and statistics
    parseable) and the metrics it keeps. Returns (config, resume point or None, config changed)."""
    run_dir = Path(run_dir)
    runner = runner or Runner()
    read_run_meta(run_dir, runner.kind)
    strict = uses_manifests(run_dir)
    cfg = load_run_config(runner.config_cls, run_dir / "config.yaml", require_checksum=strict)
    changed = total_steps is not None and int(total_steps) != cfg.total_steps
    if total_steps is not None:
        cfg = replace(cfg, total_steps=int(total_steps))
        try:
            runner.validate(cfg)
        except ConfigError as exc:
            raise ConfigError(f"--total-steps: {exc}") from None
    runner.validate(cfg)
    ck = run_dir / "checkpoints"
    point = resume_point(ck) if strict else read_pointer(ck)
    if point is None:
        return cfg, None, changed
    name = point["name"]
    if strict:
        verify_set(ck, name, ("model", "norm", "state"))
    else:
        for role in ("zip", "norm.json", "state.json"):
            if not (ck / f"{name}.{role}").exists():
                raise CheckpointError(f"teacher checkpoint {ck / name}: {ck / f'{name}.{role}'} is missing")
    state = read_json(ck / f"{name}.state.json", "checkpoint state")
    if not (isinstance(state, dict) and {"step", "callback", "torch_rng", "world_rngs"} <= set(state)):
        raise CorruptFileError(f"checkpoint state {ck / f'{name}.state.json'} lacks its RNG and counter fields")
    load_norm_stats(ck / f"{name}.norm.json")
    if strict:
        rollouts = [r["steps"] for r in read_jsonl(run_dir / "metrics.jsonl") if "steps_per_s" in r]
        if point["step"] not in rollouts:
            raise RunError(f"{run_dir / 'metrics.jsonl'} has no record of step {point['step']}, where checkpoint "
                           f"{name} was saved (the file was truncated or deleted); resuming would leave a gap "
                           "in the learning curve. Restore it, or start a new run")
    return cfg, point, changed


def recorded_paths(cfg: TeacherConfig) -> TeacherConfig:
    """``cfg`` as its run's config.yaml records it: the warm start and kickstart teacher runs as full paths."""
    if cfg.init:
        cfg = replace(cfg, init=str(Path(cfg.init).resolve()))
    if cfg.kickstart.teachers:
        from robots_ts.policies.teacher.kickstart_run import resolve_teachers

        cfg = resolve_teachers(cfg)
    return cfg


@keeps_torch_threads
def train_teacher(cfg: TeacherConfig | None = None, run_dir: str | Path | None = None, resume: bool = False,
                  total_steps: int | None = None, runner: Runner | None = None) -> Path:
    """Train (or, with ``resume``, continue) a teacher; returns the run directory.

    On resume, ``total_steps`` may extend (or shorten) the run; the learning-rate schedule then
    follows the new total. Every check happens before the run directory is created or touched.
    """
    run_dir = Path(run_dir)
    point = None
    if resume:
        cfg, point, changed = prepare_resume(run_dir, total_steps, runner)
    runner = runner or runner_for(cfg)
    if not resume:
        runner.validate(cfg)
        check_fresh_run_dir(run_dir)
        if cfg.init:
            from robots_ts.policies.teacher.warm_start import check_init

            check_init(cfg)
        cfg = recorded_paths(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    ck_dir = run_dir / "checkpoints"
    env, venv, model = runner.build(cfg, run_dir)
    cb_state = {"wall_time": 0.0, "best_success": -1.0, "next_checkpoint": cfg.checkpoint_every,
                "next_eval": cfg.eval_every, "diverged_episodes": 0, "last_eval": -1, "last_checkpoint": -1}
    try:
        if point is not None:
            name = point["name"]
            model = runner.load_model(cfg, ck_dir / f"{name}.zip", venv, run_dir, model)
            load_norm_stats_into(venv, load_norm_stats(ck_dir / f"{name}.norm.json"))
            restore_state(from_jsonable(read_json(ck_dir / f"{name}.state.json")), env, cb_state)
        elif cfg.init:   # a new run, or a resumed one without a checkpoint yet, starts from the init run
            from robots_ts.policies.teacher.warm_start import warm_start

            print(warm_start(model, venv, cfg))
        if resume:
            if point is not None and read_pointer(ck_dir) != point:
                # Killed between the set's manifest and the pointer (or the pointer was lost).
                copy_set(ck_dir, point["name"], "latest", ["model", "norm"], point["step"])
                atomic_write_json(ck_dir / "latest.json", {"step": point["step"], "name": point["name"]})
            if (ck_dir / "best.zip").exists() or (ck_dir / "best.manifest.json").exists():
                try:
                    verify_set(ck_dir, "best", ("model", "norm"))
                except (RunError, FileNotFoundError) as exc:
                    # A best set a kill (or damage) left incomplete: dropped and chosen again from the
                    # evaluations from here on, never paired across saves.
                    print(f"resume: dropping the incomplete best checkpoint ({exc})")
                    remove_set(ck_dir, "best")
                    cb_state["best_success"] = -1.0
            if changed:
                save_config(cfg, run_dir / "config.yaml")
            # Records after the checkpoint belong to lost work; with no checkpoint, all of them do.
            MetricsLog(run_dir / "metrics.jsonl").truncate_after("steps", point["step"] if point else -1)
            for step, stem in step_stems(ck_dir):  # sets a killed run left after its resume point
                if point is None or step > point["step"]:
                    remove_set(ck_dir, stem)
            if point is None:
                print(f"resume: no checkpoint in {run_dir} yet; starting from scratch")
        else:
            ck_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
            write_run_meta(run_dir, runner.kind, **runner.meta(cfg))
        cb, callbacks = runner.callbacks(cfg, run_dir, env, venv, cb_state)
        remaining = cfg.total_steps - model.num_timesteps
        if remaining > 0:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=point is None, tb_log_name="ppo",
                        progress_bar=False)
        else:  # resuming a finished run: nothing to learn, the final checkpoint and evaluation remain
            cb.init_callback(model)
            cb.t_start = time.time() - cb_state["wall_time"]
        step = int(model.num_timesteps)
        if cb_state.get("last_eval") != step:
            cb.evaluate()
        if cb_state.get("last_checkpoint") != step:
            cb_state["next_checkpoint"] = step + cfg.checkpoint_every
            cb.save_checkpoint()
    finally:
        venv.close()
    from robots_ts.plots import plot_learning_curve

    plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", title=f"{runner.kind} {cfg.env.task}")
    plot_curriculum(env.sampler, run_dir)
    from robots_ts.sim2real.randomization.adr import record_randomization

    record_randomization(env.world, run_dir)
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
