"""Datasets: generated or shipped with scikit-learn, or read from a user's CSV file.

Every dataset is split with ``train_test_split`` under ``dataset.split_seed``, so the
same config always gives the same split. Nothing is pickled. scikit-learn and pandas are
imported inside the loaders, so importing this module (for validation) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regexp.checks import choice, fraction, integer
from regexp.errors import ConfigError, DataError


@dataclass
class Dataset:
    """A split dataset. Targets are encoded for the output layer:
    a float32 column of 0/1 for two classes (sigmoid + BCE), one-hot otherwise (softmax + CCE).

    When ``val_is_test`` is true there is no separate validation split: validation
    metrics are computed on the test split, as the source documents did.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    val_is_test: bool

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def labels(self, y: np.ndarray) -> np.ndarray:
        """Integer class labels from encoded targets."""
        return y.ravel().astype(int) if self.binary else y.argmax(axis=1)


def _blobs(cfg) -> tuple[np.ndarray, np.ndarray]:
    """Source B's data: two overlapping Gaussian blobs in 2-D, 300 points."""
    from sklearn.datasets import make_blobs

    return make_blobs(
        n_samples=int(cfg.get("n_samples", 300)),
        n_features=2,
        centers=[[0.0, 0.0], [0.5, 0.1]],
        cluster_std=float(cfg.get("cluster_std", 0.25)),
        center_box=(-1.0, 1.0),
        random_state=cfg.split_seed,
    )


def _moons(cfg):
    from sklearn.datasets import make_moons

    return make_moons(
        n_samples=int(cfg.get("n_samples", 300)),
        noise=float(cfg.get("noise", 0.2)),
        random_state=cfg.split_seed,
    )


def _circles(cfg):
    from sklearn.datasets import make_circles

    return make_circles(
        n_samples=int(cfg.get("n_samples", 300)),
        noise=float(cfg.get("noise", 0.1)),
        factor=float(cfg.get("factor", 0.5)),
        random_state=cfg.split_seed,
    )


def _sklearn_loader(name: str) -> Callable:
    def load(cfg):
        import sklearn.datasets

        return getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)

    return load


def _csv(cfg) -> tuple[np.ndarray, np.ndarray]:
    """A user's CSV file: every column but ``dataset.label`` is a numeric feature."""
    import pandas as pd

    path = Path(str(cfg.path))
    if not path.is_file():
        raise DataError(f"dataset.path={str(path)!r}: no such file; expected an existing CSV file")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset.path={str(path)!r}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"dataset.path={str(path)!r}: not a readable CSV file ({e})") from None
    label = str(cfg.label)
    if label not in frame.columns:
        raise DataError(
            f"dataset.label={label!r}: no such column in {path}; columns are "
            + ", ".join(map(str, frame.columns))
        )
    if len(frame) == 0:
        raise DataError(f"dataset.path={str(path)!r}: the file has a header but no rows")
    features = frame.drop(columns=[label])
    numeric = features.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() | ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        cell = features.iat[row, col]
        shown = "is empty or NaN" if pd.isna(cell) else f"has value {str(cell)!r}"
        raise DataError(
            f"{path}: row {row + 2}, column {features.columns[col]!r} {shown}; "
            "expected a finite number (row 1 is the header)"
        )
    if frame[label].isna().any():
        row = int(np.flatnonzero(frame[label].isna().to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}, label column {label!r} is empty")
    classes, y = np.unique(frame[label].to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"{path}: label column {label!r} has a single class ({classes[0]!r}); need at least 2"
        )
    return numeric.to_numpy(dtype=np.float64), y


DATASETS: dict[str, Callable] = {
    "blobs": _blobs,
    "moons": _moons,
    "circles": _circles,
    "iris": _sklearn_loader("iris"),
    "breast_cancer": _sklearn_loader("breast_cancer"),
    "wine": _sklearn_loader("wine"),
    "digits": _sklearn_loader("digits"),
    "csv": _csv,
}


def validate(ds) -> None:
    """Check the ``dataset`` group of a config, without reading any data."""
    name = choice("dataset.name", ds.get("name"), tuple(DATASETS))
    fraction("dataset.test_size", ds.get("test_size"), low_open=True)
    fraction("dataset.val_size", ds.get("val_size"), low_open=False)
    choice("dataset.scaler_fit", ds.get("scaler_fit"), ("train", "all", "none"))
    integer("dataset.split_seed", ds.get("split_seed"), minimum=0)
    if name == "csv":
        path = ds.get("path")
        if not path or not Path(str(path)).is_file():
            raise ConfigError("dataset.path", path, "an existing CSV file")
        if not ds.get("label"):
            raise ConfigError("dataset.label", ds.get("label"), "the name of the label column")


def _encode(y: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return y.reshape(-1, 1).astype("float32")
    return np.eye(n_classes, dtype="float32")[y]


def load(cfg) -> Dataset:
    """Build the dataset described by the ``dataset`` config group."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = DATASETS[cfg.name](cfg)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(int)
    n_classes = int(y.max()) + 1
    seed = int(cfg.split_seed)

    # Splitting indices (rather than arrays) lets `scaler_fit: all` scale before the
    # split exactly as source A did, with the same split as `scaler_fit: train`.
    idx_train, idx_test = train_test_split(
        np.arange(len(x)), test_size=float(cfg.test_size), random_state=seed
    )
    val_is_test = float(cfg.val_size) == 0
    if val_is_test:
        idx_val = idx_test
    else:
        idx_train, idx_val = train_test_split(
            idx_train, test_size=float(cfg.val_size), random_state=seed
        )

    if cfg.scaler_fit != "none":
        fit_on = x if cfg.scaler_fit == "all" else x[idx_train]
        x = StandardScaler().fit(fit_on).transform(x)
    x = x.astype("float32")
    t = _encode(y, n_classes)
    return Dataset(
        name=str(cfg.name),
        x_train=x[idx_train],
        y_train=t[idx_train],
        x_val=x[idx_val],
        y_val=t[idx_val],
        x_test=x[idx_test],
        y_test=t[idx_test],
        n_classes=n_classes,
        val_is_test=val_is_test,
    )
