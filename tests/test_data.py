"""Datasets: sizes of the sources' splits, determinism, scaling, CSV files."""

import gzip
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regexp.cli import main
from regexp.data import SAMPLE_ROWS, load, validate
from regexp.errors import ConfigError, DataError
from tests.conftest import make_cfg

SKLEARN_DATA = Path(__import__("sklearn").__file__).parent / "datasets" / "data"


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


def test_summary_of_a_builtin_dataset_counts_every_row_once():
    d = _load("dataset=iris", "dataset.val_size=0")
    s = json.loads(json.dumps(d.summary()))  # JSON-serialisable as it is
    assert s["rows"] == {"total": 150, "train": 112, "val": 38, "test": 38}
    assert s["val_is_test"] is True
    assert s["features"][0] == "sepal length (cm)" and s["n_features"] == 4
    assert s["classes"] == {"setosa": 50, "versicolor": 50, "virginica": 50}
    blobs = _load("dataset.val_size=0.2").summary()
    assert blobs["features"] == ["x1", "x2"] and blobs["classes"] == {"0": 150, "1": 150}
    assert blobs["rows"] == {"total": 300, "train": 180, "val": 45, "test": 75}
    assert blobs["notes"] == [] and blobs["label"] is None


# --- CSV files ---------------------------------------------------------------------------


def _csv(tmp_path, text, label="y", name="data.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    return ("dataset=csv", f"dataset.path={path}", f"dataset.label={label}")


def _rows(n=40, fmt="{a},{b},{y}"):
    """n rows of two features a (not a 0..n-1 sequence), b and a two-class label."""
    return "".join(fmt.format(a=0.5 * i + 0.25, b=i % 7, y="ab"[i % 2]) + "\n" for i in range(n))


def _split(n, seed=0, test_size=0.25):
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(n), test_size=test_size, random_state=seed)


@pytest.mark.parametrize(
    "file, loader, n_features, n_classes",
    [
        ("breast_cancer.csv", "load_breast_cancer", 30, 2),
        ("wine_data.csv", "load_wine", 13, 3),
        ("iris.csv", "load_iris", 4, 3),
    ],
)
def test_scikit_learns_own_csv_files_load_with_every_feature(
    tmp_path, file, loader, n_features, n_classes
):
    import sklearn.datasets

    shutil.copy(SKLEARN_DATA / file, tmp_path / file)
    d = _load("dataset=csv", f"dataset.path={tmp_path / file}", "dataset.label=target",
              "dataset.val_size=0", "dataset.scaler_fit=none")  # fmt: skip
    bunch = getattr(sklearn.datasets, loader)()
    idx_train, idx_test = _split(len(bunch.target))
    assert d.n_features == n_features and d.n_classes == n_classes
    np.testing.assert_array_equal(d.x_train, bunch.data[idx_train].astype("float32"))
    np.testing.assert_array_equal(d.x_test, bunch.data[idx_test].astype("float32"))
    np.testing.assert_array_equal(d.labels(d.y_train), bunch.target[idx_train])
    s = d.summary()
    assert s["features"] == [f"x{i + 1}" for i in range(n_features)]
    names = list(bunch.target_names)
    assert s["classes"] == {names[c]: int(np.sum(bunch.target == c)) for c in range(n_classes)}
    assert "scikit-learn's header" in s["notes"][0]


def test_breast_cancer_csv_gives_the_builtin_dataset_bit_for_bit(tmp_path):
    shutil.copy(SKLEARN_DATA / "breast_cancer.csv", tmp_path / "bc.csv")
    same = ("dataset.test_size=0.25", "dataset.val_size=0.2", "dataset.scaler_fit=train")
    csv = _load("dataset=csv", f"dataset.path={tmp_path / 'bc.csv'}", "dataset.label=target",
                *same)  # fmt: skip
    builtin = _load("dataset=breast_cancer", *same)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(csv, part), getattr(builtin, part))


def test_the_label_the_issue_used_on_breast_cancer_csv_is_refused_with_the_fix(tmp_path):
    shutil.copy(SKLEARN_DATA / "breast_cancer.csv", tmp_path / "bc.csv")
    overrides = ("dataset=csv", f"dataset.path={tmp_path / 'bc.csv'}", "dataset.label=benign")
    message = r"no such column.*scikit-learn's header: 569 rows, 30 features.*dataset.label=target"
    with pytest.raises(DataError, match="dataset.label='benign': " + message):
        validate(make_cfg(*overrides).dataset)


def test_a_dataframe_saved_with_its_index_loses_the_index_with_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)).round(6), columns=["u", "v", "w"])
    frame["y"] = np.where(frame.u > 0, "pos", "neg")
    frame.to_csv(tmp_path / "saved.csv")  # the default: the index as the first column
    overrides = ("dataset=csv", f"dataset.path={tmp_path / 'saved.csv'}", "dataset.label=y",
                 "dataset.val_size=0", "dataset.scaler_fit=none")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="regexp.data"):
        d = _load(*overrides)
    idx_train, _ = _split(60)
    np.testing.assert_array_equal(d.x_train, frame[["u", "v", "w"]].to_numpy()[idx_train]
                                  .astype("float32"))  # fmt: skip
    note = "dropped column 'Unnamed: 0': a 0..n-1 row index"
    s = d.summary()
    assert s["features"] == ["u", "v", "w"] and s["notes"] == [note]
    assert s["classes"] == {"neg": int((frame.u <= 0).sum()), "pos": int((frame.u > 0).sum())}
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == [f"data csv: {note}"]
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert "60 rows (45 train, validation = test, 15 test) x 3 features: u, v, w" in info
    assert "label 'y', 2 classes (neg: " in info


def test_a_named_leading_row_number_is_dropped_unless_features_name_it(tmp_path):
    rows = "".join(f"{i + 1},{0.5 * i},{i % 3}\n" for i in range(30))
    d = _load(*_csv(tmp_path, "id,a,y\n" + rows))
    assert d.feature_names == ["a"]
    assert d.notes == ["dropped column 'id': a 1..n row number; name it in dataset.features "
                       "to keep it"]  # fmt: skip
    kept = _load(*_csv(tmp_path, "id,a,y\n" + rows), "dataset.features=[id,a]")
    assert kept.feature_names == ["id", "a"] and kept.notes == []


def test_r_style_row_names_are_dropped(tmp_path):
    rows = "".join(f'"car {i}",{0.5 * i},{i % 2}\n' for i in range(30))
    d = _load(*_csv(tmp_path, '"",mpg,y\n' + rows))
    assert d.feature_names == ["mpg"] and "saved row names" in d.notes[0]


def test_a_continuous_csv_label_is_refused_unless_the_task_is_regression(tmp_path):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame  # 442 rows, 214 distinct integer targets
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    overrides = ("dataset=csv", f"dataset.path={path}", "dataset.label=target")
    message = (rf"^{path}: label column 'target' looks continuous \(214 distinct numbers among "
               r"442 rows.*set dataset.task=regression for a regression target")  # fmt: skip
    with pytest.raises(DataError, match=message):
        validate(make_cfg(*overrides).dataset)
    frame["target"] = frame["target"] / 10  # a fractional target: found in a sample too
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"looks continuous \(row 2 has '15.1'.*set dataset.task="):
        validate(make_cfg(*overrides).dataset)
    # with the task, the same file is scikit-learn's diabetes set, target / 10
    same = ("dataset.test_size=0.25", "dataset.val_size=0.2", "dataset.scaler_fit=none")
    csv = _load(*overrides, "dataset.task=regression", *same)
    builtin = _load("dataset=diabetes", *same)
    assert csv.task == "regression" and csv.n_classes == 0 and csv.shape == builtin.shape
    for part in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(csv, part), getattr(builtin, part))
    for part in ("y_train", "y_val", "y_test"):
        np.testing.assert_allclose(getattr(csv, part), getattr(builtin, part) / 10, rtol=1e-6)
    assert csv.summary()["label"] == "target" and "classes" not in csv.summary()


def test_ordinary_variations_of_a_file_load_the_same_numbers(tmp_path):
    reference = _load(*_csv(tmp_path, "a,b,y\n" + _rows()), "dataset.scaler_fit=none")
    variations = {
        "label first": ("y,a,b\n" + _rows(fmt="{y},{a},{b}"), ()),
        "quoted fields": ('"a","b","y"\n' + _rows(fmt='"{a}","{b}","{y}"'), ()),
        "a BOM": ("\ufeffa,b,y\n" + _rows(), ()),
        "spaces in the header and cells": (" a , b ,  y\n" + _rows(fmt=" {a}, {b} ,{y} "), ()),
        "CRLF, blank end lines": (("a,b,y\n" + _rows()).replace("\n", "\r\n") + "\n  \n", ()),
        "semicolons": ("a;b;y\n" + _rows(fmt="{a};{b};{y}"), ("dataset.sep=';'",)),
        "tabs": ("a\tb\ty\n" + _rows(fmt="{a}\t{b}\t{y}"), ("dataset.sep=\\t",)),
        "a dropped ID": ("id,a,b,y\n" + _rows(fmt="s{b}-{a},{a},{b},{y}"), ("dataset.drop=[id]",)),
        "chosen features": ("a,c,b,y\n" + _rows(fmt="{a},x,{b},{y}"), ("dataset.features=[a,b]",)),
        "a trailing separator": ("a,b,y,\n" + _rows(fmt="{a},{b},{y},"), ()),
        "no header": (_rows(), ("dataset.header=false", "dataset.label=x3")),
    }  # fmt: skip
    for what, (text, extra) in variations.items():
        d = _load(*_csv(tmp_path, text), "dataset.scaler_fit=none", *extra)
        np.testing.assert_array_equal(d.x_train, reference.x_train, err_msg=what)
        np.testing.assert_array_equal(d.y_test, reference.y_test, err_msg=what)
        assert d.class_names == ["a", "b"], what
    gz = tmp_path / "data.csv.gz"
    gz.write_bytes(gzip.compress(("a,b,y\n" + _rows()).encode()))
    d = _load("dataset=csv", f"dataset.path={gz}", "dataset.label=y", "dataset.scaler_fit=none")
    np.testing.assert_array_equal(d.x_train, reference.x_train)


def test_numeric_class_codes_are_ordered_by_number_and_equal_codes_merge(tmp_path):
    codes = ["10", "2", "9.0", "9"]
    rows = "".join(f"{0.5 * i + 0.25},{codes[i % 4]}\n" for i in range(40))
    d = _load(*_csv(tmp_path, "a,y\n" + rows))
    assert d.class_names == ["2", "9", "10"] and d.n_classes == 3
    assert d.summary()["classes"] == {"2": 10, "9": 20, "10": 10}


def test_string_labels_keep_their_alphabetical_codes_and_case_clashes_are_noted(tmp_path):
    rows = "".join(f"{0.5 * i + 0.25},{['Cat', 'cat', 'dog'][i % 3]}\n" for i in range(30))
    d = _load(*_csv(tmp_path, "a,y\n" + rows))
    assert d.class_names == ["Cat", "cat", "dog"]
    assert d.notes == ["classes 'Cat' and 'cat' of 'y' differ only in case"]


GOOD = "a,b,y\n" + _rows()

# (file text, extra overrides, error class, what the one line must say)
BAD_FILES = [
    ("", (), DataError, "the file is empty"),
    ("\n\n", (), DataError, "the file is empty"),
    ("a,b,y\n", (), DataError, "the file has a header but no rows"),
    ("a,b,label\n" + _rows(), (), DataError, "dataset.label='y': no such column in"),
    ("a,b,Y\n" + _rows(), (), DataError, "did you mean 'Y'?"),
    (_rows(), (), DataError, "if line 1 is data rather than a header, set dataset.header=false"),
    ("a,b,y\n1,2,3,0\n" + _rows(), (), DataError,
     "line 2 has 4 fields but the header (line 1) has 3; expected one field per column"),
    (GOOD + "1,2\n", (), DataError, "line 42 has 2 fields but the header (line 1) has 3"),
    (GOOD + "1,2,a,\n", (), DataError, "line 42 has 4 fields but the header (line 1) has 3; "
     "expected one field per column on every line (the line ends with a separator)"),
    ("a,b,y\n" + '1,"2,a\n' + _rows(), (), DataError, "line 2: unexpected end of data"),
    ("a;b;y\n" + _rows(fmt="{a};{b};{y}"), (), DataError,
     "line 1 has no ',' but 2 ';': expected ','-separated fields, or set \"dataset.sep=';'\""),
    ("a;b;y\n1,5;2;a\n" + _rows(fmt="{a};{b};{y}"), ("dataset.sep=';'",), DataError,
     "row 2, column 'a' has value '1,5'; expected a finite number (row 1 is the header) "
     "(a decimal comma?"),
    ("a,a,y\n" + _rows(), (), DataError, "line 1 names column 'a' twice (fields 1 and 2)"),
    ("y\n" + "a\nb\n" * 20, (), DataError, "no feature column is left besides the label 'y'"),
    ("id,a,b,y\n" + _rows(fmt="s{b}-{a},{a},{b},{y}"), (), DataError,
     "column 'id' is not numeric (row 2 has 's0-0.25'); features must be numbers: "
     "drop it with dataset.drop=[id]"),
    ("a,b,y\n" + _rows(3) + "3,x,a\n", (), DataError, "row 5, column 'b' has value 'x'"),
    (GOOD + "3,,a\n", (), DataError, "row 42, column 'b' is empty or NaN"),
    (GOOD + "3,nan,a\n", (), DataError, "row 42, column 'b' is empty or NaN"),
    (GOOD + "3,inf,a\n", (), DataError, "row 42, column 'b' has value 'inf'"),
    (GOOD + "3,4,\n", (), DataError, "row 42, label column 'y' is empty"),
    ("a,c,b,y\n" + _rows(fmt="{a},,{b},{y}"), (), DataError,
     "column 'c' is empty on every row; expected numbers: drop it with dataset.drop=[c]"),
    ("a,b,y\n" + _rows(fmt="{a},{b},1"), (), DataError, "has a single class ('1')"),
    ("a,b,y\n" + _rows(fmt="{a},{b},{a}"), (), DataError,
     "label column 'y' looks continuous (row 2 has '0.25', not a class code); "
     "set dataset.task=regression for a regression target"),
    ("a,b,y\n" + "".join(f"{i},{i % 7},{i * 3}\n" for i in range(40)), (), DataError,
     "label column 'y' looks continuous (40 distinct numbers among 40 rows"),
    ("a,b,y\n" + "".join(f"{i},{i % 7},c{i % 25}\n" for i in range(40)), (), DataError,
     "label column 'y' has 25 classes among 40 rows"),
    ("a,b,y\n1,2,a\n3,4,b\n", (), DataError, "2 rows (split 0 train, 1 validation, 1 test"),
    (("a,b,y\n" + _rows()).encode().replace(b"0.25,", b"\xe9,"), (), DataError,
     "line 2 is not UTF-8 text (byte 0xe9)"),
    (("a,b,y\n" + _rows()).encode("utf-16"), (), DataError, "the file is UTF-16 text"),
    (GOOD, ("dataset.features=[a,c]",), ConfigError,
     "dataset.features=['a', 'c'] is not accepted; expected columns of"),
    (GOOD, ("dataset.drop=[zz]",), ConfigError, "which has no 'zz'; its columns are a, b, y"),
    (GOOD, ("dataset.drop=a",), ConfigError,
     "dataset.drop='a' is not accepted; expected a list of column names"),
    (GOOD, ("dataset.features=[a,a]",), ConfigError, "'a' is given twice"),
    (GOOD, ("dataset.features=[a,y]",), ConfigError, "columns other than the label 'y'"),
    (GOOD, ("dataset.drop=[y]",), ConfigError, "dataset.drop=['y'] is not accepted"),
    (GOOD, ("dataset.features=[a]", "dataset.drop=[a]"), ConfigError,
     "columns that dataset.features does not name ('a')"),
    (GOOD, ("dataset.features=[]",), ConfigError, "null (all columns) or a non-empty list"),
    (GOOD, ("dataset.sep=ab",), ConfigError, "dataset.sep='ab' is not accepted; expected one"),
    (GOOD, ("dataset.header=yes",), ConfigError, "dataset.header='yes' is not accepted"),
    (GOOD, ("dataset.label=null",), ConfigError, "dataset.label=None is not accepted"),
]  # fmt: skip


@pytest.mark.parametrize("text, extra, error, message", BAD_FILES,
                         ids=[c[3][:40] for c in BAD_FILES])  # fmt: skip
def test_each_bad_csv_file_is_one_line_naming_key_or_line(tmp_path, text, extra, error, message):
    overrides = (*_csv(tmp_path, text), *extra)
    with pytest.raises(error) as found:
        validate(make_cfg(*overrides).dataset)  # `regexp check` finds it, before any work
    assert message in str(found.value)
    assert "\n" not in str(found.value)
    assert found.type is error


def test_validate_reads_a_sample_and_load_reads_every_row(tmp_path):
    n = SAMPLE_ROWS + 500
    rows = [f"{0.5 * i + 0.25},{i % 7},{'ab'[i % 2]}" for i in range(n)]
    late = list(rows)
    late[SAMPLE_ROWS + 100] = "1,x,a"  # line SAMPLE_ROWS + 102
    overrides = _csv(tmp_path, "a,b,y\n" + "\n".join(late) + "\n")
    validate(make_cfg(*overrides).dataset)
    with pytest.raises(DataError, match=f"row {SAMPLE_ROWS + 102}, column 'b' has value 'x'"):
        load(make_cfg(*overrides).dataset)
    short = list(rows)
    short[SAMPLE_ROWS + 200] = "1,2"
    overrides = _csv(tmp_path, "a,b,y\n" + "\n".join(short) + "\n")
    validate(make_cfg(*overrides).dataset)
    with pytest.raises(DataError, match=f"line {SAMPLE_ROWS + 202} has 2 fields"):
        load(make_cfg(*overrides).dataset)
    sorted_by_label = "a,b,y\n" + "".join(f"{0.5 * i},{i % 7},{i // SAMPLE_ROWS}\n"
                                          for i in range(n))  # fmt: skip
    validate(make_cfg(*_csv(tmp_path, sorted_by_label)).dataset)  # one class in the sample only
    assert _load(*_csv(tmp_path, sorted_by_label)).n_classes == 2


def test_a_line_with_a_quoted_newline_keeps_later_lines_numbered(tmp_path):
    text = 'a,b,y\n1,2,"a\nb"\n' + _rows(2) + "1,x,a\n"
    with pytest.raises(DataError, match="row 6, column 'b' has value 'x'"):
        validate(make_cfg(*_csv(tmp_path, text)).dataset)


def test_regexp_check_reports_a_bad_file_in_one_line_and_passes_a_good_one(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,3,0\n" + _rows())
    assert main(["check", "dataset=csv", f"dataset.path={bad}", "dataset.label=y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regexp: error: "), err
    assert f"{bad}: line 2 has 4 fields" in err[0]
    for text, label, message in [
        ("a,b,y\n" + _rows(), "nope", "dataset.label='nope': no such column"),
        ("id,a,b,y\n" + _rows(fmt="s{b},{a},{b},{y}"), "y", "dataset.drop=[id]"),
    ]:
        bad.write_text(text)
        assert main(["check", "dataset=csv", f"dataset.path={bad}", f"dataset.label={label}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("regexp: error: ") and message in err[0]
    assert main(["check", "dataset=csv", f"dataset.path={bad}", "dataset.drop=[id]",
                 "dataset.label=y"]) == 0  # fmt: skip
    assert "ok" in capsys.readouterr().out
    good = tmp_path / "bc.csv"
    shutil.copy(SKLEARN_DATA / "breast_cancer.csv", good)
    assert main(["check", "dataset=csv", f"dataset.path={good}", "dataset.label=target"]) == 0


def test_a_loader_that_fails_anyway_is_one_line(monkeypatch):
    """What the schema cannot foresee (a scikit-learn refusal) is still one line."""
    from regexp import data

    def broken(cfg):
        raise ValueError("The 'n_samples' parameter of make_blobs must be ...\nand more")

    monkeypatch.setitem(data.DATASETS, "blobs", data.Source(broken, data.Blobs, data._generated))
    with pytest.raises(DataError) as err:
        data.load(make_cfg().dataset)
    assert str(err.value) == (
        "dataset=blobs: cannot be made (The 'n_samples' parameter of make_blobs must be ...)"
    )


# --- regression -------------------------------------------------------------------------


def _indices(n, test_size=0.25, val_size=0.2, seed=0):
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed)
    train, val = train_test_split(train, test_size=val_size, random_state=seed)
    return train, val, test


@pytest.mark.parametrize("scaler_fit", ["train", "all", "none"])
def test_a_regression_target_is_a_float_column_scaled_like_the_features(scaler_fit):
    from sklearn.datasets import load_diabetes

    x, target = load_diabetes(return_X_y=True)
    train, val, test = _indices(442)
    fit = {"train": target[train], "all": target, "none": None}[scaler_fit]
    mean, std = (0.0, 1.0) if fit is None else (fit.mean(), fit.std())  # population std
    d = _load("dataset=diabetes", f"dataset.scaler_fit={scaler_fit}")
    assert d.task == "regression" and d.n_classes == 0 and d.n_outputs == 1 and not d.binary
    assert (d.n_features, len(d.x_train), len(d.x_val), len(d.x_test)) == (10, 264, 67, 111)
    for part, idx in (("train", train), ("val", val), ("test", test)):
        y = getattr(d, f"y_{part}")
        assert y.shape == (len(idx), 1) and y.dtype == np.float32
        np.testing.assert_allclose(y[:, 0], (target[idx] - mean) / std, rtol=1e-6, atol=1e-6)
    assert (d.target_mean, d.target_scale) == pytest.approx((mean, std), rel=1e-12)
    np.testing.assert_allclose(d.labels(d.y_test), target[test], rtol=1e-5)  # original units
    s = json.loads(json.dumps(d.summary()))
    assert s["task"] == "regression" and "classes" not in s and s["n_classes"] == 0
    assert s["target_scaling"] == pytest.approx({"mean": mean, "scale": std}, rel=1e-12)
    assert s["target"] == pytest.approx({"mean": target.mean(), "std": target.std(),
                                         "min": 25.0, "max": 346.0}, rel=1e-12)  # fmt: skip
    assert s["rows"] == {"total": 442, "train": 264, "val": 67, "test": 111}


def test_a_regression_dataset_logs_its_target_instead_of_classes(caplog):
    with caplog.at_level(logging.INFO, logger="regexp.data"):
        _load("dataset=diabetes")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "regression target: mean 152.1, std 77.01, range [25, 346]" in text
    assert "classes" not in text


def test_make_regression_is_scikit_learns_generator_under_the_split_seed():
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=300, n_features=20, n_informative=5, noise=20.0,
                           random_state=3)  # fmt: skip
    train, val, test = _indices(300, seed=3)
    none = ("dataset=regression", "dataset.split_seed=3", "dataset.scaler_fit=none")
    d = _load(*none)
    np.testing.assert_array_equal(d.x_train, x[train].astype("float32"))
    np.testing.assert_array_equal(d.y_val[:, 0], y[val].astype("float32"))
    np.testing.assert_array_equal(_load(*none).y_test, d.y_test)  # the same config, again
    assert not np.array_equal(_load("dataset=regression").x_train, _load(*none).x_train)
    small = _load("dataset=regression", "dataset.n_features=3", "dataset.n_informative=2",
                  "dataset.n_samples=40")  # fmt: skip
    assert small.shape == validate(make_cfg("dataset=regression", "dataset.n_features=3",
                                            "dataset.n_informative=2", "dataset.n_samples=40")
                                   .dataset)  # fmt: skip
    assert small.n_features == 3 and len(small.x_train) + len(small.x_val) == 30
    with pytest.raises(ConfigError, match="dataset.n_informative=5 is not accepted; expected "
                       "an integer from 1 to dataset.n_features=3"):  # fmt: skip
        validate(make_cfg("dataset=regression", "dataset.n_features=3").dataset)


def test_a_set_of_one_task_refuses_the_other_in_one_line(capsys):
    with pytest.raises(ConfigError, match=r"^dataset.task='regression' is not accepted; expected "
                       r"classification: dataset=iris is a classification set \(regression data: "
                       r"dataset=diabetes, regression, csv or npz\)$"):  # fmt: skip
        validate(make_cfg("dataset=iris", "dataset.task=regression").dataset)
    with pytest.raises(ConfigError, match=r"^dataset.task='classification' is not accepted; "
                       "expected regression: dataset=diabetes is a regression set$"):  # fmt: skip
        validate(make_cfg("dataset=diabetes", "dataset.task=classification").dataset)
    with pytest.raises(ConfigError, match="dataset.task='ranking' is not accepted; expected one "
                       "of classification, regression"):  # fmt: skip
        validate(make_cfg("dataset=csv", "dataset.task=ranking").dataset)
    assert main(["check", "dataset=wine", "dataset.task=regression"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset=wine is a classification set" in err[0], err


def test_a_continuous_csv_label_without_the_task_stops_regexp_check(tmp_path, capsys):
    path = tmp_path / "prices.csv"
    path.write_text("a,b,price\n" + "".join(f"{i * 0.5},{i % 7},{10 + i * 1.25}\n"
                                            for i in range(40)))  # fmt: skip
    args = ["check", "dataset=csv", f"dataset.path={path}", "dataset.label=price"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{path}: label column 'price' looks continuous" in err[0]
    assert "set dataset.task=regression" in err[0]
    assert main([*args, "dataset.task=regression"]) == 0
    d = _load(*args[1:], "dataset.task=regression", "dataset.scaler_fit=none")
    train, val, test = _indices(40)
    np.testing.assert_allclose(d.y_test[:, 0], 10 + test * 1.25)
    np.testing.assert_array_equal(d.x_val, np.c_[val * 0.5, val % 7].astype("float32"))


@pytest.mark.parametrize("cell, said", [("abc", "has 'abc'"), ("", "is empty"),
                                        ("inf", "has 'inf'")])  # fmt: skip
def test_a_regression_target_that_is_not_a_number_is_one_line(tmp_path, cell, said):
    rows = "".join(f"{i},{i % 7},{i * 0.5}\n" for i in range(40))
    overrides = (*_csv(tmp_path, f"a,b,y\n{rows}1,2,{cell}\n"), "dataset.task=regression")
    with pytest.raises(DataError) as err:
        validate(make_cfg(*overrides).dataset)
    assert str(err.value).endswith(f"row 42, label column 'y' {said}; expected a finite number "
                                   "(dataset.task=regression)")  # fmt: skip


# --- .npz files -------------------------------------------------------------------------


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return ("dataset=npz", f"dataset.path={path}")


def test_an_npz_file_of_x_and_y_is_split_like_any_dataset(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4)), np.array([3, 7])[np.arange(80) % 2]
    d = _load(*_npz(tmp_path, x=x, y=y), "dataset.scaler_fit=none")
    train, val, test = _indices(80)
    np.testing.assert_array_equal(d.x_train, x[train].astype("float32"))
    np.testing.assert_array_equal(d.labels(d.y_test), (y[test] == 7).astype(int))
    assert d.class_names == ["3", "7"] and d.input_shape == () and d.notes == []
    assert d.summary()["input_shape"] == [4]
    regression = _load(*_npz(tmp_path, x=x, y=x @ [1.0, 2, 3, 4]), "dataset.task=regression",
                       "dataset.scaler_fit=none")  # fmt: skip
    np.testing.assert_allclose(regression.y_val[:, 0], x[val] @ [1.0, 2, 3, 4], rtol=1e-6)


def test_an_npz_files_own_test_split_is_kept_and_images_are_flattened(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(50, 6, 5, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(20, 6, 5, 3), dtype=np.uint8)
    y_train, y_test = np.arange(50) % 3, np.arange(20) % 3
    overrides = _npz(tmp_path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    d = _load(*overrides, "dataset.scaler_fit=none", "dataset.test_size=0.5")
    np.testing.assert_array_equal(d.x_test, x_test.reshape(20, 90).astype("float32"))  # in order
    np.testing.assert_array_equal(d.labels(d.y_test), y_test)
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(np.arange(50), test_size=0.2, random_state=0)
    np.testing.assert_array_equal(d.x_val, x_train.reshape(50, 90)[val].astype("float32"))
    np.testing.assert_array_equal(d.x_train, x_train.reshape(50, 90)[train].astype("float32"))
    s = d.summary()
    assert s["input_shape"] == [6, 5, 3] and s["n_features"] == 90 and d.input_shape == (6, 5, 3)
    assert s["rows"] == {"total": 70, "train": 40, "val": 10, "test": 20}
    assert "dataset.test_size is not used" in s["notes"][0]
    assert validate(make_cfg(*overrides).dataset) == d.shape
    grey = _npz(tmp_path, "grey.npz", x=x_test[..., 0], y=y_test)
    assert _load(*grey).input_shape == (6, 5)


GOOD_X, GOOD_Y = np.arange(120.0).reshape(40, 3), np.arange(40) % 2
NAN_X = GOOD_X.copy()
NAN_X[7, 1] = np.nan

# (arrays of the file, or text/bytes for a file that is not an .npz, extra overrides, message)
BAD_NPZ = [
    ("hello", (), "data.npz: not an .npz file (not a zip archive); expected numpy.savez's"),
    ({"a": GOOD_X, "b": GOOD_Y}, (), "data.npz: has arrays a, b; expected arrays x and y, or "
     "x_train, y_train, x_test and y_test"),
    ({"x_train": GOOD_X, "y_train": GOOD_Y}, (), "has arrays x_train, y_train; expected arrays"),
    ({"x": GOOD_X, "y": GOOD_Y, "x_train": GOOD_X, "y_train": GOOD_Y, "x_test": GOOD_X,
      "y_test": GOOD_Y}, (), "has both x, y and x_train, y_train, x_test, y_test"),
    ({"x": GOOD_X, "y": GOOD_Y[:39]}, (), "x has 40 rows but y has 39; expected one label per"),
    ({"x_train": GOOD_X, "y_train": GOOD_Y, "x_test": GOOD_X[:, :2], "y_test": GOOD_Y}, (),
     "x_train's rows have shape (3,) but x_test's (2,)"),
    ({"x": GOOD_X.astype(str), "y": GOOD_Y}, (), "array 'x' holds <U32 values; expected numbers"),
    ({"x": GOOD_X, "y": np.array(["a", "b"] * 20)}, (), "array 'y' holds <U1 values"),
    ({"x": NAN_X, "y": GOOD_Y}, (), "x[7] holds NaN or infinity; expected finite numbers"),
    ({"x": GOOD_X, "y": np.where(GOOD_Y, np.nan, 1)}, (), "y[1] is nan; expected a finite number"),
    ({"x": GOOD_X[:, 0], "y": GOOD_Y}, (), "array 'x' has shape (40,); expected [rows, features]"),
    ({"x": GOOD_X, "y": np.eye(2)[GOOD_Y]}, (), "array 'y' has shape (40, 2); expected one label"),
    ({"x": GOOD_X, "y": GOOD_Y * 0.5}, (), "labels y look continuous (row 1 has 0.5, not a class "
     "code); set dataset.task=regression for a regression target"),
    ({"x": GOOD_X, "y": np.arange(40)}, (), "labels y look continuous (40 distinct numbers"),
    ({"x": GOOD_X, "y": GOOD_Y * 0}, (), "labels y have a single class (0); need at least 2"),
    ({"x": GOOD_X, "y": GOOD_Y}, ("dataset.task=ranking",), "dataset.task='ranking' is not"),
]  # fmt: skip


@pytest.mark.parametrize("content, extra, message", BAD_NPZ, ids=[c[2][:40] for c in BAD_NPZ])
def test_each_bad_npz_file_is_one_line_naming_the_file(tmp_path, content, extra, message):
    path = tmp_path / "data.npz"
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.savez(path, **content)
    with pytest.raises((DataError, ConfigError)) as found:
        validate(make_cfg("dataset=npz", f"dataset.path={path}", *extra).dataset)
    assert message in str(found.value) and "\n" not in str(found.value)
    if found.type is DataError:
        assert str(found.value).startswith(str(path))


def test_an_npz_path_that_is_no_file_or_a_single_array_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="dataset.path=None is not accepted; expected an "
                       "existing .npz file"):  # fmt: skip
        validate(make_cfg("dataset=npz").dataset)
    np.save(tmp_path / "x.npy", GOOD_X)
    with pytest.raises(DataError, match=r"x.npy: a single .npy array, not an .npz file; save the "
                       r"features and labels together: numpy.savez\(path, x=x, y=y\)"):  # fmt: skip
        validate(make_cfg("dataset=npz", f"dataset.path={tmp_path / 'x.npy'}").dataset)


def test_validate_reads_an_npz_files_headers_labels_and_first_rows(tmp_path):
    x = np.arange(2.0 * (SAMPLE_ROWS + 50)).reshape(-1, 2)
    x[SAMPLE_ROWS + 10, 0] = np.inf
    overrides = _npz(tmp_path, x=x, y=np.arange(len(x)) % 2)
    assert validate(make_cfg(*overrides).dataset).features == 2  # the sample is finite
    with pytest.raises(DataError, match=rf"x\[{SAMPLE_ROWS + 10}\] holds NaN or infinity"):
        load(make_cfg(*overrides).dataset)


# --- Keras' image sets, from a temporary Keras cache --------------------------------------


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras home (KERAS_HOME, as Keras reads it)."""
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _keras(name, *extra):
    return _load("dataset=keras_datasets", f"dataset.name={name}", "dataset.val_size=0",
                 "dataset.scaler_fit=none", *extra)  # fmt: skip


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_keras_sets_are_read_from_keras_own_cache_files(keras_home, name):
    from tests import datafiles

    written = datafiles.write_keras_cache(keras_home)[name]
    d = _keras(name)
    image = (28, 28) if name != "cifar10" else (32, 32, 3)
    for part in ("train", "test"):
        x = written[f"x_{part}"]
        if name == "cifar10":  # the files hold red, green, blue planes; Keras gives channels last
            x = x.transpose(0, 2, 3, 1)
        expected = x.reshape(len(x), -1).astype("float32") / 255
        got, labels = getattr(d, f"x_{part}"), d.labels(getattr(d, f"y_{part}"))
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(labels, written[f"y_{part}"])
    s = d.summary()
    assert d.input_shape == image and s["input_shape"] == list(image)
    assert s["n_features"] == int(np.prod(image)) and d.n_classes == 10
    assert len(s["classes"]) == 10 and all(n == 6 for n in s["classes"].values())
    assert validate(make_cfg("dataset=keras_datasets", f"dataset.name={name}").dataset) == \
        _load("dataset=keras_datasets", f"dataset.name={name}").shape  # fmt: skip


@pytest.mark.parametrize("where", ["cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive",
                                   "keras 3's folder"])  # fmt: skip
def test_cifar10_is_read_from_the_archive_or_keras_3s_folder(keras_home, where):
    from tests import datafiles

    cache = keras_home / "datasets"
    if where.startswith("keras"):
        written = datafiles.write_cifar10(cache / "cifar-10-batches-py-target")
    else:
        written = datafiles.write_cifar10(cache, archive=where)
    d = _keras("cifar10")
    x = written["x_test"].transpose(0, 2, 3, 1).reshape(20, -1)
    np.testing.assert_array_equal(d.x_test, x.astype("float32") / 255)
    assert d.summary()["classes"]["truck"] == 6 and d.class_names[0] == "airplane"


@pytest.mark.parametrize(
    "name, remove, message",
    [
        ("mnist", "mnist.npz", "dataset.name=mnist: mnist.npz is not in Keras' cache; put it in "
         "{cache} (from https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz); "
         "regexp does not download (no network)"),
        ("fashion_mnist", "fashion-mnist/t10k-labels-idx1-ubyte.gz", "dataset.name=fashion_mnist: "
         "t10k-labels-idx1-ubyte.gz is not in Keras' cache; put it in {cache}/fashion-mnist"),
        ("cifar10", "cifar-10-batches-py", "dataset.name=cifar10: cifar-10-python.tar.gz (or its "
         "folder cifar-10-batches-py/) is not in Keras' cache; put it in {cache} (from https://"),
        ("cifar10", "cifar-10-batches-py/test_batch", "dataset.name=cifar10: test_batch is missing "
         "from {cache}/cifar-10-batches-py; put the whole cifar-10-batches-py/ folder"),
    ],
)  # fmt: skip
def test_a_file_missing_from_keras_cache_is_one_line_naming_it_and_the_folder(
    keras_home, capsys, name, remove, message
):
    from tests import datafiles

    cache = keras_home / "datasets"
    datafiles.write_keras_cache(keras_home)
    target = cache / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    args = ["check", "dataset=keras_datasets", f"dataset.name={name}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(cache=cache) in err[0], err


def test_validating_a_keras_set_does_not_import_tensorflow(keras_home):
    import os
    import subprocess
    import sys

    from tests import datafiles

    datafiles.write_keras_cache(keras_home)
    code = ("import sys; from regexp.compose import compose; from regexp.config import validate\n"
            "for name in ('mnist', 'fashion_mnist', 'cifar10'):\n"
            "    print(validate(compose('dataset=keras_datasets', f'dataset.name={name}')).shape)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")  # fmt: skip
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root, "KERAS_HOME": str(keras_home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("Shape(train=32, val=8, test=20") == 3


def test_a_damaged_keras_file_is_one_line(keras_home):
    from tests import datafiles

    cache = keras_home / "datasets"
    datafiles.write_keras_cache(keras_home)
    (cache / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR-10 batch"):
        validate(make_cfg("dataset=keras_datasets", "dataset.name=cifar10").dataset)
    (cache / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x" * 20))
    with pytest.raises(DataError, match="not an IDX file of images"):
        validate(make_cfg("dataset=keras_datasets", "dataset.name=fashion_mnist").dataset)


# --- subsets ----------------------------------------------------------------------------


def test_a_subsample_is_stratified_by_class_and_sized_as_validate_says():
    from sklearn.datasets import load_digits

    target = load_digits().target
    share = np.bincount(target) / len(target)
    for sub, rows in (("300", 300), ("0.5", 898)):  # floor(0.5 * 1797)
        cfg = make_cfg("dataset=digits", f"dataset.subsample={sub}")
        d = load(cfg.dataset)
        assert d.shape == validate(cfg.dataset) and d.summary()["rows"]["total"] == rows
        counts = np.array(list(d.summary()["classes"].values()))
        assert np.abs(counts - rows * share).max() <= 1  # within one row of the proportions
    first, again = (_load("dataset=digits", "dataset.subsample=300") for _ in range(2))
    np.testing.assert_array_equal(first.x_test, again.x_test)  # deterministic
    other = _load("dataset=digits", "dataset.subsample=300", "dataset.split_seed=1")
    assert not np.array_equal(first.x_test, other.x_test)


def test_a_regression_subsample_is_a_plain_random_subset():
    from sklearn.model_selection import train_test_split

    d = _load("dataset=diabetes", "dataset.subsample=100", "dataset.scaler_fit=none",
              "dataset.val_size=0")  # fmt: skip
    keep = np.sort(train_test_split(np.arange(442), train_size=100, random_state=0)[0])
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    train, test = train_test_split(np.arange(100), test_size=0.25, random_state=0)
    np.testing.assert_array_equal(d.x_test, x[keep][test].astype("float32"))
    np.testing.assert_allclose(d.labels(d.y_train), y[keep][train])


def test_a_subsample_of_a_set_with_its_own_test_split_cuts_both_parts(keras_home):
    from tests import datafiles

    datafiles.write_keras_cache(keras_home)  # 40 train and 20 test images, 10 classes
    cfg = make_cfg("dataset=keras_datasets", "dataset.subsample=30", "dataset.val_size=0")
    d = load(cfg.dataset)
    assert (len(d.x_train), len(d.x_test)) == (20, 10) and d.shape == validate(cfg.dataset)
    assert set(np.bincount(d.labels(d.y_train))) == {2} and set(
        np.bincount(d.labels(d.y_test))
    ) == {1}
    cfg = make_cfg("dataset=keras_datasets", "dataset.subsample=0.5", "dataset.name=cifar10")
    assert load(cfg.dataset).shape == validate(cfg.dataset)


@pytest.mark.parametrize("name, value, accepted", [
    ("digits", "5", "a row count >= 10, or a fraction in (0, 1)"),
    ("digits", "1.0", "a row count >= 10, or a fraction in (0, 1)"),
    ("digits", "true", "a row count >= 10, or a fraction in (0, 1)"),
    ("digits", "2000", "at most 1797 rows (the data has 1797), or a fraction"),
    ("digits", "0.004", "a subset of at least 10 rows (it keeps 7 of 1797)"),
    ("iris", "148", "a subset that keeps and leaves out at least 3 rows of each part, one per "
     "class (it keeps 148 of 150)"),
])  # fmt: skip
def test_a_subsample_that_cannot_be_taken_is_one_line(name, value, accepted):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(f"dataset={name}", f"dataset.subsample={value}").dataset)
    assert err.value.key == "dataset.subsample" and accepted in str(err.value)


# --- how the split is drawn: dataset.stratify ------------------------------------------


def _stratified(y, test_size=0.25, val_size=0.2, seed=0):
    """The split ``dataset.stratify=true`` states, drawn here independently."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    train, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=y)
    train, val = train_test_split(train, test_size=val_size, random_state=seed, stratify=y[train])
    return train, val, test


def _counts(d, classes):
    return [np.bincount(d.labels(t), minlength=classes).tolist()
            for t in (d.y_train, d.y_val, d.y_test)]  # fmt: skip


def test_an_unstratified_split_is_train_test_split_without_stratify_as_before():
    from omegaconf import open_dict
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    for seed in (0, 3):
        cfg = make_cfg("dataset=wine", "dataset.scaler_fit=none", f"dataset.split_seed={seed}")
        assert cfg.dataset.stratify is False  # shipped as false
        d = load(cfg.dataset)
        for got, rows in zip((d.x_train, d.x_val, d.x_test), _indices(178, seed=seed),
                             strict=True):  # fmt: skip
            np.testing.assert_array_equal(got, x[rows].astype("float32"))
        with open_dict(cfg):
            del cfg.dataset.stratify  # a config written before the key: the same split
        np.testing.assert_array_equal(load(cfg.dataset).x_val, d.x_val)
        assert d.summary()["split"] == {
            "order": "test first, then validation from the rest", "seed": seed,
            "stratify": False, "test_size": 0.25, "val_size": 0.2,
        }  # fmt: skip
    assert _counts(_load("dataset=wine"), 3) != _counts(
        _load("dataset=wine", "dataset.stratify=true"), 3
    )


def test_a_stratified_split_keeps_the_counts_of_train_test_split_with_stratify():
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    differ = []
    for seed in range(4):
        d = _load("dataset=wine", "dataset.scaler_fit=none", "dataset.stratify=true",
                  f"dataset.split_seed={seed}")  # fmt: skip
        parts = _stratified(y, seed=seed)
        assert _counts(d, 3) == [np.bincount(y[p], minlength=3).tolist() for p in parts]
        for got, rows in zip((d.x_train, d.x_val, d.x_test), parts, strict=True):
            np.testing.assert_array_equal(got, x[rows].astype("float32"))
        plain = [np.bincount(y[p], minlength=3).tolist() for p in _indices(178, seed=seed)]
        differ.append(plain != _counts(d, 3))
        assert d.summary()["split"]["stratify"] is True
    assert any(differ)  # the key changes the split it states


def test_a_stratified_split_of_a_files_own_test_part_cuts_validation_only(tmp_path):
    rng = np.random.default_rng(2)
    x_train, x_test = rng.normal(size=(60, 3)), rng.normal(size=(20, 3))
    y_train, y_test = np.r_[np.zeros(45, int), np.ones(15, int)], np.arange(20) % 2
    overrides = (*_npz(tmp_path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test),
                 "dataset.scaler_fit=none", "dataset.stratify=true")  # fmt: skip
    d = _load(*overrides)
    np.testing.assert_array_equal(d.x_test, x_test.astype("float32"))  # kept, in order
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(np.arange(60), test_size=0.2, random_state=0, stratify=y_train)
    np.testing.assert_array_equal(d.x_val, x_train[val].astype("float32"))
    assert np.bincount(d.labels(d.y_val)).tolist() == [9, 3]  # 45:15 kept
    assert d.summary()["split"] == {
        "order": "the source's own test part, then validation from its training part",
        "seed": 0, "stratify": True, "test_size": None, "val_size": 0.2,
    }  # fmt: skip


def test_stratify_on_a_regression_task_stops_regexp_check_in_one_line(capsys):
    said = (
        "dataset.stratify=True is not accepted; expected false for a regression task "
        "(stratified splits keep each class's share; a continuous target has no classes)"
    )
    for name in ("diabetes", "regression"):
        assert main(["check", f"dataset={name}", "dataset.stratify=true"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
        assert main(["check", f"dataset={name}", "dataset.stratify=false"]) == 0
    with pytest.raises(ConfigError, match=r"^dataset.stratify='yes' is not accepted; expected "
                       "true or false$"):  # fmt: skip
        validate(make_cfg("dataset=iris", "dataset.stratify=yes").dataset)
    with pytest.raises(ConfigError) as err:  # load refuses it too, should validate be skipped
        load(make_cfg("dataset=diabetes", "dataset.stratify=true").dataset)
    assert str(err.value) == said


def test_a_class_too_small_to_stratify_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^dataset.stratify=True is not accepted; expected "
                       r"false, or sizes that give each of the 3 classes a row on both sides "
                       r"of the test split \(test 2 rows, the rest 148\)$"):  # fmt: skip
        validate(
            make_cfg("dataset=iris", "dataset.stratify=true", "dataset.test_size=0.01").dataset
        )
    x, y = np.arange(80.0).reshape(40, 2), np.r_[np.zeros(39, int), 1]  # class 1: one row
    overrides = (*_npz(tmp_path, x=x, y=y), "dataset.stratify=true")
    validate(make_cfg(*overrides).dataset)  # the counts per class are not known before
    with pytest.raises(DataError) as err:
        _load(*overrides)
    message = str(err.value)
    assert (
        "\n" not in message
        and message.startswith(
            "dataset.stratify=true: no stratified test split (The least populated class"
        )
        and message.endswith("expected at least 2 rows of each class, or dataset.stratify=false")
    )
    assert len(_load(*_npz(tmp_path, x=x, y=y)).x_test) == 10  # unstratified, it splits


def test_stratify_false_hashes_as_a_config_without_it_and_true_does_not():
    from omegaconf import open_dict

    from regexp.rundir import config_hash

    cfg = make_cfg("dataset=iris")
    older = cfg.copy()
    with open_dict(older):
        del older.dataset.stratify
    assert config_hash(cfg) == config_hash(older)
    assert config_hash(make_cfg("dataset=iris", "dataset.stratify=true")) != config_hash(cfg)


def test_the_memory_estimate_gives_a_regression_model_one_output():
    from regexp.config import memory_needed
    from regexp.data import Shape
    from regexp.plan import layer_plan

    cfg = make_cfg("dataset=diabetes")  # model mlp: 5 hidden layers of 32
    plans = layer_plan(cfg)
    weights = next(k for k in memory_needed(cfg, validate(cfg.dataset), plans) if "weights" in k)

    def params(classes):
        return memory_needed(cfg, Shape(264, 67, 111, 10, classes), plans)[weights] // (4 * 8)

    by_hand = (10 * 32 + 32) + 4 * (32 * 32 + 32) + (32 * 1 + 1)
    assert validate(cfg.dataset).classes == 0 and Shape(1, 1, 1, 10, 0).outputs == 1
    assert params(0) == params(2) == by_hand and params(10) == by_hand + 9 * 33
