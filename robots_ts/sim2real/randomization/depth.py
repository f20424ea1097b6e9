"""A structured-light / stereo depth sensor applied to rendered depth images, batched over worlds.

In the order a sensor produces it:

1. a per-pixel Gaussian sub-pixel shift, sampled nearest (DextrAH-G: sigma 0.5 px);
2. axial noise growing with distance, sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m (Nguyen, Izadi and
   Lovell, "Modeling Kinect sensor noise for improved 3D reconstruction and tracking", 3DIMPVT
   2012), scaled by ``axial_noise``;
3. disparity quantisation at the sensor's own focal length and baseline (simkinect, Handa et al.
   2014: 1/8 px), which makes the depth steps grow with z^2;
4. lost pixels: random dropout, depth edges of the clean scene (where inverse depth bends by
   more than ``edge_threshold``, lost with probability ``edge_dropout``: the projector's shadow),
   random blobs.

Lost pixels read 0, as in a 16UC1 driver image (millimetres, 0 = no data); the students'
preprocessing reads 0 and NaN (the 32FC1 encoding) as "no return". Pixels with no surface
(at ``far``) stay at ``far``.
"""
from __future__ import annotations

import numpy as np

from robots_ts.config import DepthNoiseConfig


def loses_pixels(cfg: DepthNoiseConfig) -> bool:
    """Whether the sensor model marks pixels lost (0), so the observation space must start at 0."""
    return cfg.dropout > 0 or cfg.edge_dropout > 0 or cfg.blobs > 0


class NoiseBank:
    """Pre-drawn standard normal and uniform numbers, handed out as views at random offsets.

    Drawing a million fresh numbers per step cost the env about half its depth throughput on two
    cores; views of a 4M-entry bank cost nothing. The offsets come from the caller's generator, so
    the same seed still gives the same images. Windows of consecutive steps overlap now and then:
    sensor noise, not a statistics experiment.
    """

    def __init__(self, rng: np.random.Generator, size: int = 1 << 22):
        self.normal = rng.standard_normal(size, dtype=np.float32)
        self.uniform = rng.random(size, dtype=np.float32)

    def take(self, kind: str, shape, rng: np.random.Generator) -> np.ndarray:
        bank = self.normal if kind == "normal" else self.uniform
        n = int(np.prod(shape))
        if n > len(bank):
            return (rng.standard_normal(shape, dtype=np.float32) if kind == "normal"
                    else rng.random(shape, dtype=np.float32))
        start = int(rng.integers(0, len(bank) - n + 1))
        return bank[start:start + n].reshape(shape)


class DepthSensorModel:
    def __init__(self, cfg: DepthNoiseConfig, near: float, far: float, seed: int = 0):
        self.cfg, self.near, self.far = cfg, float(near), float(far)
        self._bank: NoiseBank | None = None
        self._seed = seed

    def _base(self, n: int, h: int, w: int) -> np.ndarray:
        """Flat index of each pixel in the edge-padded (n, h + 4, w + 4) image."""
        key = (n, h, w)
        if getattr(self, "_base_key", None) != key:
            rows = np.arange(h, dtype=np.int32)[None, :, None] + 2
            cols = np.arange(w, dtype=np.int32)[None, None, :] + 2
            worlds = np.arange(n, dtype=np.int32)[:, None, None] * ((h + 4) * (w + 4))
            self._base_arr, self._base_key = worlds + rows * (w + 4) + cols, key
        return self._base_arr

    def _edges(self, z: np.ndarray) -> np.ndarray:
        """Pixels next to a depth discontinuity of the clean image: where inverse depth, which is
        linear across any plane (so a table seen at a grazing angle has no edges), bends by more
        than ``edge_threshold`` between neighbours. Both sides of the jump are marked: the
        projector's shadow and the mixed pixels of a real sensor."""
        inv = 1.0 / np.maximum(z, 1e-3)
        edge = np.zeros(z.shape, dtype=bool)
        for axis in (1, 2):
            bend = np.abs(np.diff(inv, n=2, axis=axis)) > self.cfg.edge_threshold
            lo = [slice(None)] * 3
            for off in (0, 1, 2):
                lo[axis] = slice(off, z.shape[axis] - 2 + off)
                edge[tuple(lo)] |= bend
        return edge

    @property
    def active(self) -> bool:
        c = self.cfg
        return any(v > 0 for v in (c.pixel_shift, c.axial_noise, c.disparity_step, c.dropout, c.edge_dropout, c.blobs))

    def __call__(self, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, H, W) metres -> a noisy (N, H, W) float32 copy, lost pixels at 0."""
        c = self.cfg
        if self._bank is None:
            self._bank = NoiseBank(np.random.default_rng(self._seed))
        bank = self._bank
        z = np.array(depth, dtype=np.float32)
        clean = z
        n, h, w = z.shape
        if c.pixel_shift > 0:
            # Shifts of at most 2 px (beyond 4 sigma at 0.5 px) into an edge-padded copy: no clipping.
            g = bank.take("normal", (2, n, h, w), rng)
            dv = np.clip(np.rint(g[0] * c.pixel_shift), -2, 2).astype(np.int32)
            du = np.clip(np.rint(g[1] * c.pixel_shift), -2, 2).astype(np.int32)
            padded = np.pad(z, ((0, 0), (2, 2), (2, 2)), mode="edge").reshape(-1)
            dv *= w + 4
            dv += du
            dv += self._base(n, h, w)
            z = padded[dv]
        surface = z < self.far - 1e-4
        if c.axial_noise > 0:
            sigma = (z - 0.4) ** 2
            sigma *= 0.0019 * c.axial_noise
            sigma += 0.0012 * c.axial_noise
            sigma *= bank.take("normal", z.shape, rng)
            z = np.where(surface, z + sigma, z)
        if c.disparity_step > 0:
            # Disparity fb / z in steps of disparity_step: z_q = K / rint(K / z), K = fb / step.
            k = np.float32(c.native_focal * c.baseline / c.disparity_step)
            steps = np.rint(k / np.maximum(z, np.float32(1e-3)))
            np.maximum(steps, 1.0, out=steps)
            z = np.where(surface, k / steps, z)
        np.clip(z, self.near, self.far, out=z)
        lost = np.zeros(z.shape, dtype=bool)
        if c.dropout > 0 or c.edge_dropout > 0:
            draw = bank.take("uniform", z.shape, rng)
            if c.dropout > 0:
                lost |= draw < c.dropout
            if c.edge_dropout > 0:
                lost |= self._edges(clean) & (draw >= 1.0 - c.edge_dropout)   # the draw's other end
        if c.blobs > 0:
            counts = rng.integers(0, c.blobs + 1, n)
            total = int(counts.sum())
            if total:
                world = np.repeat(np.arange(n), counts)
                cy, cx = rng.uniform(0, h, total), rng.uniform(0, w, total)
                r = rng.uniform(c.blob_radius[0], c.blob_radius[1], total)
                yy, xx = np.arange(h), np.arange(w)
                for k in range(total):   # each blob touches only its bounding box
                    y0, y1 = max(0, int(cy[k] - r[k])), min(h, int(cy[k] + r[k]) + 1)
                    x0, x1 = max(0, int(cx[k] - r[k])), min(w, int(cx[k] + r[k]) + 1)
                    disk = (yy[y0:y1, None] - cy[k]) ** 2 + (xx[None, x0:x1] - cx[k]) ** 2 <= r[k] ** 2
                    lost[world[k], y0:y1, x0:x1] |= disk
        z[lost] = 0.0
        return z
