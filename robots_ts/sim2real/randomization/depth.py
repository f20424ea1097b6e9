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

Cost: the model runs on every depth observation of the batch (64 worlds x 64 x 64 per control
step), so it is written as a fixed number of whole-batch numpy passes in float32 into reused
scratch arrays, with no loop over worlds, pixels or blobs. A call takes all its random numbers
from one ``rng.random`` call (the offsets of three windows into pre-drawn banks, and the blobs'
counts, centres and radii); the banks are drawn once per model from its own seed. The same
generator state gives the same images; they differ from those of the per-blob version of this
module (the stream changed, the distributions did not).
"""
from __future__ import annotations

import numpy as np

from robots_ts.config import DepthNoiseConfig

_BANK = 1 << 22


def loses_pixels(cfg: DepthNoiseConfig) -> bool:
    """Whether the sensor model marks pixels lost (0), so the observation space must start at 0."""
    return cfg.dropout > 0 or cfg.edge_dropout > 0 or cfg.blobs > 0


class NoiseBank:
    """Pre-drawn noise, handed out as windows (views) at random offsets.

    Drawing a million fresh numbers per step cost the env about half its depth throughput on two
    cores; views of a 4M-entry bank cost nothing. The offsets come from the caller's generator, so
    the same seed still gives the same images. Windows of consecutive steps overlap now and then:
    sensor noise, not a statistics experiment.

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

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def normal(self, scale: float) -> np.ndarray:
        key = ("normal", scale)
        if key not in self._banks:
            g = self._rng(0).standard_normal(self.size, dtype=np.float32)
            g *= np.float32(scale)
            self._banks[key] = g
        return self._banks[key]

    def uniform(self) -> np.ndarray:
        key = ("uniform",)
        if key not in self._banks:
            self._banks[key] = self._rng(1).random(self.size, dtype=np.float32)
        return self._banks[key]

    def shift_offsets(self, w: int, sigma: float) -> np.ndarray:
        key = ("shift", w, sigma)
        if key not in self._banks:
            g = self._rng(2, w).standard_normal((2, self.size), dtype=np.float32)
            g *= np.float32(sigma)
            np.rint(g, out=g)
            np.clip(g, -2, 2, out=g)
            d = g.astype(np.int16 if 2 * (w + 4) + 2 <= np.iinfo(np.int16).max else np.int32)
            d[0] *= w + 4
            d[0] += d[1]
            self._banks[key] = d[0].copy()
        return self._banks[key]


class _Workspace:
    """What depends only on the batch shape (n, h, w), built once and reused by every call: the
    index grids, and scratch arrays for the intermediate steps. Fresh megabyte-sized temporaries
    cost more than the arithmetic on them (the allocator hands them back to the system and every
    call faults their pages in again)."""

    def __init__(self, n: int, h: int, w: int):
        hw, npix = h * w, n * h * w
        # Flat index of each pixel in the edge-padded (n, h + 4, w + 4) image. Indices are intp:
        # np.take converts any other index type into a fresh array first.
        rows = np.arange(h, dtype=np.intp)[None, :, None] + 2
        cols = np.arange(w, dtype=np.intp)[None, None, :] + 2
        worlds = np.arange(n, dtype=np.intp)[:, None, None] * ((h + 4) * (w + 4))
        self.padded_index = (worlds + rows * (w + 4) + cols).reshape(-1)
        # Second differences along the flattened batch: the centres that lie inside one image row
        # (columns 1..w-2) and inside one image column (rows 1..h-2). The others straddle a row
        # or image boundary and are never edges.
        flat = np.arange(npix, dtype=np.int64)
        col, row = flat % w, (flat % hw) // w
        self.col_centre = ((col >= 1) & (col <= w - 2))[1:-1] if npix > 2 else np.zeros(0, bool)
        self.row_centre = ((row >= 1) & (row <= h - 2))[w:npix - w] if npix > 2 * w else np.zeros(0, bool)
        self.pad = np.empty((n, h + 4, w + 4), dtype=np.float32)
        self.idx = np.empty(npix, dtype=np.intp)
        self.inv, self.d, self.bend = (np.empty(npix, dtype=np.float32) for _ in range(3))
        self.zs = np.empty(npix, dtype=np.float32)
        self.background, self.hit, self.edge, self.keep, self.gone = (np.empty(npix, dtype=bool) for _ in range(5))


class DepthSensorModel:
    """The sensor model, batched over worlds. The noise banks and the per-shape workspace are
    built on first use and reused, so one instance serves one caller at a time (each env owns its
    own); every call returns a newly allocated array, so results never alias earlier ones (delay
    lines and rollouts keep past observations)."""

    def __init__(self, cfg: DepthNoiseConfig, near: float, far: float, seed: int = 0):
        self.cfg, self.near, self.far = cfg, float(near), float(far)
        self._bank: NoiseBank | None = None
        self._seed = seed
        self._ws: _Workspace | None = None
        self._ws_key: tuple[int, int, int] | None = None

    def _workspace(self, n: int, h: int, w: int) -> _Workspace:
        if self._ws_key != (n, h, w):
            self._ws, self._ws_key = _Workspace(n, h, w), (n, h, w)
        return self._ws

    def _edges(self, z: np.ndarray, ws: _Workspace) -> np.ndarray:
        """Pixels next to a depth discontinuity of the clean image: where inverse depth, which is
        linear across any plane (so a table seen at a grazing angle has no edges), bends by more
        than ``edge_threshold`` between neighbours. Both sides of the jump are marked: the
        projector's shadow and the mixed pixels of a real sensor.

        Computed on the flattened batch, so every pass is one contiguous loop; second differences
        whose three pixels are not in one image row (or column) are masked out. Returns a flat
        view of the workspace."""
        w = z.shape[2]
        flat = z.reshape(-1)
        npix = flat.size
        thr = np.float32(self.cfg.edge_threshold)
        inv, edge = ws.inv, ws.edge
        if flat.min() >= 1e-3:           # 1 / max(z, 1e-3): the guard is rarely needed
            np.divide(np.float32(1.0), flat, out=inv)
        else:
            np.maximum(flat, np.float32(1e-3), out=inv)
            np.divide(np.float32(1.0), inv, out=inv)
        edge.fill(False)
        for step, centre in ((1, ws.col_centre), (w, ws.row_centre)):
            m = npix - 2 * step
            if m <= 0:
                continue
            d = np.subtract(inv[step:], inv[:-step], out=ws.d[:npix - step])
            bend = np.subtract(d[step:], d[:-step], out=ws.bend[:m])
            np.abs(bend, out=bend)
            hit = np.greater(bend, thr, out=ws.hit[:m])
            hit &= centre                # hit[j] is centred at pixel j + step
            edge[:m] |= hit
            edge[step:npix - step] |= hit
            edge[2 * step:] |= hit
        return edge

    @property
    def active(self) -> bool:
        c = self.cfg
        return any(v > 0 for v in (c.pixel_shift, c.axial_noise, c.disparity_step, c.dropout, c.edge_dropout, c.blobs))

    def _blobs(self, keep: np.ndarray, u: np.ndarray) -> None:
        """Clears ``keep`` inside up to ``blobs`` random disks per image, all images at once: each
        blob tests the pixels of a fixed square around its centre; those outside its own image
        are dropped before any index is formed, so a blob never reaches a neighbouring image."""
        c = self.cfg
        n, h, w = keep.shape
        b = int(c.blobs)
        counts = np.minimum((u[:n] * (b + 1)).astype(np.int64), b)       # uniform on 0..blobs
        slots = u[n:].reshape(3, n, b)
        world, slot = np.nonzero(np.arange(b)[None, :] < counts[:, None])
        if world.size == 0:
            return
        lo, hi = float(c.blob_radius[0]), float(c.blob_radius[1])
        p = slots[:, world, slot]                                         # (3, blobs)
        size = np.array([[h], [w]])
        centre = p[:2] * size                                             # rows, columns
        r2 = (lo + p[2] * (hi - lo)) ** 2
        reach = int(np.ceil(max(lo, hi, 0.0)))
        pos = np.floor(centre).astype(np.int64)[:, :, None] + np.arange(-reach, reach + 2)   # covers [c - r, c + r]
        d2 = (pos - centre[:, :, None]) ** 2
        d2[(pos < 0) | (pos >= size[:, :, None])] = np.inf               # outside its own image
        disk = d2[0][:, :, None] + d2[1][:, None, :] <= r2[:, None, None]
        flat = (world * (h * w))[:, None, None] + pos[0][:, :, None] * w + pos[1][:, None, :]
        keep.reshape(-1)[flat[disk]] = False

    def __call__(self, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, H, W) metres -> a noisy (N, H, W) float32 copy, lost pixels at 0. ``depth`` is not
        modified."""
        c = self.cfg
        if self._bank is None:
            self._bank = NoiseBank(self._seed)
        bank = self._bank
        clean = np.ascontiguousarray(depth, dtype=np.float32)   # read only
        n, h, w = clean.shape
        npix = clean.size
        ws = self._workspace(n, h, w)
        # One draw for the call: three window offsets, then the blobs' counts, centres and radii.
        n_blob = n * (1 + 3 * int(c.blobs)) if c.blobs > 0 else 0
        u = rng.random(3 + n_blob)
        span = bank.size - npix + 1
        fresh = span <= 0                # a batch larger than the banks draws its own numbers
        starts = (u[:3] * max(span, 1)).astype(np.int64)

        def window(arr: np.ndarray, i: int) -> np.ndarray:
            return arr[starts[i]:starts[i] + npix]

        # The shifted image goes to the workspace when the noise and quantisation steps follow
        # (they write the result), else straight to the result.
        noisy = c.axial_noise > 0 or c.disparity_step > 0
        z = np.empty(npix, dtype=np.float32)                      # the result
        zs = ws.zs if noisy else z
        if c.pixel_shift > 0:
            # Shifts of at most 2 px (beyond 4 sigma at 0.5 px) into an edge-padded copy: no clipping.
            pad = ws.pad
            pad[:, 2:-2, 2:-2] = clean
            pad[:, :2, 2:-2] = clean[:, :1]
            pad[:, -2:, 2:-2] = clean[:, -1:]
            rows = pad.reshape(-1, w + 4)
            for j, src in ((0, 2), (1, 2), (w + 2, w + 1), (w + 3, w + 1)):   # single columns: cheap
                rows[:, j] = rows[:, src]
            if fresh:
                g = np.clip(np.rint(rng.standard_normal((2, npix), dtype=np.float32) * c.pixel_shift), -2, 2)
                offsets = (g[0] * (w + 4) + g[1]).astype(np.int32)
            else:
                offsets = window(bank.shift_offsets(w, float(c.pixel_shift)), 0)
            np.add(ws.padded_index, offsets, out=ws.idx)
            np.take(pad.reshape(-1), ws.idx, out=zs, mode="wrap")   # indices are in range; "wrap" skips the check
        elif noisy:
            zs = clean.reshape(-1)       # only read
        else:
            np.copyto(z, clean.reshape(-1))
        if noisy:
            if c.axial_noise > 0:
                # z + (a (z - 0.4)^2 + b) g  as  z + ((z - 0.4)^2 + b / a) (a g), a g from a
                # pre-scaled bank: five passes.
                a, b = 0.0019 * c.axial_noise, 0.0012 * c.axial_noise
                if fresh:
                    ag = rng.standard_normal(npix, dtype=np.float32) * np.float32(a)
                else:
                    ag = window(bank.normal(a), 1)
                np.subtract(zs, np.float32(0.4), out=z)
                np.square(z, out=z)
                z += np.float32(b / a)
                z *= ag
                z += zs
            else:
                np.copyto(z, zs)
            if c.disparity_step > 0:
                # Disparity fb / z in steps of disparity_step: z_q = K / rint(K / z), K = fb / step.
                # max(z, 1e-3) then max(steps, 1) equals one clip of z to [1e-3, K] (every z >= K
                # gives one step, K), and that clip is rarely needed at all.
                k = np.float32(c.native_focal * c.baseline / c.disparity_step)
                if not (z.min() >= 1e-3 and z.max() <= k):
                    np.clip(z, np.float32(1e-3), k, out=z)
                np.divide(k, z, out=z)
                np.rint(z, out=z)
                np.divide(k, z, out=z)
            # Pixels with no surface (at far) keep the shifted value: a masked copy of the few.
            background = np.greater_equal(zs, np.float32(self.far - 1e-4), out=ws.background)
            if background.any():
                np.copyto(z, zs, where=background)
        lo, hi = np.float32(self.near), np.float32(self.far)
        if not (z.min() >= lo and z.max() <= hi):
            np.clip(z, lo, hi, out=z)
        keep = None
        if c.dropout > 0 or c.edge_dropout > 0:
            draw = rng.random(npix, dtype=np.float32) if fresh else window(bank.uniform(), 2)
            keep = ws.keep
            if c.dropout > 0:
                np.greater_equal(draw, np.float32(c.dropout), out=keep)
            else:
                keep.fill(True)
            if c.edge_dropout > 0:
                gone = np.greater_equal(draw, np.float32(1.0 - c.edge_dropout), out=ws.gone)   # the draw's other end
                gone &= self._edges(clean, ws)
                np.logical_not(gone, out=gone)
                keep &= gone
        if c.blobs > 0:
            if keep is None:
                keep = ws.keep
                keep.fill(True)
            self._blobs(keep.reshape(n, h, w), u[3:])
        if keep is not None:
            z *= keep                    # lost pixels read 0
        return z.reshape(n, h, w)
