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

Strength: a per-world factor (``DepthNoiseConfig.strength``, drawn per episode by the env) scales
the axial noise, the three loss rates and the blob count, and sets the share of pixels that are
shifted (``min(s, 1)``); disparity quantisation stays on (it is the sensor's resolution). A world
at strength 0 sees the clean render, exactly.

Lost pixels read 0, as in a 16UC1 driver image (millimetres, 0 = no data); the students'
preprocessing reads 0 and NaN (the 32FC1 encoding) as "no return". Pixels with no surface
(at ``far``) stay at ``far``.

Cost: the model runs on every depth observation of the batch (64 worlds x 64 x 64 per control
step). Python draws each image's random numbers and chooses its noise; the per-pixel work is one
compiled loop per image (:mod:`.depth_kernel`, numba), which reads each pixel and its noise
once. Each image takes its random numbers from its own generator (its world's stream,
:mod:`.streams`), in one ``random`` call: the offsets of its windows into pre-drawn banks, and its
blobs' count, centres and radii. The banks are drawn once per model from its own seed. So an
image depends on its own generator's state only, not on the other images of the batch: a world's
images are the same in whichever share of a batch split over processes it steps.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from robots_ts.config import DepthNoiseConfig
from robots_ts.sim2real.randomization.streams import row_streams

_BANK = 1 << 22


def loses_pixels(cfg: DepthNoiseConfig) -> bool:
    """Whether the sensor model marks pixels lost (0), so the observation space must start at 0."""
    return cfg.dropout > 0 or cfg.edge_dropout > 0 or cfg.blobs > 0


def _offset_type(w: int) -> type:
    """The integer type of flat shift offsets into an image of width ``w`` padded by 2 px."""
    return np.int16 if 2 * (w + 4) + 2 <= np.iinfo(np.int16).max else np.int32


class NoiseBank:
    """Pre-drawn noise, handed out as one window per image at random offsets.

    Drawing a million fresh numbers per step cost the env about half its depth throughput on two
    cores; reading one window per image of a 4M-entry bank costs a fraction of that. The offsets
    come from each image's generator, so the same seed still gives the same images.
    Windows overlap now and then: sensor noise, not a statistics experiment.

    Each bank is drawn on first use from a stream of its own (the model's seed and the bank's
    name), so which banks a model uses does not change the others:

    - ``normal(scale)``: ``scale`` x N(0, 1);
    - ``uniform()``: U[0, 1);
    - ``shift_offsets(w, sigma)``: the per-pixel shift as a flat offset ``dv * (w + 4) + du`` into
      an edge-padded image of width ``w``, ``dv, du = clip(rint(sigma N(0, 1)), -2, 2)``
      drawn independently; int16 (a quarter of the memory traffic of intp, as fast to add).
    """

    def __init__(self, seed: int | None, size: int = _BANK):
        self.seed, self.size = seed, size
        self._banks: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()    # the halves of a batch may ask for a bank at once

    def _get(self, key: tuple, draw) -> np.ndarray:
        bank = self._banks.get(key)
        if bank is None:
            with self._lock:
                if key not in self._banks:
                    self._banks[key] = draw()
                bank = self._banks[key]
        return bank

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def normal(self, scale: float) -> np.ndarray:
        def draw():
            g = self._rng(0).standard_normal(self.size, dtype=np.float32)
            g *= np.float32(scale)
            return g
        return self._get(("normal", scale), draw)

    def uniform(self) -> np.ndarray:
        return self._get(("uniform",), lambda: self._rng(1).random(self.size, dtype=np.float32))

    def shift_offsets(self, w: int, sigma: float) -> np.ndarray:
        def draw():
            g = self._rng(2, w).standard_normal((2, self.size), dtype=np.float32)
            g *= np.float32(sigma)
            np.rint(g, out=g)
            np.clip(g, -2, 2, out=g)
            d = g.astype(_offset_type(w))
            d[0] *= w + 4
            d[0] += d[1]
            return d[0].copy()
        return self._get(("shift", w, sigma), draw)


class DepthSensorModel:
    """The sensor model, batched over worlds. The noise banks are built on first use and reused,
    so one instance serves one caller at a time (each env owns its own); every call returns a
    newly allocated array, so results never alias earlier ones (delay lines and rollouts keep past
    observations).

    A batch of at least ``2 * PART_WORLDS`` images is processed in ``PARTS`` halves, the second
    half on a helper thread (the compiled loop releases the GIL: on two idle cores 64 images at
    64x64 with per-world strengths took 1.2 ms instead of 1.5). Every image draws from its own
    generator, so the split changes no image: the same generators give the same images on one
    core or many."""

    PARTS = 2
    PART_WORLDS = 8

    def __init__(self, cfg: DepthNoiseConfig, near: float, far: float, seed: int = 0):
        self.cfg, self.near, self.far = cfg, float(near), float(far)
        self._bank: NoiseBank | None = None
        self._seed = seed
        self._pool: ThreadPoolExecutor | None = None

    @property
    def active(self) -> bool:
        c = self.cfg
        return any(v > 0 for v in (c.pixel_shift, c.axial_noise, c.disparity_step, c.dropout, c.edge_dropout, c.blobs))

    def __call__(self, depth: np.ndarray, rngs, strength: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W) metres -> a noisy (N, H, W) float32 copy, lost pixels at 0. ``depth`` is not
        modified. ``rngs``: one generator per image, its world's (or one generator, split into
        one child per image: :func:`.streams.row_streams`). ``strength``: one factor per image
        (see the module's docstring); None is 1."""
        if self._bank is None:
            self._bank = NoiseBank(self._seed)
        clean = np.ascontiguousarray(depth, dtype=np.float32)   # read only
        n, h, w = clean.shape
        s = None
        if strength is not None:
            s = np.asarray(strength, dtype=np.float32).reshape(-1)
            if s.shape != (n,) or not np.all(s >= 0):
                raise ValueError(f"depth sensor strength: expected {n} non-negative factors, got {strength!r}")
        if s is not None and np.all(s == 1):
            s = None                     # the plain model, same random stream
        rngs = row_streams(rngs, n)
        draws = self._draws(rngs, s)     # here, not in the parts: a loop over images holds the GIL
        out = np.empty((n, h, w), dtype=np.float32)
        if self.PARTS < 2 or n < self.PARTS * self.PART_WORLDS:
            self._apply(clean, rngs, s, draws, out)
            return out
        cuts = np.linspace(0, n, self.PARTS + 1).astype(int)

        def part(k: int) -> None:
            a, b = cuts[k], cuts[k + 1]
            self._apply(clean[a:b], rngs[a:b], None if s is None else s[a:b], [d[a:b] for d in draws], out[a:b])

        if (os.cpu_count() or 1) < 2:
            for k in range(self.PARTS):
                part(k)
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.PARTS - 1, thread_name_prefix="robots_ts-depth-model")
        later = [self._pool.submit(part, k) for k in range(1, self.PARTS)]
        part(0)
        for f in later:
            f.result()
        return out

    def _draws(self, rngs: list, s: np.ndarray | None) -> list[np.ndarray]:
        """One draw per image from its own generator: four window offsets (the shift offsets, the
        axial noise, the loss draw, the shift mask), then its blobs' count and slots (rows,
        columns, radii). How many it draws depends on its own strength only, so on nothing else
        in the batch. Returns the offsets (n, 4), the count uniforms (n,) and the slots' (n, 3, b),
        the slots an image does not have left 0."""
        c = self.cfg
        n = len(rngs)
        slots = np.zeros(n, dtype=np.int64)
        if c.blobs > 0:
            slots[:] = int(c.blobs) if s is None else np.ceil(c.blobs * s)
        width = 4 + (1 + 3 * slots) * (c.blobs > 0)
        draws = [rng.random(int(k)) for rng, k in zip(rngs, width)]
        offsets = np.empty((n, 4))
        count_u, blob_u = np.zeros(n), np.zeros((n, 3, int(slots.max(initial=0))))
        for k in np.unique(slots):       # the images with k blob slots, together
            ids = np.flatnonzero(slots == k)
            d = np.stack([draws[i] for i in ids])
            offsets[ids] = d[:, :4]
            if c.blobs > 0:
                count_u[ids] = d[:, 4]
                blob_u[ids, :, :k] = d[:, 5:].reshape(len(ids), 3, k)
        return [offsets, count_u, blob_u]

    def _apply(self, clean: np.ndarray, rngs: list, s: np.ndarray | None, draws: list[np.ndarray],
               out: np.ndarray) -> None:
        """The model on one contiguous batch ``clean`` (its images' generators ``rngs``, for fresh
        numbers, and their :meth:`_draws`), written into ``out`` (same shape) by the compiled
        per-image loop."""
        from robots_ts.sim2real.randomization.depth_kernel import sensor_images   # numba: loaded with the first image

        c = self.cfg
        bank = self._bank
        n, h, w = clean.shape
        hw = h * w
        offsets, count_u, blob_u = draws
        span = bank.size - hw + 1
        fresh = span <= 0                # an image larger than the banks draws its own numbers
        starts = (offsets * max(span, 1)).astype(np.int64).T.copy()   # (4, n): rows contiguous, one compiled kernel
        own = np.arange(n, dtype=np.int64) * hw          # fresh numbers: image i's at i * hw

        def fresh_draws(draw) -> np.ndarray:
            return np.concatenate([draw(rng) for rng in rngs]).reshape(-1)

        none_f, none_i = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.int16)
        shift, shift_at, mask, mask_at = none_i, own, none_f, own
        normal, normal_at, loss, loss_at = none_f, own, none_f, own
        if c.pixel_shift > 0:            # in the order the fresh numbers have always been drawn
            if fresh:
                g = fresh_draws(lambda r: r.standard_normal((2, hw), dtype=np.float32)).reshape(n, 2, hw)
                g = np.clip(np.rint(g * np.float32(c.pixel_shift)), -2, 2)
                shift = (g[:, 0] * (w + 4) + g[:, 1]).astype(_offset_type(w)).reshape(-1)
            else:
                shift, shift_at = bank.shift_offsets(w, float(c.pixel_shift)), starts[0]
            if s is not None:
                if fresh:
                    mask = fresh_draws(lambda r: r.random(hw, dtype=np.float32))
                else:
                    mask, mask_at = bank.uniform(), starts[3]
        b_over_a = np.float32(0.0)
        if c.axial_noise > 0:
            a, b = 0.0019 * c.axial_noise, 0.0012 * c.axial_noise
            b_over_a = np.float32(b / a)
            if fresh:
                normal = fresh_draws(lambda r: r.standard_normal(hw, dtype=np.float32)) * np.float32(a)
            else:
                normal, normal_at = bank.normal(a), starts[1]
        drop_rate = np.zeros(n, dtype=np.float32)
        edge_from = np.ones(n, dtype=np.float32)
        if c.dropout > 0 or c.edge_dropout > 0:
            if fresh:
                loss = fresh_draws(lambda r: r.random(hw, dtype=np.float32))
            else:
                loss, loss_at = bank.uniform(), starts[2]
            rate = (lambda p: np.full(n, np.float32(p))) if s is None else (lambda p: np.minimum(p * s, 1))
            drop_rate[:] = rate(c.dropout)
            edge_from[:] = np.float32(1.0) - rate(c.edge_dropout)
        b = blob_u.shape[2]
        most = np.full(n, b, dtype=np.int64) if s is None else np.rint(c.blobs * s).astype(np.int64)
        blob_count = np.minimum((count_u * (most + 1)).astype(np.int64), most)   # uniform on 0..most
        k = np.float32(c.native_focal * c.baseline / c.disparity_step) if c.disparity_step > 0 else np.float32(1.0)
        steps = np.array([c.pixel_shift > 0, c.pixel_shift > 0 and s is not None, c.axial_noise > 0,
                          c.disparity_step > 0, c.dropout > 0, c.edge_dropout > 0, b > 0, s is not None],
                         dtype=np.int64)
        consts = np.array([b_over_a, k, self.near, self.far, np.float32(self.far - 1e-4), c.edge_threshold],
                          dtype=np.float32)
        sensor_images(clean, out, steps, consts, np.ones(n, dtype=np.float32) if s is None else s,
                      shift, shift_at, mask, mask_at, normal, normal_at, loss, loss_at, drop_rate, edge_from,
                      blob_count, np.ascontiguousarray(blob_u, dtype=np.float64),
                      np.array(c.blob_radius, dtype=np.float64))
