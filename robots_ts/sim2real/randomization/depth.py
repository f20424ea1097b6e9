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
step), so it is written as a fixed number of whole-batch numpy passes in float32 into reused
scratch arrays, with no loop over pixels or blobs. Each image takes its random numbers from its
own generator (its world's stream, :mod:`.streams`), in one ``random`` call: the offsets of its
windows into pre-drawn banks, and its blobs' count, centres and radii. The banks are drawn once
per model from its own seed. So an image depends on its own generator's state only, not on the
other images of the batch: a world's images are the same in whichever share of a batch split over
processes it steps.
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


class NoiseBank:
    """Pre-drawn noise, handed out as one window per image at random offsets.

    Drawing a million fresh numbers per step cost the env about half its depth throughput on two
    cores; copying one window per image out of a 4M-entry bank costs a fraction of that. The
    offsets come from each image's generator, so the same seed still gives the same images.
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
        self._views: dict[tuple, np.ndarray] = {}    # windows(): keyed by a bank's id, kept as long as the bank
        self._lock = threading.Lock()    # the halves of a batch may ask for a bank at once

    def _get(self, key: tuple, draw) -> np.ndarray:
        bank = self._banks.get(key)
        if bank is None:
            with self._lock:
                if key not in self._banks:
                    self._banks[key] = draw()
                bank = self._banks[key]
        return bank

    def windows(self, bank: np.ndarray, length: int) -> np.ndarray:
        """Every window of ``length`` entries of one of this object's banks: a read-only strided
        view (size - length + 1, length), made once per bank and length; a fancy index on its
        first axis copies one window per row."""
        key = (id(bank), length)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = np.lib.stride_tricks.sliding_window_view(bank, length)
        return view

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
            d = g.astype(np.int16 if 2 * (w + 4) + 2 <= np.iinfo(np.int16).max else np.int32)
            d[0] *= w + 4
            d[0] += d[1]
            return d[0].copy()
        return self._get(("shift", w, sigma), draw)


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
    """The sensor model, batched over worlds. The noise banks and the per-shape workspaces are
    built on first use and reused, so one instance serves one caller at a time (each env owns its
    own); every call returns a newly allocated array, so results never alias earlier ones (delay
    lines and rollouts keep past observations).

    A batch of at least ``2 * PART_WORLDS`` images is processed in ``PARTS`` halves, each with its
    own workspace, the second half on a helper thread (numpy's passes release the GIL: on two
    idle cores 64 images at 64x64 took 4.2 ms instead of 5.8 with per-world strengths, 3.2
    instead of 4.1 without). Every image draws from its own generator, so the split changes no
    image: the same generators give the same images on one core or many."""

    PARTS = 2
    PART_WORLDS = 8

    def __init__(self, cfg: DepthNoiseConfig, near: float, far: float, seed: int = 0):
        self.cfg, self.near, self.far = cfg, float(near), float(far)
        self._bank: NoiseBank | None = None
        self._seed = seed
        self._ws: dict[tuple[int, int, int, int], _Workspace] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _workspace(self, part: int, n: int, h: int, w: int) -> _Workspace:
        key = (part, n, h, w)
        if key not in self._ws:
            self._ws = {k: v for k, v in self._ws.items() if k[0] != part}   # one shape per part
            self._ws[key] = _Workspace(n, h, w)
        return self._ws[key]

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

    def _blobs(self, keep: np.ndarray, count_u: np.ndarray, blob_u: np.ndarray, most: np.ndarray | None = None) -> None:
        """Clears ``keep`` inside up to ``most[i]`` (or ``blobs``) random disks per image, all
        images at once: each blob tests the pixels of a fixed square around its centre; those
        outside its own image are dropped before any index is formed, so a blob never reaches a
        neighbouring image. Uniforms: ``count_u`` (n,) each image's count, ``blob_u`` (n, 3, b)
        its ``b`` slots' rows, columns and radii."""
        c = self.cfg
        n, h, w = keep.shape
        b = blob_u.shape[2]
        most = np.full(n, b, dtype=np.int64) if most is None else most
        counts = np.minimum((count_u * (most + 1)).astype(np.int64), most)   # uniform on 0..most
        slots = blob_u.transpose(1, 0, 2)                                   # (3, n, b)
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
            self._apply(clean, rngs, s, draws, out, 0)
            return out
        cuts = np.linspace(0, n, self.PARTS + 1).astype(int)

        def part(k: int) -> None:
            a, b = cuts[k], cuts[k + 1]
            self._apply(clean[a:b], rngs[a:b], None if s is None else s[a:b], [d[a:b] for d in draws], out[a:b], k)

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
               out: np.ndarray, part: int) -> None:
        """The model on one contiguous batch ``clean`` (its images' generators ``rngs``, for fresh
        numbers, and their :meth:`_draws`), written into ``out`` (same shape)."""
        c = self.cfg
        bank = self._bank
        n, h, w = clean.shape
        hw, npix = h * w, clean.size
        ws = self._workspace(part, n, h, w)
        offsets, count_u, blob_u = draws
        span = bank.size - hw + 1
        fresh = span <= 0                # an image larger than the banks draws its own numbers
        starts = (offsets * max(span, 1)).astype(np.int64)

        def window(arr: np.ndarray, j: int) -> np.ndarray:
            """Each image's window ``j`` into the bank ``arr``, copied, flattened over the batch."""
            return bank.windows(arr, hw)[starts[:, j]].reshape(-1)

        def fresh_draws(draw) -> np.ndarray:
            return np.concatenate([draw(rng) for rng in rngs])

        # The shifted image goes to the workspace when the noise and quantisation steps follow
        # (they write the result), else straight to the result.
        noisy = c.axial_noise > 0 or c.disparity_step > 0
        z = out.reshape(-1)                                       # the result
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
                g = fresh_draws(lambda r: r.standard_normal((2, hw), dtype=np.float32)).reshape(n, 2, hw)
                g = np.clip(np.rint(g * np.float32(c.pixel_shift)), -2, 2)
                offsets = (g[:, 0] * (w + 4) + g[:, 1]).astype(np.int32).reshape(-1)
            else:
                offsets = window(bank.shift_offsets(w, float(c.pixel_shift)), 0)
            if s is not None:            # a share min(s, 1) of each image's pixels is shifted, the rest reads offset 0
                share = np.minimum(s, np.float32(1.0))[:, None]
                draw = fresh_draws(lambda r: r.random(hw, dtype=np.float32)) if fresh else window(bank.uniform(), 3)
                shifted = np.less(draw.reshape(n, -1), share, out=ws.gone.reshape(n, -1))
                offsets *= shifted.reshape(-1)   # the offsets are this call's copy; a masked copy costs 20x more
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
                    ag = fresh_draws(lambda r: r.standard_normal(hw, dtype=np.float32)) * np.float32(a)
                else:
                    ag = window(bank.normal(a), 1)
                np.subtract(zs, np.float32(0.4), out=z)
                np.square(z, out=z)
                z += np.float32(b / a)
                z *= ag
                if s is not None:
                    z.reshape(n, -1)[...] *= s[:, None]
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
            draw = fresh_draws(lambda r: r.random(hw, dtype=np.float32)) if fresh else window(bank.uniform(), 2)
            keep = ws.keep
            rate = (lambda p: np.float32(p)) if s is None else (lambda p: np.minimum(p * s, 1)[:, None])
            if c.dropout > 0:
                np.greater_equal(draw.reshape(n, -1), rate(c.dropout), out=keep.reshape(n, -1))
            else:
                keep.fill(True)
            if c.edge_dropout > 0:
                gone = np.greater_equal(draw.reshape(n, -1), np.float32(1.0) - rate(c.edge_dropout),
                                        out=ws.gone.reshape(n, -1)).reshape(-1)   # the draw's other end
                gone &= self._edges(clean, ws)
                np.logical_not(gone, out=gone)
                keep &= gone
        if blob_u.shape[2] > 0:
            if keep is None:
                keep = ws.keep
                keep.fill(True)
            most = None if s is None else np.rint(c.blobs * s).astype(np.int64)
            self._blobs(keep.reshape(n, h, w), count_u, blob_u, most)
        if keep is not None:
            z *= keep                    # lost pixels read 0
        if s is not None and not np.all(s > 0):
            off = s <= 0                 # strength 0: the clean render
            z.reshape(n, -1)[off] = clean.reshape(n, -1)[off]
