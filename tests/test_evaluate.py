"""Evaluation statistics: the Wilson interval against published values, and summaries of records."""
import pytest

from robots_ts.evaluate import summarise, wilson_interval


@pytest.mark.parametrize("k,n,lo,hi", [
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (5, 10, 0.2366, 0.7634),
    (1, 20, 0.0089, 0.2361),
    (81, 100, 0.7222, 0.8749),
])
def test_wilson_interval_matches_reference_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_width_follows_episodes_and_confidence():
    small, large = wilson_interval(5, 10), wilson_interval(50, 100)
    assert large[1] - large[0] < 0.4 * (small[1] - small[0])    # ~ 1 / sqrt(n)
    wide = wilson_interval(5, 10, z=2.576)                       # 99%
    assert wide[0] < small[0] and wide[1] > small[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)                   # nothing measured: nothing known


def test_summary_counts_records():
    records = [{"success": s, "return": r, "length": l} for s, r, l in [(True, 1.0, 10), (False, -2.0, 60),
                                                                          (True, 0.5, 20), (True, 0.0, 30)]]
    res = summarise(records, "Reach", seed=7)
    assert res["success_rate"] == 0.75 and res["episodes"] == 4 and res["seed"] == 7
    assert res["success_ci95"] == list(wilson_interval(3, 4))
    assert res["mean_return"] == pytest.approx(-0.125) and res["mean_episode_length"] == 30.0
