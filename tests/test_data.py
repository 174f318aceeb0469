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


def test_the_issue_regression_target_is_refused_as_continuous(tmp_path):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame  # 442 rows, 214 distinct integer targets
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    overrides = ("dataset=csv", f"dataset.path={tmp_path / 'diabetes.csv'}",
                 "dataset.label=target")  # fmt: skip
    message = (r"label column 'target' looks continuous \(214 distinct numbers among 442 rows.*"
               r"only classification is supported")  # fmt: skip
    with pytest.raises(DataError, match=message):
        validate(make_cfg(*overrides).dataset)
    frame["target"] = frame["target"] / 10  # a fractional target: found in a sample too
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    with pytest.raises(DataError, match=r"looks continuous \(row 2 has '15.1'"):
        validate(make_cfg(*overrides).dataset)


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
     "only classification is supported"),
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
