"""Teacher checkpoints as sets: the SB3 model, its normalization statistics and (for a step
checkpoint) the RNG, curriculum and callback state form one unit.

A checkpoint ``STEM`` in ``checkpoints/`` is ``STEM.zip`` (plain SB3), ``STEM.norm.json`` and, for
``step_*`` checkpoints, ``STEM.state.json``; each is written by temp file + rename, and only then
``STEM.manifest.json``, which lists every member with its size and SHA-256. The manifest is what
makes the set exist: a loader reads it first and refuses, naming the file, when a member is
missing or is not the one the manifest recorded. A kill between members therefore leaves either
the old set intact (a ``step_*`` stem is new each time) or a set its manifest rejects (``best``),
never a model paired with another step's normalization.

``latest.json`` (written after the step's manifest) points at the step checkpoint resume starts
from; ``latest.zip`` and ``latest.norm.json`` are convenience copies for plain SB3 users, with a
manifest of their own.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from robots_ts.faults import fault_point
from robots_ts.runs import (CorruptFileError, RunError, atomic_write, atomic_write_json, read_json,
                            read_run_meta, sha256_of)

FORMAT = "robots_ts.teacher_checkpoint/1"
SUFFIXES = {"model": ".zip", "norm": ".norm.json", "state": ".state.json"}
RUN_FORMAT_WITH_MANIFESTS = 2


class CheckpointError(RunError):
    """A checkpoint set is incomplete or its members do not match its manifest."""


def member_path(ck_dir: Path, stem: str, role: str) -> Path:
    return Path(ck_dir) / f"{stem}{SUFFIXES[role]}"


def manifest_path(ck_dir: Path, stem: str) -> Path:
    return Path(ck_dir) / f"{stem}.manifest.json"


def write_set(ck_dir: Path, stem: str, writers: dict[str, Callable[[Path], None]], step: int,
              fault: str = "teacher.checkpoint.member") -> Path:
    """Write each member with ``writers[role](tmp_path)``, then the manifest; returns the manifest path."""
    ck_dir = Path(ck_dir)
    for i, (role, write) in enumerate(writers.items()):
        if i:
            fault_point(fault)
        atomic_write(member_path(ck_dir, stem, role), write)
    fault_point("teacher.checkpoint.manifest" if fault == "teacher.checkpoint.member" else fault)
    return publish_manifest(ck_dir, stem, list(writers), step)


def publish_manifest(ck_dir: Path, stem: str, roles: list[str], step: int) -> Path:
    members = {}
    for role in roles:
        p = member_path(ck_dir, stem, role)
        members[role] = {"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)}
    path = manifest_path(ck_dir, stem)
    atomic_write_json(path, {"format": FORMAT, "stem": stem, "step": int(step), "members": members})
    return path


def copy_set(ck_dir: Path, src: str, dst: str, roles: list[str], step: int) -> None:
    """Copy the members of ``src`` to ``dst`` (each by temp file + rename), then ``dst``'s manifest."""
    for role in roles:
        atomic_write(member_path(ck_dir, dst, role), lambda p, r=role: shutil.copyfile(member_path(ck_dir, src, r), p))
    publish_manifest(ck_dir, dst, roles, step)


def verify_set(ck_dir: Path, stem: str, roles: tuple[str, ...], check_hash: bool = True) -> dict:
    """The manifest of ``stem`` after checking that each of ``roles`` is listed, present and intact."""
    ck_dir = Path(ck_dir)
    mpath = manifest_path(ck_dir, stem)
    if not mpath.exists():
        raise CheckpointError(f"checkpoint {ck_dir / stem}: manifest {mpath.name} is missing, so its files "
                              "cannot be trusted to belong together (an interrupted save or a deleted file)")
    man = read_json(mpath, "checkpoint manifest")
    if not isinstance(man, dict) or man.get("format") != FORMAT or not isinstance(man.get("members"), dict):
        raise CorruptFileError(f"checkpoint manifest {mpath} is not a {FORMAT} manifest")
    for role in roles:
        rec = man["members"].get(role)
        if rec is None:
            raise CheckpointError(f"checkpoint {ck_dir / stem}: manifest {mpath.name} lists no {role} file")
        p = ck_dir / rec["file"]
        if not p.exists():
            raise CheckpointError(f"checkpoint {ck_dir / stem}: {role} file {p} is missing "
                                  f"(listed in {mpath.name}); refusing to load a partial checkpoint")
        size = p.stat().st_size
        if size != rec["bytes"] or (check_hash and sha256_of(p) != rec["sha256"]):
            raise CheckpointError(f"checkpoint {ck_dir / stem}: {role} file {p} does not match {mpath.name} "
                                  f"({size} bytes, recorded {rec['bytes']}; SHA-256 differs): it is damaged or "
                                  "from another save")
    return man


def uses_manifests(run_dir: Path) -> bool:
    """Runs written since checkpoints became sets record it in run.json; older ones load as before."""
    try:
        meta = read_run_meta(run_dir)
    except FileNotFoundError:
        return True
    return int(meta.get("format", 1)) >= RUN_FORMAT_WITH_MANIFESTS


def read_pointer(ck_dir: Path) -> dict | None:
    """``latest.json`` (None when there is none yet), checked for the fields resume needs."""
    path = Path(ck_dir) / "latest.json"
    if not path.exists():
        return None
    pointer = read_json(path, "checkpoint pointer")
    if not (isinstance(pointer, dict) and isinstance(pointer.get("name"), str) and isinstance(pointer.get("step"), int)):
        raise CorruptFileError(f"checkpoint pointer {path} lacks 'name' and 'step'")
    return pointer


def step_stems(ck_dir: Path) -> list[tuple[int, str]]:
    """(step, stem) of every ``step_*`` file group in ``ck_dir``, complete or not, oldest first."""
    out = set()
    for p in Path(ck_dir).glob("step_*"):
        stem = p.name.split(".", 1)[0]
        try:
            out.add((int(stem[len("step_"):]), stem))
        except ValueError:
            continue
    return sorted(out)


def remove_set(ck_dir: Path, stem: str) -> None:
    for suffix in (".manifest.json", *SUFFIXES.values()):  # the manifest first: what remains is incomplete
        (Path(ck_dir) / f"{stem}{suffix}").unlink(missing_ok=True)


def resume_point(ck_dir: Path) -> dict | None:
    """``{"name", "step"}`` of the checkpoint to resume from: ``latest.json``'s, or, when a kill came
    between a set's manifest and the pointer (or the pointer was lost), the newest published set."""
    pointer = read_pointer(ck_dir)
    published = [(step, stem) for step, stem in step_stems(ck_dir) if manifest_path(ck_dir, stem).exists()]
    if published and (pointer is None or published[-1][0] > pointer["step"]):
        step, stem = published[-1]
        return {"name": stem, "step": step}
    return pointer
