"""The on-disk DAgger aggregate: encoding, memory-bounded batches, crash safety, resume truncation."""
import warnings

import numpy as np
import pytest

from robots_ts.policies.distill import dataset as ds
from robots_ts.policies.distill.dataset import ChunkDataset

T, N, P = 6, 4, 5


def chunk(seed: int, first_episode: int = 0, depth: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    out = {"proprio": rng.normal(size=(T, N, P)).astype(np.float32),
           "privileged": rng.normal(size=(T, N, 3)).astype(np.float32),
           "action": rng.uniform(-1, 1, (T, N, 4)).astype(np.float32),
           "first": np.zeros((T, N), dtype=bool),
           "episode": np.tile(first_episode + np.arange(N, dtype=np.int64), (T, 1))}
    out["first"][0] = True
    # A unique id per sample, so tests can count how often each one is served.
    out["proprio"][..., 0] = seed * 1000 + np.arange(T * N).reshape(T, N)
    if depth:
        out["depth"] = rng.uniform(0.1, 2.5, (T, N, 1, 8, 8)).astype(np.float32)
    return out


def ids(batches) -> list[float]:
    return [float(x) for b in batches for x in b["proprio"][:, :, 0][b["mask"]]]


@pytest.mark.parametrize("storage,tol", [("float16", 2e-3), ("uint16_mm", 5e-4)])
def test_depth_round_trips_within_storage_precision(tmp_path, storage, tol):
    data = ChunkDataset(tmp_path, depth_storage=storage)
    c = chunk(0)
    rec = data.write_chunk(0, 0, c)
    back = data.load(rec)
    assert back["depth"].dtype == np.float32
    assert np.max(np.abs(back["depth"] - c["depth"])) <= tol
    np.testing.assert_array_equal(back["action"], c["action"])
    # Stored compactly: 2 bytes per depth pixel, not 4.
    assert rec["bytes"] < c["depth"].nbytes * 0.6 + 4096


def test_each_sample_served_once_per_epoch_with_bounded_memory(tmp_path):
    data = ChunkDataset(tmp_path)
    for i in range(5):
        data.write_chunk(i // 2, i % 2, chunk(i))
    recs = data.records()
    served = ids(data.batches(recs, 7, np.random.default_rng(0), chunks_in_memory=1, keys=("proprio", "action")))
    expected = sorted(float(s * 1000 + k) for s in range(5) for k in range(T * N))
    assert sorted(served) == expected
    # With two chunks in memory, no batch mixes samples from more than two chunks.
    for b in data.batches(recs, 64, np.random.default_rng(1), chunks_in_memory=2, keys=("proprio",)):
        assert len(set((b["proprio"][:, 0, 0] // 1000).tolist())) <= 2


def test_recurrent_windows_are_padded_and_masked(tmp_path):
    data = ChunkDataset(tmp_path)
    data.write_chunk(0, 0, chunk(3))
    batches = list(data.batches(data.records(), 100, np.random.default_rng(0), 1, ("proprio", "depth"), seq_len=4))
    b = batches[0]
    # T=6 steps per world become two windows of 4 (the second half padding).
    assert b["proprio"].shape == (2 * N, 4, P) and b["depth"].shape == (2 * N, 4, 1, 8, 8)
    assert b["mask"].sum() == T * N
    assert sorted(ids(batches)) == sorted(float(3000 + k) for k in range(T * N))


def test_success_only_keeps_successful_episodes(tmp_path):
    data = ChunkDataset(tmp_path)
    data.write_chunk(0, 0, chunk(0, first_episode=10))
    data.mark_episodes(0, [11, 13])
    b = list(data.batches(data.records(), 1000, np.random.default_rng(0), 1, ("proprio",), success_only=True))
    assert len(ids(b)) == 2 * T
    assert set((np.array(ids(b)) % N).astype(int).tolist()) == {1, 3}


def test_manifest_statistics_match_the_data(tmp_path):
    data = ChunkDataset(tmp_path)
    chunks = [chunk(i) for i in range(3)]
    for i, c in enumerate(chunks):
        data.write_chunk(0, i, c)
    mean, std = data.stats(data.records(), "privileged")
    allp = np.concatenate([c["privileged"].reshape(-1, 3) for c in chunks])
    np.testing.assert_allclose(mean, allp.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, allp.std(0), atol=1e-5)


def test_chunk_interrupted_mid_write_is_never_visible(tmp_path, monkeypatch):
    data = ChunkDataset(tmp_path)
    data.write_chunk(0, 0, chunk(0))

    def killed_half_way(path, write):
        # What a kill during the write leaves: a partial temporary file, no rename, no manifest line.
        tmp = path.parent / f".{path.name}.xyz.tmp"
        tmp.write_bytes(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ds, "atomic_write", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        data.write_chunk(0, 1, chunk(1))
    monkeypatch.undo()
    reopened = ChunkDataset(tmp_path)
    assert [r["file"] for r in reopened.records()] == ["it0000_c0000.npz"]
    assert sorted(ids(reopened.batches(reopened.records(), 1000, np.random.default_rng(0), 4, ("proprio",)))) == \
        sorted(float(k) for k in range(T * N))
    reopened.truncate_after(0)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_chunk_is_skipped_with_a_warning(tmp_path, damage):
    data = ChunkDataset(tmp_path)
    for i in range(3):
        data.write_chunk(0, i, chunk(i))
    path = tmp_path / "it0000_c0001.npz"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        raw[len(raw) // 2] ^= 0xFF       # same size, different content: only the checksum sees it
        path.write_bytes(bytes(raw))
    fresh = ChunkDataset(tmp_path)
    with pytest.warns(RuntimeWarning, match="it0000_c0001.npz"):
        served = ids(fresh.batches(fresh.records(), 1000, np.random.default_rng(0), 1, ("proprio",)))
    assert sorted(served) == sorted(float(s * 1000 + k) for s in (0, 2) for k in range(T * N))


def test_truncate_after_drops_later_iterations_and_orphans(tmp_path):
    data = ChunkDataset(tmp_path)
    for it in range(3):
        data.write_chunk(it, 0, chunk(it))
        data.mark_episodes(it, [it])
    (tmp_path / "it0000_c0009.npz").write_bytes(b"renamed but never listed")  # kill before the manifest line
    data.truncate_after(1)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["it0000_c0000.npz", "it0001_c0000.npz"]
    assert data.successful_episodes() == {0, 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["iteration"] for r in data.records()] == [0, 1]
        assert [r["iteration"] for r in data.records(first_iteration=1)] == [1]
