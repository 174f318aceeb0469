"""Saved models: what a completed run keeps of its model, and what can be done with it.

A completed run writes, before ``metrics.json`` and each atomically:

- ``model.keras``: the final model, whose weights gave the run's final metrics: a plain,
  uncompiled Keras model (layers, weights and the regularizers on its layers; no
  optimizer state). A fused member is saved as the ordinary model it would have been
  trained as alone.
- ``model_best.keras``: with early stopping (``trainer=early_stopping``), the weights of
  the best epoch (``best_epoch`` in ``metrics.json``), whether or not ``restore_best``
  ended training with them.
- ``preprocess.json``: how raw feature columns become the model's inputs, as
  ``regexp.data`` made them: ``x = (raw / pixels - mean) / scale`` (no ``pixels`` but for
  8-bit images; no scaling with ``dataset.scaler_fit=none``), the features in
  ``features`` order; the class of each output (``classes``) or the target's scaling
  (``target = y * scale + mean``).

``load_model(run, best=False)`` reloads one (regexp's layers and regularizers registered,
and a user's regularizer classes named by ``_target_`` in the run's ``config.yaml``
imported first). ``regexp predict`` applies a saved model to a CSV file of raw features;
``regexp eval`` measures it again on its own data, or with ``dataset.*`` overrides, by
the same NumPy formulas as the run's final metrics (``evaluate``).

Importing this module imports neither TensorFlow nor scikit-learn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from regexp import rundir, tasks
from regexp.errors import ConfigError, UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from regexp.data import Dataset
    from regexp.training import Job

SPLITS = ("train", "val", "test")


# --- the final numbers ---------------------------------------------------------------


def evaluate(
    model, data: Dataset, penalties: Sequence = (), probe: Callable | None = None
) -> dict[str, dict[str, Any]]:
    """Per split, the numbers of ``metrics.json``: the task's scores in NumPy from the
    model's outputs (``Task.final``: accuracy and data loss; or R², MAE and data loss),
    ``penalty`` (``model.total_penalty``: the split as one batch), ``total_loss`` = data
    loss + penalty, and ``n``. ``penalties`` are ``reg.mode=loss``'s (variable,
    regularizer) pairs. With ``data.val_is_test`` the test split's numbers are the
    validation split's: the same rows, so the same numbers, computed once.

    ``probe`` (a ``model.Probe``) calls the model on the test split's rows in its stead,
    keeping the hidden layers' outputs of that call."""
    from regexp.model import penalty_after_call

    task = tasks.of(data)
    final: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        if split == "test" and data.val_is_test:
            final[split] = dict(final["val"])
            continue
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        test_rows = split == "test" or (split == "val" and data.val_is_test)
        call = probe if probe is not None and test_rows else model
        scores = task.final(y, np.asarray(call(x, training=False)))
        penalty = penalty_after_call(model, list(penalties))  # on x, as one batch
        final[split] = {**scores, "penalty": penalty,
                        "total_loss": scores["data_loss"] + penalty, "n": len(x)}  # fmt: skip
    return final


# --- saving ----------------------------------------------------------------------------


def preprocessing(data: Dataset, cfg: DictConfig) -> dict[str, Any]:
    """``preprocess.json``: what turns a row of raw features into the model's input, and
    its outputs into a prediction."""
    task = tasks.of(data)
    n = data.n_features
    record: dict[str, Any] = {
        "dataset": data.name,
        "task": data.task,
        "output": task.name,  # binary: P(classes[1]); multiclass: P(each class); regression
        "features": data.feature_names or [f"x{i + 1}" for i in range(n)],
        "other_columns": list(data.other_columns),  # a CSV file's label, dropped columns, ...
        "sep": str(cfg.dataset.get("sep", ",")) if data.name == "csv" else ",",
        "input_shape": list(data.input_shape or (n,)),
        "pixels": data.pixels,
        "scaler": None
        if data.scaler_mean is None
        else {
            "fit": str(cfg.dataset.scaler_fit),
            "mean": [float(v) for v in data.scaler_mean],
            "scale": [float(v) for v in data.scaler_scale],
        },
        "label": data.label,
    }
    if data.regression:
        record["target_scaling"] = {"mean": data.target_mean, "scale": data.target_scale}
    else:
        record["classes"] = data.class_names or [str(i) for i in range(data.n_classes)]
    return record


def save(job: Job, run_dir: Path) -> None:
    """Write ``model.keras``, ``model_best.keras`` (with early stopping) and
    ``preprocess.json`` into ``run_dir``, each atomically. The saved model is the job's
    own layers as an uncompiled model: its weights now are the final ones."""
    import shutil

    import keras

    model = job.model
    # the same layers, uncompiled
    plain = keras.Model(model.input, model.output, name=model.name) if model.compiled else model
    final = run_dir / rundir.MODEL
    rundir.write_atomic(final, plain.save)
    _keep_skipsets()
    if job.best_epoch is not None and job.best_weights is not None:
        last = model.get_weights()
        if all(np.array_equal(a, b) for a, b in zip(last, job.best_weights, strict=True)):
            # restore_best, or the last epoch was the best: the same model, copied
            rundir.write_atomic(run_dir / rundir.MODEL_BEST,
                                lambda tmp: shutil.copyfile(final, tmp))  # fmt: skip
        else:
            model.set_weights(job.best_weights)
            try:
                rundir.write_atomic(run_dir / rundir.MODEL_BEST, plain.save)
            finally:
                model.set_weights(last)
    rundir.write_json_atomic(run_dir / rundir.PREPROCESS, preprocessing(job.data, job.cfg))


def _keep_skipsets() -> None:
    """Keras (3.15) keeps the attribute skipsets it works out when saving under
    ``saving_attr_skipset_<type>`` but looks for them under ``saving_attr_skiplist_<type>``
    (``keras.src.saving.saving_lib.get_attr_skipset``), so every save builds reference
    layers to work them out again: 7 of a model's 12 ms. Put those it has worked out
    where it looks: the same sets, so the same files."""
    from keras.src.backend.common import global_state

    for kind in ("Operation", "Layer", "Functional", "Sequential"):
        found = global_state.get_global_attribute(f"saving_attr_skipset_{kind}")
        if found is not None:
            global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", found)


# --- loading ---------------------------------------------------------------------------


def _targets(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every ``_target_`` of a config, with its key: (``reg.hidden.kernel``, path)."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        found = [(key, str(node["_target_"]))] if "_target_" in node else []
        for k in node:
            found += _targets(node._get_node(k), f"{key}.{k}" if key else str(k))
        return found
    if isinstance(node, ListConfig):
        return [t for i, v in enumerate(node._iter_ex(resolve=False))
                for t in _targets(v, f"{key}.{i}")]  # fmt: skip
    return []


def custom_objects(run: Path | None = None) -> dict[str, Any]:
    """Register regexp's own Keras objects (its noise and dropout layer, its built-in
    penalties, L3 and KL sparsity) and return a user's regularizer classes that the run's
    ``config.yaml`` names by ``_target_``, by the name Keras saved them under; imports
    Keras. ``keras.saving.load_model(path, custom_objects=custom_objects(run))`` then
    loads a run's model."""
    import importlib

    from regexp.backend import import_keras

    cfg = None if run is None else rundir.read_config(run)
    if "tensorflow" in sys.modules:  # its thread pools are set already: keep them
        import keras
    else:  # quietly, with the run's threads
        keras = import_keras(int(cfg.trainer.get("threads", 0)) if cfg is not None else 0)
    import regexp.custom_regularizers  # noqa: F401  (registers L3 and KLSparsity)
    from regexp.layers import random_layer
    from regexp.regularizers import _penalty_class

    random_layer(), _penalty_class()
    if cfg is None:
        return {}
    found: dict[str, Any] = {}
    for key, target in _targets(cfg.reg):
        module, _, name = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise UserError(
                f"{Path(run) / rundir.CONFIG}: reg.{key}._target_={target!r} cannot be imported "
                f"({e}); make its module importable (PYTHONPATH) to load this model"
            ) from None
        found[keras.saving.get_registered_name(cls)] = cls
    return found


def model_path(run: Path, best: bool = False) -> Path:
    """The saved model of a run folder; a ``UserError`` saying why there is none."""
    run = Path(run)
    name = rundir.MODEL_BEST if best else rundir.MODEL
    path = run / name
    if path.is_file():
        return path
    if not rundir.is_run(run):
        raise UserError(f"{run}: not a run folder (no {rundir.CONFIG}); expected a run's folder")
    status = rundir.status(run)
    if best and (run / rundir.MODEL).is_file():
        raise UserError(
            f"{run} has no {name}: only runs with early stopping (trainer=early_stopping) "
            f"save the best epoch's model; {rundir.MODEL} is its final model"
        )
    if status != "completed":
        said = "it never finished" if status is None else f"its status is {status!r}"
        raise UserError(f"{run} has no {name}: {said}, and only completed runs save a model")
    raise UserError(
        f"{run} has no {name} (it was run before regexp saved models, or saving failed)"
    )


def load_model(run: str | Path, best: bool = False):
    """The Keras model a run saved: its final model (``model.keras``), or with
    ``best=True`` its best epoch's under early stopping (``model_best.keras``). Imports
    TensorFlow, and the user's regularizer modules the run's config names."""
    path = model_path(Path(run), best)
    objects = custom_objects(Path(run))  # imports TensorFlow, with the run's threads
    import keras

    try:
        return keras.saving.load_model(path, custom_objects=objects, compile=False)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # cut short, overwritten
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"{path}: cannot load it as a Keras model (damaged or cut short: {reason}); "
            "`regexp verify` trains the run again"
        ) from None


def read_preprocessing(run: Path) -> dict[str, Any]:
    path = Path(run) / rundir.PREPROCESS
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        model_path(Path(run))  # the reason there is no model, if that is it
        raise UserError(f"{path}: cannot read it ({e})") from None
    if not isinstance(record, dict):
        record = {}
    scaled = "target_scaling" if record.get("task") == "regression" else "classes"
    needed = ["features", "task", scaled]
    lacking = [k for k in needed if k not in record]
    if lacking:
        raise UserError(f"{path}: damaged: it lacks {lacking[0]!r} (a run writes "
                        f"{', '.join(needed)})")  # fmt: skip
    return record


def transform(raw: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """Raw features [n, features] (float64) as the model's inputs (float32), as
    ``regexp.data`` made them: divided by ``pixels``, then scaled as scikit-learn's
    ``StandardScaler.transform`` does, ``x -= mean; x /= scale``."""
    x = raw.astype(np.float64)
    if record.get("pixels"):
        x = raw.astype(np.float32) / np.float32(record["pixels"])
    scaler = record.get("scaler")
    if scaler:
        x = x.copy()
        x -= np.asarray(scaler["mean"], dtype=np.float64)
        x /= np.asarray(scaler["scale"], dtype=np.float64)
    return x.astype(np.float32)


# --- regexp predict --------------------------------------------------------------------


def _open_text(path: Path):
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def read_features(path: Path, record: dict[str, Any]) -> np.ndarray:
    """The recorded feature columns of a CSV file with a header line, as float64 [n,
    features]. A missing column, a column that is neither a feature nor one of the
    training file's other columns, or a cell that is not a finite number: one line."""
    import csv

    features, others = record["features"], set(record.get("other_columns") or [])
    accepted = f"the features {', '.join(features)}" + (
        f" (and, ignored, {', '.join(sorted(others))})" if others else ""
    )
    sep = record.get("sep", ",")
    rows: list[list[str]] = []
    try:
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter=sep, skipinitialspace=True, strict=True)
            head = None
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if head is None:
                    head, lines = [c.strip() for c in row], []
                    continue
                if len(row) != len(head):
                    raise UserError(
                        f"{path}: line {reader.line_num} has {len(row)} fields but the header "
                        f"has {len(head)}; expected one field per column"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except OSError as e:
        raise UserError(f"--data {path}: cannot be read ({e.strerror or e})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"--data {path}: not CSV text ({e}); expected a UTF-8 CSV file") from None
    if head is None:
        raise UserError(f"--data {path}: the file is empty; expected a header naming {accepted}")
    missing = [c for c in features if c not in head]
    if missing:
        raise UserError(f"{path}: no column {missing[0]!r}; expected {accepted}")
    extra = [c for c in head if c not in features and c not in others]
    if extra:
        raise UserError(f"{path}: column {extra[0]!r} is not a feature of the model; "
                        f"expected {accepted}")  # fmt: skip
    index = [head.index(c) for c in features]
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, k in enumerate(index):
            cell = row[k].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise UserError(f"{path}: line {lines[i]}, column {features[j]!r} has {cell!r}; "
                                "expected a finite number")  # fmt: skip
            x[i, j] = value
    return x


def predictions(model, x: np.ndarray, record: dict[str, Any]) -> tuple[list[str], list[list]]:
    """The header and rows of ``predictions.csv`` for model inputs ``x``: the predicted
    class and each class's probability (``p_<class>``), or the target in its original
    units."""
    out = np.asarray(model(x, training=False), dtype=np.float64)
    if record["task"] == "regression":
        scaling = record["target_scaling"]
        values = out.ravel() * scaling["scale"] + scaling["mean"]  # as Dataset.labels
        return ["prediction"], [[float(v)] for v in values]
    classes = record["classes"]
    if out.shape[1] == 1:  # binary: P(classes[1]); class 1 when p > 0.5 (metrics.accuracy)
        p = out.ravel()
        probs, picked = np.stack([1 - p, p], axis=1), (p > 0.5).astype(int)
    else:
        probs, picked = out, out.argmax(axis=1)
    header = ["prediction", *(f"p_{c}" for c in classes)]
    return header, [[classes[c], *map(float, row)] for c, row in zip(picked, probs, strict=True)]


def predict(run: Path, data: Path, out: Path | None, best: bool = False) -> int:
    """``regexp predict``: write the model's prediction for every row of ``data``."""
    import csv
    import io

    record = read_preprocessing(run)
    model_path(run, best)
    raw = read_features(Path(data), record)
    model = load_model(run, best)
    header, rows = predictions(model, transform(raw, record), record)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if out is None:
        sys.stdout.write(text.getvalue())
    else:
        rundir.write_atomic(Path(out), lambda tmp: tmp.write_text(text.getvalue()))
        print(f"{len(rows)} predictions of {model_path(run, best)} written to {out}")
    return 0


@contextlib.contextmanager
def _not_importing(*names: str) -> Iterator[None]:
    """Keras imports scikit-learn and matplotlib when they are installed, for its
    scikit-learn wrappers and image galleries (each optional: it catches the ImportError).
    A command that uses neither keeps them out of its process, and their seconds of
    import: the modules not yet imported read as absent while it runs."""
    absent = [name for name in names if name not in sys.modules]
    for name in absent:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` fails
    try:
        yield
    finally:
        for name in absent:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def predict_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="regexp predict",
        description="Apply a run's saved model to the rows of a CSV file of raw features "
        "(the columns named in the run's preprocess.json; the run's scaling is applied).",
    )
    parser.add_argument("run", type=Path, help="a completed run's folder")
    parser.add_argument("--data", type=Path, required=True, help="a CSV file with a header")
    parser.add_argument("--out", type=Path, help="the predictions' CSV file (default: stdout)")
    parser.add_argument("--best", action="store_true", help="model_best.keras (early stopping)")
    args = parser.parse_args(list(argv))
    try:
        with _not_importing("sklearn", "matplotlib"):
            return predict(args.run, args.data, args.out, args.best)
    except UserError as e:
        return _fail(e)


# --- regexp eval -----------------------------------------------------------------------


def compose(run: Path, overrides: Sequence[str]) -> DictConfig:
    """The run's own ``config.yaml`` with ``dataset=NAME`` (another dataset's recipe,
    applied first) and ``dataset.KEY=VALUE`` overrides; nothing else is accepted."""
    import yaml
    from omegaconf import OmegaConf, open_dict

    from regexp.paths import CONF

    cfg = rundir.read_config(run)
    pairs = []
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"{item!r}: expected a dataset override, dataset=NAME or "
                            "dataset.KEY=VALUE")  # fmt: skip
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if not (key == "dataset" or key.startswith("dataset.")):
            only = "dataset overrides only: dataset=NAME or dataset.KEY=VALUE"
            raise ConfigError(key, parsed, f"{only} (the model and its training stay the run's)")
        pairs.append((key, value, parsed))
    for key, value, parsed in sorted(pairs, key=lambda p: p[0] != "dataset"):  # group first
        if key == "dataset":
            recipe = CONF / "dataset" / f"{value}.yaml"
            if not recipe.is_file():
                names = sorted(f.stem for f in (CONF / "dataset").glob("*.yaml"))
                raise ConfigError("dataset", value, "one of " + ", ".join(names))
            with open_dict(cfg):
                cfg.dataset = OmegaConf.load(recipe)
            continue
        with open_dict(cfg):
            OmegaConf.update(cfg, key, parsed, force_add=True)
    return cfg


def _check_same_inputs(run: Path, data: Dataset, record: dict[str, Any]) -> None:
    """The data must have the model's features, in order, and its classes."""
    names = data.feature_names or [f"x{i + 1}" for i in range(data.n_features)]
    if names != record["features"]:
        raise UserError(
            f"the data's features ({_listing(names)}) are not the model's "
            f"({_listing(record['features'])}, {run / rundir.PREPROCESS}); expected data with "
            "the same feature columns"
        )
    if data.task != record["task"]:
        raise UserError(f"the data is for {data.task}, the model of {run} for {record['task']}")
    if not data.regression:
        classes = data.class_names or [str(i) for i in range(data.n_classes)]
        if classes != record["classes"]:
            raise UserError(
                f"the data's classes ({_listing(classes)}) are not the model's "
                f"({_listing(record['classes'])}); expected data with the same classes"
            )


def _listing(names: Sequence[Any], most: int = 8) -> str:
    shown = ", ".join(map(str, names[:most]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def eval_run(run: Path, overrides: Sequence[str] = (), best: bool = False) -> dict[str, Any]:
    """The metrics of a run's saved model on the data of its config with ``overrides``:
    ``metrics.json``'s numbers of each split (``train_accuracy``, ``test_data_loss``, ...),
    with what was evaluated."""
    run = Path(run)
    path = model_path(run, best)
    record = read_preprocessing(run)
    cfg = compose(run, overrides)

    from regexp import data as datasets
    from regexp.config import validate

    checked = validate(cfg)  # the whole config, as a run would check it: one line if wrong
    data = datasets.load(cfg.dataset)
    _check_same_inputs(run, data, record)
    if overrides:  # the model's own preprocessing, as predict applies it, not one fit anew
        data = _as_recorded(data, record)
    model = load_model(run, best)  # TensorFlow, imported quietly first
    from regexp.model import loss_penalties_of

    penalties = loss_penalties_of(model, checked.plans) if cfg.reg.get("mode") == "loss" else []
    final = evaluate(model, data, penalties)
    return {
        "run": str(run),
        "model": path.name,
        "overrides": list(overrides),
        "data": data.summary(),
        **{f"{split}_{k}": v for split, vals in final.items() for k, v in vals.items()},
    }


def _as_recorded(data, record: dict[str, Any]):
    """``data`` scaled as the run's model was trained: regexp.data scales the features
    (and a regression target) with a scaler fit on *this* data; undo that, then apply
    the run's recorded scaling (``preprocess.json``), as ``predict`` does."""
    import dataclasses

    def features(x: np.ndarray) -> np.ndarray:
        raw = x.astype(np.float64)
        if data.scaler_mean is not None:
            raw = raw * data.scaler_scale + data.scaler_mean
        scaler = record.get("scaler")
        if scaler:
            raw = (raw - np.asarray(scaler["mean"])) / np.asarray(scaler["scale"])
        return raw.astype(np.float32)

    def target(y: np.ndarray) -> np.ndarray:
        if record["task"] != "regression":
            return y
        raw = y.astype(np.float64) * data.target_scale + data.target_mean
        scaling = record["target_scaling"]
        return ((raw - scaling["mean"]) / scaling["scale"]).astype(np.float32)

    return dataclasses.replace(
        data,
        **{f"x_{s}": features(getattr(data, f"x_{s}")) for s in SPLITS},
        **{f"y_{s}": target(getattr(data, f"y_{s}")) for s in SPLITS},
    )


def _table(result: dict[str, Any]) -> str:
    """The metrics as a small table, a row per split."""
    scores = tasks.kind_named(result["data"]["task"]).scores
    columns = [*scores, "penalty", "total_loss", "n"]
    lines = [f"{'split':<6}" + "".join(f"{c:>12}" for c in columns)]
    for split in SPLITS:
        cells = [result[f"{split}_{c}"] for c in columns]
        shown = [f"{v:>12}" if isinstance(v, int) else f"{v:>12.6g}" for v in cells]
        lines.append(f"{split:<6}" + "".join(shown))
    return "\n".join(lines) + "\n"


def eval_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="regexp eval",
        description="The metrics of a run's saved model on its own data (its config.yaml), "
        "or with dataset overrides, e.g. dataset.noise=0.5, dataset.split_seed=3, "
        "dataset=moons.",
    )
    parser.add_argument("run", type=Path, help="a completed run's folder")
    parser.add_argument("overrides", nargs="*", help="dataset=NAME or dataset.KEY=VALUE")
    parser.add_argument("--best", action="store_true", help="model_best.keras (early stopping)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_intermixed_args(list(argv))
    try:
        with _not_importing("matplotlib"):  # scikit-learn splits the data
            result = eval_run(args.run, args.overrides, args.best)
    except UserError as e:
        return _fail(e)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    data = ", ".join(args.overrides) or "the run's own data"
    print(f"{args.run / result['model']} on {data} ({result['data']['name']}):")
    print(_table(result), end="")
    return 0


def _fail(error: Exception) -> int:
    """One line and exit code 2, as ``regexp.cli`` says errors."""
    print(f"regexp: error: {error}", file=sys.stderr)
    return 2
