"""Export of refined runs: a residual run is ONE graph computing clip(a_base + alpha * clip(r, -1, 1),
-1, 1) from the sensor groups (a recurrent base's state in and out; a point-cloud base's residual
reading the cloud through its own PointNet), a finetune run is its fine-tuned student; both act as
the in-process policy does (within 1e-5) on random observations and in a closed-loop rollout, under
onnxruntime and as TorchScript."""
import json

import numpy as np
import pytest
import torch

from robots_ts.cli import main as cli
from robots_ts.policies.load import load_policy
from robots_ts.policies.residual.policy import RefinedPolicy
from robots_ts.policies.teacher.checkpoint import write_set
from robots_ts.policies.teacher.load import load_sb3, schedule_objects
from robots_ts.sim2real.export.graphs import ResidualGraph, policy_graph
from robots_ts.sim2real.export.manifest import load_manifest
from robots_ts.sim2real.export.onnx_policy import OnnxPolicy
from tests.export.conftest import FORMATS, make_student_run
from tests.export.test_parity import ATOL, Exported, record_rollout
from tests.policies.test_residual import TINY

KINDS = ("residual", "residual_gru", "residual_points", "finetune")


def perturb_best(run, seed: int, finetune: bool) -> None:
    """Rewrite the run's best checkpoint with perturbed actor weights: a residual far from zero (a
    freshly trained one is nearly zero, and would let a graph that drops it pass), a fine-tuned
    student whose mean layer is visibly not the base's."""
    ck = run / "checkpoints"
    model = load_sb3(ck / "best.zip", "cpu", schedule_objects(0.0, 0.2))
    g = torch.Generator().manual_seed(seed)
    params = list(model.policy.action_net.parameters()) if finetune else model.policy.actor_parameters()
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * (0.1 if finetune else 0.5))
    norm = (ck / "best.norm.json").read_text()
    write_set(ck, "best", {"model": lambda p: model.save(p), "norm": lambda p: p.write_text(norm)}, 0)


@pytest.fixture(scope="module")
def refined_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("refined_runs")
    depth = make_student_run(root / "base_depth", "depth", 0, 31)
    gru = make_student_run(root / "base_gru", "depth", 8, 32)
    points = make_student_run(root / "base_points", "points", 0, 33)
    specs = {"residual": (depth, ["asymmetric_critic=true", "alpha=[0.05,0.1,0.2,0.3]"]),
             "residual_gru": (gru, []), "residual_points": (points, ["point_mlp=[8,16]", "alpha=[0.3]"]),
             "finetune": (depth, ["mode=finetune", "asymmetric_critic=true"])}
    runs = {}
    for i, (kind, (base, extra)) in enumerate(specs.items()):
        run = root / kind
        assert cli(["refine", "configs/residual/reach_depth.yaml", f"base={base}", "--run-dir", str(run),
                    "--total-steps", "64", *TINY, "warmup_steps=0", *extra]) == 0
        perturb_best(run, i, kind == "finetune")
        runs[kind] = run
    return runs


@pytest.fixture(scope="module")
def exports(refined_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("refined_exports")
    out = {}
    for kind in KINDS:
        for fmt in FORMATS:
            assert cli(["export", str(refined_runs[kind]), "--format", fmt, "--out", str(root / f"{kind}_{fmt}")]) == 0
            out[(kind, fmt)] = root / f"{kind}_{fmt}"
    return out


def test_residual_export_is_one_graph_of_base_and_residual(refined_runs, exports):
    for kind in ("residual", "residual_gru"):
        policy = load_policy(refined_runs[kind])
        assert isinstance(policy, RefinedPolicy) and isinstance(policy_graph(policy), ResidualGraph)
        man = load_manifest(exports[(kind, "onnx")])
        base = json.loads((refined_runs[kind] / "run.json").read_text())["base"]
        assert man.source.kind == "residual" and man.source.base == base
        assert man.source.alpha == pytest.approx(policy.alpha.tolist()) and man.source.encoder == "depth"
        assert man.obs_groups == ["proprio", "depth"]                 # no privileged input, though the critic had one
        outputs = ["action", "hidden_out"] if kind == "residual_gru" else ["action"]
        assert [o.name for o in man.policy.outputs] == outputs
        assert (man.policy.recurrent is not None) == (kind == "residual_gru")
        assert 0 <= man.policy.parity.max_abs_diff <= ATOL
    man = load_manifest(exports[("finetune", "onnx")])
    assert man.source.kind == "finetune" and man.obs_groups == ["proprio", "depth"] and man.source.alpha is None
    # The fine-tuned student, not its base: they act differently.
    tuned, base = load_policy(refined_runs["finetune"]), load_policy(man.source.base)
    obs = policy_graph(tuned).sample(32, np.random.default_rng(1))
    assert np.abs(OnnxPolicy(exports[("finetune", "onnx")]).act(obs) - base.act(obs)).max() > 1e-3


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_random_observations(refined_runs, exports, kind, fmt):
    policy = load_policy(refined_runs[kind])
    graph = policy_graph(policy)
    ours = OnnxPolicy(exports[(kind, fmt)]) if fmt == "onnx" else Exported(exports[(kind, fmt)], graph)
    rng = np.random.default_rng(7)
    moved = 0.0
    for n in (1, 9, 9, 4):      # the same batch size twice: a recurrent state carried in both
        obs = graph.sample(n, rng)
        if kind == "finetune":
            want = policy.act(obs)
        else:
            want, a_base = policy.act_with_base(obs)
            dev = np.abs(want - a_base)
            assert np.all(dev <= policy.alpha + 1e-6)
            moved = max(moved, float(dev.max()))
        got = ours.act(obs)
        assert got.shape == want.shape == (n, 4)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    if kind != "finetune":
        assert moved > 1e-3, "the residual should move the action in this comparison"


def test_closed_loop_rollout(refined_runs, exports):
    """The refined policy drives the env; both exported copies answer every step (recurrent state
    across the episode ends of 10-step episodes)."""
    for kind in KINDS:
        rec = record_rollout(refined_runs[kind], {f: exports[(kind, f)] for f in FORMATS})
        assert sum(int(d.sum()) for d in rec["dones"]) >= 2
        for fmt in FORMATS:
            np.testing.assert_allclose(np.stack(rec["got"][fmt]), np.stack(rec["want"]), rtol=0, atol=ATOL,
                                       err_msg=f"{kind} {fmt}")
