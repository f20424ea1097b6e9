"""``robots-ts export``: a run's policy as one self-contained file plus ``manifest.json``.

:func:`export_run` loads the run's policy the way ``evaluate`` does (:func:`robots_ts.policies.load.load_policy`),
wraps it as a graph (:mod:`.graphs`), writes ``policy.onnx`` or ``policy.pt`` (TorchScript), checks
the written file against the original policy on random observations (a difference above
:data:`PARITY_ATOL` fails the export) and only then writes the manifest, which records the file's
SHA-256: a directory without a manifest is an unfinished export, and a manifest never describes
another export's model.

ONNX goes through ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based exporter, which
needs the ``onnx`` package and nothing more. The default dynamo exporter needs ``onnxscript``
besides, and took about 5 s against 0.2 s for the same toy graph with torch 2.13 here. These graphs
are straight-line code (no data-dependent control flow), which tracing captures exactly, and the
parity check proves every file written. torch marks this exporter deprecated; should a torch
release drop it, ``dynamo=True`` plus ``onnxscript`` is the switch, and the same parity check
judges it. Opset 17 loads in onnxruntime 1.13 and later, so older robot computers run the file too.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from robots_ts.sim2real.export.manifest import (FORMAT, MANIFEST_FILE, Manifest, ParitySpec, PolicySpec,
                                                RecurrentSpec, SourceSpec, TensorSpec, write_manifest)

FORMATS = {"onnx": "policy.onnx", "torchscript": "policy.pt"}
OPSET = 17
PARITY_ATOL = 1e-5
PARITY_SAMPLES = 64      # observations per batch of the export-time parity check
PARITY_STEPS = 4         # batches (a recurrent policy carries its state across them)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {list(FORMATS)}")
    return fmt


def default_out(run_dir: Path, fmt: str) -> Path:
    return Path(run_dir) / "export" / fmt


def _example(graph, n: int = 1):
    from robots_ts.sim2real.export.graphs import graph_inputs

    return graph_inputs(graph, graph.sample(n, np.random.default_rng(0)))


def write_onnx(graph, path: Path) -> None:
    import torch

    names = graph.input_names + graph.output_names
    with warnings.catch_warnings():
        # The TorchScript-based exporter announces its deprecation and tracing warns about
        # Python-side constants; neither applies to these straight-line graphs (see module doc).
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, _example(graph), str(path), dynamo=False, input_names=graph.input_names,
                          output_names=graph.output_names, dynamic_axes={k: {0: "batch"} for k in names},
                          opset_version=OPSET, do_constant_folding=True)
    import onnx

    onnx.checker.check_model(str(path))


def write_torchscript(graph, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        # torch marks TorchScript deprecated in favour of torch.export; a traced file is still what
        # C++ (libtorch) robot code loads, which is what this format is for.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, _example(graph), check_trace=False)
        torch.jit.save(traced, str(path))


def exported_runner(path: Path, fmt: str, graph):
    """``run(obs, hidden) -> (action, hidden)`` over the written file, outside the original graph."""
    if fmt == "onnx":
        import onnxruntime as ort

        from robots_ts.sim2real.export.onnx_policy import session_options

        sess = ort.InferenceSession(str(path), sess_options=session_options(1), providers=["CPUExecutionProvider"])

        def run(obs, hidden=None):
            feed = {k: np.asarray(obs[k], np.float32) for k in graph.groups}
            if graph.recurrent_size:
                feed["hidden"] = hidden
            out = sess.run(graph.output_names, feed)
            return out[0], (out[1] if graph.recurrent_size else None)
        return run
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # TorchScript's deprecation notice (see write_torchscript)
        module = torch.jit.load(str(path))

    def run(obs, hidden=None):
        args = [torch.as_tensor(np.asarray(obs[k], np.float32)) for k in graph.groups]
        if graph.recurrent_size:
            args.append(torch.as_tensor(hidden))
        with torch.no_grad():
            out = module(*args)
        if graph.recurrent_size:
            return out[0].numpy(), out[1].numpy()
        return out.numpy(), None
    return run


def parity_check(policy, run, graph, samples: int = PARITY_SAMPLES, steps: int = PARITY_STEPS,
                 seed: int = 0) -> tuple[float, int]:
    """The largest |exported - policy.act| over ``steps`` batches of ``samples`` random observations
    (a recurrent policy carries its state across the batches, as in a rollout), and the action size."""
    rng = np.random.default_rng(seed)
    policy.reset(np.ones(samples, dtype=bool))
    if hasattr(policy, "hidden"):
        policy.hidden = None
    hidden = np.zeros((samples, graph.recurrent_size), np.float32) if graph.recurrent_size else None
    worst = 0.0
    for _ in range(steps):
        obs = graph.sample(samples, rng)
        want = policy.act(obs)
        got, hidden = run(obs, hidden)
        if got.shape != want.shape:
            raise RuntimeError(f"exported graph returns actions of shape {got.shape}, the policy {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst, int(want.shape[1])


def export_run(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None,
               checkpoint: str | None = None) -> Path:
    """Export the policy of a teacher, student, residual or finetune run; returns the export directory."""
    from robots_ts import __version__
    from robots_ts.policies.load import RUN_KINDS, load_policy
    from robots_ts.robot.arm import Arm
    from robots_ts.runs import atomic_write, read_run_meta, sha256_of
    from robots_ts.sim2real.export import describe
    from robots_ts.sim2real.export.graphs import ACTION, HIDDEN_IN, HIDDEN_OUT, policy_graph

    check_format(fmt)
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)            # a directory that is not a run fails here, by name
    kind = meta.get("kind")
    if kind not in RUN_KINDS:
        raise ValueError(f"{run_dir}: cannot export a {kind!r} run; export knows {sorted(RUN_KINDS)} runs")
    checkpoint = checkpoint or RUN_KINDS[kind]
    policy = load_policy(run_dir, checkpoint)
    env_cfg = policy.env_cfg
    graph = policy_graph(policy)
    out_dir = Path(out) if out is not None else default_out(run_dir, fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy_file = out_dir / FORMATS[fmt]
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)   # an earlier export's manifest must not outlive its file
    atomic_write(policy_file, lambda p: (write_onnx if fmt == "onnx" else write_torchscript)(graph, p))

    diff, action_dim = parity_check(policy, exported_runner(policy_file, fmt, graph), graph)
    if not diff <= PARITY_ATOL:
        raise RuntimeError(f"export of {run_dir}: {policy_file.name} differs from the policy by {diff:.3g} on random "
                           f"observations (tolerance {PARITY_ATOL}); the manifest was not written")

    arm = Arm(control=env_cfg.control)            # as robots_ts.envs.world.WorldBatch builds it
    if action_dim != arm.action_dim:
        raise ValueError(f"{run_dir}: the policy outputs {action_dim} actions, {env_cfg.control} control takes "
                         f"{arm.action_dim}")
    tasks = sorted(getattr(policy, "task_shares", None) or {}) or None     # a multi-task student's
    groups = describe.observation_groups(env_cfg, graph.shapes, tasks)
    inputs = [TensorSpec(k, graph.shapes[k], "float32", f"observation group {k!r}, {groups[k].units}")
              for k in graph.groups]
    outputs = [TensorSpec(ACTION, [arm.action_dim], "float32",
                          f"{env_cfg.control} action in [-1, 1] (see 'action'), clipped as the run's policy clips it")]
    recurrent = None
    if graph.recurrent_size:
        h = graph.recurrent_size
        inputs.append(TensorSpec(HIDDEN_IN, [h], "float32", "recurrent state: the previous step's hidden_out, "
                                 "zeros at an episode start"))
        outputs.append(TensorSpec(HIDDEN_OUT, [h], "float32", "recurrent state to feed back next step"))
        recurrent = RecurrentSpec(HIDDEN_IN, HIDDEN_OUT, h)
    import torch

    exporter = (f"torch {torch.__version__} torch.onnx.export (TorchScript-based, dynamo=False), opset {OPSET}"
                if fmt == "onnx" else f"torch {torch.__version__} torch.jit.trace")
    ck_file = getattr(policy, "checkpoint", None) or _student_checkpoint(run_dir, checkpoint)
    man = Manifest(
        format=FORMAT,
        source=SourceSpec(run_dir=str(run_dir.resolve()), kind=kind, task="+".join(tasks) if tasks else env_cfg.task,
                          tasks=tasks, backend=env_cfg.backend,
                          checkpoint=str(checkpoint), checkpoint_file=str(Path(ck_file).resolve()),
                          created=str(meta.get("created", "")), exported=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          robots_ts_version=__version__, encoder=meta.get("encoder") or _encoder(graph.groups),
                          base=meta.get("base"),
                          alpha=[float(a) for a in policy.alpha] if kind == "residual" else None),
        robot=describe.robot_spec(arm),
        obs_groups=list(graph.groups),
        observations=groups,
        action=describe.action_spec(arm, env_cfg.control),
        control=describe.control_spec(env_cfg, arm.action_dim, tasks),
        policy=PolicySpec(file=policy_file.name, format=fmt, sha256=sha256_of(policy_file), inputs=inputs,
                          outputs=outputs, dynamic_batch=True, exporter=exporter,
                          parity=ParitySpec(atol=PARITY_ATOL, max_abs_diff=diff,
                                            samples=PARITY_SAMPLES * PARITY_STEPS,
                                            reference=f"{type(policy).__name__}.act on random observations"),
                          recurrent=recurrent, opset=OPSET if fmt == "onnx" else None),
        camera=describe.camera_spec(env_cfg, graph.groups),
        points=describe.points_spec(env_cfg, graph.groups),
        randomization=describe.env_record(env_cfg)[0],
        env=describe.env_record(env_cfg)[1],
    )
    write_manifest(man, out_dir)
    return out_dir


def _encoder(groups) -> str | None:
    """The sensor group a policy reads (depth | points), None for a state-based one."""
    return next((g for g in groups if g in ("depth", "points")), None)


def _student_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    from robots_ts.policies.students.checkpoint import resolve_checkpoint

    return resolve_checkpoint(run_dir, checkpoint)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts export", description="Export a run's policy (ONNX or TorchScript) "
                                 "with a manifest of the robot, observations, camera and action semantics.")
    ap.add_argument("run_dir", help="a teacher, student, residual or finetune run directory")
    ap.add_argument("--format", default="onnx", help="onnx (default) | torchscript")
    ap.add_argument("--out", help="output directory (default RUN_DIR/export/FORMAT)")
    ap.add_argument("--checkpoint", help="best | latest | a checkpoint file (default: best for a teacher or a "
                    "refinement, latest for a student, as evaluate)")
    args = ap.parse_args(argv)
    check_format(args.format)           # before anything loads
    out = export_run(args.run_dir, args.format, args.out, args.checkpoint)
    print(f"exported {args.run_dir} -> {out / FORMATS[args.format]} (manifest {out / 'manifest.json'})")
    return 0
