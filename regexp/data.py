"""Datasets: generated or shipped with scikit-learn, read from a user's CSV or ``.npz``
file, or from Keras' cache of MNIST, Fashion-MNIST and CIFAR-10 (``regexp.arrays``).

Every dataset is split with scikit-learn's ``train_test_split``, in two steps: first the
test split (``dataset.test_size`` of all rows), then the validation split
(``dataset.val_size`` of the rows the test split left; none when it is 0, and validation
is then the test split). Both steps use ``random_state=dataset.split_seed``, so the same
config always gives the same split. ``dataset.stratify`` (default false) passes
``stratify=`` the class labels of the rows being split to both steps, so that each part
keeps every class's share; false is a plain random split, as every run before the key
existed had, and a regression task accepts only false. A source with its own test part
(an ``.npz`` file's ``x_test``, Keras' test images) keeps it as the test split, in order,
never redrawn (``dataset.test_size`` is unused): only the validation split is cut, from
its training part, and ``dataset.stratify`` applies to that split alone. A subsample
(below) is taken before either step. ``Dataset.summary()`` (a run's ``metrics.json``)
records how the split was drawn. Nothing is pickled. scikit-learn, pandas and Keras are
imported inside the loaders, so importing this module (for validation) stays cheap.

``dataset.task`` is ``classification`` (the default) or ``regression``: the target is
then one float column, standardised by the ``scaler_fit`` rule of the features.
``dataset.subsample`` keeps a row count or a fraction of the rows before splitting,
stratified by class for classification.

A CSV file is read without any implicit index: every row must have one field per column
name, and the features are exactly the columns named (``dataset.features``) or all but
the label and ``dataset.drop``. ``validate`` reads the header and the first
``SAMPLE_ROWS`` rows, so that most faults of a file stop ``regexp check`` and a run before
any work; ``load`` reads the whole file and repeats every check on all of it.
"""

from __future__ import annotations

import logging
import math
import re
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from regexp import arrays
from regexp.checks import (
    BOOL,
    OPEN_UNIT,
    POSITIVE,
    SEED,
    STRENGTH,
    UNIT_INTERVAL,
    Choice,
    Integer,
    Rule,
    Schema,
    parse,
)
from regexp.errors import ConfigError, DataError

log = logging.getLogger("regexp.data")

SAMPLE_ROWS = 1000  # the rows of a CSV file that `validate` reads
MIN_ROWS = 10  # the fewest rows a CSV file (or a subsample) may have
TASKS = ("classification", "regression")


@dataclass
class Dataset:
    """A split dataset. Targets are encoded for the output layer:
    a float32 column of 0/1 for two classes (sigmoid + BCE), one-hot otherwise (softmax + CCE),
    and for ``task="regression"`` a float32 column of the target, scaled like the features:
    ``y = (target - target_mean) / target_scale``.

    When ``val_is_test`` is true there is no separate validation split: validation
    metrics are computed on the test split, as the source documents did.

    ``feature_names`` and ``class_names`` (class ``i`` is ``class_names[i]``, the label's
    value in the source) default to ``x1..xn`` and ``0..k-1``; ``notes`` say what was done
    to the source data (a dropped index column, say). ``input_shape`` is the shape of one
    sample before it was flattened into features (images), empty when it was a row.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int  # 0 for regression
    val_is_test: bool
    feature_names: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    label: str | None = None
    notes: list[str] = field(default_factory=list)
    task: str = "classification"
    target_mean: float = 0.0
    target_scale: float = 1.0
    input_shape: tuple[int, ...] = ()
    target_stats: dict[str, float] = field(default_factory=dict)
    # how raw features became x (what `regexp predict` repeats): divided by ``pixels``
    # (8-bit images), then ``(x - scaler_mean) / scaler_scale`` (None: dataset.scaler_fit=none)
    pixels: float | None = None
    scaler_mean: np.ndarray | None = None
    scaler_scale: np.ndarray | None = None
    other_columns: list[str] = field(default_factory=list)  # a CSV file's non-feature columns
    # how the split was drawn: order, seed, stratify, test_size (None: the source's own
    # test part), val_size; {} for a Dataset made by hand
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def n_outputs(self) -> int:
        """Units of the output layer: 1 for regression and for two classes, else one per class."""
        return 1 if self.regression or self.binary else self.n_classes

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def shape(self) -> Shape:
        return Shape(
            len(self.x_train), len(self.x_val), len(self.x_test), self.n_features, self.n_classes
        )

    def labels(self, y: np.ndarray) -> np.ndarray:
        """Integer class labels from encoded targets; for regression, the target itself
        (in its original units)."""
        if self.regression:
            return y.ravel().astype(np.float64) * self.target_scale + self.target_mean
        return y.ravel().astype(int) if self.binary else y.argmax(axis=1)

    def summary(self) -> dict[str, Any]:
        """What was loaded, JSON-serialisable: rows per split, how the split was drawn
        (``split``: order, seed, stratify, test_size, val_size), feature names, the count of
        each class over all rows (keyed by the label's value in the source), and notes.
        For regression, the target's statistics over all rows (original units) and the
        ``target_scaling`` that turned it into ``y`` replace the class counts."""
        parts = [self.y_train, self.y_test] + ([] if self.val_is_test else [self.y_val])
        values = np.concatenate([self.labels(y) for y in parts])
        out = {
            "name": self.name,
            "task": self.task,
            "rows": {
                "total": len(values),
                "train": len(self.x_train),
                "val": len(self.x_val),
                "test": len(self.x_test),
            },
            "val_is_test": self.val_is_test,
            **({"split": dict(self.split)} if self.split else {}),
            "n_features": self.n_features,
            "input_shape": list(self.input_shape or (self.n_features,)),
            "features": self.feature_names or [f"x{i + 1}" for i in range(self.n_features)],
            "label": self.label,
            "n_classes": self.n_classes,
        }
        if self.regression:
            out["target"] = self.target_stats or _statistics(values)
            out["target_scaling"] = {"mean": self.target_mean, "scale": self.target_scale}
        else:
            counts = np.bincount(values, minlength=self.n_classes)
            names = self.class_names or [str(i) for i in range(self.n_classes)]
            out["classes"] = {str(name): int(n) for name, n in zip(names, counts, strict=True)}
        out["notes"] = list(self.notes)
        return out


def _statistics(values: np.ndarray) -> dict[str, float]:
    """A regression target's mean, standard deviation, least and greatest values."""
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _blobs(cfg) -> tuple[np.ndarray, np.ndarray]:
    """Source B's data: two overlapping Gaussian blobs in 2-D, 300 points."""
    from sklearn.datasets import make_blobs

    return make_blobs(
        n_samples=int(cfg.n_samples),
        n_features=2,
        centers=[[0.0, 0.0], [0.5, 0.1]],
        cluster_std=float(cfg.cluster_std),
        center_box=(-1.0, 1.0),
        random_state=cfg.split_seed,
    )


def _moons(cfg):
    from sklearn.datasets import make_moons

    return make_moons(
        n_samples=int(cfg.n_samples),
        noise=float(cfg.noise),
        random_state=cfg.split_seed,
    )


def _circles(cfg):
    from sklearn.datasets import make_circles

    return make_circles(
        n_samples=int(cfg.n_samples),
        noise=float(cfg.noise),
        factor=float(cfg.factor),
        random_state=cfg.split_seed,
    )


def _sklearn_loader(name: str) -> Callable:
    def load(cfg):
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{name}")()
        meta = {
            "features": [str(f) for f in bunch.feature_names],
            "classes": [str(c) for c in bunch.target_names],
        }
        return bunch.data, bunch.target, meta

    return load


def _diabetes(cfg):
    """scikit-learn's diabetes: 442 patients x 10 baseline measurements (already centred
    and scaled by scikit-learn), and a measure of the disease's progression a year later."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return bunch.data, bunch.target, {"features": [str(f) for f in bunch.feature_names]}


def _make_regression(cfg):
    """``make_regression``: a linear target of ``n_informative`` of the ``n_features``
    Gaussian features, plus Gaussian noise of standard deviation ``noise``; generated
    under ``split_seed`` like the other generated sets."""
    from sklearn.datasets import make_regression

    return make_regression(
        n_samples=int(cfg.n_samples),
        n_features=int(cfg.n_features),
        n_informative=int(cfg.n_informative),
        noise=float(cfg.noise),
        random_state=cfg.split_seed,
    )


# ---------------------------------------------------------------------------------------
# Arrays: a user's .npz file, and the image sets of Keras' cache

SPLIT_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_path(ds) -> Path:
    path = ds.get("path")
    if not path or not Path(str(path)).expanduser().is_file():
        raise ConfigError("dataset.path", path, "an existing .npz file")
    return Path(str(path)).expanduser()


def _npz_layout(path: Path, names: set[str]) -> list[tuple[str, str]]:
    """The (features, labels) pairs of the file: [(x, y)], or its train and test parts."""
    split, plain = set(SPLIT_ARRAYS) <= names, {"x", "y"} <= names
    if split and plain:
        raise DataError(
            f"{path}: has both x, y and x_train, y_train, x_test, y_test; expected one of the "
            "two layouts"
        )
    if not (split or plain):
        has = f"arrays {_listing(sorted(names))}" if names else "no arrays"
        raise DataError(
            f"{path}: has {has}; expected arrays x and y, or x_train, y_train, x_test and y_test"
        )
    return [("x_train", "y_train"), ("x_test", "y_test")] if split else [("x", "y")]


def _npz(ds, sample: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """An ``.npz`` file's features (flattened) and labels, checked; with ``sample``, the
    labels and only the first ``SAMPLE_ROWS`` rows of the features are read, and the
    features returned are those rows. Shapes and dtypes come from the arrays' headers."""
    path = _npz_path(ds)
    task = ds.get("task", "classification")
    headers = arrays.npz_headers(path)
    pairs = _npz_layout(path, set(headers))
    for xn, yn in pairs:
        hx, hy = headers[xn], headers[yn]
        for name, h in ((xn, hx), (yn, hy)):
            if h.dtype.kind not in arrays.NUMERIC:
                raise DataError(f"{path}: array {name!r} holds {h.dtype} values; expected numbers")
        if len(hx.shape) not in (2, 3, 4) or 0 in hx.shape[1:]:
            raise DataError(
                f"{path}: array {xn!r} has shape {hx.shape}; expected [rows, features], or "
                "images [rows, height, width] or [rows, height, width, channels]"
            )
        if not (len(hy.shape) == 1 or (len(hy.shape) == 2 and hy.shape[1] == 1)):
            raise DataError(
                f"{path}: array {yn!r} has shape {hy.shape}; expected one label per row, "
                "[rows] or [rows, 1] (one-hot labels: save y.argmax(axis=1))"
            )
        if hx.shape[0] == 0:
            raise DataError(f"{path}: array {xn!r} has no rows")
        if hx.shape[0] != hy.shape[0]:
            raise DataError(
                f"{path}: {xn} has {hx.shape[0]} rows but {yn} has {hy.shape[0]}; expected one "
                "label per row"
            )
    if len(pairs) == 2 and headers["x_train"].shape[1:] != headers["x_test"].shape[1:]:
        raise DataError(
            f"{path}: x_train's rows have shape {headers['x_train'].shape[1:]} but x_test's "
            f"{headers['x_test'].shape[1:]}; expected the same"
        )
    xs = []
    for xn, _ in pairs:
        x = arrays.npz_array(path, xn, SAMPLE_ROWS if sample else None)
        if x is not None:
            bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
            if len(bad):
                raise DataError(
                    f"{path}: {xn}[{bad[0]}] holds NaN or infinity; expected finite numbers"
                )
        xs.append(x)
    ys = [arrays.npz_array(path, yn).reshape(-1) for _, yn in pairs]
    for (_, yn), y in zip(pairs, ys, strict=True):
        bad = np.flatnonzero(~np.isfinite(y))
        if len(bad):
            raise DataError(f"{path}: {yn}[{bad[0]}] is {y[bad[0]]}; expected a finite number")
    y = np.concatenate(ys)
    meta: dict[str, Any] = {"input_shape": headers[pairs[0][0]].shape[1:]}
    if len(pairs) == 2:
        meta["test_from"] = len(ys[0])
        meta["notes"] = [("the file's x_test, y_test are the test split (dataset.test_size is "
                          "not used)", False)]  # fmt: skip
    if task == "regression":
        meta["classes"] = []
        y = y.astype(np.float64)
    else:
        y, meta["classes"] = _npz_classes(path, pairs, ys)
        meta["n_classes"] = len(meta["classes"])
    read = [x for x in xs if x is not None]  # a sample of a column-major array is not read
    return (np.concatenate(read) if read else None), y, meta


def _npz_classes(path: Path, pairs, ys: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Class codes 0..k-1 in the order of the labels' values, and each class's value."""
    names = "/".join(yn for _, yn in pairs)
    y = np.concatenate(ys)
    fractional = np.flatnonzero(y != np.round(y))
    hint = "set dataset.task=regression for a regression target, else expected class codes"
    if len(fractional):
        i = int(fractional[0])
        raise DataError(
            f"{path}: labels {names} look continuous (row {i} has {float(y[i])!r}, not a class "
            "code); " + hint
        )
    classes, codes = np.unique(y, return_inverse=True)
    k, n = len(classes), len(y)
    shown = ", ".join(_class_name(c) for c in classes[:3])
    if _continuous(k, n):
        raise DataError(
            f"{path}: labels {names} look continuous ({k} distinct numbers among {n} rows, such "
            f"as {shown}); {hint}"
        )
    if k < 2:
        raise DataError(f"{path}: labels {names} have a single class ({shown}); need at least 2")
    return codes.astype(int), [_class_name(c) for c in classes]


def _continuous(k: int, n: int) -> bool:
    """Whether ``k`` distinct integer labels among ``n`` rows look like a measurement
    rather than classes: more than 20, with fewer than 10 rows each on average."""
    return k > 20 and k * 10 > n


def _npz_size(cfg) -> Size:
    x, y, meta = _npz(cfg.model_dump(), sample=True)
    features = int(np.prod(meta["input_shape"]))
    return Size(len(y), features, len(meta["classes"]), test=_test_rows(len(y), meta))


def _test_rows(n: int, meta: dict) -> int | None:
    return None if meta.get("test_from") is None else n - meta["test_from"]


def _keras_loader(name: str) -> Callable:
    def load(cfg):
        x_train, y_train, x_test, y_test = arrays.keras_arrays(name)
        spec = arrays.KERAS_SETS[name]
        meta = {
            "classes": list(spec["classes"]),
            "n_classes": len(spec["classes"]),
            "test_from": len(x_train),
            "pixels": 255,
            "input_shape": spec["input_shape"],
            "notes": [("Keras' own test split is the test split", False)],
        }
        return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]), meta

    return load


def _keras_size(name: str) -> Callable:
    def size(cfg) -> Size:
        train, test = arrays.keras_split(name)
        spec = arrays.KERAS_SETS[name]
        features = int(np.prod(spec["input_shape"]))
        return Size(train + test, features, len(spec["classes"]), test=test)

    return size


# ---------------------------------------------------------------------------------------
# CSV files


@dataclass(frozen=True)
class _Options:
    """The checked ``dataset`` keys of a CSV file."""

    path: Path
    label: str
    features: list[str] | None
    drop: list[str]
    sep: str
    header: bool
    test_size: float
    val_size: float
    task: str = "classification"


@dataclass
class _Layout:
    """What a pass over the file's lines found: the column names, and the line of each row."""

    names: list[str]
    unnamed: set[str]  # names made up for empty header fields
    head_end: int  # lines up to the end of the header (0 without one)
    lines: Any  # the first line of every data row read (an array of ints)
    complete: bool  # every row of the file was read
    sklearn: tuple[int, list[str]] | None  # scikit-learn's own header: (rows, class names)


def _column_names(key: str, value: Any) -> list[str]:
    """A list of distinct column names (strings, or integers for numbered columns)."""
    from omegaconf import ListConfig

    accepted = "a list of column names, e.g. [id, name]"
    if not isinstance(value, (list, tuple, ListConfig)):
        raise ConfigError(key, value, accepted)
    items = list(value)
    names = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
            raise ConfigError(key, items, accepted)
        names.append(str(item).strip())
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(key, items, f"distinct column names ({twice[0]!r} is given twice)")
    return names


def _options(ds) -> _Options:
    """The CSV keys of ``dataset``, each checked on its own (no file is read)."""
    path = ds.get("path")
    if not path or not Path(str(path)).expanduser().is_file():
        raise ConfigError("dataset.path", path, "an existing CSV file")
    label = ds.get("label")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
        raise ConfigError("dataset.label", label, "the name of the label column")
    label = str(label).strip()
    features = ds.get("features")
    if features is not None:
        features = _column_names("dataset.features", features)
        if not features:
            raise ConfigError("dataset.features", [], "null (all columns) or a non-empty list")
        if label in features:
            raise ConfigError(
                "dataset.features", features, f"columns other than the label {label!r}"
            )
    drop = _column_names("dataset.drop", ds.get("drop") or [])
    if label in drop:
        raise ConfigError("dataset.drop", drop, f"columns other than the label {label!r}")
    both = [n for n in drop if n in (features or [])]
    if both:
        raise ConfigError(
            "dataset.drop", drop, f"columns that dataset.features does not name ({both[0]!r})"
        )
    sep = ds.get("sep", ",")
    sep = "\t" if sep in ("\\t", "tab") else sep
    if not isinstance(sep, str) or len(sep) != 1 or sep.isalnum() or sep in "\"'\r\n.-+":
        raise ConfigError("dataset.sep", sep, "one character such as ',', ';', '|' or '\\t' (tab)")
    header = ds.get("header", True)
    if not isinstance(header, bool):
        raise ConfigError("dataset.header", header, "true (line 1 names the columns) or false")
    return _Options(
        path=Path(str(path)).expanduser(),
        label=label,
        features=features,
        drop=drop,
        sep=sep,
        header=header,
        test_size=float(ds.get("test_size", 0.25)),
        val_size=float(ds.get("val_size", 0.0)),
        task=str(ds.get("task") or "classification"),
    )


def _listing(names: list[str], most: int = 12) -> str:
    shown = ", ".join(map(str, names[:most]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _override(key: str, names: list[str]) -> str:
    """``key=[a,'b c']``, as typed on the command line."""
    quoted = [n if re.fullmatch(r"[A-Za-z_][\w-]*", n) else repr(n) for n in names]
    return f"{key}=[{','.join(quoted)}]"


def _open_text(path: Path, binary: bool = False):
    """The file as text (or bytes), decompressed by its suffix like pandas does."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    if binary:
        return opener(path, "rb")
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def _not_utf8(path: Path) -> DataError:
    """Which line of the file is not UTF-8 text."""
    with _open_text(path, binary=True) as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                return DataError(f"{path}: the file is UTF-16 text; expected UTF-8 text")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                byte = raw[e.start : e.start + 1].hex()
                hint = " (an Excel file? save it as CSV)" if number == 1 else ""
                return DataError(
                    f"{path}: line {number} is not UTF-8 text (byte 0x{byte}); "
                    f"expected a UTF-8 text file{hint}"
                )
    return DataError(f"{path}: not UTF-8 text; expected a UTF-8 text file")


def _sklearn_header(head: list[str], row: list[str]) -> tuple[int, list[str]] | None:
    """scikit-learn's own CSV files (``sklearn/datasets/data``) start with a line
    ``n_rows,n_features,class names...`` that is not a header: the rows have one field per
    feature and a last field with the class code."""
    if len(head) < 3 or not all(re.fullmatch(r"\d+", h) for h in head[:2]):
        return None
    if len(row) != int(head[1]) + 1:
        return None
    return int(head[0]), head[2:]


def _scan(opts: _Options, limit: int | None) -> _Layout:
    """One pass over the lines: the header, and the line of every row (of the first
    ``limit``), each with as many fields as the header. Blank lines are skipped."""
    import csv

    path, sep = opts.path, opts.sep
    if path.suffix.lower() in (".zip", ".xlsx", ".xls", ".ods", ".parquet"):
        raise DataError(
            f"dataset.path={str(path)!r}: a {path.suffix} file; expected a CSV text file "
            "(or one compressed as .gz, .bz2 or .xz)"
        )
    head: list[str] | None = None
    head_line = head_end = 0
    width: int | None = None
    first = 0  # the line that set the width
    sklearn = None
    lines = array("q")
    complete = True
    line = 0
    try:
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter=sep, skipinitialspace=True, strict=True)
            for row in reader:
                line, start = reader.line_num, line + 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if opts.header and head is None:
                    head, head_line, head_end = [c.strip() for c in row], start, line
                    _check_separator(path, sep, head, start)
                    continue
                if width is None:
                    if head is None:
                        _check_separator(path, sep, row, start)
                        width, first = len(row), start
                    else:
                        sklearn = _sklearn_header(head, row)
                        width = len(row) if sklearn else len(head)
                        first = head_line
                if len(row) != width:
                    raise DataError(_width_message(path, start, row, width, first, head))
                if limit is not None and len(lines) >= limit:
                    complete = False
                    break
                lines.append(start)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except csv.Error as e:
        raise DataError(
            f"{path}: line {line + 1}: {e}; expected CSV text (an unclosed quote?)"
        ) from None
    except OSError as e:
        raise DataError(f"dataset.path={str(path)!r}: cannot be read ({e.strerror or e})") from None
    if head is None and not lines:
        raise DataError(f"dataset.path={str(path)!r}: the file is empty")
    if sklearn:
        names = [f"x{i + 1}" for i in range(width - 1)] + ["target"]
        unnamed: set[str] = set()
    elif head is None:
        names, unnamed = [f"x{i + 1}" for i in range(width or 0)], set()
    else:
        names = [h or f"Unnamed: {i}" for i, h in enumerate(head)]
        unnamed = {f"Unnamed: {i}" for i, h in enumerate(head) if not h}
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise DataError(
                    f"{path}: line {head_line} names column {name!r} twice (fields "
                    f"{seen[name] + 1} and {i + 1}); expected distinct column names"
                )
            seen[name] = i
    return _Layout(names, unnamed, head_end, lines, complete, sklearn)


def _check_separator(path: Path, sep: str, fields: list[str], line: int) -> None:
    """A line that is one field at ``sep`` but splits at another separator."""
    if len(fields) != 1:
        return
    for other in (",", ";", "\t", "|"):
        if other != sep and other in fields[0]:
            shown = "\\t" if other == "\t" else other
            raise DataError(
                f"{path}: line {line} has no {sep!r} but {fields[0].count(other)} {other!r}: "
                f"expected {sep!r}-separated fields, or set \"dataset.sep='{shown}'\""
            )


def _fields(n: int) -> str:
    return "1 field" if n == 1 else f"{n} fields"


def _width_message(path, line, row, width, first, head) -> str:
    if head is not None:
        said = f"line {line} has {_fields(len(row))} but the header (line {first}) has {width}"
    else:
        said = f"line {line} has {_fields(len(row))} but line {first} has {width}"
    hint = ""
    if len(row) == width + 1 and row[-1].strip() == "":
        hint = " (the line ends with a separator)"
    elif head is not None and len(row) == width + 1:
        hint = " (if each row starts with a row name, name that column in the header too)"
    elif len(row) > width:
        hint = " (a field that holds the separator must be quoted)"
    return f"{path}: {said}; expected one field per column on every line{hint}"


def _label_hint(opts: _Options, layout: _Layout) -> str:
    import difflib

    if layout.sklearn:
        rows, classes = layout.sklearn
        return (
            f" (line 1 is scikit-learn's header: {rows} rows, {len(layout.names) - 1} features "
            f"x1..x{len(layout.names) - 1}, classes {', '.join(classes)}; its label column "
            "is 'target': set dataset.label=target)"
        )
    if not opts.header:
        return f" (dataset.header=false names the columns x1..x{len(layout.names)})"
    if any(_is_number(n) for n in layout.names):
        return (
            " (if line 1 is data rather than a header, set dataset.header=false and name "
            f"the columns x1..x{len(layout.names)})"
        )
    close = difflib.get_close_matches(opts.label.lower(), [n.lower() for n in layout.names], 1)
    if close:
        match = next(n for n in layout.names if n.lower() == close[0])
        return f" (did you mean {match!r}?)"
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _missing_columns(key: str, given: list[str], names: list[str], path: Path) -> None:
    missing = [n for n in given if n not in names]
    if missing:
        raise ConfigError(
            key,
            given,
            f"columns of {path}, which has no {missing[0]!r}; its columns are {_listing(names)}",
        )


def _floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell as a float (NaN where it is not a number), and where it is not a number."""
    try:
        return np.asarray(values, dtype=np.float64), np.zeros(len(values), dtype=bool)
    except ValueError:
        pass
    out = np.full(len(values), np.nan)
    text = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except ValueError:
            text[i] = v.strip() != ""
    return out, text


def _split_sizes(n: int, test_size: float, val_size: float) -> tuple[int, int, int]:
    """(train, val, test) rows, as ``train_test_split`` cuts them."""
    import math

    test = math.ceil(test_size * n)
    train = n - test
    val = math.ceil(val_size * train) if val_size else 0
    return train - val, val, test


def _read_csv(opts: _Options, limit: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features, class codes and what was found, from the whole file (``limit=None``) or
    from its first ``limit`` rows. Raises ``DataError``/``ConfigError`` naming the key or
    the file, and the line."""
    import pandas as pd

    path, label = opts.path, opts.label
    layout = _scan(opts, limit)
    names = layout.names
    if label not in names:
        raise DataError(
            f"dataset.label={label!r}: no such column in {path}; columns are "
            + _listing(names)
            + _label_hint(opts, layout)
        )
    if opts.features is not None:
        _missing_columns("dataset.features", opts.features, names, path)
    _missing_columns("dataset.drop", opts.drop, names, path)
    n = len(layout.lines)
    if n == 0:
        raise DataError(f"dataset.path={str(path)!r}: the file has a header but no rows")

    if opts.features is not None:
        candidates = list(opts.features)
    else:
        candidates = [c for c in names if c != label and c not in opts.drop]
    wanted = [c for c in names if c in candidates or c == label]
    frame = pd.read_csv(
        path,
        sep=opts.sep,
        header=None,
        names=names,
        skiprows=layout.head_end,
        usecols=wanted,
        nrows=n,
        dtype={label: str},
        keep_default_na=False,
        index_col=False,
        skipinitialspace=True,
        encoding="utf-8-sig",
    )
    if len(frame) != n:  # pandas split the rows otherwise than the scan: count rows instead
        n = len(frame)
        layout.lines = array("q", range(layout.head_end + 1, layout.head_end + 1 + n))
    lines = layout.lines
    notes: list[tuple[str, bool]] = []  # (text, whether it is a warning)
    if layout.sklearn:
        rows, classes = layout.sklearn
        notes.append(
            (
                f"line 1 is scikit-learn's header ({rows} rows, classes {', '.join(classes)}): "
                f"features x1..x{len(names) - 1}, label 'target'",
                False,
            )
        )
        if layout.complete and rows != n:
            notes.append((f"scikit-learn's header says {rows} rows; the file has {n}", True))

    columns = {c: _Column.of(frame[c]) for c in candidates}
    # columns that hold no data: a saved row index first, unnamed empty columns anywhere
    first = names[0]
    if opts.features is None and first in candidates:
        why = columns[first].row_index(first in layout.unnamed)
        if why:
            keep = "" if first in layout.unnamed else "; name it in dataset.features to keep it"
            notes.append((f"dropped column {first!r}: {why}{keep}", True))
            candidates.remove(first)
    for c in [c for c in candidates if c in layout.unnamed and columns[c].empty]:
        notes.append((f"dropped column {c!r}: no name and no values", True))
        candidates.remove(c)
    if not candidates:
        gone = [c for c in names if c != label]
        raise DataError(
            f"{path}: no feature column is left besides the label {label!r}"
            + (f" (the others: {_listing(gone)})" if gone else " (the file has no other column)")
            + "; expected at least one numeric column"
        )

    x = _feature_values(path, layout, candidates, columns, lines, opts)
    cells = frame[label].str.strip().to_numpy(dtype=object)
    regression = opts.task == "regression"
    if regression:
        y, class_names = _target_values(path, label, cells, lines), []
    else:
        y, class_names, numeric = _label_values(path, layout, label, cells, lines)
    for j, c in enumerate(candidates):
        if n > 1 and np.all(x[:, j] == x[0, j]):
            notes.append((f"column {c!r} has the same value {x[0, j]:g} on every row", True))

    if layout.complete and regression:
        _check_rows(path, n, opts)
    elif layout.complete:
        _check_classes(path, label, class_names, numeric, n, opts)
        counts = np.bincount(y, minlength=len(class_names))
        rare = [class_names[i] for i in np.flatnonzero(counts == 1)]
        if rare:
            notes.append((f"class {_listing(rare, 5)} of {label!r} has a single row", True))
        by_case: dict[str, list[str]] = {}
        for c in class_names:
            by_case.setdefault(c.casefold(), []).append(c)
        for alike in (v for v in by_case.values() if len(v) > 1):
            shown = " and ".join(map(repr, alike))
            notes.append((f"classes {shown} of {label!r} differ only in case", True))
    meta = {"features": candidates, "classes": class_names, "label": label, "notes": notes,
            "complete": layout.complete,
            "other_columns": [c for c in names if c not in candidates]}  # fmt: skip
    return x, y, meta


@dataclass
class _Column:
    """A column as numbers: ``values`` (NaN where a cell is not a number), ``text`` (the
    cells that are neither empty nor numbers) and ``cells``, the stripped text of each
    cell, or None when pandas read the column as numbers."""

    values: np.ndarray
    text: np.ndarray
    cells: np.ndarray | None

    @classmethod
    def of(cls, series) -> _Column:
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        if is_numeric_dtype(series.dtype) or is_bool_dtype(series.dtype):
            values = series.to_numpy(dtype=np.float64)
            return cls(values, np.zeros(len(values), dtype=bool), None)
        cells = series.astype(str).str.strip().to_numpy(dtype=object)
        return cls(*_floats(cells), cells)

    def cell(self, i: int) -> str:
        return self.cells[i] if self.cells is not None else str(self.values[i])

    @property
    def empty(self) -> bool:
        return self.cells is not None and not (self.cells != "").any()

    def row_index(self, unnamed: bool) -> str | None:
        """Why this column, the file's first, is a saved row index, or None if it is not."""
        n, v = len(self.values), self.values
        if n and not self.text.any():
            if np.array_equal(v, np.arange(n)):
                return "a 0..n-1 row index"
            if np.array_equal(v, np.arange(1, n + 1)):
                return "a 1..n row number"
        if not unnamed or not n:
            return None
        distinct = self.cells if self.cells is not None else v
        if self.cells is not None and (self.cells == "").any():
            return None
        if len(set(distinct.tolist())) == n and not np.isnan(v[~self.text]).any():
            return "it has no name and a distinct value on every row (saved row names)"
        return None


def _feature_values(path, layout, names, columns, lines, opts) -> np.ndarray:
    """The features as float64; a non-numeric column, or else the first bad cell, raises."""
    n = len(lines)
    x = np.empty((n, len(names)), dtype=np.float64)
    worst = None  # (row, column index, cell)
    header = f"row {layout.head_end} is the header" if layout.head_end else "the file has no header"
    for j, c in enumerate(names):
        col = columns[c]
        x[:, j] = col.values
        if col.empty:
            raise DataError(
                f"{path}: column {c!r} is empty on every row; expected numbers: drop it with "
                + _override("dataset.drop", [*opts.drop, c])
            )
        if col.text.sum() * 2 > n:
            i = int(np.flatnonzero(col.text)[0])
            drop = _override("dataset.drop", [*opts.drop, c])
            raise DataError(
                f"{path}: column {c!r} is not numeric (row {lines[i]} has {col.cell(i)!r}); "
                f"features must be numbers: drop it with {drop}, or list the feature columns "
                "in dataset.features"
            )
        bad = np.flatnonzero(~np.isfinite(col.values))
        if len(bad) and (worst is None or bad[0] < worst[0]):
            worst = (int(bad[0]), j)
    if worst is not None:
        i, j = worst
        col = columns[names[j]]
        cell = col.cell(i)
        nan = cell == "" or (not col.text[i] and np.isnan(col.values[i]))
        shown = "is empty or NaN" if nan else f"has value {cell!r}"
        decimal = re.fullmatch(r"[+-]?\d*,\d+", cell)
        hint = " (a decimal comma? regexp reads '.' as the decimal point)" if decimal else ""
        raise DataError(
            f"{path}: row {lines[i]}, column {names[j]!r} {shown}; "
            f"expected a finite number ({header}){hint}"
        )
    return x


# how a CSV file's continuous label is accepted (csv.yaml has no task key: it is added)
CSV_REGRESSION = "set dataset.task=regression for a regression target"


def _class_name(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label_values(path, layout, label, cells, line_of) -> tuple[np.ndarray, list[str], bool]:
    """Class codes 0..k-1 (in the order of the label's values: numeric codes by number,
    names alphabetically), the name of each class, and whether the label is numeric."""
    values, text = _floats(cells)
    missing = np.flatnonzero((cells == "") | (~text & np.isnan(values)))
    if len(missing):
        i = int(missing[0])
        shown = "is empty" if cells[i] == "" else f"is {cells[i]!r}"
        raise DataError(f"{path}: row {line_of[i]}, label column {label!r} {shown}")
    if text.any():  # class names
        classes, y = np.unique(cells, return_inverse=True)
        return y.astype(int), [str(c) for c in classes], False
    infinite = np.flatnonzero(~np.isfinite(values))
    fractional = np.flatnonzero(np.isfinite(values) & (values != np.round(values)))
    odd = infinite if len(infinite) else fractional
    if len(odd):
        i = int(odd[0])
        raise DataError(
            f"{path}: label column {label!r} looks continuous (row {line_of[i]} has "
            f"{cells[i]!r}, not a class code); {CSV_REGRESSION}, else expected class names "
            "or integer class codes"
        )
    classes, y = np.unique(values, return_inverse=True)
    if layout.sklearn:
        names = layout.sklearn[1]
        outside = np.flatnonzero((values < 0) | (values >= len(names)))
        if len(outside):
            i = int(outside[0])
            raise DataError(
                f"{path}: row {line_of[i]}, label column 'target' has {cells[i]!r}; "
                f"expected a class code 0..{len(names) - 1} (line 1 names {len(names)} classes)"
            )
        return y.astype(int), [names[int(c)] for c in classes], True
    return y.astype(int), [_class_name(c) for c in classes], True


def _target_values(path, label, cells, line_of) -> np.ndarray:
    """A regression target: a finite number on every row."""
    values, text = _floats(cells)
    bad = np.flatnonzero(text | ~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        shown = "is empty" if cells[i] == "" else f"has {cells[i]!r}"
        raise DataError(
            f"{path}: row {line_of[i]}, label column {label!r} {shown}; expected a finite "
            "number (dataset.task=regression)"
        )
    return values


def _check_classes(path, label, class_names, numeric, n, opts) -> None:
    """Checks that need every row: one class only, a label that is a measurement or an ID
    rather than a class, and too few rows to split."""
    k = len(class_names)
    if k < 2:
        raise DataError(
            f"{path}: label column {label!r} has a single class ({class_names[0]!r}); "
            "need at least 2"
        )
    if numeric and _continuous(k, n):
        raise DataError(
            f"{path}: label column {label!r} looks continuous ({k} distinct numbers among "
            f"{n} rows, such as {', '.join(class_names[:3])}); {CSV_REGRESSION}, else "
            "expected a label with few classes, each on many rows"
        )
    if k > 2 and k * 2 > n:
        raise DataError(
            f"{path}: label column {label!r} has {k} classes among {n} rows (such as "
            f"{', '.join(map(repr, class_names[:3]))}); expected a class label with at least 2 "
            "rows per class on average (is it an ID column?)"
        )
    _check_rows(path, n, opts)


def _check_rows(path, n, opts) -> None:
    """Enough rows for every split."""
    train, val, test = _split_sizes(n, opts.test_size, opts.val_size)
    if n < MIN_ROWS or min(train, test) < 1 or (opts.val_size and val < 1):
        raise DataError(
            f"{path}: {n} rows (split {train} train, {val} validation, {test} test with "
            f"dataset.test_size={opts.test_size} and dataset.val_size={opts.val_size}); "
            f"expected at least {MIN_ROWS} rows and every split non-empty"
        )


def _csv(cfg) -> tuple[np.ndarray, np.ndarray, dict]:
    """A user's CSV file: the columns of ``dataset.features`` (all but ``dataset.label`` and
    ``dataset.drop`` when null) are numeric features."""
    return _read_csv(_options(cfg), limit=None)


def _subsample_rule(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= MIN_ROWS
    return isinstance(v, float) and math.isfinite(v) and 0 < v < 1


TASK = Choice(*TASKS)
SUBSAMPLE = Rule(f"null, a row count >= {MIN_ROWS}, or a fraction in (0, 1)", _subsample_rule)


class Split(Schema):
    """The keys every dataset has: how it is split and scaled, the task, and a subset."""

    name: str  # the catalogue's key, checked before the schema is chosen
    test_size: Annotated[float, OPEN_UNIT]
    val_size: Annotated[float, UNIT_INTERVAL]  # of the training part; 0: validate on test
    scaler_fit: Annotated[str, Choice("train", "all", "none")]
    split_seed: Annotated[int, SEED]
    task: Annotated[str, TASK] = "classification"
    subsample: Annotated[int | float | None, SUBSAMPLE] = None
    stratify: Annotated[bool, BOOL] = False  # split by class (classification only)


class Given(Schema):
    """The keys of a set that brings its own test split (no ``test_size``)."""

    name: str
    val_size: Annotated[float, UNIT_INTERVAL]
    scaler_fit: Annotated[str, Choice("train", "all", "none")]
    split_seed: Annotated[int, SEED]
    task: Annotated[str, TASK] = "classification"
    subsample: Annotated[int | float | None, SUBSAMPLE] = None
    stratify: Annotated[bool, BOOL] = False  # split by class (classification only)


class Generated(Split):
    n_samples: Annotated[int, Integer(MIN_ROWS)]


class Blobs(Generated):
    cluster_std: Annotated[float, POSITIVE]


class Moons(Generated):
    noise: Annotated[float, STRENGTH]


class Circles(Moons):
    factor: Annotated[float, UNIT_INTERVAL]  # make_circles: inner radius / outer, in [0, 1)


class Diabetes(Split):
    task: Annotated[str, TASK] = "regression"


class MakeRegression(Diabetes):
    n_samples: Annotated[int, Integer(MIN_ROWS)]
    n_features: Annotated[int, Integer(1)]
    n_informative: Annotated[int, Integer(1)]  # at most n_features
    noise: Annotated[float, STRENGTH]  # the standard deviation of the noise on the target


class Csv(Split):
    """A CSV file's keys; ``_options`` checks their values (it knows the file)."""

    path: Any = None
    label: Any = "label"
    features: Any = None
    drop: Any = None
    sep: Any = ","
    header: Annotated[bool, BOOL] = True


class Npz(Split):
    """An ``.npz`` file's keys; ``_npz`` checks the file. ``test_size`` is used only for
    the x, y layout."""

    path: Any = None


@dataclass(frozen=True)
class Size:
    """What is known of a dataset without loading it: rows, features (flattened) and
    classes (0 for regression); ``test``, the rows of the source's own test split (its
    last rows), if it has one; ``exact`` is false when the rows are a lower bound (a
    long CSV file's sample)."""

    rows: int
    features: int
    classes: int
    test: int | None = None
    exact: bool = True


@dataclass(frozen=True)
class Source:
    """One dataset of the catalogue: its loader, its typed schema, its size as far as it
    is known without loading it, and the tasks it serves (the first is its default)."""

    load: Callable
    schema: type[Schema]
    size: Callable[[Any], Size]
    tasks: tuple[str, ...] = ("classification",)


def _fixed(rows: int, features: int, classes: int) -> Callable:
    return lambda cfg: Size(rows, features, classes)


def _generated(cfg) -> Size:
    return Size(cfg.n_samples, 2, 2)


def _regression_size(cfg) -> Size:
    if cfg.n_informative > cfg.n_features:
        raise ConfigError(
            "dataset.n_informative",
            cfg.n_informative,
            f"an integer from 1 to dataset.n_features={cfg.n_features}",
        )
    return Size(cfg.n_samples, cfg.n_features, 0)


def _csv_size(cfg) -> Size:
    """From the header and the first ``SAMPLE_ROWS`` rows (a lower bound for a longer
    file, which ``load`` checks whole)."""
    x, _, meta = _read_csv(_options(cfg.model_dump()), limit=SAMPLE_ROWS)
    return Size(len(x), x.shape[1], len(meta["classes"]), exact=meta["complete"])


BOTH = ("classification", "regression")
DATASETS: dict[str, Source] = {
    "blobs": Source(_blobs, Blobs, _generated),
    "moons": Source(_moons, Moons, _generated),
    "circles": Source(_circles, Circles, _generated),
    "iris": Source(_sklearn_loader("iris"), Split, _fixed(150, 4, 3)),
    "breast_cancer": Source(_sklearn_loader("breast_cancer"), Split, _fixed(569, 30, 2)),
    "wine": Source(_sklearn_loader("wine"), Split, _fixed(178, 13, 3)),
    "digits": Source(_sklearn_loader("digits"), Split, _fixed(1797, 64, 10)),
    "diabetes": Source(_diabetes, Diabetes, _fixed(442, 10, 0), ("regression",)),
    "regression": Source(_make_regression, MakeRegression, _regression_size, ("regression",)),
    "csv": Source(_csv, Csv, _csv_size, BOTH),
    "npz": Source(_npz, Npz, _npz_size, BOTH),
    **{name: Source(_keras_loader(name), Given, _keras_size(name)) for name in arrays.KERAS_SETS},
}


@dataclass(frozen=True)
class Shape:
    """The sizes a training's memory depends on: rows per split, features, classes
    (0 for regression)."""

    train: int
    val: int
    test: int
    features: int
    classes: int

    @property
    def outputs(self) -> int:
        """Units of the output layer: 1 for regression and for two classes."""
        return 1 if self.classes in (0, 2) else self.classes


def _check_task(name: str, source: Source, task: str) -> str:
    """``task``, if the source serves it."""
    TASK("dataset.task", task)
    if task not in source.tasks:
        accepted = f"{source.tasks[0]}: dataset={name} is a {source.tasks[0]} set"
        if task == "regression":
            other = [n for n, s in DATASETS.items() if task in s.tasks]
            accepted += f" (regression data: dataset={', '.join(other[:-1])} or {other[-1]})"
        raise ConfigError("dataset.task", task, accepted)
    return task


def _check_stratify(task: str, stratify: Any) -> bool:
    """``dataset.stratify``: true only for classification (a regression target has no
    classes to keep in proportion)."""
    BOOL("dataset.stratify", stratify)
    if stratify and task == "regression":
        raise ConfigError(
            "dataset.stratify",
            stratify,
            "false for a regression task (stratified splits keep each class's share; "
            "a continuous target has no classes)",
        )
    return stratify


def _kept(subsample, parts: tuple[int, ...], classes: int, exact: bool = True) -> list[int]:
    """The rows ``dataset.subsample`` keeps of each part of the data (all of it, or a
    source's own train and test parts): a fraction ``f`` keeps ``floor(f * rows)`` of each
    part (as ``train_test_split(train_size=f)`` does), a count ``k`` keeps ``k`` rows in
    all, the test part's share rounded. A class-stratified subset needs at least one row
    per class kept and left out of each part it cuts."""
    if subsample is None:
        return list(parts)
    n = sum(parts)
    key = "dataset.subsample"
    if isinstance(subsample, float):
        kept = [math.floor(subsample * p) for p in parts]
    elif subsample > n and exact:
        raise ConfigError(key, subsample, f"at most {n} rows (the data has {n}), or a fraction")
    elif len(parts) == 1:
        kept = [min(subsample, n)]
    else:
        test = min(int(subsample * parts[1] / n + 0.5), parts[1])
        kept = [min(subsample - test, parts[0]), test]
    if sum(kept) < MIN_ROWS and exact:
        raise ConfigError(
            key, subsample, f"a subset of at least {MIN_ROWS} rows (it keeps {sum(kept)} of {n})"
        )
    for k, p in zip(kept, parts, strict=True):
        if classes and exact and k < p and min(k, p - k) < classes:
            raise ConfigError(
                key,
                subsample,
                f"a subset that keeps and leaves out at least {classes} rows of each part, one "
                f"per class (it keeps {k} of {p})",
            )
    return kept


def validate(ds) -> Shape:
    """Check the ``dataset`` group against its schema, and that every split gets rows;
    return the data's shape, without loading it. A CSV file's header and first
    ``SAMPLE_ROWS`` rows are read and checked (the whole file if it is that short); an
    ``.npz`` file's headers, labels and first ``SAMPLE_ROWS`` rows; Keras' cached files'
    headers and labels (CIFAR-10's batches whole, once per process)."""
    name = Choice(*DATASETS)("dataset.name", ds.get("name") if isinstance(ds, Mapping) else ds)
    source = DATASETS[name]
    checked = parse(source.schema, ds, "dataset", what=f"dataset={name}")
    _check_task(name, source, checked.task)
    _check_stratify(checked.task, checked.stratify)
    size = source.size(checked)
    val_size = checked.val_size
    if size.test is None:
        (rows,) = _kept(checked.subsample, (size.rows,), size.classes, size.exact)
        train, val, test = _split_sizes(rows, checked.test_size, val_size)
        sizes = [("dataset.test_size", checked.test_size, train + val < 1 or test < 1)]
    else:
        before, test = _kept(checked.subsample, (size.rows - size.test, size.test),
                             size.classes, size.exact)  # fmt: skip
        rows = before + test
        val = math.ceil(val_size * before) if val_size else 0
        train = before - val
        sizes = [("dataset.subsample", checked.subsample, test < 1)]
    sizes.append(("dataset.val_size", val_size, train < 1 or (val_size > 0 and val < 1)))
    for key, value, empty in sizes:
        if empty:
            raise ConfigError(
                key,
                value,
                f"a size that leaves rows in every split ({rows} rows of dataset={name} give "
                f"{train} train, {val} validation and {test} test)",
            )
    cuts = [] if size.test is not None else [("test", test, train + val)]
    cuts += [("validation", val, train)] if val_size else []
    for part, cut, rest in cuts if checked.stratify and size.classes and size.exact else []:
        if min(cut, rest) < size.classes:  # what train_test_split(stratify=y) refuses
            raise ConfigError(
                "dataset.stratify",
                True,
                f"false, or sizes that give each of the {size.classes} classes a row on both "
                f"sides of the {part} split ({part} {cut} rows, the rest {rest})",
            )
    return Shape(train, val if val_size else test, test, size.features, size.classes)


def _encode(y: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return y.reshape(-1, 1).astype("float32")
    return np.eye(n_classes, dtype="float32")[y]


def _subsample(cfg, y: np.ndarray, parts: tuple[int, ...], classes: int, exact: bool):
    """The rows ``dataset.subsample`` keeps (sorted), drawn under ``split_seed``, stratified
    by class for classification, from each part (``_kept``); and the rows kept per part."""
    from sklearn.model_selection import train_test_split

    sub = cfg.get("subsample")
    kept = _kept(sub, parts, classes, exact)
    rows, start = [], 0
    for k, p in zip(kept, parts, strict=True):
        idx = np.arange(start, start + p)
        start += p
        if k == 0:
            idx = idx[:0]
        elif k < p:
            try:
                idx, _ = train_test_split(
                    idx,
                    train_size=k,
                    stratify=y[idx] if classes else None,
                    random_state=int(cfg.split_seed),
                )
            except ValueError as e:  # a class of a single row cannot be stratified
                said = str(e).strip().splitlines()[0]
                raise DataError(f"dataset.subsample={sub}: no stratified subset ({said})") from None
        rows.append(np.sort(idx))
    return np.concatenate(rows), kept


def _split(rows: np.ndarray, size: float, seed: int, by: np.ndarray | None, part: str):
    """``train_test_split(rows, test_size=size, random_state=seed)``, stratified by the
    class labels ``by`` when given; a class too small to split is one ``DataError``."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(rows, test_size=size, random_state=seed, stratify=by)
    except ValueError as e:  # a class of one row, or fewer rows cut than classes
        if by is None:
            raise
        said = str(e).strip().splitlines()[0]
        raise DataError(
            f"dataset.stratify=true: no stratified {part} split ({said}); expected "
            "at least 2 rows of each class, or dataset.stratify=false"
        ) from None


def load(cfg) -> Dataset:
    """Build the dataset described by the ``dataset`` config group.

    The split (see the module's docstring): test first, then validation from the rest,
    both ``train_test_split(..., random_state=dataset.split_seed)``, stratified by class
    when ``dataset.stratify`` is true; a source's own test part is kept as it is, so
    ``stratify`` then applies to the validation split only."""
    from sklearn.preprocessing import StandardScaler

    source = DATASETS[cfg.name]
    task = _check_task(cfg.name, source, cfg.get("task", source.tasks[0]))
    regression = task == "regression"
    stratify = _check_stratify(task, cfg.get("stratify", False))
    try:
        x, y, *rest = source.load(cfg)
    except (ConfigError, DataError):
        raise
    except Exception as e:  # a loader refusing what the schema let through
        said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"dataset={cfg.name}: cannot be made ({said})") from None
    meta = rest[0] if rest else {}
    notes = list(meta.get("notes", []))
    y = np.asarray(y, dtype=np.float64) if regression else np.asarray(y).astype(int)
    n_classes = 0 if regression else meta.get("n_classes", int(y.max()) + 1)
    seed = int(cfg.split_seed)
    test_from = meta.get("test_from")
    if cfg.get("subsample") is not None:
        parts = (len(y),) if test_from is None else (test_from, len(y) - test_from)
        keep, kept = _subsample(cfg, y, parts, n_classes, True)
        x, y = np.asarray(x)[keep], y[keep]
        test_from = None if test_from is None else kept[0]
        how = "" if regression else ", stratified by class"
        notes.append((f"dataset.subsample={cfg.subsample}: {len(y)} rows kept{how}", False))
    x = np.asarray(x)
    input_shape = tuple(int(d) for d in meta.get("input_shape", x.shape[1:]))
    if "pixels" in meta:  # 8-bit images: to [0, 1] first, in float32
        x = x.astype("float32") / np.float32(meta["pixels"])
    else:
        x = x.astype(np.float64)
    x = x.reshape(len(x), -1)

    # Splitting indices (rather than arrays) lets `scaler_fit: all` scale before the
    # split exactly as source A did, with the same split as `scaler_fit: train`.
    # Test first, then validation from the rest, both under split_seed; stratify=None
    # (dataset.stratify=false) is the unstratified split every run before it had.
    by = y if stratify else None
    if test_from is None:
        test_size = float(cfg.test_size)
        idx_train, idx_test = _split(np.arange(len(x)), test_size, seed, by, "test")
    else:  # the source's own test split
        test_size = None
        idx_train, idx_test = np.arange(test_from), np.arange(test_from, len(x))
    val_is_test = float(cfg.val_size) == 0
    if val_is_test:
        idx_val = idx_test
    else:
        by_val = None if by is None else by[idx_train]
        idx_train, idx_val = _split(idx_train, float(cfg.val_size), seed, by_val, "validation")
    own = test_from is not None
    order = "the source's own test part" if own else "test first"
    then = f", then validation from {'its training part' if own else 'the rest'}"
    split = {
        "order": order + (", validation = test" if val_is_test else then),
        "seed": seed,
        "stratify": bool(stratify),
        "test_size": test_size,
        "val_size": float(cfg.val_size),
    }

    x_scaler = None
    if cfg.scaler_fit != "none":
        fit_on = x if cfg.scaler_fit == "all" else x[idx_train]
        x_scaler = StandardScaler().fit(fit_on)
        x = x_scaler.transform(x)
    x = x.astype("float32")
    mean, scale = 0.0, 1.0
    if regression:
        if cfg.scaler_fit != "none":
            scaler = StandardScaler().fit((y if cfg.scaler_fit == "all" else y[idx_train])[:, None])
            mean, scale = float(scaler.mean_[0]), float(scaler.scale_[0])
        t = ((y - mean) / scale).reshape(-1, 1).astype("float32")
    else:
        t = _encode(y, n_classes)
    data = Dataset(
        name=str(cfg.name),
        x_train=x[idx_train],
        y_train=t[idx_train],
        x_val=x[idx_val],
        y_val=t[idx_val],
        x_test=x[idx_test],
        y_test=t[idx_test],
        n_classes=n_classes,
        val_is_test=val_is_test,
        feature_names=list(meta.get("features", [])),
        class_names=list(meta.get("classes", [])),
        label=meta.get("label"),
        notes=[text for text, _ in notes],
        task=task,
        target_mean=mean,
        target_scale=scale,
        input_shape=input_shape if len(input_shape) > 1 else (),
        target_stats=_statistics(y) if regression else {},
        pixels=float(meta["pixels"]) if "pixels" in meta else None,
        scaler_mean=None if x_scaler is None else x_scaler.mean_,
        scaler_scale=None if x_scaler is None else x_scaler.scale_,
        other_columns=list(meta.get("other_columns", [])),
        split=split,
    )
    _log(data, notes)
    return data


def _log(data: Dataset, notes: list[tuple[str, bool]]) -> None:
    s = data.summary()
    rows = s["rows"]
    val = "validation = test" if data.val_is_test else f"{rows['val']} validation"
    images = "x".join(map(str, data.input_shape))
    log.info(
        "data %s: %d rows (%d train, %s, %d test) x %d features%s: %s",
        data.name,
        rows["total"],
        rows["train"],
        val,
        rows["test"],
        s["n_features"],
        f" ({images} flattened)" if images else "",
        _listing(s["features"], 20),
    )
    label = f"label {data.label!r}, " if data.label else ""
    if data.regression:
        t = s["target"]
        log.info(
            "data %s: %sregression target: mean %.4g, std %.4g, range [%.4g, %.4g]; "
            "y = (target - %.4g) / %.4g",
            data.name, label, t["mean"], t["std"], t["min"], t["max"],
            data.target_mean, data.target_scale,
        )  # fmt: skip
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in list(s["classes"].items())[:20])
        log.info("data %s: %s%d classes (%s)", data.name, label, data.n_classes, counts)
    for text, warning in notes:
        (log.warning if warning else log.info)("data %s: %s", data.name, text)
