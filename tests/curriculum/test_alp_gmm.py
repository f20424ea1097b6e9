"""ALP-GMM and Covar-GMM behaviour: uniform bootstrap, focus on progress, their data structures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from robots_ts.curriculum import AlpGmmTeacher, CovarGmmTeacher
from robots_ts.curriculum.history import BufferedNearestNeighbours, RecentRows

LOW = np.array([-1.0, 5.0])
HIGH = np.array([1.0, 6.0])
REGION_VOLUME = 0.25  # params[0] in the lowest quarter of its range


def in_region(params: np.ndarray) -> bool:
    return params[0] < LOW[0] + REGION_VOLUME * (HIGH[0] - LOW[0])


def run_region_task(teacher, episodes: int) -> np.ndarray:
    """Reward grows with practice inside the region (learning progress there) and stays 0
    outside; returns, per episode, whether the sampled task was in the region."""
    visits = 0
    hits = np.zeros(episodes, dtype=bool)
    for episode in range(episodes):
        params = teacher.sample()
        if in_region(params):
            visits += 1
            hits[episode] = True
            # Slow enough never to saturate within the run: progress never stops.
            teacher.update(params, visits / 5000.0)
        else:
            teacher.update(params, 0.0)
    return hits


@pytest.mark.parametrize("teacher_cls", [AlpGmmTeacher, CovarGmmTeacher])
def test_bootstrap_samples_are_uniform_in_every_dimension(teacher_cls):
    low, high = np.array([-2.0, 10.0, 0.0]), np.array([3.0, 20.0, 0.5])
    teacher = teacher_cls(low, high, seed=5, bootstrap=1000, fit_rate=250)
    samples = []
    for _ in range(1000):
        params = teacher.sample()
        samples.append(params)
        # A reward that would pull a fitted teacher to one corner: bootstrap must ignore it.
        teacher.update(params, float(params[0] < -1.0) * teacher.episodes / 1000.0)
    samples = np.array(samples)
    assert teacher.gmm is not None, "the first fit happens on the last bootstrap episode"
    for dim in range(3):
        scaled = (samples[:, dim] - low[dim]) / (high[dim] - low[dim])
        assert stats.kstest(scaled, "uniform").pvalue > 0.01, f"dim {dim} is not uniform"
        counts, _ = np.histogram(scaled, bins=10, range=(0.0, 1.0))
        assert stats.chisquare(counts).pvalue > 0.01, f"dim {dim} histogram is not flat"


@pytest.mark.parametrize("teacher_cls", [AlpGmmTeacher, CovarGmmTeacher])
def test_teacher_concentrates_where_reward_is_improving(teacher_cls):
    teacher = teacher_cls(LOW, HIGH, seed=0)
    hits = run_region_task(teacher, 2000)
    bootstrap_share = hits[: teacher.bootstrap].mean()
    focused_share = hits[1000:].mean()
    # Uniform sampling would put ~25 % there; 20 % of GMM-phase tasks stay uniform, so a
    # teacher that found the region lands around 0.8 * 1 + 0.2 * 0.25 = 0.85.
    assert bootstrap_share < 0.4
    assert focused_share > 0.6, f"only {focused_share:.2f} of tasks in the improving region"


def test_alp_is_the_reward_change_from_the_nearest_earlier_task():
    teacher = AlpGmmTeacher([0.0, 0.0], [10.0, 10.0], seed=0)
    teacher.update([1.0, 1.0], 0.2)
    teacher.update([9.0, 9.0], 0.9)
    teacher.update([1.5, 1.0], 0.5)  # nearest earlier: (1, 1) with 0.2
    teacher.update([8.0, 9.5], 0.1)  # nearest earlier: (9, 9) with 0.9
    np.testing.assert_allclose(teacher.alp_history, [0.0, 0.7, 0.3, 0.8])
    np.testing.assert_allclose(teacher.params_history[2], [1.5, 1.0])


def test_fits_use_only_the_recent_window():
    teacher = AlpGmmTeacher([0.0], [1.0], seed=0, fit_rate=50, fit_window=60, history_size=80)
    for i in range(400):
        teacher.update([(i % 97) / 97.0], float(i % 3))
    assert teacher.fit_count == 8  # episodes 50, 100, ..., 400
    assert teacher.params_history.shape == (80, 1)
    np.testing.assert_allclose(teacher.params_history[-1], [(399 % 97) / 97.0])


def test_component_choice_follows_mean_alp():
    teacher = AlpGmmTeacher([0.0, 0.0], [1.0, 1.0], seed=0, random_task_ratio=0.0)
    # Two tight components: one with ALP 0 at (0.2, 0.2), one with ALP 0.5 at (0.8, 0.8).
    state = teacher.state_dict()
    cov = np.diag([1e-4, 1e-4, 1e-4])
    state["gmm"] = {
        "weights": np.array([0.9, 0.1]),
        "means": np.array([[0.2, 0.2, 0.0], [0.8, 0.8, 0.5]]),
        "covariances": np.stack([cov, cov]),
    }
    teacher.load_state_dict(state)
    samples = np.array([teacher.sample() for _ in range(200)])
    assert np.all(np.abs(samples - 0.8) < 0.05), "a zero-ALP component must never be picked"


def test_buffered_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    index = BufferedNearestNeighbours(dim=3, buffer_size=7, max_size=40)
    for step in range(300):
        point = rng.random(3)
        expected = None
        state = index.state()
        if len(state["points"]):
            dist = np.linalg.norm(state["points"] - point, axis=1)
            expected = state["values"][np.argmin(dist)]
        assert index.nearest_value(point) == expected, f"step {step}"
        index.add(point, float(step))
    assert len(index) <= 40 + 7, "max_size must bound the kept history"
    # The oldest points were dropped, the newest kept.
    assert index.state()["values"][-1] == 299.0 and index.state()["values"][0] > 200


def test_recent_rows_keep_the_newest_rows_in_order():
    rows = RecentRows(width=2, capacity=5)
    for i in range(23):
        rows.append(np.array([i, -i]))
    np.testing.assert_array_equal(rows.last()[:, 0], [18, 19, 20, 21, 22])
    np.testing.assert_array_equal(rows.last(2)[:, 1], [-21, -22])
    restored = RecentRows(width=2, capacity=5)
    restored.load_state(rows.state().tolist())
    restored.append(np.array([23, -23]))
    np.testing.assert_array_equal(restored.last()[:, 0], [19, 20, 21, 22, 23])
