"""``robots-ts bench faults``: randomized kills, truncations and deletions of tiny teacher and
student runs, each followed by the command a user would run next; every case must end in a correct
result or a refusal with a named error.

Two tiny template runs are made once (a PPO teacher on Reach and a DAgger student from the
scripted oracle), with reference results: the teacher's evaluation from each checkpoint, and a
straight student run one iteration longer. Then each case, drawn with a seeded generator, is one of:

- **kill**: a fresh tiny run (teacher or student) dies at a random hit of a named fault point
  (:mod:`robots_ts.faults`: between the files of one checkpoint, in the middle of a metrics line,
  before a pointer moves, ...), then ``--resume`` finishes it;
- **truncate** / **delete**: one random file of a copy of a template run is cut to a random length
  or removed, then ``evaluate``, ``--resume`` or (teacher runs) ``distill`` from it runs.

A case is *correct* when the command succeeds and its result matches the reference (student
metrics and evaluations exactly; a resumed teacher's checkpoint set verifies and its metrics hold
each rollout step exactly once), *refused* when the command exits with code 2 and a one-line
``robots-ts <cmd>: error: ...`` message, and *otherwise* in every other case (a traceback, a wrong
number, an unverifiable checkpoint). Prints a JSON summary; ``otherwise`` must be 0.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from robots_ts import faults

TEACHER = ["env.num_envs=4", "env.num_threads=1", "env.episode_steps=20", "ppo.n_steps=16", "ppo.batch_size=64",
           "ppo.n_epochs=1", "ppo.net_arch=[16,16]", "eval_episodes=4", "eval_envs=4", "torch_threads=1",
           "checkpoint_every=64", "eval_every=128", "keep_checkpoints=2"]
TEACHER_STEPS = 256
STUDENT = ["teacher=scripted", "env.num_envs=4", "env.depth.width=16", "env.depth.height=16", "env.num_threads=1",
           "env.episode_steps=20", "torch_threads=1", "dagger.steps_per_iteration=8", "dagger.chunk_steps=4",
           "dagger.eval_episodes=4", "dagger.batch_size=32", "dagger.epochs=1", "augment.depth_noise=0",
           "student.cnn_channels=[4,8]", "student.cnn_kernels=[3,3]", "student.cnn_strides=[2,2]",
           "student.feature_dim=16", "student.proprio_mlp=[16]", "student.head_mlp=[16]", "student.aux_weight=0",
           "dagger.final_epochs=0", "dagger.train_samples=0"]  # a longer run then extends a shorter one exactly
STUDENT_ITERATIONS = 2
EVAL = ["--episodes", "4", "--num-envs", "4", "--seed", "1", "--json"]
TEACHER_POINTS = ("metrics.append", "teacher.checkpoint.member", "teacher.checkpoint.manifest",
                  "teacher.checkpoint.pointer", "teacher.best.member")
STUDENT_POINTS = ("metrics.append", "student.checkpoint", "student.pointer", "dataset.chunk")


def cli(argv: list[str]) -> tuple[int | str, str, str]:
    """``robots-ts ARGV`` in-process: (exit code or the escaping exception's name, stdout, stderr)."""
    from robots_ts.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc: int | str = main(argv)
        except SystemExit as exc:          # argparse
            rc = int(exc.code or 0)
        except faults.InjectedKill:
            raise
        except Exception as exc:  # noqa: BLE001 (a bug: the case ends "otherwise")
            rc = f"{type(exc).__name__}: {exc}"
    return rc, out.getvalue(), err.getvalue()


def refused(cmd: str, rc, err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return (rc == 2 and "Traceback" not in err and bool(lines)
            and lines[-1].startswith(f"robots-ts {cmd}: error: "))


def _files(run: Path) -> list[Path]:
    return sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file())


def _teacher_eval(run: Path, which: str) -> dict | None:
    rc, out, err = cli(["evaluate", str(run), "--checkpoint", which, *EVAL])
    return json.loads(out) if rc == 0 else None


def _same_eval(a: dict, b: dict) -> bool:
    keys = ("success_rate", "mean_return", "mean_episode_length", "episodes")
    return all(a[k] == b[k] for k in keys)


class Bench:
    def __init__(self, work: Path, rng: np.random.Generator):
        self.work, self.rng = Path(work), rng
        self.teacher = self.work / "teacher_template"
        self.student = self.work / "student_template"
        self.student_cfg = self.work / "student.yaml"
        self.refs: dict = {}

    # ---------------------------------------------------------------------------- templates
    def teacher_cmd(self, run: Path) -> list[str]:
        return ["train-teacher", "configs/teacher/reach.yaml", "--run-dir", str(run),
                "--total-steps", str(TEACHER_STEPS), *TEACHER]

    def student_cmd(self, run: Path, teacher: str | None = None, iterations: int = STUDENT_ITERATIONS) -> list[str]:
        over = [f"teacher={teacher}"] if teacher else []
        return ["distill", str(self.student_cfg), *over, "--run-dir", str(run), "--iterations", str(iterations),
                "--no-progress"]

    def build(self) -> None:
        from robots_ts.config import config_path, load_config, save_config
        from robots_ts.policies.distill.config import StudentConfig

        save_config(load_config(StudentConfig, config_path("student/reach_depth.yaml"), STUDENT), self.student_cfg)
        faults.count(TEACHER_POINTS)
        rc, _, err = cli(self.teacher_cmd(self.teacher))
        assert rc == 0, err
        self.teacher_hits = {p: faults.hits(p) for p in TEACHER_POINTS}
        faults.count(STUDENT_POINTS)
        rc, _, err = cli(self.student_cmd(self.student))
        assert rc == 0, err
        self.student_hits = {p: faults.hits(p) for p in STUDENT_POINTS}
        faults.disarm()
        from robots_ts.runs import read_jsonl

        self.refs["teacher_eval"] = {w: _teacher_eval(self.teacher, w) for w in ("best", "latest")}
        self.refs["teacher_metrics"] = read_jsonl(self.teacher / "metrics.jsonl")
        self.refs["student_metrics"] = read_jsonl(self.student / "metrics.jsonl")
        rc, out, err = cli(["evaluate", str(self.student), *EVAL])
        assert rc == 0, err
        self.refs["student_eval"] = json.loads(out)
        longer = self.work / "student_longer"
        rc, _, err = cli(self.student_cmd(longer, iterations=STUDENT_ITERATIONS + 1))
        assert rc == 0, err
        self.refs["student_longer"] = read_jsonl(longer / "metrics.jsonl")
        distilled = self.work / "distill_from_teacher"
        rc, out, err = cli(self.student_cmd(distilled, teacher=str(self.teacher), iterations=1))
        assert rc == 0, err
        self.refs["distill_from_teacher"] = json.loads(out.strip().splitlines()[-1])

    # ------------------------------------------------------------------------------ checks
    def teacher_resumed_ok(self, run: Path, total: int) -> str | None:
        """None if the resumed teacher run is whole, else what is wrong."""
        from robots_ts.policies.teacher.checkpoint import read_pointer, verify_set
        from robots_ts.runs import read_jsonl

        lines = (run / "metrics.jsonl").read_text().splitlines()
        try:
            recs = [json.loads(ln) for ln in lines]
        except json.JSONDecodeError:
            return "metrics.jsonl holds a torn line"
        rollouts = [r["steps"] for r in recs if "steps_per_s" in r]
        per_rollout = 4 * 16
        if rollouts != list(range(per_rollout, total + 1, per_rollout)):
            return f"rollout records at steps {rollouts}"
        evals = [r["steps"] for r in recs if "eval_success_rate" in r]
        if len(evals) != len(set(evals)) or evals != sorted(evals) or not evals or evals[-1] != total:
            return f"evaluation records at steps {evals}"
        pointer = read_pointer(run / "checkpoints")
        if pointer is None or pointer["step"] != total:
            return f"latest.json is {pointer}"
        verify_set(run / "checkpoints", pointer["name"], ("model", "norm", "state"))
        if _teacher_eval(run, "latest") is None or _teacher_eval(run, "best") is None:
            return "the resumed run does not evaluate"
        del read_jsonl
        return None

    def student_matches(self, run: Path, reference: list[dict]) -> str | None:
        from robots_ts.runs import read_jsonl

        got = read_jsonl(run / "metrics.jsonl")
        keys = ("iteration", "labels", "student_success", "agreement", "train_loss", "dataset_samples")
        if [[r.get(k) for k in keys] for r in got] != [[r.get(k) for k in keys] for r in reference]:
            return "student metrics differ from the uninterrupted run"
        return None

    # ------------------------------------------------------------------------------- cases
    def case(self, i: int) -> dict:
        kind = self.rng.choice(["kill", "truncate", "delete"], p=[0.2, 0.4, 0.4])
        run_kind = self.rng.choice(["teacher", "student"])
        case_dir = self.work / f"case_{i:04d}"
        try:
            if kind == "kill":
                return self._kill(run_kind, case_dir)
            return self._file(kind, run_kind, case_dir)
        finally:
            faults.disarm()
            shutil.rmtree(case_dir, ignore_errors=True)

    def _kill(self, run_kind: str, case_dir: Path) -> dict:
        hits = self.teacher_hits if run_kind == "teacher" else self.student_hits
        points = [p for p, n in hits.items() if n > 0]
        point = str(self.rng.choice(points))
        nth = int(self.rng.integers(1, hits[point] + 1))
        run = case_dir / "run"
        desc = {"kind": "kill", "run": run_kind, "point": point, "hit": nth}
        faults.arm(point, nth)
        try:
            rc, _, err = cli(self.teacher_cmd(run) if run_kind == "teacher" else self.student_cmd(run))
        except faults.InjectedKill:
            rc, err = "killed", ""
        faults.disarm()
        if rc != "killed":
            return {**desc, "outcome": "otherwise", "why": f"no kill happened (rc {rc}) {err[-300:]}"}
        if run_kind == "teacher":
            rc, _, err = cli(["train-teacher", "--resume", str(run)])
            if refused("train-teacher", rc, err):
                return {**desc, "outcome": "refused", "why": err.strip().splitlines()[-1]}
            if rc != 0:
                return {**desc, "outcome": "otherwise", "why": f"rc {rc}: {err[-300:]}"}
            why = self.teacher_resumed_ok(run, TEACHER_STEPS)
        else:
            if not (run / "run.json").exists():   # killed before the run existed: start it again
                rc, _, err = cli(self.student_cmd(run))
            else:
                rc, _, err = cli(["distill", "--resume", str(run), "--no-progress"])
            if refused("distill", rc, err):
                return {**desc, "outcome": "refused", "why": err.strip().splitlines()[-1]}
            if rc != 0:
                return {**desc, "outcome": "otherwise", "why": f"rc {rc}: {err[-300:]}"}
            why = self.student_matches(run, self.refs["student_metrics"])
        return {**desc, "outcome": "otherwise" if why else "correct", **({"why": why} if why else {})}

    def _file(self, kind: str, run_kind: str, case_dir: Path) -> dict:
        template = self.teacher if run_kind == "teacher" else self.student
        run = case_dir / "run"
        shutil.copytree(template, run)
        files = _files(run)
        rel = files[int(self.rng.integers(len(files)))]
        path = run / rel
        size = path.stat().st_size
        if kind == "delete":
            path.unlink()
        else:
            keep = int(self.rng.integers(0, max(size, 1)))
            with open(path, "r+b") as f:
                f.truncate(keep)
        commands = ["evaluate", "resume", "distill"] if run_kind == "teacher" else ["evaluate", "resume"]
        command = str(self.rng.choice(commands, p=[0.45, 0.4, 0.15] if run_kind == "teacher" else None))
        desc = {"kind": kind, "run": run_kind, "file": str(rel), "command": command}
        why = None
        if run_kind == "teacher" and command == "evaluate":
            which = str(self.rng.choice(["best", "latest"]))
            rc, out, err = cli(["evaluate", str(run), "--checkpoint", which, *EVAL])
            ok = rc == 0 and _same_eval(json.loads(out), self.refs["teacher_eval"][which])
            why = None if ok else f"evaluation differs or failed (rc {rc})"
            cmd = "evaluate"
        elif run_kind == "teacher" and command == "resume":
            rc, out, err = cli(["train-teacher", "--resume", str(run), "--total-steps", str(TEACHER_STEPS + 64)])
            why = self.teacher_resumed_ok(run, TEACHER_STEPS + 64) if rc == 0 else f"rc {rc}"
            cmd = "train-teacher"
        elif run_kind == "teacher":
            rc, out, err = cli(self.student_cmd(case_dir / "student", teacher=str(run), iterations=1))
            ref = self.refs["distill_from_teacher"]
            ok = rc == 0 and all(json.loads(out.strip().splitlines()[-1])[k] == ref[k]
                                 for k in ("teacher_success", "student_success", "agreement", "train_loss"))
            why = None if ok else f"distilled student differs or failed (rc {rc})"
            cmd = "distill"
        elif command == "evaluate":
            rc, out, err = cli(["evaluate", str(run), *EVAL])
            ok = rc == 0 and _same_eval(json.loads(out), self.refs["student_eval"])
            why = None if ok else f"evaluation differs or failed (rc {rc})"
            cmd = "evaluate"
        else:
            rc, out, err = cli(["distill", "--resume", str(run), "--iterations", str(STUDENT_ITERATIONS + 1),
                                "--no-progress"])
            why = self.student_matches(run, self.refs["student_longer"]) if rc == 0 else f"rc {rc}"
            cmd = "distill"
        if rc != 0 and refused(cmd, rc, err):
            return {**desc, "outcome": "refused", "why": err.strip().splitlines()[-1]}
        if why:
            return {**desc, "outcome": "otherwise", "why": f"{why} {err.strip()[-300:]}"}
        return {**desc, "outcome": "correct"}


def bench_faults(cases: int = 200, seed: int = 0, work: Path | None = None, keep: bool = False) -> dict:
    import warnings

    t0 = time.perf_counter()
    tmp = None
    if work is None:
        tmp = tempfile.mkdtemp(prefix="robots_ts_faults_")
        work = Path(tmp)
    bench = Bench(Path(work), np.random.default_rng(seed))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bench.build()
            t_build = time.perf_counter() - t0
            results = [bench.case(i) for i in range(cases)]
    finally:
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("correct", "refused", "otherwise")}
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        key = f"{r['kind']}/{r['run']}"
        by_kind.setdefault(key, {"correct": 0, "refused": 0, "otherwise": 0})[r["outcome"]] += 1
    return {"cases": cases, "seed": seed, **counts, "by_kind": by_kind,
            "otherwise_cases": [r for r in results if r["outcome"] == "otherwise"],
            "refusal_examples": sorted({r["why"].split(": error: ", 1)[-1][:160] for r in results
                                        if r["outcome"] == "refused"})[:12],
            "build_seconds": round(t_build, 1), "wall_seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="robots-ts bench faults", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="working directory (default: a temporary one, removed afterwards)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.cases < 1:
        ap.error(f"--cases: expected an integer >= 1, got {args.cases}")
    res = bench_faults(args.cases, args.seed, Path(args.work) if args.work else None)
    print(json.dumps(res, indent=1) if args.json else res)
    return 0 if res["otherwise"] == 0 else 1
