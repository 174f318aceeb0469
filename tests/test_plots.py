"""The report's figures: bands clipped to the metric's range, every axis labelled,
legends that stay readable with many groups. Checked on the matplotlib artists drawn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regexp import plots, tasks
from regexp.report import Group, Run


def _group(label: str, accuracies: list[list[float]], **config) -> Group:
    """A group whose runs' (train and validation) accuracy per epoch are ``accuracies``."""
    runs = []
    for seed, acc in enumerate(accuracies):
        acc = np.array(acc)
        history = pd.DataFrame({"epoch": np.arange(1, len(acc) + 1), "accuracy": acc,
                                "val_accuracy": acc - 0.01, "data_loss": 1 - acc,
                                "val_data_loss": 1.02 - acc})  # fmt: skip
        metrics = {"test_accuracy": float(acc[-1]), "test_data_loss": float(1 - acc[-1]),
                   "activity_mean": {"h1": 0.1 + 0.01 * seed}}  # fmt: skip
        run = Run(Path(f"/runs/{label}{seed}"), {"seed": seed, **config}, metrics, history, "{}")
        run.__dict__["activations"] = {"h1": np.linspace(0, 1, 50) * (seed + 1)}
        runs.append(run)
    # a recipe given a reg.lam uses it (its label names it), as report.group_runs finds
    return Group(dict(config), runs, label, {k: v for k, v in config.items() if k == "reg.lam"})


# two runs far apart: mean 0.75, t(0.975, 1) = 12.7, so the band runs from -1.15 to 2.65
WIDE = _group("wide", [[0.6, 0.9, 0.95], [0.5, 0.6, 0.55]], **{"reg.name": "l1", "reg.lam": 0.1})


def _band_ys(ax) -> np.ndarray:
    """The y of every vertex of the bands (fill_between) drawn on ``ax``."""
    return np.concatenate([p.vertices[:, 1] for c in ax.collections for p in c.get_paths()])


def test_the_band_of_two_runs_is_clipped_to_accuracy_s_range(tmp_path):
    values = np.array([[0.6, 0.9, 0.95], [0.5, 0.6, 0.55]])
    half = stats.t.ppf(0.975, 1) * values.std(axis=0, ddof=1) / math.sqrt(2)
    low, high = values.mean(axis=0) - half, values.mean(axis=0) + half
    assert low.min() < -1 and high.max() > 2.5  # unclipped, it would leave [0, 1]
    mean, lo, hi = plots._band(values, "val_accuracy")
    assert mean == pytest.approx(values.mean(axis=0))
    assert lo == pytest.approx(np.clip(low, 0, 1)) and hi == pytest.approx(np.clip(high, 0, 1))

    fig = plots.curve_bands([WIDE], ("accuracy", "val_accuracy"), tmp_path / "a.png", "accuracy")
    ys = _band_ys(fig.axes[0])
    assert ys.min() == 0.0 and ys.max() == 1.0  # reaches the range's ends, never beyond
    assert fig.axes[0].get_ylim()[1] < 1.1  # so the axis shows the curves, not the band

    lam = plots.metric_vs_lambda([WIDE, _group("w2", [[0.7, 0.99], [0.7, 0.5]], **{
        "reg.name": "l1", "reg.lam": 0.01})], "test_accuracy", tmp_path / "l.png")  # fmt: skip
    ys = _band_ys(lam.axes[0])
    assert ys.min() == 0.0 and ys.max() == 1.0


def test_loss_bands_stay_at_or_above_zero(tmp_path):
    fig = plots.curve_bands([WIDE], ("data_loss", "val_data_loss"), tmp_path / "d.png", "loss")
    ys = _band_ys(fig.axes[0])
    assert ys.min() == 0.0 and ys.max() > 1  # a loss has no upper bound


def test_bounds_of_each_metric():
    assert tasks.bounds("test_accuracy") == (0.0, 1.0)
    assert tasks.bounds("val_r2") == (-math.inf, 1.0)
    assert tasks.bounds("mae") == (0.0, math.inf)
    assert tasks.bounds("val_data_loss") == tasks.bounds("loss") == (0.0, math.inf)
    assert tasks.bounds("gap") == (-math.inf, math.inf)


def test_every_figure_labels_both_axes(tmp_path):
    groups = [WIDE, _group("none", [[0.7, 0.8], [0.72, 0.81]], **{"reg.name": "none",
                                                                 "reg.rho": 0.05})]  # fmt: skip
    for g in groups:
        for r in g.runs:
            r.config["reg.rho"] = g.config.get("reg.rho", 0.1)
            g.config["reg.rho"] = r.config["reg.rho"]
    history = groups[0].runs[0].history.assign(loss=0.5, val_loss=0.6)
    figures = [
        plots.curves(history, tmp_path / "c.png", "accuracy", "run"),
        plots.activations({"h1": np.ones((4, 3)), "h2": np.zeros((4, 3))}, tmp_path / "h.png", "t"),
        plots.scatter(np.eye(2), np.array([0, 1]), tmp_path / "s.png", "data"),
        plots.curve_bands(groups, ("data_loss", "val_data_loss"), tmp_path / "b.png", "loss"),
        plots.side_by_side(
            [("a", groups[:1]), ("b", groups[1:])],
            ("accuracy", "val_accuracy"),
            tmp_path / "p.png",
            "accuracy",
        ),  # fmt: skip
        plots.metric_vs_lambda(groups, "test_accuracy", tmp_path / "l.png"),
        plots.activation_histograms(groups, tmp_path / "ah.png"),
        plots.kl_mean_vs_rho(groups, tmp_path / "k.png"),
        plots.pooled_histogram(np.linspace(0, 1, 20), 0.05, tmp_path / "ph.png", "pooled"),
    ]
    for fig in figures:
        for i, ax in enumerate(fig.axes):
            assert ax.get_xlabel(), (fig, ax.get_title())
            shared = i > 0 and ax.get_shared_y_axes().joined(ax, fig.axes[0])
            assert ax.get_ylabel() or shared or i > 0 and fig.axes[0].get_ylabel(), fig


def test_a_legend_of_many_groups_stays_readable(tmp_path):
    groups = [_group(f"l1_activity reg.lam={i / 1000} reg.hidden.dropout.rate=0.{i % 9}",
                     [[0.7, 0.8], [0.72, 0.81]]) for i in range(40)]  # fmt: skip
    fig = plots.curve_bands(groups, ("accuracy", "val_accuracy"), tmp_path / "a.png", "acc")
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == plots.LEGEND_MAX
    # 27 groups, the note, and the line styles
    assert texts[-3:] == ["... and 13 more (see the tables)", "train", "validation"]
    assert all(len(line) <= 32 for t in texts for line in t.splitlines())
    assert legend._ncols == 2 and legend.get_texts()[0].get_fontsize() == 6
    # outside the axes, to their right, and inside the saved picture
    assert legend.get_window_extent().x0 >= fig.axes[0].get_window_extent().x1
    from PIL import Image

    assert Image.open(tmp_path / "a.png").width > fig.get_figwidth() * fig.dpi  # grown to hold it
