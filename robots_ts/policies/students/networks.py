"""Student networks: proprio MLP + depth CNN or PointNet, optional GRU core, optional aux head.

A :class:`Student` reads raw env observations (proprio in its units, depth in metres, points in
metres in the base frame) and does its own preprocessing, so the same forward serves training,
rollouts and export. Proprio and point coordinates (per axis) are standardised with statistics of
the distillation dataset. Depth is clipped to the camera's [near, far], then either scaled to
[0, 1] (``depth_norm: range``) or, by default, standardised per pixel (``pixel``: minus the
dataset's mean image, over its std). The per-pixel mean removes the static background (table,
empty space), so a small object such as the Reach ball stands out; with [0, 1] scaling a CNN
learns to ignore a ball a few pixels wide and predicts from proprio alone. The normalization
statistics are buffers outside the state dict; :mod:`robots_ts.policies.students.checkpoint` keeps them
in the checkpoint's JSON.

Every forward takes batch-major sequences ``(B, T, ...)``: feed-forward students apply the same
layers at every step, recurrent ones run a GRU that restarts wherever ``first`` marks an episode
start (truncated backpropagation: training windows start from a zero state).

A multi-task student (:mod:`robots_ts.policies.distill.multi`) also reads the ``task`` group (one-hot
task id and the task's command): it joins the standardised proprio at the input of the proprio
MLP, unnormalized (one-hot entries and commands in metres are already of order one).

A student whose ``obs_spec`` has ``history`` (the last ``env.action_history`` actions it sent,
newest first: what acting through action and observation latency needs) reads it the same way,
after ``task``, unnormalized. The values are actions, bounded in [-1, 1] by construction, so there
is no scale to fix; dataset statistics would only add a transform that moves as the acting policy
changes over DAgger iterations (teacher-heavy at first, the student's own later), and constants
the export and the robot runtime would have to carry. A student without these groups has the
parameters, the outputs and the checkpoints it always had.

The optional aux head predicts privileged columns (e.g. the object's position, as in DextrAH-G).
By default (``aux_input: sensor``) it reads the image / cloud embedding alone: it cannot answer
from proprio, so it pushes the encoder to localize the object, which is what the action head
needs; ``core`` reads the fused (or recurrent) core instead, letting memory contribute.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robots_ts.policies.students.config import AugmentConfig, StudentNetConfig

# Groups that join the standardised proprio at the proprio MLP's input, unnormalized, in this order.
EXTRA_GROUPS = ("task", "history")
NORM_KEYS = ("proprio_mean", "proprio_std", "aux_mean", "aux_std", "depth_mean", "depth_std", "points_mean",
             "points_std")


def mlp(sizes: list[int], out_act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if out_act or i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class DepthEncoder(nn.Module):
    """Strided convolutions, then flatten + linear: flattening (not global pooling) keeps *where*
    things are in the image, which is what a reaching or pushing student has to read off it."""

    def __init__(self, shape: tuple[int, int, int], cfg: StudentNetConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = shape[0]
        for c, k, s in zip(cfg.cnn_channels, cfg.cnn_kernels, cfg.cnn_strides):
            layers += [nn.Conv2d(c_in, c, k, stride=s, padding=k // 2), nn.ELU()]
            c_in = c
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, cfg.feature_dim), nn.ELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class PointEncoder(nn.Module):
    """PointNet: one MLP shared by every point, then a max over points (order-invariant)."""

    def __init__(self, cfg: StudentNetConfig):
        super().__init__()
        self.shared = mlp([3, *cfg.point_mlp])
        self.fc = nn.Sequential(nn.Linear(cfg.point_mlp[-1], cfg.feature_dim), nn.ELU())

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        return self.fc(self.shared(pts).max(dim=-2).values)


def proprio_fields(control: str, command_names=()) -> dict[str, slice]:
    """The columns of each proprio field a student reads: the env's layout for ``control`` and the
    task's command; a multi-task student (no command in its proprio, it reads the ``task`` group)
    passes none."""
    from robots_ts.robot.arm import proprio_layout

    return proprio_layout(control, tuple(command_names)).slices()


def box_sums(x: torch.Tensor) -> torch.Tensor:
    """Sums over each pixel's 3x3 neighbourhood of images (B, C, H, W), zero outside: a row pass
    and a column pass of shifted adds (on the CPU about three times faster than ``avg_pool2d``, and
    plain Pad, Slice and Add in an exported graph)."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = p[..., :, :-2] + p[..., :, 1:-1] + p[..., :, 2:]
    return rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]


class Student(nn.Module):
    def __init__(self, cfg: StudentNetConfig, obs_spec: dict[str, list[int]], action_dim: int,
                 depth_range: tuple[float, float] = (0.1, 2.5), proprio_fields: dict[str, slice] | None = None):
        """``proprio_fields`` (:func:`proprio_fields`) names proprio's columns; needed only by
        ``cfg.proprio_exclude``."""
        super().__init__()
        self.cfg = cfg
        self.obs_spec = {k: list(v) for k, v in obs_spec.items()}
        self.encoder_group = cfg.encoder
        if "proprio" not in obs_spec or cfg.encoder not in obs_spec:
            raise ValueError(f"a {cfg.encoder} student needs observation groups ['proprio', '{cfg.encoder}'], "
                             f"got {sorted(obs_spec)}")
        p_dim = int(obs_spec["proprio"][0])
        self.task_dim = int(obs_spec["task"][0]) if "task" in obs_spec else 0
        self.history_dim = int(obs_spec["history"][0]) if "history" in obs_spec else 0
        if "history" in obs_spec and (len(obs_spec["history"]) != 1 or self.history_dim <= 0
                                      or self.history_dim % action_dim):
            raise ValueError(f"observation group 'history' must be flat, env.action_history actions of "
                             f"{action_dim} columns each; got shape {obs_spec['history']}")
        self.proprio = mlp([p_dim + self.task_dim + self.history_dim, *cfg.proprio_mlp])
        self.sensor = (DepthEncoder(tuple(obs_spec["depth"]), cfg) if cfg.encoder == "depth"
                       else PointEncoder(cfg))
        fused = cfg.proprio_mlp[-1] + cfg.feature_dim
        self.gru = nn.GRUCell(fused, cfg.gru_hidden) if cfg.gru_hidden > 0 else None
        core = cfg.gru_hidden if self.gru is not None else fused
        self.head = mlp([core, *cfg.head_mlp])
        self.mean = nn.Linear(cfg.head_mlp[-1], action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(cfg.init_log_std)))
        self.aux_dim = len(cfg.aux_indices) if cfg.aux_weight > 0 else 0
        self.aux = None
        if self.aux_dim and cfg.aux_input == "sensor":
            self.aux = nn.Sequential(mlp([cfg.feature_dim, *cfg.head_mlp]), nn.Linear(cfg.head_mlp[-1], self.aux_dim))
        elif self.aux_dim:
            self.aux = nn.Linear(cfg.head_mlp[-1], self.aux_dim)
        self.near, self.far = float(depth_range[0]), float(depth_range[1])
        # Normalization lives in the checkpoint's JSON, not the state dict (persistent=False).
        self.register_buffer("proprio_mean", torch.zeros(p_dim), persistent=False)
        # Derived from the config and the layout, so not in the state dict: 0 on excluded columns.
        self.register_buffer("proprio_keep", self._proprio_keep(cfg.proprio_exclude, proprio_fields, p_dim),
                             persistent=False)
        self.register_buffer("proprio_std", torch.ones(p_dim), persistent=False)
        self.register_buffer("aux_mean", torch.zeros(self.aux_dim), persistent=False)
        self.register_buffer("aux_std", torch.ones(self.aux_dim), persistent=False)
        image = obs_spec["depth"][1:] if cfg.encoder == "depth" else [0]
        self.register_buffer("depth_mean", torch.full(image, self.near), persistent=False)
        self.register_buffer("depth_std", torch.ones(1), persistent=False)
        self.register_buffer("points_mean", torch.zeros(3), persistent=False)
        self.register_buffer("points_std", torch.ones(3), persistent=False)

    @staticmethod
    def _proprio_keep(exclude: list[str], fields: dict[str, slice] | None, p_dim: int) -> torch.Tensor:
        keep = torch.ones(p_dim)
        if not exclude:
            return keep
        if fields is None:
            raise ValueError(f"student.proprio_exclude {list(exclude)} needs the proprio layout")
        unknown = [f for f in exclude if f not in fields]
        if unknown:
            raise ValueError(f"student.proprio_exclude: unknown proprio field(s) {unknown}; proprio has "
                             f"{list(fields)}")
        width = max(sl.stop for sl in fields.values())
        if width != p_dim:
            raise ValueError(f"student.proprio_exclude: the proprio layout has {width} columns, the "
                             f"observation {p_dim}")
        for f in exclude:
            keep[fields[f]] = 0.0
        return keep

    @property
    def recurrent(self) -> bool:
        return self.gru is not None

    def set_normalization(self, norm: dict[str, list]) -> None:
        for key in NORM_KEYS:
            if key in norm:
                buf = getattr(self, key)
                value = torch.as_tensor(np.asarray(norm[key], dtype=np.float32))
                if value.shape != buf.shape:
                    raise ValueError(f"normalization {key} has shape {tuple(value.shape)}, the network "
                                     f"expects {tuple(buf.shape)}")
                buf.copy_(value)

    def normalization(self) -> dict[str, list]:
        return {k: getattr(self, k).tolist() for k in NORM_KEYS}

    def initial_state(self, batch: int) -> torch.Tensor | None:
        if self.gru is None:
            return None
        return torch.zeros(batch, self.cfg.gru_hidden, device=self.mean.weight.device)

    @property
    def extra_groups(self) -> tuple[str, ...]:
        """The groups of :data:`EXTRA_GROUPS` this network reads (passed by name to ``forward``)."""
        dims = {"task": self.task_dim, "history": self.history_dim}
        return tuple(g for g in EXTRA_GROUPS if dims[g])

    @property
    def obs_groups(self) -> tuple[str, ...]:
        """The observation groups this network reads, in the order a Policy hands them over."""
        return ("proprio", self.encoder_group, *self.extra_groups)

    def encode(self, proprio: torch.Tensor, sensor: torch.Tensor, task: torch.Tensor | None = None,
               history: torch.Tensor | None = None) -> torch.Tensor:
        """(B*T, P), (B*T, ...), task (B*T, K) of a multi-task student, history (B*T, H) of a student
        that reads it -> fused features (B*T, F)."""
        p = (proprio - self.proprio_mean) / self.proprio_std * self.proprio_keep
        if self.task_dim:
            if task is None:
                raise ValueError(f"this student serves several tasks: it reads the 'task' group "
                                 f"({self.task_dim} columns), which was not given")
            p = torch.cat([p, task], dim=-1)
        if self.history_dim:
            if history is None:
                raise ValueError(f"this student reads the 'history' group (its last actions sent, "
                                 f"{self.history_dim} columns), which was not given")
            p = torch.cat([p, history], dim=-1)
        if self.encoder_group == "depth":
            sensor = self.read_depth(sensor)
            if self.cfg.depth_norm == "pixel":
                sensor = (sensor - self.depth_mean) / self.depth_std
            else:
                sensor = (sensor - self.near) / (self.far - self.near)
        else:
            # Metres around the workspace are small numbers for an MLP: standardise each axis.
            sensor = (sensor - self.points_mean) / self.points_std
        return torch.cat([self.proprio(p), self.sensor(sensor)], dim=-1)

    def read_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """Depth images (B, 1, H, W) in metres as the CNN reads them: no data (0 in 16UC1 drivers
        and the randomized sensor, NaN in 32FC1) filled from valid neighbours ``depth_fill``
        times, the rest read far (no return), clamped to [near, far].

        Each pass gives every lost pixel with a valid neighbour the mean of its valid 3x3
        neighbours; a valid depth is positive, so ``z > 0`` marks what is valid so far. A batch
        without a lost pixel (a clean render) skips the passes, which would change nothing, except
        when traced for export: the exported graph always fills."""
        lost = ~(depth > 0) | torch.isinf(depth)          # NaN compares false: lost
        if self.cfg.depth_fill > 0 and (torch.jit.is_tracing() or bool(lost.any())):
            z = torch.where(lost, torch.zeros_like(depth), depth)
            for _ in range(int(self.cfg.depth_fill)):
                known = z > 0
                z = torch.where(known, z, box_sums(z) / box_sums(known.to(z.dtype)).clamp_min(1e-6))
            lost = ~(z > 0)
            depth = z
        depth = torch.where(lost, torch.full_like(depth, self.far), depth)
        return depth.clamp(self.near, self.far)

    def forward(self, proprio: torch.Tensor, sensor: torch.Tensor, hidden: torch.Tensor | None = None,
                first: torch.Tensor | None = None, task: torch.Tensor | None = None,
                history: torch.Tensor | None = None):
        """proprio (B, T, P), sensor (B, T, ...), first (B, T) bool, task (B, T, K) of a multi-task
        student, history (B, T, H) of a student that reads it -> mean (B, T, A), normalized aux
        prediction (B, T, K) or None, final hidden state (B, H) or None."""
        b, t = proprio.shape[:2]
        feats = self.encode(proprio.reshape(b * t, -1), sensor.reshape(b * t, *sensor.shape[2:]),
                            None if task is None else task.reshape(b * t, -1),
                            None if history is None else history.reshape(b * t, -1))
        feats = feats.reshape(b, t, -1)
        if self.gru is not None:
            h = self.initial_state(b) if hidden is None else hidden
            outs = []
            for k in range(t):
                if first is not None:
                    # A new episode starts here: forget the previous one.
                    h = h * (~first[:, k]).unsqueeze(-1).to(h.dtype)
                h = self.gru(feats[:, k], h)
                outs.append(h)
            core, hidden = torch.stack(outs, dim=1), h
        else:
            core, hidden = feats, None
        z = self.head(core)
        aux = None
        if self.aux is not None:
            aux = self.aux(feats[..., -self.cfg.feature_dim:] if self.cfg.aux_input == "sensor" else z)
        return self.mean(z), aux, hidden


def augment(proprio: torch.Tensor, sensor: torch.Tensor, encoder: str, cfg: AugmentConfig,
            gen: torch.Generator, proprio_std: torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time sensor noise on a batch (B, T, ...); returns new tensors, inputs untouched."""
    if cfg.proprio_noise > 0:
        noise = torch.randn(proprio.shape, generator=gen, dtype=proprio.dtype)
        proprio = proprio + noise * cfg.proprio_noise * proprio_std
    if encoder == "depth":
        if cfg.depth_noise > 0:
            # On valid pixels only: noise on a lost pixel (0) would turn it into a valid depth.
            noise = torch.randn(sensor.shape, generator=gen, dtype=sensor.dtype) * cfg.depth_noise
            sensor = torch.where(sensor > 0, sensor + noise, sensor)
        if cfg.depth_dropout > 0:
            # Real depth cameras lose returns on edges and shiny surfaces: those pixels read 0, no
            # data, as a driver encodes them (the student reads them far or fills them).
            holes = torch.rand(sensor.shape, generator=gen) < cfg.depth_dropout
            sensor = torch.where(holes, torch.zeros_like(sensor), sensor)
    else:
        if cfg.point_jitter > 0:
            sensor = sensor + torch.randn(sensor.shape, generator=gen, dtype=sensor.dtype) * cfg.point_jitter
        if cfg.point_dropout > 0:
            # Keep the cloud size fixed: dropped points become copies of random kept ones, which a
            # max-pool cannot tell from the point being absent.
            n = sensor.shape[-2]
            flat = sensor.reshape(-1, n, 3)
            drop = torch.rand(flat.shape[:2], generator=gen) < cfg.point_dropout
            src = torch.randint(0, n, flat.shape[:2], generator=gen)
            keep_idx = torch.arange(n).expand_as(src)
            # Redirect dropped slots to a random source; a source that is itself dropped is
            # tolerated (it still holds a real point from the cloud).
            idx = torch.where(drop, src, keep_idx)
            sensor = torch.gather(flat, 1, idx.unsqueeze(-1).expand(-1, -1, 3)).reshape(sensor.shape)
    return proprio, sensor
