"""Datasets: sizes of the sources' splits, determinism, scaling, CSV files."""

import numpy as np
import pytest

from regexp.data import load
from regexp.errors import DataError
from tests.conftest import make_cfg


def _load(*overrides):
    return load(make_cfg(*overrides).dataset)


def test_blobs_split_is_source_b_sized_and_deterministic():
    a = _load("dataset.val_size=0")
    b = _load("dataset.val_size=0")
    assert (len(a.x_train), len(a.x_test)) == (225, 75)
    assert a.val_is_test and np.array_equal(a.x_val, a.x_test)
    assert a.y_train.shape == (225, 1) and a.y_train.dtype == np.float32
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    other = _load("dataset.val_size=0", "dataset.split_seed=1")
    assert not np.array_equal(a.x_train, other.x_train)


def test_blobs_are_the_source_generator_unscaled():
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import train_test_split

    x, y = make_blobs(300, n_features=2, centers=[[0, 0], [0.5, 0.1]], cluster_std=0.25,
                      center_box=(-1, 1), random_state=0)  # fmt: skip
    x_tr, x_te, y_tr, y_te = train_test_split(x, y.reshape(-1, 1).astype("float32"), random_state=0)
    d = _load("dataset.val_size=0")
    np.testing.assert_allclose(d.x_train, x_tr.astype("float32"))
    np.testing.assert_array_equal(d.y_test, y_te)


def test_validation_split_is_carved_from_train():
    d = _load("dataset.val_size=0.2")
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (180, 45, 75)
    assert not d.val_is_test


def test_iris_is_112_38_one_hot_and_scaler_fit_is_honoured():
    leak = _load("dataset=iris", "dataset.val_size=0", "dataset.scaler_fit=all")
    clean = _load("dataset=iris", "dataset.val_size=0", "dataset.scaler_fit=train")
    assert (len(leak.x_train), len(leak.x_test)) == (112, 38)
    assert leak.y_train.shape == (112, 3) and leak.n_classes == 3
    both = np.concatenate([leak.x_train, leak.x_test])
    np.testing.assert_allclose(both.mean(axis=0), 0, atol=1e-5)  # fitted on all of X
    np.testing.assert_allclose(clean.x_train.mean(axis=0), 0, atol=1e-5)  # fitted on train
    assert np.abs(leak.x_train.mean(axis=0)).max() > 1e-3
    np.testing.assert_array_equal(leak.y_test, clean.y_test)  # the same split either way


@pytest.mark.parametrize("name, classes", [("moons", 2), ("circles", 2), ("breast_cancer", 2),
                                           ("wine", 3), ("digits", 10)])  # fmt: skip
def test_sklearn_datasets_load(name, classes):
    d = _load(f"dataset={name}")
    assert d.n_classes == classes
    assert d.x_train.shape[1] == d.x_test.shape[1]


def _csv(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return ("dataset=csv", f"dataset.path={path}", "dataset.label=y")


def test_csv_with_string_labels(tmp_path):
    rows = "\n".join(f"{i},{i % 3 * 0.5},{'ab'[i % 2]}" for i in range(40))
    d = _load(*_csv(tmp_path, "a,b,y\n" + rows + "\n"))
    assert d.n_classes == 2 and d.n_features == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("a,b,y\n", "no rows"),
        ("a,b,label\n1,2,0\n3,4,1\n", "dataset.label='y': no such column"),
        ("a,b,y\n1,2,0\n3,x,1\n", "row 3, column 'b' has value 'x'"),
        ("a,b,y\n1,2,0\n,4,1\n", "row 3, column 'a'"),
        ("a,b,y\n1,2,0\n3,4,0\n", "single class"),
    ],
)
def test_bad_csv_files_are_named_with_row_and_column(tmp_path, text, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        _load(*_csv(tmp_path, text))
