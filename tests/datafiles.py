"""Small data files in the formats regexp reads: Keras' cache of MNIST, Fashion-MNIST
and CIFAR-10 (the files Keras' own loaders read, written as the originals are), and
.npz files. Labels cycle through the classes, so every class is present."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def _images(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n, start=0):
    return ((np.arange(n) + start) % 10).astype(np.uint8)


def write_mnist(cache: Path, train: int = 40, test: int = 20, seed: int = 0) -> dict:
    """``mnist.npz`` as Keras' ``mnist.load_data`` reads it: uint8 images [n, 28, 28] and
    uint8 labels, under x_train, y_train, x_test, y_test."""
    rng = np.random.default_rng(seed)
    arrays = {"x_train": _images(rng, train, (28, 28)), "y_train": _labels(train),
              "x_test": _images(rng, test, (28, 28)), "y_test": _labels(test, 3)}  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache / "mnist.npz", **arrays)
    return arrays


def _idx(array: np.ndarray) -> bytes:
    """An IDX file: magic 2049 (labels) or 2051 (images), then the dimensions, big-endian."""
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_fashion(cache: Path, train: int = 40, test: int = 20, seed: int = 1) -> dict:
    """The four gzipped IDX files of ``fashion-mnist/``."""
    rng = np.random.default_rng(seed)
    arrays = {"x_train": _images(rng, train, (28, 28)), "y_train": _labels(train, 5),
              "x_test": _images(rng, test, (28, 28)), "y_test": _labels(test)}  # fmt: skip
    folder = cache / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in [("train-labels-idx1-ubyte.gz", "y_train"),
                      ("train-images-idx3-ubyte.gz", "x_train"),
                      ("t10k-labels-idx1-ubyte.gz", "y_test"),
                      ("t10k-images-idx3-ubyte.gz", "x_test")]:  # fmt: skip
        (folder / name).write_bytes(gzip.compress(_idx(arrays[key])))
    return arrays


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did at protocol 2, which wrote the CIFAR batches: a
    byte string is a (SHORT_)BINSTRING (Python 3 would write a call to _codecs.encode,
    which no array-only unpickler accepts)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _batch(x: np.ndarray, y: np.ndarray, label: str) -> bytes:
    """A CIFAR batch as the original files hold it: a dict with byte-string keys,
    ``data`` uint8 [n, 3072] (the red, green and blue planes of each image), ``labels``
    a list of ints."""
    batch = {b"batch_label": label.encode(), b"labels": [int(v) for v in y],
             b"data": x.reshape(len(x), -1),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(x))]}  # fmt: skip
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(batch)
    return out.getvalue()


def write_cifar10(
    cache: Path, per_batch: int = 8, test: int = 20, seed: int = 2, archive: str | None = None
) -> dict:
    """The six batches in ``cifar-10-batches-py/`` (tf.keras 2's and ``tar xzf``'s place),
    or, with ``archive``, a .tar.gz of that folder under that name. Returns the images in
    the files' channels-first order, [n, 3, 32, 32]."""
    rng = np.random.default_rng(seed)
    x_train = _images(rng, 5 * per_batch, (3, 32, 32))
    y_train = _labels(5 * per_batch, 7)
    x_test, y_test = _images(rng, test, (3, 32, 32)), _labels(test, 1)
    files = {f"data_batch_{i + 1}": _batch(x_train[i * per_batch : (i + 1) * per_batch],
                                           y_train[i * per_batch : (i + 1) * per_batch],
                                           f"training batch {i + 1} of 5")
             for i in range(5)}  # fmt: skip
    files["test_batch"] = _batch(x_test, y_test, "testing batch 1 of 1")
    cache.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(cache / archive, "w:gz") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    else:
        folder = cache / "cifar-10-batches-py"
        folder.mkdir(exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_keras_cache(home: Path) -> dict[str, dict]:
    """All three sets under ``home/datasets`` (point KERAS_HOME at ``home``)."""
    cache = home / "datasets"
    return {"mnist": write_mnist(cache), "fashion_mnist": write_fashion(cache),
            "cifar10": write_cifar10(cache)}  # fmt: skip
