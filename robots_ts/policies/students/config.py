"""Typed config of a student network and of its training-time observation noise.

``StudentNetConfig`` is the architecture a checkpoint records (encoder, layer sizes, recurrent
core, aux head); ``AugmentConfig`` the sensor noise :func:`~robots_ts.policies.students.networks.augment`
adds while the student trains. Both are sections (``student:``, ``augment:``) of a distillation
run's config, :class:`robots_ts.policies.distill.config.StudentConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StudentNetConfig:
    encoder: str = "depth"                  # depth (CNN) | points (PointNet); must match env.obs_groups
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    cnn_kernels: list[int] = field(default_factory=lambda: [5, 3, 3])
    cnn_strides: list[int] = field(default_factory=lambda: [2, 2, 2])
    depth_norm: str = "pixel"               # pixel (minus the mean image, over its std) | range ([near, far] -> [0, 1])
    point_mlp: list[int] = field(default_factory=lambda: [64, 128, 256])
    feature_dim: int = 128                  # image / cloud embedding size
    proprio_mlp: list[int] = field(default_factory=lambda: [128])
    head_mlp: list[int] = field(default_factory=lambda: [256, 128])
    gru_hidden: int = 0                     # 0: feed-forward; >0: a GRU core of this size
    aux_indices: list[int] = field(default_factory=list)  # privileged columns the aux head predicts
    aux_weight: float = 0.0                 # loss weight of the aux head (0 with aux_indices: no head)
    aux_input: str = "sensor"               # sensor: from the image/cloud embedding alone | core: from the fused core
    init_log_std: float = -1.0              # learned state-independent std, used by the "nll" loss
    # Hole filling before the CNN, as a depth driver's post-processing does: each lost pixel (0 or
    # NaN) next to valid ones takes their 3x3 mean, repeated this many times; what is still lost
    # reads far. A clean render has no holes, so it passes unchanged; a noisy one loses the
    # lost-pixel halo round every object, which a student otherwise learns to find things by.
    depth_fill: int = 0
    # Fields of proprio the network does not read (their columns are zeroed after normalization),
    # e.g. [prev_action]: a student that reads the action it sent last can learn to repeat it (the
    # "copycat" shortcut of imitation): labels change little from one step to the next, so the last
    # action predicts the next one better than the sensors do.
    proprio_exclude: list[str] = field(default_factory=list)


@dataclass
class AugmentConfig:
    """Training-time observation noise, so the student does not overfit clean sim sensors."""

    depth_noise: float = 0.0                # metres, additive Gaussian per pixel
    depth_dropout: float = 0.0              # fraction of pixels lost ("no return": read as 0)
    point_jitter: float = 0.0               # metres, additive Gaussian per point
    point_dropout: float = 0.0              # fraction of points replaced by copies of kept ones
    proprio_noise: float = 0.0              # additive Gaussian, in units of the proprio std
