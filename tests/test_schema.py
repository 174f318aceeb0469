"""The typed schemas cover every key of every shipped config group: each shipped option
validates as it is, and every one of its keys refuses a value of the wrong type or out
of range, naming that key. The data's shape known from the config (without loading)
is the shape of the data the loaders really give."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from omegaconf import OmegaConf

from regexp import arrays, data
from regexp.config import validate
from regexp.errors import ConfigError
from regexp.keys import flatten
from regexp.paths import CONF
from regexp.plan import Reg
from tests import datafiles
from tests.conftest import make_cfg

GROUPS = ("dataset", "model", "reg", "optimizer", "trainer", "tracking")
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((CONF / group).glob("*.yaml"))
    if (group, path.stem) != ("dataset", "csv")  # its keys need a file: tests/test_data.py
]
# wrong in type or range for every key: a word, a mapping, a negative fraction, a list
WRONG = ("oops/no", {"wrong": 1}, -1.5, [1, "x"])


def _set(node: dict, dotted: str, value) -> None:
    """Set a dotted key in place (``reg.layers.1...`` has the integer key 1)."""
    *path, last = dotted.split(".")
    for part in path:
        node = node[part if part in node else int(part)]
    node[last if last in node else int(last)] = value


def _files(option: str, tmp_path, monkeypatch) -> tuple[str, ...]:
    """The files a dataset option reads, written in ``tmp_path``: its extra overrides."""
    if option == "npz":
        rng = np.random.default_rng(0)
        path = tmp_path / "data.npz"
        np.savez(path, x_train=rng.integers(0, 256, (50, 4, 3), dtype=np.uint8),
                 y_train=np.arange(50) % 3, x_test=rng.normal(size=(20, 4, 3)),
                 y_test=np.arange(20) % 3)  # fmt: skip
        return (f"dataset.path={path}",)
    if option == "keras_datasets" or option in arrays.KERAS_SETS:
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        datafiles.write_keras_cache(tmp_path / "keras")
    return ()


def _compose(group: str, option: str, *extra: str):
    return make_cfg(f"+{group}={option}" if group == "tracking" else f"{group}={option}", *extra)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_key_of_every_shipped_option_has_a_type_and_a_range(
    group, option, tmp_path, monkeypatch
):
    cfg = _compose(group, option, *_files(option, tmp_path, monkeypatch))
    validate(cfg)  # as shipped, it is accepted
    keys = list(flatten(OmegaConf.to_container(cfg[group])))
    assert keys
    reg_own = set(Reg.model_fields)
    for key in keys:
        full = f"{group}.{key}"
        refused = []
        for wrong in WRONG:
            bad = OmegaConf.to_container(cfg)
            _set(bad, full, copy.deepcopy(wrong))
            try:
                validate(OmegaConf.create(bad))
            except ConfigError as e:
                refused.append(e.key)
        assert refused, f"{full}: every wrong value is accepted"
        if group == "reg" and key.split(".")[0] not in reg_own:
            # a reg file's own variable is checked where its specs interpolate it
            assert all(k.startswith("reg.") for k in refused), (full, refused)
        else:
            named = [k.split("[")[0] == full or k.startswith(f"{full}.") for k in refused]
            assert all(named), (full, refused)


SHAPES = [(name, ()) for name in sorted(set(data.DATASETS) - {"csv"})] + [
    ("digits", ("dataset.subsample=300",)),
    ("iris", ("dataset.subsample=0.5", "dataset.val_size=0")),
    ("diabetes", ("dataset.subsample=0.3",)),
    ("regression", ("dataset.subsample=50",)),
    ("npz", ("dataset.subsample=0.5", "dataset.val_size=0")),
    ("mnist", ("dataset.subsample=30",)),
    ("cifar10", ("dataset.subsample=0.5", "dataset.val_size=0.5")),
]


@pytest.mark.parametrize("name, extra", SHAPES, ids=[" ".join((n, *e)) for n, e in SHAPES])
def test_the_shape_known_without_loading_is_the_loaded_shape(name, extra, tmp_path, monkeypatch):
    files = _files(name, tmp_path, monkeypatch)
    option = f"dataset=keras_datasets dataset.name={name}" if name in arrays.KERAS_SETS else (
        f"dataset={name}")  # fmt: skip
    cfg = make_cfg(*option.split(), *files, *extra)
    assert validate(cfg).shape == data.load(cfg.dataset).shape


@pytest.mark.parametrize("val_size", [0.0, 0.2])
def test_a_csv_files_shape_comes_from_its_sample(tmp_path, val_size):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,y\n" + "".join(f"{i},{i % 5},{i % 3},{i % 3}\n" for i in range(60)))
    overrides = ("dataset=csv", f"dataset.path={path}", "dataset.label=y")
    cfg = make_cfg(*overrides, f"dataset.val_size={val_size}")
    assert validate(cfg).shape == data.load(cfg.dataset).shape


def test_strings_are_not_read_as_booleans_or_numbers():
    """`trainer.shuffle=no` used to pass and shuffle: a typed key takes no guesses."""
    for override, key in [
        ("trainer.shuffle=no", "trainer.shuffle"),
        ("trainer.shuffle='false'", "trainer.shuffle"),
        ("trainer.epochs='5'", "trainer.epochs"),
        ("reg.lam='0.1'", "reg.lam"),
    ]:
        with pytest.raises(ConfigError) as err:
            validate(make_cfg(override))
        assert err.value.key == key
