"""``robots-ts export`` and ``robots-ts bench export-latency`` from the command line: what they
write, and bad input as one named line (exit code 2) that leaves nothing behind."""
import json
import shutil

from robots_ts.cli import main as cli
from robots_ts.sim2real.export.manifest import load_manifest


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("robots-ts export: error: "), err
    return lines[0]


def test_export_command_writes_policy_and_manifest(runs, tmp_path, capsys):
    run = tmp_path / "teacher"
    shutil.copytree(runs["teacher"], run)
    assert cli(["export", str(run), "--checkpoint", "latest"]) == 0     # default: RUN_DIR/export/onnx
    assert "policy.onnx" in capsys.readouterr().out
    man = load_manifest(run / "export" / "onnx")
    # latest: the step checkpoint latest.json names, as evaluate resolves it.
    assert man.source.checkpoint == "latest" and "checkpoints/step_" in man.source.checkpoint_file
    out = tmp_path / "ts"
    assert cli(["export", str(runs["depth"]), "--format", "torchscript", "--out", str(out)]) == 0
    assert load_manifest(out).policy.file == "policy.pt" and sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "policy.pt"]
    assert not (runs["depth"] / "export").exists()     # --out: nothing written into the run


def test_bad_input_is_one_named_line(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["export", str(tmp_path), "--out", str(out)]) == 2
    assert f"{tmp_path} is not a run directory (no run.json)" in one_line_error(capsys)
    assert cli(["export", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere does not exist" in one_line_error(capsys)
    assert cli(["export", str(runs["depth"]), "--format", "tflite", "--out", str(out)]) == 2
    assert "unknown export format 'tflite'; expected one of ['onnx', 'torchscript']" in one_line_error(capsys)
    # A teacher whose best model is gone, a named checkpoint that does not exist, a student without one.
    teacher = tmp_path / "teacher"
    shutil.copytree(runs["teacher"], teacher)
    (teacher / "checkpoints" / "best.zip").unlink()
    assert cli(["export", str(teacher), "--out", str(out)]) == 2
    assert "best.zip is missing" in one_line_error(capsys)
    assert cli(["export", str(teacher), "--checkpoint", "step_9.zip", "--out", str(out)]) == 2
    assert "no checkpoint" in one_line_error(capsys)
    student = tmp_path / "student"
    shutil.copytree(runs["points"], student)
    (student / "checkpoints" / "iter_0000.safetensors").unlink()
    assert cli(["export", str(student), "--out", str(out)]) == 2
    assert "iter_0000.safetensors is missing" in one_line_error(capsys)
    (student / "checkpoints" / "latest.json").unlink()
    assert cli(["export", str(student), "--out", str(out)]) == 2
    assert "has no checkpoint yet" in one_line_error(capsys)
    from robots_ts.runs import write_run_meta

    write_run_meta(tmp_path / "sweep", "sweep")
    assert cli(["export", str(tmp_path / "sweep"), "--out", str(out)]) == 2
    assert "cannot export a 'sweep' run" in one_line_error(capsys)
    write_run_meta(tmp_path / "residual", "residual")         # a residual run without its config
    assert cli(["export", str(tmp_path / "residual"), "--out", str(out)]) == 2
    assert "config.yaml is missing" in one_line_error(capsys)
    assert not out.exists()


def test_latency_benchmark(runs, capsys):
    assert cli(["bench", "export-latency", str(runs["depth_gru"]), "--runs", "30", "--warmup", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    for arm in ("onnx_ms", "torch_act_ms"):
        assert 0 < res[arm]["p50"] <= res[arm]["p90"] <= res[arm]["p99"] <= res[arm]["max"]
    assert res["threads"]["intra_op"] == 1 and res["batch"] == 1 and res["model_bytes"] > 0
    assert res["inputs"] == {"proprio": [1, 23], "depth": [1, 1, 12, 16], "hidden": [1, 8]}
    assert res["bar"]["applies"] and isinstance(res["bar"]["met"], bool)
    assert len(res["load_average"]["before"]) == 3 and "shared" in res["machine_note"]
    assert not (runs["depth_gru"] / "export").exists()
