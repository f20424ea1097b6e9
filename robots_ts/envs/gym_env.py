"""One world as a Gymnasium env, for ``gymnasium.make("robots_ts/Push-v0", obs_groups=[...])``."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from robots_ts.config import EnvConfig, PointsConfig, DepthConfig
from robots_ts.envs.world import WorldBatch


class RobotsTsEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 25}

    def __init__(self, task: str = "Reach", obs_groups=("proprio", "privileged"), render_mode: str | None = None,
                 config: EnvConfig | None = None, **overrides):
        cfg = config or EnvConfig()
        depth = overrides.pop("depth", None)
        points = overrides.pop("points", None)
        if isinstance(obs_groups, str):  # one group by name, as gymnasium users pass it
            obs_groups = [obs_groups]
        cfg = EnvConfig(**{**vars(cfg), "task": task, "obs_groups": list(obs_groups), "num_envs": 1,
                           "num_threads": 1, **overrides})
        if isinstance(depth, dict):
            cfg.depth = DepthConfig(**{**vars(cfg.depth), **depth})
        if isinstance(points, dict):
            cfg.points = PointsConfig(**{**vars(cfg.points), **points})
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.world = WorldBatch(cfg, seed=None)
        self.cfg = cfg
        self.observation_space = self.world.observation_space
        self.action_space = self.world.action_space
        self._success = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.world.seed(seed)
        self.world.reset_worlds([0])
        self._success = False
        return self._obs(), {"params": self.world.state.params[0].copy()}

    def _obs(self):
        return {k: v[0] for k, v in self.world.observe().items()}

    def step(self, action):
        a = np.asarray(action)
        if a.dtype.kind not in "iuf":
            raise ValueError(f"{self.cfg.task}: action must be real numbers, got dtype {a.dtype}")
        if a.shape != self.action_space.shape:
            raise ValueError(f"{self.cfg.task}: action has shape {a.shape}, expected {self.action_space.shape}")
        reward, terms, success, truncated = self.world.step(a[None])
        self._success |= bool(success[0])
        diverged = bool(self.world.diverged[0])
        terminated = (bool(success[0]) and self.cfg.terminate_on_success) or diverged
        info = {"reward_terms": {k: float(v[0]) for k, v in terms.items()}, "is_success": self._success,
                "diverged": diverged}
        return self._obs(), float(reward[0]), terminated, bool(truncated[0]) and not diverged, info

    def render(self):
        if self.render_mode == "depth_array":
            from robots_ts.envs.video import render_depth

            return render_depth(self.world, 0)
        if self.render_mode == "rgb_array":
            from robots_ts.envs.video import render_rgb

            return render_rgb(self.world, 0)
        return None

    def close(self):
        self.world.close()
