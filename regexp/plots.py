"""The figures of one run, written as PNG (never shown).

Figures are drawn on bare ``matplotlib.figure.Figure`` objects (no pyplot state) with
fixed margins, and histograms as one ``stairs`` artist: a sweep writes hundreds of
these, so each must cost tens of milliseconds, not hundreds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PNG = {"compress_level": 1}  # fast to write; a few KB larger


def _figure(width: float, height: float, **margins):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    fig.subplots_adjust(**{"left": 0.12, "right": 0.97, "bottom": 0.13, "top": 0.9, **margins})
    return fig


def curves(history: pd.DataFrame, out: Path, metric: str, title: str) -> None:
    """Train and validation ``metric`` per epoch; for losses, the data loss dashed."""
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    epochs = history["epoch"]
    ax.plot(epochs, history[metric], c="tab:blue", label=f"train {metric}")
    ax.plot(epochs, history[f"val_{metric}"], c="tab:red", label=f"validation {metric}")
    if metric == "loss":
        ax.plot(epochs, history["data_loss"], c="tab:blue", ls="--", label="train data loss")
        ax.plot(epochs, history["val_data_loss"], c="tab:red", ls="--", label="val data loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend()
    fig.savefig(out, pil_kwargs=PNG)


def activations(acts: dict[str, np.ndarray], out: Path, title: str) -> None:
    """One histogram per activity-regularized layer, its mean written on it."""
    n = len(acts)
    fig = _figure(max(5.0, 3.2 * n), 3.2, left=0.6 / max(5.0, 3.2 * n) * 2, wspace=0.35,
                  bottom=0.12, top=0.8)  # fmt: skip
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, a) in zip(axes, acts.items(), strict=True):
        values = a.ravel()
        counts, edges = np.histogram(values, bins=50)
        ax.stairs(counts, edges, fill=True, color="tab:gray")
        ax.set_title(name)
        ax.text(0.95, 0.95, f"mean {values.mean():.4f}", transform=ax.transAxes,
                ha="right", va="top")  # fmt: skip
    fig.suptitle(title)
    fig.savefig(out, pil_kwargs=PNG)


def scatter(x: np.ndarray, labels: np.ndarray, out: Path, title: str) -> None:
    """The data coloured by class (2-D datasets)."""
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="coolwarm", s=40, alpha=0.5)
    ax.set_title(title)
    fig.savefig(out, pil_kwargs=PNG)
