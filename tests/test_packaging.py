"""A built wheel carries the shipped configs, and `config_path` finds them outside the repository."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import robots_ts

REPO = Path(robots_ts.__file__).resolve().parent.parent


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "robots_ts", src / "robots_ts", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    # What `pip wheel --no-build-isolation` runs, without pip or the network.
    res = subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(out)!r})"],
                         cwd=src, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = out.glob("robots_ts-*.whl")
    return wheel


def test_wheel_ships_the_configs_and_config_path_finds_them(tmp_path):
    wheel = _build_wheel(tmp_path)
    shipped = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "robots_ts" / "configs").rglob("*.yaml"))
    assert "robots_ts/configs/teacher/reach.yaml" in shipped
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert sorted(n for n in names if n.endswith(".yaml")) == shipped
        z.extractall(tmp_path / "site")
    # Installed (unpacked) away from the repository, from a directory without configs/.
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import robots_ts\n"
            "from robots_ts.config import config_path, load_config\n"
            "from robots_ts.policies.teacher.config import TeacherConfig\n"
            "path = config_path('teacher/reach.yaml')\n"
            "print(robots_ts.__file__)\n"
            "print(path.resolve())\n"
            "print(load_config(TeacherConfig, path).env.task)")
    res = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")))
    assert res.returncode == 0, res.stderr[-2000:]
    module, path, task = res.stdout.splitlines()
    site = (tmp_path / "site").resolve()
    assert Path(module).is_relative_to(site) and Path(path).is_relative_to(site)
    assert task == "Reach"
