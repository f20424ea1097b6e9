"""Curriculum plots: PNGs are written from teacher histories and fitted mixtures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.patches import Ellipse

from robots_ts.curriculum import make_teacher
from robots_ts.curriculum.plots import plot_gmm, plot_samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def trained(name: str):
    teacher = make_teacher(name, [0.0, -1.0], [2.0, 1.0], seed=0, fit_rate=100)
    for _ in range(300):
        params = teacher.sample()
        teacher.update(params, float(params[0] < 0.5) * teacher.episodes / 300.0)
    return teacher


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, f"{path} is not a drawn PNG"


def test_plot_samples_writes_png_for_2d_and_1d_histories(tmp_path):
    teacher = trained("alp_gmm")
    out = plot_samples(teacher.params_history, teacher.alp_history, tmp_path / "a" / "s.png")
    assert out == tmp_path / "a" / "s.png"
    assert_png(out)
    one_dim = plot_samples(np.linspace(0, 1, 50), np.zeros(50), tmp_path / "s1.png")
    assert_png(one_dim)


def test_plot_samples_rejects_mismatched_histories(tmp_path):
    with pytest.raises(ValueError, match="ALP"):
        plot_samples(np.zeros((10, 2)), np.zeros(9), tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_samples(np.zeros((0, 2)), np.zeros(0), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("name", ["alp_gmm", "covar_gmm"])
def test_plot_gmm_draws_one_ellipse_per_component(tmp_path, name, monkeypatch):
    teacher = trained(name)
    drawn = []
    original = Axes.add_patch

    def counting_add_patch(ax, patch):
        drawn.append(patch)
        return original(ax, patch)

    monkeypatch.setattr(Axes, "add_patch", counting_add_patch)
    out = plot_gmm(teacher, tmp_path / f"{name}.png")
    assert_png(out)
    ellipses = [p for p in drawn if isinstance(p, Ellipse)]
    assert len(ellipses) == teacher.gmm.n_components
    alphas = np.array([e.get_alpha() for e in ellipses])
    progress = teacher.component_progress()
    # The most promising component is the most opaque one.
    assert np.argmax(alphas) == np.argmax(progress)


def test_plot_gmm_before_the_first_fit_says_why(tmp_path):
    teacher = make_teacher("alp_gmm", [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="no fitted GMM"):
        plot_gmm(teacher, tmp_path / "g.png")
