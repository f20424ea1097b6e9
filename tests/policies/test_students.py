"""Student networks, augmentation, checkpoints (safetensors + JSON) and the student as a Policy."""
import json

import numpy as np
import pytest
import torch

from robots_ts.config import DepthConfig, EnvConfig
from robots_ts.policies.students.config import AugmentConfig, StudentNetConfig
from robots_ts.policies.students.checkpoint import StudentPolicy, load_checkpoint, load_student, save_student
from robots_ts.policies.students.networks import Student, augment
from robots_ts.runs import write_run_meta

DEPTH_SPEC = {"proprio": [23], "depth": [1, 16, 16]}
POINTS_SPEC = {"proprio": [23], "points": [64, 3]}
SMALL = dict(cnn_channels=[4, 8], cnn_kernels=[3, 3], cnn_strides=[2, 2], point_mlp=[16, 32], feature_dim=16,
             proprio_mlp=[16], head_mlp=[32])


def net(encoder="depth", gru=0, aux=()):
    torch.manual_seed(0)
    cfg = StudentNetConfig(encoder=encoder, gru_hidden=gru, aux_indices=list(aux), aux_weight=1.0 if aux else 0.0,
                           **SMALL)
    return Student(cfg, DEPTH_SPEC if encoder == "depth" else POINTS_SPEC, 4)


def obs_batch(n, encoder="depth", seed=0):
    rng = np.random.default_rng(seed)
    out = {"proprio": rng.normal(size=(n, 23)).astype(np.float32)}
    if encoder == "depth":
        out["depth"] = rng.uniform(0.1, 2.5, (n, 1, 16, 16)).astype(np.float32)
    else:
        out["points"] = rng.uniform(-0.5, 0.8, (n, 64, 3)).astype(np.float32)
    return out


@pytest.mark.parametrize("encoder", ["depth", "points"])
def test_shapes_and_aux_head(encoder):
    m = net(encoder, aux=(0, 1, 2))
    o = obs_batch(6, encoder)
    mean, aux, h = m(torch.as_tensor(o["proprio"]).view(2, 3, 23),
                     torch.as_tensor(o[encoder]).view(2, 3, *o[encoder].shape[1:]))
    assert mean.shape == (2, 3, 4) and aux.shape == (2, 3, 3) and h is None


def test_pointnet_ignores_point_order():
    m = net("points")
    o = obs_batch(3, "points")
    p, s = torch.as_tensor(o["proprio"])[:, None], torch.as_tensor(o["points"])[:, None]
    shuffled = s[:, :, torch.randperm(64)]
    torch.testing.assert_close(m(p, s)[0], m(p, shuffled)[0])


def test_gru_forgets_at_episode_start():
    m = net("depth", gru=8)
    o = obs_batch(5)
    p = torch.as_tensor(o["proprio"])[None]
    s = torch.as_tensor(o["depth"])[None]
    first = torch.zeros(1, 5, dtype=torch.bool)
    first[0, 2] = True
    whole, _, _ = m(p, s, first=first)
    fresh, _, _ = m(p[:, 2:], s[:, 2:])
    torch.testing.assert_close(whole[:, 2:], fresh)
    # Without the flag the memory of steps 0-1 changes the output.
    carried, _, _ = m(p, s)
    assert not torch.allclose(carried[:, 2:], fresh)


def test_augmentation():
    gen = torch.Generator().manual_seed(0)
    o = obs_batch(4)
    p, d = torch.as_tensor(o["proprio"])[:, None], torch.as_tensor(o["depth"])[:, None]
    same = augment(p, d, "depth", AugmentConfig(), gen, torch.ones(23), 2.5)
    assert torch.equal(same[0], p) and torch.equal(same[1], d)
    _, holes = augment(p, d, "depth", AugmentConfig(depth_dropout=0.3), gen, torch.ones(23), 2.5)
    frac = float((holes == 0).float().mean())     # lost pixels read 0, as a driver writes them
    assert 0.25 < frac < 0.35
    # Noise never turns a lost pixel into a valid depth.
    _, both = augment(p, holes, "depth", AugmentConfig(depth_noise=0.01), gen, torch.ones(23), 2.5)
    assert torch.equal(both == 0, holes == 0)
    pts = torch.as_tensor(obs_batch(4, "points")["points"])[:, None]
    _, dropped = augment(p, pts, "points", AugmentConfig(point_dropout=0.5), gen, torch.ones(23), 2.5)
    assert dropped.shape == pts.shape
    # Every output point is one of the cloud's own points, and some were replaced by duplicates.
    for b in range(4):
        orig = {tuple(x) for x in pts[b, 0].tolist()}
        out = [tuple(x) for x in dropped[b, 0].tolist()]
        assert set(out) <= orig and len(set(out)) < len(orig)


def test_depth_fill_passes_clean_images_unchanged_and_fills_holes_from_neighbours():
    cfg = StudentNetConfig(depth_fill=3, **SMALL)
    filler, plain = Student(cfg, DEPTH_SPEC, 4), net()
    clean = torch.as_tensor(obs_batch(4)["depth"])
    # A clean render (no 0, no NaN) reads bit for bit as without filling: training on clean
    # images is the same computation with or without it.
    assert torch.equal(filler.read_depth(clean), plain.read_depth(clean))
    flat = torch.full((1, 1, 16, 16), 0.8)
    flat[0, 0, 4:8, 4:8] = 0.4                         # a box
    holes = flat.clone()
    holes[0, 0, 3:9, 3] = 0.0                          # lost pixels along its left edge
    holes[0, 0, 12, 12] = float("nan")
    holes[0, 0, 0, :] = 0.0                            # a lost row on the border
    filled = filler.read_depth(holes)
    lost = (holes == 0) | holes.isnan()
    # Every lost pixel takes a value between its neighbours' (0.4 box, 0.8 table), never far.
    assert torch.all((filled[lost] >= 0.4 - 1e-6) & (filled[lost] <= 0.8 + 1e-6))
    assert torch.equal(filled[~lost], holes[~lost])
    assert torch.isclose(filled[0, 0, 12, 12], torch.tensor(0.8))
    # Without filling they read far; a hole wider than the passes keeps its middle far.
    assert torch.all(plain.read_depth(holes)[lost] == plain.far)
    wide = flat.clone()
    wide[0, 0, :, 2:11] = 0.0                          # 9 columns lost: 3 passes fill 3 from each side
    w = filler.read_depth(wide)[0, 0]
    assert torch.all(w[:, 2:5] < 2.5) and torch.all(w[:, 8:11] < 2.5) and torch.all(w[:, 5:8] == filler.far)


@pytest.mark.parametrize("gru", [0, 8])
def test_checkpoint_round_trip_and_policy_reset(tmp_path, gru):
    m = net("depth", gru=gru)
    m.set_normalization({"proprio_mean": np.linspace(0, 1, 23).tolist(), "proprio_std": np.full(23, 2.0).tolist()})
    env = EnvConfig(task="Reach", num_envs=3, obs_groups=["proprio", "depth"], depth=DepthConfig(width=16, height=16))
    write_run_meta(tmp_path, "student")
    save_student(m, tmp_path / "checkpoints" / "iter_0000", env, iteration=0)
    (tmp_path / "checkpoints" / "latest.json").write_text(json.dumps({"name": "iter_0000"}))
    meta = json.loads((tmp_path / "checkpoints" / "iter_0000.json").read_text())
    assert meta["normalization"]["proprio_std"] == [2.0] * 23 and meta["obs_spec"] == DEPTH_SPEC
    policy = load_student(tmp_path)
    assert policy.obs_groups == ("proprio", "depth") and policy.env_cfg.obs_groups == ["proprio", "depth"]
    live = StudentPolicy(m, env)
    seq = [obs_batch(3, seed=k) for k in range(4)]
    for o in seq:
        np.testing.assert_allclose(policy.act(o), live.act(o), atol=1e-6)
    # After reset of world 1, it acts like a freshly started policy; world 0 keeps its memory.
    policy.reset(np.array([False, True, False]))
    fresh = load_student(tmp_path)
    a, b = policy.act(seq[0]), fresh.act(seq[0])
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    if gru:
        assert not np.allclose(a[0], b[0])


def test_checkpoint_errors_name_the_problem(tmp_path):
    m = net("depth")
    env = EnvConfig(obs_groups=["proprio", "depth"], depth=DepthConfig(width=16, height=16))
    path = save_student(m, tmp_path / "ck", env)
    tensors = tmp_path / "ck.safetensors"
    good = tensors.read_bytes()
    save_student(net("points"), tmp_path / "other", env)
    tensors.write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(ValueError, match="CRC-32"):
        load_checkpoint(path)
    tensors.write_bytes(good)
    meta = json.loads(path.read_text())
    meta["arch"]["feature_dim"] = 32
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="not a student run"):
        write_run_meta(tmp_path / "t", "teacher")
        load_student(tmp_path / "t")
    policy = StudentPolicy(m, env)
    with pytest.raises(ValueError, match=r"'depth' has shape \(1, 32, 32\).*\(1, 16, 16\)"):
        policy.act({"proprio": np.zeros((2, 23), np.float32), "depth": np.zeros((2, 1, 32, 32), np.float32)})
