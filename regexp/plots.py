"""The figures of one run, written as PNG (never shown).

A sweep writes hundreds of these, so each figure is built once per process and reused:
a new run only swaps in its data (``set_data``), rescales and saves. Histograms are one
``stairs`` artist, and the data scatter, identical for every run on the same split, is
drawn once and copied.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

PNG = {"compress_level": 1}  # fast to write; a few KB larger
_figures: dict[tuple, tuple] = {}
_scatters: dict[str, Path] = {}


def _figure(width: float, height: float, **margins):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    fig.subplots_adjust(**{"left": 0.12, "right": 0.97, "bottom": 0.13, "top": 0.9, **margins})
    return fig


def _curves_figure(metric: str) -> tuple:
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    styles = [("tab:blue", "-", f"train {metric}"), ("tab:red", "-", f"validation {metric}")]
    if metric == "loss":
        styles += [("tab:blue", "--", "train data loss"), ("tab:red", "--", "val data loss")]
    lines = [ax.plot([], [], c=c, ls=ls, label=label)[0] for c, ls, label in styles]
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(loc="upper right" if metric == "loss" else "lower right")
    return fig, ax, lines


def curves(history: pd.DataFrame, out: Path, metric: str, title: str) -> None:
    """Train and validation ``metric`` per epoch; for losses, the data loss dashed."""
    key = ("curves", metric)
    if key not in _figures:
        _figures[key] = _curves_figure(metric)
    fig, ax, lines = _figures[key]
    series = [metric, f"val_{metric}"]
    if metric == "loss":
        series += ["data_loss", "val_data_loss"]
    for line, name in zip(lines, series, strict=True):
        line.set_data(history["epoch"], history[name])
    ax.relim()
    ax.autoscale_view()
    ax.set_title(title)
    fig.savefig(out, pil_kwargs=PNG)


def _activations_figure(n: int) -> tuple:
    width = max(5.0, 3.2 * n)
    fig = _figure(width, 3.2, left=1.2 / width, wspace=0.35, bottom=0.12, top=0.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    bars = [ax.stairs([0.0], [0.0, 1.0], fill=True, color="tab:gray") for ax in axes]
    notes = [ax.text(0.95, 0.95, "", transform=ax.transAxes, ha="right", va="top") for ax in axes]
    return fig, axes, bars, notes


def activations(acts: dict[str, np.ndarray], out: Path, title: str) -> None:
    """One histogram per activity-regularized layer, its mean written on it."""
    key = ("activations", len(acts))
    if key not in _figures:
        _figures[key] = _activations_figure(len(acts))
    fig, axes, bars, notes = _figures[key]
    for ax, bar, note, (name, a) in zip(axes, bars, notes, acts.items(), strict=True):
        values = a.ravel()
        counts, edges = np.histogram(values, bins=50)
        bar.set_data(values=counts, edges=edges)
        note.set_text(f"mean {values.mean():.4f}")
        ax.set_title(name)
        ax.relim()
        ax.autoscale_view()
    fig.suptitle(title)
    fig.savefig(out, pil_kwargs=PNG)


def scatter(x: np.ndarray, labels: np.ndarray, out: Path, title: str) -> None:
    """The data coloured by class (2-D datasets)."""
    digest = hashlib.sha1(x.tobytes() + labels.tobytes() + title.encode()).hexdigest()
    done = _scatters.get(digest)
    if done is not None and done.is_file():
        shutil.copyfile(done, out)
        return
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="coolwarm", s=40, alpha=0.5)
    ax.set_title(title)
    fig.savefig(out, pil_kwargs=PNG)
    _scatters[digest] = Path(out)
