"""The deploy node and the simulated robot over real ROS 1 on loopback.

A private roscore (free port, ROS_HOME and ROS_LOG_DIR in a temporary directory), ``robots-ts
sim-robot --ros1 Reach`` and ``robots-ts deploy EXPORT --ros1`` as subprocesses, with a tiny depth
student of random weights (tests/deploy/test_core.py's ``export_for``: 16x12 depth). A probe
process (rospy, the venv's Python) records every message on the command topic with its arrival
time and publishes the Bool control topics on request. Checked through those topics: commands
arrive at the control rate once armed, stay finite, inside the joint limits and the velocity limit;
a stalled joint-state stream holds the robot within 3 periods; the e-stop latches until re-armed;
a policy that outputs NaN never reaches the command topic; a node run with ``--record`` replays
(``robots-ts replay``) to its live tick log.

Skipped, with the reason, where ROS 1 (roscore, rospy and the message packages) is not installed.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robots_ts.runs import read_jsonl
from robots_ts.sim2real.deploy.ros1 import ros1_available

_OK, _WHY = ros1_available()
pytestmark = [pytest.mark.ros, pytest.mark.skipif(not _OK, reason=f"ROS 1 not available: {_WHY}")]

COMMANDS = "/forward_position_controller/commands"
CLI = [sys.executable, "-m", "robots_ts.cli"]

PROBE = r"""
import json, sys, time
from robots_ts.sim2real.deploy.ros1 import import_rospy
rospy = import_rospy()
from std_msgs.msg import Bool, Float64MultiArray
out = open(sys.argv[1], "w")
rospy.init_node("robots_ts_test_probe", disable_signals=True)
def on_command(msg):
    out.write(json.dumps({"t": time.monotonic(), "data": list(msg.data)}) + "\n")
    out.flush()
sub = rospy.Subscriber(sys.argv[2], Float64MultiArray, on_command, queue_size=1000, tcp_nodelay=True)
pubs = {}
def wait(cond, timeout=15.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "wait_commands":
        ok = wait(lambda: sub.get_num_connections() > 0)
    else:
        topic, value = words[:2]
        if topic not in pubs:
            pubs[topic] = rospy.Publisher(topic, Bool, queue_size=10, latch=True)
        ok = words[2:] == ["latch"] or wait(lambda: pubs[topic].get_num_connections() > 0)
        pubs[topic].publish(Bool(data=value == "1"))
    print("ok" if ok else "timeout", time.monotonic(), flush=True)
"""


class Probe:
    def __init__(self, env, out: Path):
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, str(out), COMMANDS], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, line: str) -> float:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        status, t = self.proc.stdout.readline().split()
        assert status == "ok", f"probe: {line!r} timed out (no subscriber)"
        return float(t)

    def commands(self, t0: float = -np.inf, t1: float = np.inf) -> list[dict]:
        return [m for m in read_jsonl(self.out) if t0 <= m["t"] <= t1]


def wait_for(cond, timeout: float, what: str, poll: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_deploy(core, export, root: Path, name: str, *extra) -> tuple[subprocess.Popen, Path]:
    log = open(root / f"{name}.out", "w")
    ticks = root / f"{name}_ticks.jsonl"
    proc = subprocess.Popen(CLI + ["deploy", str(export), "--ros1", "--soft-start", "0", "--velocity-limit-scale",
                                   "0.05", "--tick-log", str(ticks), "--stats", str(root / f"{name}_stats.json"),
                                   "--node-name", name, *extra],
                            env=core.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, ticks


def nan_export(src: Path, dst: Path) -> Path:
    """A copy of an export whose graph multiplies the action by NaN (and a manifest naming its hash)."""
    import onnx
    from onnx import TensorProto, helper

    from robots_ts.runs import sha256_of
    from robots_ts.sim2real.export.manifest import load_manifest, write_manifest

    shutil.copytree(src, dst)
    man = load_manifest(dst)
    path = dst / man.policy.file
    model = onnx.load(str(path))
    g = model.graph
    out = man.policy.action_output
    for node in g.node:
        node.output[:] = [f"{out}_finite" if o == out else o for o in node.output]
    g.node.append(helper.make_node("Constant", [], ["nan_scale"],
                                   value=helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])))
    g.node.append(helper.make_node("Mul", [f"{out}_finite", "nan_scale"], [out]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    write_manifest(dataclasses.replace(man, policy=dataclasses.replace(man.policy, sha256=sha256_of(path))), dst)
    return dst


def test_bench_ros_loop_reports_rate_and_paired_success(tmp_path_factory):
    """One episode of ``robots-ts bench ros-loop`` (first: before this module's loop is running)."""
    from robots_ts.bench.ros_loop import bench_ros_loop
    from tests.deploy.test_core import export_for

    export = export_for(tmp_path_factory, "reach_depth")
    out = tmp_path_factory.mktemp("bench_ros_loop")
    res = bench_ros_loop(export, episodes=1, seed=2, out=out)
    assert res["episodes"] == 1 and res["params_match"]
    (ep,) = res["per_episode"]
    assert ep["ros_steps"] >= 1 and ep["sim_steps"] >= 1
    assert abs(res["command_rate_hz"] - res["control_hz"]) < 0.25 * res["control_hz"]
    assert res["deploy"]["sent"] > 10 and res["deploy"]["counters"]["nan"] == 0
    assert {"uptime_before", "received_jitter", "publish_jitter", "bars"} <= set(res)
    assert (out / "sim_robot.jsonl").is_file() and (out / "deploy_ticks.jsonl").is_file()


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    from robots_ts.sim2real.deploy.ros1 import Roscore, stop_group
    from robots_ts.sim2real.export.manifest import load_manifest
    from tests.deploy.test_core import export_for

    export = export_for(tmp_path_factory, "reach_depth")
    man = load_manifest(export)
    root = tmp_path_factory.mktemp("ros1_loop")
    procs = []
    with Roscore(root / "ros") as core:
        try:
            i = man.camera.intrinsics
            sim_log = root / "sim_robot.jsonl"
            procs.append(subprocess.Popen(
                CLI + ["sim-robot", "--ros1", "Reach", "--seed", "1", "--episode-steps", "100000", "--camera-width",
                       str(i.width), "--camera-height", str(i.height), "--log", str(sim_log)],
                env=core.env, stdout=open(root / "sim_robot.out", "w"), stderr=subprocess.STDOUT,
                start_new_session=True))
            deploy, ticks = start_deploy(core, export, root, "deploy")
            procs.append(deploy)
            probe = Probe(core.env, root / "probe.jsonl")
            procs.append(probe.proc)
            # Both up: the node runs its policy on sim-robot's data (dry run: not armed yet).
            wait_for(lambda: any(not r["held"] for r in read_jsonl(ticks)), 60,
                     "the deploy node's first tick with data")
            probe.send("wait_commands")
            yield dict(core=core, export=export, man=man, root=root, probe=probe, ticks=ticks, sim_log=sim_log,
                       deploy=deploy, procs=procs, period=man.control.period_s)
        finally:
            for p in reversed(procs):
                stop_group(p)


def max_step(man, scale: float = 0.05) -> np.ndarray:
    lim = {j.name: j for j in man.robot.joints}
    return np.array([lim[n].velocity for n in man.robot.arm_joints]) * man.control.period_s * scale


def limits(man) -> tuple[np.ndarray, np.ndarray]:
    lim = {j.name: j for j in man.robot.joints}
    return (np.array([lim[n].lower for n in man.robot.arm_joints]),
            np.array([lim[n].upper for n in man.robot.arm_joints]))


def test_commands_arrive_armed_and_stay_within_limits(loop):
    probe, man, period = loop["probe"], loop["man"], loop["period"]
    assert probe.commands() == [], "commands reached the command topic before the node was armed"
    t_arm = probe.send("/robots_ts/arm 1")
    time.sleep(1.6)
    t_end = time.monotonic()
    got = probe.commands(t_arm, t_end)
    assert len(got) >= 25, f"only {len(got)} commands in 1.6 s at {1 / period:g} Hz"
    t = np.array([m["t"] for m in got])
    assert abs(np.median(np.diff(t)) - period) < 0.2 * period
    cmds = np.array([m["data"] for m in got])
    assert cmds.shape[1] == 8 and np.all(np.isfinite(cmds))
    low, high = limits(man)
    q = cmds[:, :7]
    assert np.all(q >= low - 1e-12) and np.all(q <= high + 1e-12)
    assert np.all((cmds[:, 7] >= 0) & (cmds[:, 7] <= man.action.gripper.finger_range[1] + 1e-12))
    # Every command on the topic is one the node sent (not a dry-run one) ...
    ticks = read_jsonl(loop["ticks"])
    by_value = {tuple(r["positions"]): r for r in ticks}
    recs = [by_value.get(tuple(c[:7])) for c in cmds]
    assert all(r is not None and r["send"] for r in recs)
    # ... and between two commands of the policy (no hold in between) no joint moves more than
    # the velocity limit allows in a period (scaled to 5% here, so that the limit is exercised).
    step = max_step(man)
    pairs = [k for k in range(1, len(recs)) if not recs[k]["held"] and not recs[k - 1]["held"]]
    assert len(pairs) >= 20
    dq = np.abs(q[pairs] - q[np.array(pairs) - 1])
    assert np.all(dq <= step * (1 + 1e-9) + 1e-12), f"velocity limit exceeded by {np.max(dq - step):.3g} rad"
    assert any("velocity_limit" in r["interventions"] for r in recs), "the velocity limit never acted"


def test_stalled_joint_states_hold_within_three_periods(loop):
    probe, period = loop["probe"], loop["period"]
    probe.send("/robots_ts/arm 1")
    time.sleep(0.3)
    probe.send("/sim_robot/stall_joint_states 1")
    time.sleep(0.6)
    probe.send("/sim_robot/stall_joint_states 0")
    stall = wait_for(lambda: [e for e in read_jsonl(loop["sim_log"]) if e["event"] == "stall"], 5, "the stall event")
    assert stall[0]["on"]
    last_js = stall[0]["last_joint_state"]
    resumed = wait_for(lambda: [e for e in read_jsonl(loop["sim_log"]) if e["event"] == "stall" and not e["on"]],
                       5, "the end of the stall")[0]["t"]
    time.sleep(0.3)
    ticks = [r for r in read_jsonl(loop["ticks"]) if r["t"] > last_js]
    held = [r for r in ticks if "stale_joint_state" in r["interventions"]]
    assert held, "the node never held on the stalled joint states"
    first = held[0]["t"]
    # The watchdog trips 3 periods after the last joint state arrived (its publish time plus
    # delivery, which a loaded machine stretches): every tick whose latest joint state is older
    # than that holds, and no younger one does, by the node's own record of the age.
    assert first - last_js > 3 * period
    assert all(not r["held"] for r in ticks if r["t"] < first)
    late = [r["joint_state_age"] / period for r in ticks
            if r["joint_state_age"] > 3 * period and "stale_joint_state" not in r["interventions"]]
    assert not late, f"ticks {late} periods after the last joint state arrived ran on"
    early = [r["joint_state_age"] / period for r in held if r["joint_state_age"] <= 3 * period]
    assert not early, f"ticks held on joint states only {early} periods old"
    stalled = [r for r in ticks if first <= r["t"] < resumed]
    assert stalled and all(r["held"] and r["send"] for r in stalled)
    hold = np.array([r["positions"] for r in stalled])
    assert np.all(hold == hold[0]), "the hold command changed while joint states were stalled"
    # Through ROS: what arrived during the stall is that one pose.
    got = np.array([m["data"][:7] for m in probe.commands(first + 0.01, resumed)])
    assert len(got) and np.all(got == hold[0])
    # Fresh joint states: the policy runs again.
    assert any(not r["held"] for r in ticks if r["t"] > resumed + 2 * period)


def test_estop_latches_until_rearmed(loop):
    probe, period = loop["probe"], loop["period"]
    probe.send("/robots_ts/arm 1")
    time.sleep(0.2)
    t_stop = probe.send("/robots_ts/estop 1")
    time.sleep(0.3)
    t_release = probe.send("/robots_ts/estop 0")    # does not clear a latched e-stop
    time.sleep(0.4)
    t_rearm = probe.send("/robots_ts/arm 1")
    time.sleep(0.4)
    ticks = read_jsonl(loop["ticks"])
    after = [r for r in ticks if t_stop + 2 * period < r["t"] < t_rearm]
    assert len(after) >= 10 and all(r["held"] and "estop" in r["interventions"] for r in after)
    assert any(r["t"] > t_release + 2 * period for r in after)
    hold = np.array([r["positions"] for r in after])
    assert np.all(hold == hold[0])
    got = np.array([m["data"][:7] for m in probe.commands(t_stop + 2 * period, t_rearm)])
    assert len(got) and np.all(got == hold[0])
    resumed = [r for r in ticks if r["t"] > t_rearm + 2 * period]
    assert resumed and all(r["send"] and not r["held"] and "estop" not in r["interventions"] for r in resumed)


def test_nan_policy_never_reaches_the_command_topic(loop, tmp_path):
    from robots_ts.sim2real.deploy.ros1 import stop_group

    probe, root, period = loop["probe"], loop["root"], loop["period"]
    probe.send("/robots_ts/arm 0")
    stop_group(loop["deploy"])
    # The probe's control topics are latched: the next node reads arm = true when it connects.
    probe.send("/robots_ts/arm 1 latch")
    export = nan_export(Path(loop["export"]), tmp_path / "nan_export")
    proc, ticks = start_deploy(loop["core"], export, root, "deploy_nan")
    loop["procs"].append(proc)
    t0 = time.monotonic()
    wait_for(lambda: sum(r["send"] and not r["held"] for r in read_jsonl(ticks)) >= 20, 30,
             "20 ticks of the NaN policy")
    got = probe.commands(t0)
    recs = [r for r in read_jsonl(ticks) if r["send"] and not r["held"]]    # the policy ran (no hold)
    assert len(recs) >= 10 and all("nan" in r["interventions"] and all(a is None for a in r["action"])
                                   for r in recs)
    assert len(got) >= 10
    cmds = np.array([m["data"] for m in got])
    assert np.all(np.isfinite(cmds))
    # What arrived is the NaN guard's repeat of the last safe command (a pose measured at a start or
    # a hold), never a policy output: consecutive commands of the policy ticks never differ.
    by_value = {tuple(r["positions"]): r for r in read_jsonl(ticks)}
    sent = [by_value.get(tuple(c[:7])) for c in cmds]
    assert all(r is not None and r["send"] and (r["held"] or "nan" in r["interventions"]) for r in sent)
    for a, b, ra, rb in zip(cmds, cmds[1:], sent, sent[1:]):
        if not ra["held"] and not rb["held"]:
            np.testing.assert_array_equal(a, b)


def test_recorded_closed_loop_replays_exactly(loop, tmp_path):
    """``deploy --record`` in the closed loop with sim-robot (dry run until armed by a message, a
    joint-state stall, an e-stop and re-arm), then ``replay`` of its bag: every tick of the live
    tick log, at its time, with its raw action and command (and send, held, interventions)."""
    from robots_ts.sim2real.deploy.replay import read_actions, replay
    from robots_ts.sim2real.deploy.ros1 import stop_group

    probe, root = loop["probe"], loop["root"]
    probe.send("/robots_ts/arm 0")       # the module's node stops commanding: this one closes the loop alone
    bag = tmp_path / "closed_loop.bag"
    proc, ticks = start_deploy(loop["core"], loop["export"], root, "deploy_record", "--record", str(bag),
                               "--arm-topic", "/robots_ts_test/record_arm", "--estop-topic",
                               "/robots_ts_test/record_estop", "--episode-topic", "/episode")
    loop["procs"].append(proc)
    wait_for(lambda: any(not r["held"] for r in read_jsonl(ticks)), 30, "the recording node's first tick with data")
    probe.send("/robots_ts_test/record_arm 1")
    time.sleep(0.8)
    probe.send("/sim_robot/stall_joint_states 1")
    time.sleep(0.3)
    probe.send("/sim_robot/stall_joint_states 0")
    time.sleep(0.3)
    probe.send("/robots_ts_test/record_estop 1")
    time.sleep(0.2)
    probe.send("/robots_ts_test/record_arm 1")
    time.sleep(0.4)
    stop_group(proc)
    live = read_jsonl(ticks)
    kinds = [set(r["interventions"]) for r in live]
    assert any("not_armed" in k for k in kinds) and any(r["send"] and not r["held"] for r in live)
    assert any("stale_joint_state" in k for k in kinds) and any("estop" in k for k in kinds)

    summary = replay(bag, loop["export"], tmp_path / "replay", plot=False)
    rec = summary["recorded"]
    assert rec["ticks"] == len(live) and rec["mismatched_ticks"] == 0, rec["first_mismatches"]
    got = read_actions(summary["csv"])
    with open(summary["csv"]) as f:
        bag_ns = [int(line.split(",", 1)[0].replace(".", "")) for line in list(f)[1:]]
    t = np.array([(ns - rec["offset_ns"]) / 1e9 for ns in bag_ns])
    np.testing.assert_allclose(t, [r["t"] for r in live], rtol=0, atol=1e-6)   # the tick log rounds to 1 us
    action = np.stack([got[k] for k in got if k.startswith("action_")], axis=1)
    want = np.array([[np.nan if v is None else v for v in r["action"]] for r in live])
    positions = np.stack([got[f"position_{n}"] for n in loop["man"].robot.arm_joints], axis=1)
    np.testing.assert_allclose(action, want, rtol=0, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(positions, [r["positions"] for r in live], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["gripper"], [r["gripper"] for r in live], rtol=0, atol=1e-5)
    assert [bool(v) for v in got["send"]] == [r["send"] for r in live]
    assert [bool(v) for v in got["held"]] == [r["held"] for r in live]
    assert got["interventions"] == [r["interventions"] for r in live]
    diff = max(float(np.nanmax(np.abs(action - want))),
               float(np.max(np.abs(positions - np.array([r["positions"] for r in live])))))
    print(f"replay of {len(live)} recorded ticks: max difference {diff:.3g} (action and command)")
