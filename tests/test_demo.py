"""`robots-ts demo --quick`: the whole teacher-to-students pipeline end to end on a tiny budget."""
import json

from robots_ts.cli import main as cli


def test_quick_demo_writes_summary_and_report(tmp_path):
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "--bc", "--run-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == {"teacher", "depth_student", "points_student", "bc_depth"}
    for res in summary["policies"].values():
        assert res["episodes"] == 8 and res["seed"] == summary["eval_seed"]
    report = (out / "report.md").read_text()
    assert "| depth_student |" in report and "bc_depth" in report
    for png in ("success.png", "depth_frame.png", "point_cloud.png", "teacher/learning_curve.png",
                "student_depth/curves.png"):
        assert (out / png).stat().st_size > 1000
    # Running it again reuses the finished stages instead of failing on existing run directories;
    # without --bc the baseline is left out of the summary and the report.
    assert cli(["demo", "--quick", "--run-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == {"teacher", "depth_student", "points_student"}
    assert "bc_depth" not in (out / "report.md").read_text()
