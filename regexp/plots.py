"""The figures of one run, written as PNG (never shown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(history: pd.DataFrame, out: Path, metric: str, title: str) -> None:
    """Train and validation ``metric`` per epoch; for losses, the data loss dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def activations(acts: dict[str, np.ndarray], out: Path, title: str) -> None:
    """One histogram per activity-regularized layer, its mean written on it."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(acts), figsize=(max(5.0, 3.2 * len(acts)), 3.2), squeeze=False)
    for ax, (name, a) in zip(axes[0], acts.items(), strict=True):
        values = a.ravel()
        ax.hist(values, bins=50, color="tab:gray")
        ax.set_title(name)
        ax.text(0.95, 0.95, f"mean {values.mean():.4f}", transform=ax.transAxes,
                ha="right", va="top")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def scatter(x: np.ndarray, labels: np.ndarray, out: Path, title: str) -> None:
    """The data coloured by class (2-D datasets)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="coolwarm", s=40, alpha=0.5)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
