"""``robots-ts bench export-latency``: inference latency of a run's exported ONNX policy on one CPU thread.

The run is exported (to a temporary directory unless ``--out``), then onnxruntime runs it at batch
1 with one intra-op and one inter-op thread, after a warm-up, on observations drawn as the export's
parity check draws them. The baseline, run back to back in the same process on the same
observations, is the run's own policy object (``act``, torch on one thread): what ``evaluate``
runs. The two arms alternate in blocks, so a change in the machine's load hits both. Reported:
p50 / p90 / p99 / max in milliseconds, the model file's size, the onnxruntime version, and the load
average before and after (the machine may be shared; the JSON says so). The issue's bar: a depth
student's p99 under 2 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

BAR_P99_MS = 2.0
BLOCK = 100   # calls per arm before switching to the other


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 4), "p90": round(float(np.percentile(a, 90)), 4),
            "p99": round(float(np.percentile(a, 99)), 4), "max": round(float(a.max()), 4),
            "mean": round(float(a.mean()), 4)}


def _time_calls(call, inputs: list, n: int, out: list[float]) -> None:
    for i in range(n):
        x = inputs[i % len(inputs)]
        t0 = time.perf_counter_ns()
        call(x)
        out.append((time.perf_counter_ns() - t0) / 1e6)


def bench_export_latency(run_dir: str | Path, runs: int = 2000, warmup: int = 200, checkpoint: str | None = None,
                         out: str | Path | None = None, seed: int = 0) -> dict:
    import onnxruntime as ort
    import torch

    from robots_ts.policies.load import load_policy
    from robots_ts.runs import read_run_meta
    from robots_ts.sim2real.export.exporter import export_run
    from robots_ts.sim2real.export.graphs import policy_graph
    from robots_ts.sim2real.export.manifest import load_manifest
    from robots_ts.sim2real.export.onnx_policy import session_options

    if runs < 1 or warmup < 0:
        raise ValueError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {warmup}")
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="robots_ts_export_") as tmp:
        export_dir = export_run(run_dir, "onnx", out if out is not None else tmp, checkpoint)
        man = load_manifest(export_dir)
        model = export_dir / man.policy.file
        sess = ort.InferenceSession(str(model), sess_options=session_options(1), providers=["CPUExecutionProvider"])
        size = model.stat().st_size

    policy = load_policy(run_dir, man.source.checkpoint)
    graph = policy_graph(policy)
    rng = np.random.default_rng(seed)
    samples = [graph.sample(1, rng) for _ in range(64)]
    feeds = []
    for obs in samples:
        feed = {k: obs[k] for k in graph.groups}
        if man.policy.recurrent is not None:
            feed[man.policy.recurrent.input] = np.zeros((1, man.policy.recurrent.size), np.float32)
        feeds.append(feed)
    names = [o.name for o in man.policy.outputs]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        onnx_call = lambda feed: sess.run(names, feed)   # noqa: E731
        _time_calls(onnx_call, feeds, warmup, [])
        _time_calls(policy.act, samples, warmup, [])
        onnx_ms: list[float] = []
        torch_ms: list[float] = []
        while len(onnx_ms) < runs:
            k = min(BLOCK, runs - len(onnx_ms))
            _time_calls(onnx_call, feeds, k, onnx_ms)
            _time_calls(policy.act, samples, k, torch_ms)
    finally:
        torch.set_num_threads(threads)
    onnx_stats, torch_stats = _stats(onnx_ms), _stats(torch_ms)
    is_depth_student = meta.get("kind") == "student" and "depth" in man.obs_groups
    return {
        "benchmark": "export-latency", "run_dir": str(run_dir), "kind": meta.get("kind"), "task": man.source.task,
        "obs_groups": man.obs_groups, "inputs": {t.name: [1, *t.shape] for t in man.policy.inputs},
        "checkpoint": man.source.checkpoint, "model_file": man.policy.file, "model_bytes": size,
        "onnxruntime": ort.__version__, "torch": torch.__version__, "opset": man.policy.opset,
        "threads": {"intra_op": 1, "inter_op": 1, "torch_baseline": 1}, "batch": 1, "warmup": warmup, "runs": runs,
        "onnx_ms": onnx_stats,
        "baseline": "the run's own policy.act (torch, one thread), same observations, alternating blocks of "
                    f"{BLOCK} calls",
        "torch_act_ms": torch_stats,
        "speedup_p50": round(torch_stats["p50"] / onnx_stats["p50"], 2),
        "speedup_p99": round(torch_stats["p99"] / onnx_stats["p99"], 2),
        "parity_max_abs_diff": man.policy.parity.max_abs_diff,
        "bar": {"what": "depth-student ONNX p99 on one CPU thread", "p99_ms_below": BAR_P99_MS,
                "applies": is_depth_student, "met": (onnx_stats["p99"] < BAR_P99_MS) if is_depth_student else None},
        "load_average": {"before": [round(v, 2) for v in load_before],
                         "after": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count()},
        "machine_note": "a shared machine: other processes (benchmarks) ran on the same cores; the load "
                        "average (1, 5, 15 min, as uptime reports it) says how busy it was",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench export-latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a teacher or student run directory (nothing is written into it)")
    ap.add_argument("--runs", type=int, default=2000, help="timed calls per arm")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--checkpoint", help="best | latest | a checkpoint file (default as evaluate)")
    ap.add_argument("--out", help="keep the export in this directory (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    res = bench_export_latency(args.run_dir, args.runs, args.warmup, args.checkpoint, args.out)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        o, t = res["onnx_ms"], res["torch_act_ms"]
        print(f"{res['run_dir']} ({res['kind']}, {res['model_bytes']} bytes, onnxruntime {res['onnxruntime']}):")
        print(f"  onnx  p50 {o['p50']} ms  p90 {o['p90']}  p99 {o['p99']}  max {o['max']}")
        print(f"  torch p50 {t['p50']} ms  p90 {t['p90']}  p99 {t['p99']}  max {t['max']}  "
              f"(speedup p50 x{res['speedup_p50']})")
        print(f"  load average {res['load_average']['before']} -> {res['load_average']['after']} "
              f"on {res['load_average']['cpus']} CPUs (shared machine)")
    return 0
