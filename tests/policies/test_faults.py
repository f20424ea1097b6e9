"""Fault injection (issue 11): kills at named points of teacher and DAgger runs, then resume; missing
or damaged checkpoint members; each case ends in a correct resume or a named refusal."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from robots_ts import faults
from robots_ts.bench.faults import TEACHER, Bench, bench_faults, cli, refused
from robots_ts.cli import main
from robots_ts.policies.teacher.checkpoint import read_pointer, step_stems, verify_set
from robots_ts.runs import read_jsonl

REACH = "configs/teacher/reach.yaml"


def teacher(run, steps=256, *extra):
    return ["train-teacher", REACH, "--run-dir", str(run), "--total-steps", str(steps), *TEACHER, *extra]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    b = Bench(tmp_path_factory.mktemp("faults"), __import__("numpy").random.default_rng(0))
    b.build()
    yield b
    faults.disarm()


@pytest.fixture(autouse=True)
def _disarm():
    yield
    faults.disarm()


def test_missing_or_stale_normalization_is_refused_not_ignored(tmp_path, bench):
    """Defect 1: without best.norm.json, evaluate used to run the raw policy (0.03 instead of 1.00)."""
    for victim, damage in (("best.norm.json", "delete"), ("best.norm.json", "replace"), ("best.manifest.json", "delete")):
        run = tmp_path / f"{victim}-{damage}"
        shutil.copytree(bench.teacher, run)
        path = run / "checkpoints" / victim
        if damage == "delete":
            path.unlink()
        else:   # statistics of another save: same format, other numbers
            stats = json.loads(path.read_text())
            for v in stats["obs"].values():
                v["mean"] = [m + 1.0 for m in v["mean"]]
            path.write_text(json.dumps(stats))
        rc, out, err = cli(["evaluate", str(run), "--episodes", "4", "--json"])
        assert refused("evaluate", rc, err), (rc, err)
        assert victim in err or "best.norm.json" in err


def test_legacy_teacher_without_manifest_still_refuses_missing_normalization(tmp_path, bench):
    run = tmp_path / "legacy"
    shutil.copytree(bench.teacher, run)
    meta = json.loads((run / "run.json").read_text())
    meta.pop("format")
    (run / "run.json").write_text(json.dumps(meta))
    for p in (run / "checkpoints").glob("*.manifest.json"):
        p.unlink()
    rc, _, err = cli(["evaluate", str(run), "--episodes", "4", "--json"])
    assert rc == 0
    (run / "checkpoints" / "best.norm.json").unlink()
    rc, _, err = cli(["evaluate", str(run), "--episodes", "4", "--json"])
    assert refused("evaluate", rc, err) and "best.norm.json" in err


@pytest.mark.parametrize("point", ["teacher.checkpoint.member", "teacher.checkpoint.manifest",
                                   "teacher.checkpoint.pointer", "teacher.best.member", "metrics.append"])
def test_teacher_killed_at_a_named_point_resumes_whole(tmp_path, bench, point):
    run = tmp_path / "run"
    faults.arm(point, max(1, bench.teacher_hits[point] // 2 + 1))
    with pytest.raises(faults.InjectedKill):
        cli(teacher(run))
    faults.disarm()
    rc, _, err = cli(["train-teacher", "--resume", str(run)])
    assert rc == 0, err
    assert bench.teacher_resumed_ok(run, 256) is None


def test_teacher_killed_before_its_first_checkpoint_keeps_no_dead_metrics(tmp_path):
    """Defect 4: the dead run's lines stayed in metrics.jsonl (steps 64..., 64...)."""
    run = tmp_path / "run"
    faults.arm("teacher.checkpoint.member", 1)     # the first checkpoint never completes
    with pytest.raises(faults.InjectedKill):
        cli(teacher(run, 128))
    faults.disarm()
    assert read_jsonl(run / "metrics.jsonl") and read_pointer(run / "checkpoints") is None
    assert main(["train-teacher", "--resume", str(run)]) == 0
    steps = [r["steps"] for r in read_jsonl(run / "metrics.jsonl") if "steps_per_s" in r]
    assert steps == [64, 128]


def test_last_evaluation_is_logged_once_and_finished_resume_adds_nothing(tmp_path):
    """total_steps a multiple of eval_every: the final evaluation used to be logged twice."""
    run = tmp_path / "run"
    assert main(teacher(run, 256)) == 0
    evals = [r["steps"] for r in read_jsonl(run / "metrics.jsonl") if "eval_success_rate" in r]
    assert evals == [128, 256]
    before = (run / "metrics.jsonl").read_text()
    assert main(["train-teacher", "--resume", str(run)]) == 0
    assert (run / "metrics.jsonl").read_text() == before


def test_keep_checkpoints_keeps_the_pointers_set(tmp_path):
    """Defect 3: keep_checkpoints=-1 deleted the set latest.json names; it is now rejected, and 1
    keeps exactly the newest set."""
    run = tmp_path / "run"
    assert main(teacher(run, 256, "keep_checkpoints=1")) == 0
    ck = run / "checkpoints"
    pointer = read_pointer(ck)
    assert [stem for _, stem in step_stems(ck)] == [pointer["name"]]
    verify_set(ck, pointer["name"], ("model", "norm", "state"))


def test_sigkill_between_manifest_and_pointer_resumes_from_the_published_set(tmp_path):
    """A real SIGKILL (environment-armed fault point) in a subprocess."""
    run = tmp_path / "run"
    env = {**os.environ, faults.ENV_VAR: "teacher.checkpoint.pointer:2"}
    proc = subprocess.run([sys.executable, "-m", "robots_ts.cli", *teacher(run)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert read_pointer(run / "checkpoints")["step"] == 64          # the pointer never moved to 128
    rc, out, err = cli(["train-teacher", "--resume", str(run)])
    assert rc == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("point", ["student.checkpoint", "student.pointer", "dataset.chunk", "metrics.append"])
def test_dagger_killed_at_a_named_point_resumes_exactly(tmp_path, bench, point):
    run = tmp_path / "run"
    faults.arm(point, bench.student_hits[point])           # the last hit: inside the last iteration
    with pytest.raises(faults.InjectedKill):
        cli(bench.student_cmd(run))
    faults.disarm()
    rc, _, err = cli(["distill", "--resume", str(run), "--no-progress"])
    assert rc == 0, err
    assert bench.student_matches(run, bench.refs["student_metrics"]) is None


def test_damaged_student_run_is_refused_on_resume(tmp_path, bench):
    for victim in ("metrics.jsonl", "dataset/manifest.jsonl", "dataset/it0000_c0000.npz",
                   "checkpoints/iter_0001.safetensors", "config.yaml"):
        run = tmp_path / victim.replace("/", "_")
        shutil.copytree(bench.student, run)
        path = run / victim
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
        rc, _, err = cli(["distill", "--resume", str(run), "--iterations", "3", "--no-progress"])
        assert refused("distill", rc, err), (victim, rc, err)


def test_fault_benchmark_small(tmp_path):
    res = bench_faults(cases=24, seed=1, work=tmp_path)
    assert res["otherwise"] == 0, res["otherwise_cases"]
    assert res["correct"] + res["refused"] == 24 and res["correct"] > 0 and res["refused"] > 0
