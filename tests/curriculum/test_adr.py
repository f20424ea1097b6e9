"""ADR behaviour: ranges grow from nominal on success, stop at limits, settle on a skill edge."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.axes import Axes

from robots_ts.curriculum import AdrTeacher, make_teacher
from robots_ts.curriculum.plots import plot_adr_ranges

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
UNIT_LOW = np.zeros(3)
UNIT_HIGH = np.ones(3)


def to_json_and_back(state: dict) -> dict:
    text = json.dumps(state, default=lambda a: a.tolist() if isinstance(a, np.ndarray) else a)
    return json.loads(text)


def drive(teacher: AdrTeacher, episodes: int, reward) -> np.ndarray:
    """Sample-then-update loop; ``reward(params)`` is the student's return there."""
    samples = np.empty((episodes, teacher.dim))
    for i in range(episodes):
        params = teacher.sample()
        samples[i] = params
        teacher.update(params, reward(params))
    return samples


def pinned_boundaries(samples: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[list]:
    """Per sample, the (dim, side) pairs sitting exactly on a boundary of non-collapsed ranges
    (a uniform draw lands exactly on one with probability zero)."""
    return [
        [(d, side) for d in range(len(lo)) for side, edge in ((0, lo[d]), (1, hi[d]))
         if x[d] == edge]
        for x in samples
    ]


def test_ranges_start_collapsed_at_nominal():
    teacher = make_teacher("adr", [0.0, -1.0], [1.0, 1.0], seed=0, nominal=[0.0, 0.25])
    lo, hi = teacher.ranges()
    np.testing.assert_array_equal(lo, [0.0, 0.25])
    np.testing.assert_array_equal(hi, [0.0, 0.25])
    for _ in range(50):
        np.testing.assert_array_equal(teacher.sample(), [0.0, 0.25])
    history = teacher.range_history
    assert history.episodes.tolist() == [0]
    np.testing.assert_array_equal(history.lo, [[0.0, 0.25]])
    assert np.all(np.isnan(teacher.boundary_success()))
    # Default nominal is the lower limit: a one-sided strength.
    np.testing.assert_array_equal(make_teacher("adr", [2.0], [5.0]).ranges()[1], [2.0])


def test_constant_success_widens_by_one_step_per_full_buffer_up_to_the_limit():
    # One movable boundary, pinned on every episode: each buffer_size episodes is one step.
    teacher = AdrTeacher([0.0], [1.0], seed=0, boundary_prob=1.0, buffer_size=10, step=0.15)
    for full_buffers in range(1, 10):
        drive(teacher, 10, lambda p: 1.0)
        lo, hi = teacher.ranges()
        assert lo[0] == 0.0
        assert hi[0] == pytest.approx(min(0.15 * full_buffers, 1.0), abs=1e-12)
    assert hi[0] == 1.0, "widening stops exactly at the limit"
    # 0.15 * 6 = 0.9, then one clipped step to 1.0; at the limit it no longer counts as a move.
    assert teacher.widened == 7 and teacher.narrowed == 0
    assert teacher.range_history.episodes.tolist() == [0, 10, 20, 30, 40, 50, 60, 70]


def test_constant_success_grows_every_boundary_monotonically_to_its_limits():
    low, high = np.array([0.0, -2.0, 10.0]), np.array([1.0, 2.0, 12.0])
    nominal = np.array([0.0, 0.5, 11.0])  # one-sided, off-centre two-sided, centred
    step = np.array([0.1, 0.3, 0.25])
    teacher = make_teacher("adr", low, high, seed=1, nominal=nominal, step=step, buffer_size=5)
    samples = drive(teacher, 1500, lambda p: 1.0)
    episodes, lo, hi = teacher.range_history
    # Each change moves exactly one boundary outward by one step (or up to its limit).
    d_lo, d_hi = -np.diff(lo, axis=0), np.diff(hi, axis=0)
    assert np.all(d_lo >= 0.0) and np.all(d_hi >= 0.0), "ranges only grow"
    assert np.all(np.count_nonzero(np.hstack([d_lo, d_hi]), axis=1) == 1)
    for moves, edge, limit in ((d_lo, lo[1:], low), (d_hi, hi[1:], high)):
        for d in range(3):
            moved = moves[:, d] > 0
            full = np.isclose(moves[moved, d], step[d], rtol=0, atol=1e-12)
            clipped = edge[moved, d] == limit[d]
            assert np.all(full | clipped), f"dim {d}: a move that is neither a step nor clipped"
    np.testing.assert_array_equal(teacher.ranges()[0], low)
    np.testing.assert_array_equal(teacher.ranges()[1], high)
    assert np.all(np.diff(episodes) > 0)
    assert teacher.widened == len(episodes) - 1
    # The lower side of the one-sided dimension sits at nominal = limit and never moves.
    assert np.all(lo[:, 0] == 0.0) and np.all(samples[:, 0] >= 0.0)
    assert np.all(samples >= low) and np.all(samples <= high)


def test_constant_failure_never_moves_below_nominal():
    nominal = np.array([0.0, 0.5, 0.7])
    teacher = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=2, nominal=nominal, buffer_size=4)
    drive(teacher, 800, lambda p: 0.0)
    lo, hi = teacher.ranges()
    np.testing.assert_array_equal(lo, nominal)
    np.testing.assert_array_equal(hi, nominal)
    assert teacher.widened == teacher.narrowed == 0
    assert len(teacher.range_history.episodes) == 1

    # Widen first, then fail everywhere: every boundary comes back to nominal and stops.
    drive(teacher, 800, lambda p: 1.0)
    assert np.all(teacher.ranges()[1] > nominal)
    drive(teacher, 3000, lambda p: 0.0)
    _, lo_hist, hi_hist = teacher.range_history
    assert np.all(lo_hist <= nominal) and np.all(hi_hist >= nominal)
    np.testing.assert_array_equal(teacher.ranges()[0], nominal)
    np.testing.assert_array_equal(teacher.ranges()[1], nominal)


def test_upper_boundaries_settle_on_the_capability_edge():
    # The student succeeds exactly when every parameter is below 0.6.
    teacher = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=3, nominal=UNIT_LOW)
    drive(teacher, 4000, lambda p: float(np.all(p < 0.6)))
    lo, hi = teacher.ranges()
    np.testing.assert_array_equal(lo, UNIT_LOW)
    assert np.all(np.abs(hi - 0.6) <= 2 * 0.05 + 1e-9), hi
    assert teacher.narrowed > 0, "boundaries past the edge must have been pulled back"


def test_boundary_share_matches_boundary_prob_and_samples_stay_in_range():
    nominal = np.array([0.5, 0.0, 0.5])  # 5 movable boundaries: dim 1 has no lower one
    teacher = make_teacher(
        "adr", UNIT_LOW, UNIT_HIGH, seed=4, nominal=nominal, step=0.25, buffer_size=2,
        boundary_prob=0.3,
    )
    drive(teacher, 400, lambda p: 1.0)  # widen until the ranges are the full limits
    lo, hi = teacher.ranges()
    np.testing.assert_array_equal(lo, UNIT_LOW)
    np.testing.assert_array_equal(hi, UNIT_HIGH)

    n = 5000
    # A return between the thresholds: buffers fill and clear, nothing moves.
    samples = drive(teacher, n, lambda p: 0.6)
    np.testing.assert_array_equal(teacher.ranges()[0], lo)
    assert np.all(samples >= lo) and np.all(samples <= hi)
    pinned = pinned_boundaries(samples, lo, hi)
    assert all(len(p) <= 1 for p in pinned), "at most one boundary is pinned per sample"
    share = np.mean([len(p) == 1 for p in pinned])
    assert abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n), share
    counts = {b: 0 for b in [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)]}
    for p in pinned:
        if p:
            counts[p[0]] += 1  # a KeyError here would mean the fixed side (1, 0) was pinned
    expected = share * n / 5
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts.values()), counts


def test_samples_stay_within_the_current_ranges_while_they_move():
    teacher = make_teacher(
        "adr", UNIT_LOW, UNIT_HIGH, seed=5, nominal=[0.2, 0.5, 0.9], buffer_size=3
    )
    rng = np.random.default_rng(0)
    for _ in range(2000):
        lo, hi = teacher.ranges()
        params = teacher.sample()
        assert params.dtype == np.float64 and params.shape == (3,)
        assert np.all(params >= lo) and np.all(params <= hi)
        teacher.update(params, float(rng.random() < 0.7))


def test_out_of_order_results_reach_the_boundary_they_were_sampled_for():
    teacher = make_teacher(
        "adr", UNIT_LOW, UNIT_HIGH, seed=6, nominal=[0.5] * 3, step=0.25, buffer_size=5
    )
    drive(teacher, 300, lambda p: 1.0)
    lo, hi = teacher.ranges()
    np.testing.assert_array_equal(hi - lo, [1.0, 1.0, 1.0])
    # Start from empty buffers so the counts below are exact.
    teacher.load_state_dict(dict(teacher.state_dict(), buffers=[[[], []]] * 3))

    # Many worlds sample before any result returns; results come back shuffled.
    batch = np.array([teacher.sample() for _ in range(400)])
    assert teacher.pending_count == sum(map(len, pinned_boundaries(batch, lo, hi)))
    on_low_0 = batch[:, 0] == lo[0]
    assert on_low_0.sum() >= 5
    for i in np.random.default_rng(1).permutation(len(batch)):
        # Failure only on the lower boundary of dimension 0; elsewhere between thresholds.
        teacher.update(batch[i], 0.0 if on_low_0[i] else 0.6)
    new_lo, new_hi = teacher.ranges()
    # That boundary moved in by one step; results still in flight at the old value are stale.
    assert new_lo[0] == pytest.approx(0.25)
    np.testing.assert_array_equal(new_lo[1:], lo[1:])
    np.testing.assert_array_equal(new_hi, hi)
    assert teacher.summary()["stale"] == on_low_0.sum() - 5
    assert teacher.pending_count == 0


def test_results_from_before_a_boundary_moved_are_dropped():
    teacher = AdrTeacher([0.0], [1.0], seed=0, boundary_prob=1.0, buffer_size=5, step=0.1)
    batch = [teacher.sample() for _ in range(12)]  # all pinned at hi = nominal = 0.0
    for params in batch:
        teacher.update(params, 1.0)
    assert teacher.ranges()[1][0] == pytest.approx(0.1), "one full buffer, one step"
    summary = teacher.summary()
    assert summary["stale"] == 7 and summary["widened"] == 1 and summary["episodes"] == 12
    assert np.all(np.isnan(teacher.boundary_success()))


def test_plain_samples_never_move_ranges():
    teacher = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=7, boundary_prob=0.0, buffer_size=1)
    drive(teacher, 500, lambda p: 1.0)
    np.testing.assert_array_equal(teacher.ranges()[1], UNIT_LOW)
    assert teacher.pending_count == 0


def test_boundary_success_reports_partial_buffers():
    teacher = AdrTeacher([0.0, 0.0], [1.0, 1.0], seed=0, boundary_prob=1.0, buffer_size=50)
    rewards = []
    for _ in range(30):
        params = teacher.sample()
        reward = 0.25 if params[0] == 0.0 and params[1] == 0.0 else 1.0
        rewards.append(reward)
        teacher.update(params, reward)
    means = teacher.boundary_success()
    assert means.shape == (2, 2)
    assert np.all(np.isnan(means[:, 0])), "lower sides of one-sided dims are never pinned"
    # Both upper boundaries sit at the same collapsed point: every result reads 0.25.
    np.testing.assert_allclose(means[:, 1], 0.25)


def test_summary_is_json_native():
    teacher = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=8, buffer_size=4)
    drive(teacher, 600, lambda p: float(np.all(p < 0.5)))
    summary = teacher.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["episodes"] == 600 and len(summary["lo"]) == len(summary["hi"]) == 3
    assert summary["hi"] == teacher.ranges()[1].tolist()
    assert summary["widened"] == teacher.widened > 0 and summary["narrowed"] == teacher.narrowed


def test_same_seed_gives_the_same_samples_and_another_seed_does_not():
    def run(seed):
        teacher = make_teacher(
            "adr", UNIT_LOW, UNIT_HIGH, seed=seed, nominal=[0.5] * 3, buffer_size=4
        )
        return drive(teacher, 800, lambda p: float(np.all(p < 0.8)))

    np.testing.assert_array_equal(run(9), run(9))
    assert not np.allclose(run(9), run(10))


def test_state_dict_round_trip_through_json_continues_identically():
    kw = dict(nominal=[0.3, 0.0, 0.5], step=[0.05, 0.1, 0.2], buffer_size=7)
    reward = lambda p: float(np.all(p < 0.7))  # noqa: E731
    original = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=11, **kw)
    drive(original, 1234, reward)
    assert original.widened > 0 and original.narrowed > 0
    assert np.any(~np.isnan(original.boundary_success())), "save with partly filled buffers"
    # A boundary sample still in flight at save time is dropped: after loading, its result
    # is treated like a plain sample's.
    while original.pending_count == 0:
        in_flight = original.sample()
    state = original.state_dict()
    json.dumps(state, default=lambda a: a.tolist())

    restored = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=999, **kw)
    restored.load_state_dict(to_json_and_back(state))
    assert restored.episodes == 1234 and restored.pending_count == 0
    assert restored.summary() == dict(original.summary(), pending=0)
    np.testing.assert_array_equal(restored.boundary_success(), original.boundary_success())
    for a, b in zip(restored.range_history, original.range_history):
        np.testing.assert_array_equal(a, b)
    before = restored.boundary_success()
    restored.update(in_flight, 0.0)
    np.testing.assert_array_equal(restored.boundary_success(), before)

    # The original never gets that result either: from here both see the same episodes.
    np.testing.assert_array_equal(drive(original, 600, reward), drive(restored, 600, reward))
    assert restored.ranges()[1].tolist() == original.ranges()[1].tolist()
    assert restored.widened == original.widened and restored.narrowed == original.narrowed


def test_load_state_dict_refuses_other_settings_and_broken_ranges():
    teacher = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=0, buffer_size=4)
    drive(teacher, 300, lambda p: 1.0)
    state = teacher.state_dict()
    for kw, name in (({"step": 0.1}, "step"), ({"nominal": [0.0, 0.0, 0.5]}, "nominal"),
                     ({"threshold_high": 0.9}, "threshold_high")):
        other = make_teacher("adr", UNIT_LOW, UNIT_HIGH, buffer_size=4, **kw)
        with pytest.raises(ValueError, match=name):
            other.load_state_dict(state)
    fresh = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=0, buffer_size=4)
    with pytest.raises(ValueError, match="lo <= nominal"):
        fresh.load_state_dict(dict(state, lo=[0.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match="range history"):
        fresh.load_state_dict(dict(state, history_lo=state["history_lo"][:, :2]))
    assert fresh.episodes == 0 and fresh.ranges()[1].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"boundary_prob": 1.5}, "boundary_prob"),
        ({"boundary_prob": -0.1}, "boundary_prob"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"buffer_size": 2.5}, "buffer_size"),
        ({"threshold_low": float("nan")}, "threshold_low"),
        ({"threshold_low": "low"}, "threshold_low"),
        ({"threshold_high": 0.3}, "threshold_high"),
        ({"threshold_low": 0.5, "threshold_high": 0.5}, "threshold_high"),
        ({"step": 0.0}, "step"),
        ({"step": [0.1, -0.1]}, r"step\[1\]"),
        ({"step": [0.1]}, "step"),
        ({"step": [0.1, float("inf")]}, r"step\[1\]"),
        ({"nominal": [0.5, 1.5]}, r"nominal\[1\]"),
        ({"nominal": [-0.1, 0.5]}, r"nominal\[0\].*outside"),
        ({"nominal": [0.5]}, "nominal"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_them(kw, message):
    with pytest.raises(ValueError, match=message):
        AdrTeacher([0.0, 0.0], [1.0, 1.0], **kw)
    with pytest.raises(ValueError, match=message):
        make_teacher("adr", [0.0, 0.0], [1.0, 1.0], **kw)


def test_make_teacher_builds_adr_and_rejects_unknown_settings():
    teacher = make_teacher("adr", [0.0, 1.0], [1.0, 3.0], seed=0, nominal=[0.5, 1.0], step=0.1)
    assert isinstance(teacher, AdrTeacher) and teacher.name == "adr"
    np.testing.assert_array_equal(teacher.step, [0.1, 0.1])
    np.testing.assert_allclose(make_teacher("adr", [0.0, 1.0], [1.0, 3.0]).step, [0.05, 0.1])
    with pytest.raises(ValueError, match="nominl"):
        make_teacher("adr", [0.0], [1.0], nominl=[0.5])


def test_plot_adr_ranges_writes_one_panel_per_parameter(tmp_path, monkeypatch):
    teacher = make_teacher("adr", UNIT_LOW, UNIT_HIGH, seed=0, nominal=[0.0, 0.5, 1.0])
    drive(teacher, 1500, lambda p: float(np.all(np.abs(p - 0.5) < 0.4)))
    bands = []
    original = Axes.fill_between

    def counting_fill_between(ax, *args, **kwargs):
        bands.append(ax)
        return original(ax, *args, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", counting_fill_between)
    names = ["mass", "friction", "gain"]
    out = plot_adr_ranges(teacher, tmp_path / "adr" / "ranges.png", names=names)
    assert out == tmp_path / "adr" / "ranges.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert len(bands) == 3 and len({id(ax) for ax in bands}) == 3
    assert [ax.get_ylabel() for ax in bands] == names
    with pytest.raises(ValueError, match="one name per parameter"):
        plot_adr_ranges(teacher, tmp_path / "x.png", names=["mass"])
    with pytest.raises(ValueError, match="range history"):
        plot_adr_ranges(make_teacher("random", [0.0], [1.0]), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
