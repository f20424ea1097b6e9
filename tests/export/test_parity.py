"""Exported policies act as the run's own policy does (within 1e-5): on random observations, on
observations recorded from a rollout of the run's task, at any batch size, and, for ONNX, under
onnxruntime and numpy alone with torch not importable."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from robots_ts.policies.load import load_policy
from robots_ts.rollout import policy_env, run_episodes
from robots_ts.sim2real.export.exporter import exported_runner
from robots_ts.sim2real.export.graphs import policy_graph
from robots_ts.sim2real.export.manifest import load_manifest
from robots_ts.sim2real.export.onnx_policy import OnnxPolicy

from tests.export.conftest import FORMATS, KINDS

ATOL = 1e-5


class Exported:
    """An export directory of either format as a Policy (recurrent state kept, cleared on reset)."""

    def __init__(self, export_dir, graph):
        man = load_manifest(export_dir)
        self.obs_groups = tuple(man.obs_groups)
        self.size = man.policy.recurrent.size if man.policy.recurrent else 0
        self.run = exported_runner(export_dir / man.policy.file, man.policy.format, graph)
        self.hidden = None

    def act(self, obs):
        n = len(obs[self.obs_groups[0]])
        if self.size and (self.hidden is None or len(self.hidden) != n):
            self.hidden = np.zeros((n, self.size), np.float32)
        action, self.hidden = self.run(obs, self.hidden)
        return action

    def reset(self, done):
        if self.hidden is not None:
            self.hidden[np.asarray(done, bool)] = 0.0


def exported(exports, kind, fmt, policy):
    if fmt == "onnx":
        return OnnxPolicy(exports[(kind, fmt)])
    return Exported(exports[(kind, fmt)], policy_graph(policy))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_random_observations_any_batch(runs, exports, kind, fmt):
    policy = load_policy(runs[kind])
    graph = policy_graph(policy)
    ours = exported(exports, kind, fmt, policy)
    rng = np.random.default_rng(123)
    inside = 0
    # The same batch size twice: recurrent state carried; a new batch size starts from zeros in both.
    for n in (1, 7, 7, 3):
        obs = graph.sample(n, rng)
        want, got = policy.act(obs), ours.act(obs)
        assert got.shape == want.shape == (n, 4) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
        assert np.all(np.abs(got) <= 1.0)
        inside += int(np.sum(np.abs(want) < 0.999))
    assert inside > 10, "the comparison should not be all clipped actions"
    if kind in ("depth", "depth_history"):
        # No return (0, NaN, inf) reads as the student's own preprocessing reads it: far, or
        # (depth_fill, the history student) filled from its neighbours, in the exported graph too.
        obs = graph.sample(2, rng)
        obs["depth"][0, 0, :4, :] = np.nan
        obs["depth"][1, 0, :, :3] = 0.0
        obs["depth"][1, 0, 5, 5] = np.inf
        np.testing.assert_allclose(ours.act(obs), policy.act(obs), rtol=0, atol=ATOL)
        far = dict(obs, depth=np.where(np.isfinite(obs["depth"]) & (obs["depth"] > 0), obs["depth"], 2.5)
                   .astype(np.float32))
        if kind == "depth":
            np.testing.assert_allclose(ours.act(obs), ours.act(far), rtol=0, atol=1e-6)
        else:
            assert np.abs(ours.act(obs) - ours.act(far)).max() > 1e-4      # filled, not read far


def record_rollout(run, export_dirs, steps=25, seed=7):
    """Roll the run's policy out on a 2-world env of its task, asking every exported copy for its action
    on each step's observation too; returns the steps' observations, dones and the actions."""
    policy = load_policy(run)
    copies = {"onnx": OnnxPolicy(export_dirs["onnx"]),
              "torchscript": Exported(export_dirs["torchscript"], policy_graph(policy))}
    env = policy_env(policy, policy.env_cfg, 2, seed=seed)
    rec = {"obs": [], "want": [], "got": {f: [] for f in copies}, "dones": []}

    def act(obs):
        rec["obs"].append({k: obs[k].copy() for k in policy.obs_groups})
        want = policy.act(obs)
        rec["want"].append(want)
        for f, c in copies.items():
            rec["got"][f].append(c.act(obs))
        return want

    try:
        run_episodes(env, act, [policy, *copies.values()], steps=steps,
                     after_step=lambda t, dones, infos: rec["dones"].append(dones.copy()))
    finally:
        env.close()
    return rec


@pytest.fixture(scope="module")
def rollouts(runs, exports):
    return {k: record_rollout(runs[k], {f: exports[(k, f)] for f in FORMATS}) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_recorded_rollout_observations(rollouts, kind):
    rec = rollouts[kind]
    assert len(rec["want"]) == 25 and sum(int(d.sum()) for d in rec["dones"]) >= 2   # episodes ended mid-rollout
    for fmt in FORMATS:
        got, want = np.stack(rec["got"][fmt]), np.stack(rec["want"])
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"{kind} {fmt}")
    assert np.std(np.stack(rec["want"]), axis=0).max() > 1e-3, "the rollout should move the policy's output"


TORCH_FREE = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None          # `import torch` now raises ImportError
    import json
    import numpy as np
    from robots_ts.sim2real.export.onnx_policy import OnnxPolicy

    worst = {}
    for case in json.loads(sys.argv[1]):
        data = np.load(case["npz"])
        policy = OnnxPolicy(case["export"])
        groups = policy.obs_groups
        diffs = []
        for t in range(int(data["steps"])):
            got = policy.act({g: data[f"{g}_{t}"] for g in groups})
            diffs.append(float(np.abs(got - data[f"want_{t}"]).max()))
            policy.reset(data[f"done_{t}"])
        worst[case["export"]] = max(diffs)
    try:
        import torch  # noqa: F401
        loaded = True
    except ImportError:
        loaded = False
    print(json.dumps({"worst": worst, "torch_importable": loaded,
                      "onnxruntime": "onnxruntime" in sys.modules}))
""")


def test_onnx_runs_without_torch(rollouts, exports, tmp_path):
    cases = []
    for kind in KINDS:
        rec = rollouts[kind]
        arrays = {"steps": np.array(len(rec["want"]))}
        for t, obs in enumerate(rec["obs"]):
            arrays.update({f"{g}_{t}": v for g, v in obs.items()})
            arrays[f"want_{t}"] = rec["want"][t]
            arrays[f"done_{t}"] = rec["dones"][t]
        np.savez(tmp_path / f"{kind}.npz", **arrays)
        cases.append({"npz": str(tmp_path / f"{kind}.npz"), "export": str(exports[(kind, "onnx")])})
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, json.dumps(cases)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not res["torch_importable"] and res["onnxruntime"]
    assert set(res["worst"]) == {c["export"] for c in cases}
    assert max(res["worst"].values()) <= ATOL, res["worst"]


def test_export_records_its_parity_check(exports):
    for (kind, fmt), d in exports.items():
        parity = load_manifest(d).policy.parity
        assert parity.atol == ATOL and 0 <= parity.max_abs_diff <= ATOL and parity.samples >= 64, (kind, fmt)
