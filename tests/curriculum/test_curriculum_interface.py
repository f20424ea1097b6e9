"""The contract every curriculum teacher shares: validation, registry, seeding, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robots_ts.curriculum import TEACHERS, CurriculumTeacher, make_teacher

NAMES = sorted(TEACHERS)
# Small fits keep the GMM teachers fast while still crossing several refits.
FAST = {
    "random": {},
    "alp_gmm": {"fit_rate": 100, "potential_ks": range(2, 5), "alp_buffer_size": 64},
    "covar_gmm": {"fit_rate": 100, "potential_ks": range(2, 5)},
    # region_reward stays far below ADR's default thresholds; these let ranges grow on it.
    "adr": {"buffer_size": 5, "threshold_low": 0.0, "threshold_high": 1e-3},
}
GMM_NAMES = ("alp_gmm", "covar_gmm")
LOW = np.array([-2.0, 10.0, 0.0])
HIGH = np.array([3.0, 20.0, 0.5])


def region_reward(params: np.ndarray, visits: list[int]) -> float:
    """Reward that grows with practice in one corner and is 0 elsewhere."""
    if params[0] < LOW[0] + 0.3 * (HIGH[0] - LOW[0]):
        visits[0] += 1
        return min(1.0, visits[0] / 2000.0)
    return 0.0


def drive(teacher: CurriculumTeacher, episodes: int, visits: list[int]) -> np.ndarray:
    samples = []
    for _ in range(episodes):
        params = teacher.sample()
        samples.append(params)
        teacher.update(params, region_reward(params, visits))
    return np.array(samples)


def to_json_and_back(state: dict) -> dict:
    text = json.dumps(state, default=lambda a: a.tolist() if isinstance(a, np.ndarray) else a)
    return json.loads(text)


def assert_json_or_arrays(value, where="state") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where} has non-string key {key!r}"
            assert_json_or_arrays(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_json_or_arrays(item, f"{where}[{i}]")
    else:
        ok = value is None or isinstance(value, (bool, int, float, str, np.ndarray))
        assert ok, f"{where} holds {type(value).__name__}, not JSON data or an array"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "low, high, message",
    [
        ([0.0, 1.0], [1.0, 1.0], "index 1"),
        ([0.0, 2.0], [1.0, 1.0], "index 1"),
        ([np.nan, 0.0], [1.0, 1.0], r"low\[0\]"),
        ([0.0, 0.0], [1.0, np.inf], r"high\[1\]"),
        ([0.0, 0.0], [1.0, 1.0, 1.0], "same shape"),
        ([[0.0, 0.0]], [[1.0, 1.0]], "1-D"),
        ([], [], "at least one"),
    ],
)
def test_bad_bounds_raise_value_error_naming_the_problem(name, low, high, message):
    with pytest.raises(ValueError, match=message):
        make_teacher(name, low, high)


@pytest.mark.parametrize("name", NAMES)
def test_update_rejects_wrong_shape_and_non_finite_input(name):
    teacher = make_teacher(name, LOW, HIGH, seed=0, **FAST[name])
    good = teacher.sample()
    with pytest.raises(ValueError, match="shape"):
        teacher.update(good[:2], 0.0)
    with pytest.raises(ValueError, match="shape"):
        teacher.update(np.stack([good, good]), 0.0)
    with pytest.raises(ValueError, match="reward must be finite"):
        teacher.update(good, float("nan"))
    with pytest.raises(ValueError, match="reward must be finite"):
        teacher.update(good, float("inf"))
    with pytest.raises(ValueError, match="real number"):
        teacher.update(good, "high")
    with pytest.raises(ValueError, match="params must be finite"):
        teacher.update(np.array([np.nan, 12.0, 0.1]), 0.0)
    assert teacher.episodes == 0, "a rejected update must not count as an episode"
    teacher.update(good, 0.5)
    assert teacher.episodes == 1


def test_make_teacher_lists_valid_names_for_unknown_ones():
    with pytest.raises(ValueError, match="alp_gmm, covar_gmm, random"):
        make_teacher("alpgmm", [0.0], [1.0])
    with pytest.raises(ValueError, match="fit_rat"):
        make_teacher("alp_gmm", [0.0], [1.0], fit_rat=10)
    with pytest.raises(ValueError, match="random_task_ratio"):
        make_teacher("alp_gmm", [0.0], [1.0], random_task_ratio=1.5)
    with pytest.raises(ValueError, match="fit_rate"):
        make_teacher("covar_gmm", [0.0], [1.0], fit_rate=2.5)


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_float64_vectors_inside_the_bounds(name):
    teacher = make_teacher(name, LOW, HIGH, seed=3, **FAST[name])
    samples = drive(teacher, 600, [0])
    assert samples.dtype == np.float64 and samples.shape == (600, 3)
    assert np.all(samples >= LOW) and np.all(samples <= HIGH)
    if name in GMM_NAMES:
        assert teacher.gmm is not None, "the GMM teachers must have fitted by episode 600"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_the_same_curriculum_and_another_seed_does_not(name):
    first = drive(make_teacher(name, LOW, HIGH, seed=7, **FAST[name]), 450, [0])
    second = drive(make_teacher(name, LOW, HIGH, seed=7, **FAST[name]), 450, [0])
    other = drive(make_teacher(name, LOW, HIGH, seed=8, **FAST[name]), 450, [0])
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_through_json_continues_identically(name):
    original = make_teacher(name, LOW, HIGH, seed=11, **FAST[name])
    visits = [0]
    drive(original, 350, visits)  # past several refits and k-d tree rebuilds
    state = original.state_dict()
    assert_json_or_arrays(state)

    restored = make_teacher(name, LOW, HIGH, seed=999, **FAST[name])
    restored.load_state_dict(to_json_and_back(state))
    assert restored.episodes == original.episodes == 350

    # Continue both past the next refit (episode 400) with the same reward stream.
    visits_restored = [visits[0]]
    continued = drive(original, 120, visits)
    continued_restored = drive(restored, 120, visits_restored)
    np.testing.assert_array_equal(continued, continued_restored)


def test_load_state_dict_refuses_other_teachers_bounds_and_settings():
    teacher = make_teacher("alp_gmm", LOW, HIGH, seed=0, **FAST["alp_gmm"])
    drive(teacher, 120, [0])
    state = teacher.state_dict()
    with pytest.raises(ValueError, match="saved by teacher 'alp_gmm'"):
        make_teacher("covar_gmm", LOW, HIGH).load_state_dict(state)
    with pytest.raises(ValueError, match="bounds"):
        make_teacher("alp_gmm", LOW, HIGH + 1.0, **FAST["alp_gmm"]).load_state_dict(state)
    other = dict(FAST["alp_gmm"], fit_rate=50)
    with pytest.raises(ValueError, match="fit_rate"):
        make_teacher("alp_gmm", LOW, HIGH, **other).load_state_dict(state)
    with pytest.raises(ValueError, match="format_version"):
        make_teacher("alp_gmm", LOW, HIGH, **FAST["alp_gmm"]).load_state_dict(
            dict(state, format_version=0)
        )


def test_a_bad_checkpoint_raises_and_leaves_the_teacher_untouched():
    teacher = make_teacher("alp_gmm", LOW, HIGH, seed=2, **FAST["alp_gmm"])
    twin = make_teacher("alp_gmm", LOW, HIGH, seed=2, **FAST["alp_gmm"])
    drive(teacher, 150, [0])
    drive(twin, 150, [0])
    # A checkpoint whose early parts are valid (another run's history) and whose GMM is
    # broken: loading must not keep the valid parts it read before failing.
    other = make_teacher("alp_gmm", LOW, HIGH, seed=5, **FAST["alp_gmm"])
    drive(other, 260, [0])
    broken = other.state_dict()
    broken["gmm"] = dict(broken["gmm"], means=broken["gmm"]["means"][:, :2])
    with pytest.raises(ValueError, match="GMM arrays disagree"):
        teacher.load_state_dict(broken)
    missing = {k: v for k, v in teacher.state_dict().items() if k != "rng_state"}
    with pytest.raises(ValueError, match="rng_state"):
        teacher.load_state_dict(missing)
    assert teacher.episodes == 150
    np.testing.assert_array_equal(drive(teacher, 80, [0]), drive(twin, 80, [0]))
