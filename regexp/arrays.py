"""Arrays from files: a user's ``.npz`` file, and Keras' own dataset cache (MNIST,
Fashion-MNIST, CIFAR-10). Nothing here imports TensorFlow except ``keras_arrays``.

``npz_headers`` reads each array's shape and dtype from its ``.npy`` header inside the
zip, without reading the data; ``npz_array`` reads one array, or its first rows. The
Keras sets are looked up where ``keras.utils.get_file`` keeps them
(``$KERAS_HOME/datasets``, else ``~/.keras/datasets``) under the names Keras' own
``load_data`` functions use, and are never downloaded: ``keras_split`` checks the files
and gives their sizes (for ``regexp check``), ``keras_arrays`` reads them. A file that
is not in the cache is refused in one line naming it and the folder to put it in.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regexp.errors import DataError

NUMERIC = "biuf"  # numpy dtype kinds taken as numbers: bool, signed, unsigned, float


@dataclass(frozen=True)
class Header:
    """An ``.npy`` array's header: its shape and dtype, and whether it is stored
    column-major (Fortran order)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool


def _npy_header(fp) -> Header:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:  # 2.0 and 3.0 differ only in the text encoding of the header
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    return Header(tuple(int(n) for n in shape), dtype, bool(fortran))


def _not_npz(path: Path) -> DataError:
    with open(path, "rb") as f:
        start = f.read(6)
    if start == b"\x93NUMPY":
        return DataError(
            f"{path}: a single .npy array, not an .npz file; save the features and labels "
            "together: numpy.savez(path, x=x, y=y)"
        )
    return DataError(f"{path}: not an .npz file (not a zip archive); expected numpy.savez's output")


def npz_headers(path: Path) -> dict[str, Header]:
    """The header of every array of an ``.npz`` file, by name, read without its data."""
    headers: dict[str, Header] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[: -len(".npy")]
                with zf.open(info) as fp:
                    try:
                        headers[name] = _npy_header(fp)
                    except ValueError as e:
                        said = str(e).strip().splitlines()[0]
                        raise DataError(
                            f"{path}: array {name!r} is not a NumPy array ({said})"
                        ) from None
    except zipfile.BadZipFile:
        raise _not_npz(path) from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    return headers


def npz_array(path: Path, name: str, rows: int | None = None) -> np.ndarray | None:
    """Array ``name`` of an ``.npz`` file, or only its first ``rows`` rows (None when the
    array is stored column-major, whose first rows are not at its start)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fp:
            if rows is None:
                return np.lib.format.read_array(fp, allow_pickle=False)
            header = _npy_header(fp)
            if header.fortran:
                return None
            rows = min(rows, header.shape[0])
            width = int(np.prod(header.shape[1:], dtype=np.int64))
            data = fp.read(rows * width * header.dtype.itemsize)
            return np.frombuffer(data, header.dtype).reshape(rows, *header.shape[1:])
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: array {name!r} cannot be read ({said})") from None


# ---------------------------------------------------------------------------------------
# Keras' dataset cache


def keras_caches() -> list[Path]:
    """The folders where ``keras.utils.get_file`` keeps datasets, the one it writes first:
    ``$KERAS_HOME/datasets`` when KERAS_HOME is set, else ``~/.keras/datasets``
    (``/tmp/.keras`` when the home folder is not writable). Keras falls back to
    ``/tmp/.keras/datasets`` when that Keras folder exists but is not writable; regexp reads
    a read-only cache (a shared one, say) first, then that fallback."""
    if "KERAS_HOME" in os.environ:
        base = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        base = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    base = os.path.expanduser(base)
    caches = [Path(base) / "datasets"]
    if os.path.isdir(base) and not os.access(base, os.W_OK):
        caches.append(Path("/tmp/.keras/datasets"))
    return caches


def _first(relative: str) -> Path | None:
    """``relative`` in the first cache that has it."""
    return next((c / relative for c in keras_caches() if (c / relative).exists()), None)


ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FASHION_FILES = (  # Keras' order: train labels, train images, test labels, test images
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
CIFAR10_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR10_FOLDER = "cifar-10-batches-py"  # the archive's own folder
# where Keras 3 extracts the archive, then where tf.keras 2 (or `tar xzf` in the cache) does
CIFAR10_FOLDERS = (f"cifar-10-batches-py-target/{CIFAR10_FOLDER}", CIFAR10_FOLDER)
# the archive under its own name, Keras 3's download name, tf.keras 2's download name
CIFAR10_ARCHIVES = (
    "cifar-10-python.tar.gz",
    "cifar-10-batches-py-target_archive",
    "cifar-10-batches-py.tar.gz",
)

KERAS_SETS: dict[str, dict] = {  # the shape of one image, and the names of classes 0..9
    "mnist": {"input_shape": (28, 28), "classes": [str(i) for i in range(10)]},
    "fashion_mnist": {
        "input_shape": (28, 28),
        "classes": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],  # fmt: skip
    },
    "cifar10": {
        "input_shape": (32, 32, 3),
        "classes": "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck".split(","),
    },
}


def _absent(name: str, file: str, folder: Path, url: str) -> DataError:
    return DataError(
        f"dataset.name={name}: {file} is not in Keras' cache; put it in {folder} (from {url}); "
        "regexp does not download (no network)"
    )


def _check_images(where: str, x_shape: tuple, input_shape: tuple, y: np.ndarray) -> None:
    """Images of the set's shape, one label 0..9 per image."""
    if tuple(x_shape[1:]) != tuple(input_shape):
        raise DataError(
            f"{where}: images of shape {tuple(x_shape[1:])}; expected {tuple(input_shape)}"
        )
    if x_shape[0] != len(y):
        raise DataError(f"{where}: {x_shape[0]} images but {len(y)} labels; expected one each")
    outside = np.flatnonzero((y < 0) | (y > 9))
    if len(outside):
        i = int(outside[0])
        raise DataError(f"{where}: label {int(y[i])} at row {i}; expected a class code 0..9")


# --- MNIST: mnist.npz, as keras.datasets.mnist.load_data reads it (without its hash check)


def _mnist_path() -> Path:
    path = _first("mnist.npz")
    if path is None:
        raise _absent("mnist", "mnist.npz", keras_caches()[0], ORIGIN + "mnist.npz")
    return path


def _mnist_split() -> tuple[int, int]:
    path = _mnist_path()
    headers = npz_headers(path)
    wanted = ("x_train", "y_train", "x_test", "y_test")
    missing = [a for a in wanted if a not in headers]
    if missing:
        raise DataError(f"{path}: has no array {missing[0]!r}; expected Keras' mnist.npz")
    for part in ("train", "test"):
        x = headers[f"x_{part}"]
        if x.dtype != np.uint8:
            raise DataError(f"{path}: x_{part} holds {x.dtype}; expected uint8 pixels")
        _check_images(f"{path} x_{part}", x.shape, (28, 28), npz_array(path, f"y_{part}"))
    return headers["x_train"].shape[0], headers["x_test"].shape[0]


def _mnist_arrays() -> tuple[np.ndarray, ...]:
    with np.load(_mnist_path(), allow_pickle=False) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


# --- Fashion-MNIST: four gzipped IDX files in fashion-mnist/


def _fashion_paths() -> list[Path]:
    folder = _first("fashion-mnist") or keras_caches()[0] / "fashion-mnist"
    for file in FASHION_FILES:
        if not (folder / file).is_file():
            raise _absent("fashion_mnist", file, folder, ORIGIN + file)
    return [folder / file for file in FASHION_FILES]


def _idx_header(path: Path, images: bool) -> tuple[int, ...]:
    """The dimensions an IDX file's header gives: (n,) for labels, (n, rows, cols) for
    images (magic numbers 2049 and 2051, big-endian)."""
    size, magic = (16, 2051) if images else (8, 2049)
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(size)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read as gzip ({e})") from None
    if len(head) < size or struct.unpack(">I", head[:4])[0] != magic:
        what = "images" if images else "labels"
        raise DataError(f"{path}: not an IDX file of {what} (magic number {magic} expected)")
    return struct.unpack(f">{size // 4 - 1}I", head[4:])


def _fashion_labels(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:  # as keras.datasets.fashion_mnist.load_data reads it
        return np.frombuffer(f.read(), np.uint8, offset=8)


def _fashion_split() -> tuple[int, int]:
    paths = _fashion_paths()
    rows = []
    for labels, images in (paths[:2], paths[2:]):
        n, h, w = _idx_header(images, images=True)
        (m,) = _idx_header(labels, images=False)
        y = _fashion_labels(labels)
        if len(y) != m:
            raise DataError(f"{labels}: the header says {m} labels but the file has {len(y)}")
        _check_images(str(images), (n, h, w), (28, 28), y)
        rows.append(n)
    return rows[0], rows[1]


def _fashion_arrays() -> tuple[np.ndarray, ...]:
    out = []
    paths = _fashion_paths()
    for labels, images in (paths[:2], paths[2:]):
        y = _fashion_labels(labels)
        with gzip.open(images, "rb") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(len(y), 28, 28)
        out += [x, y]
    return tuple(out)


# --- CIFAR-10: the archive's six pickled batches, extracted or not


def _cifar_location() -> tuple[Path, bool]:
    """The folder holding the six batches (False), or the archive (True)."""
    cache = keras_caches()[0]
    for folder in filter(None, map(_first, CIFAR10_FOLDERS)):
        if folder.is_dir():
            for batch in CIFAR10_BATCHES:
                if not (folder / batch).is_file():
                    raise DataError(
                        f"dataset.name=cifar10: {batch} is missing from {folder}; put the whole "
                        f"{CIFAR10_FOLDER}/ folder of {CIFAR10_URL} there, or the archive in "
                        f"{cache}; regexp does not download (no network)"
                    )
            return folder, False
    for archive in filter(None, map(_first, CIFAR10_ARCHIVES)):
        if archive.is_file():
            return archive, True
    raise DataError(
        f"dataset.name=cifar10: cifar-10-python.tar.gz (or its folder {CIFAR10_FOLDER}/) is not "
        f"in Keras' cache; put it in {cache} (from {CIFAR10_URL}); regexp does not download "
        "(no network)"
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only NumPy arrays (the globals Keras' own RestrictedUnpickler allows)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}  # fmt: skip

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _cifar_rows(where: str, fp) -> int:
    """The rows of one batch, checked: ``data`` uint8 [n, 3072] and n labels 0..9."""
    try:
        batch = _ArrayUnpickler(fp, encoding="bytes").load()
        data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    except Exception as e:  # a damaged or foreign file: pickle raises many kinds
        said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{where}: not a CIFAR-10 batch ({said})") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{where}: its data is not a uint8 array of rows; expected a CIFAR batch")
    if data.shape[1] != 3072:
        raise DataError(f"{where}: rows of {data.shape[1]} values; expected 3072 (32x32x3)")
    _check_images(where, (len(data), 32, 32, 3), (32, 32, 3), labels)
    return len(data)


@functools.lru_cache(maxsize=4)
def _cifar_counts(path: str, archive: bool, stamp: tuple) -> tuple[int, ...]:
    """Rows per batch. Counting means reading the batches, so it is remembered per file
    version (``stamp``: the files' sizes and times) for the validations of a sweep."""
    if archive:
        counts = {name: _cifar_rows(f"{path}: {name}", fp) for name, fp in _archive(Path(path))}
        return tuple(counts[batch] for batch in CIFAR10_BATCHES)
    counts = []
    for batch in CIFAR10_BATCHES:
        with open(Path(path) / batch, "rb") as fp:
            counts.append(_cifar_rows(str(Path(path) / batch), fp))
    return tuple(counts)


def _archive(path: Path):
    """(name, file) for each of the six batches of the archive, in the archive's order,
    read as a stream (a .tar.gz is decompressed once)."""
    import tarfile

    found = set()
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in CIFAR10_BATCHES and name not in found:
                    found.add(name)
                    yield name, tar.extractfile(member)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(
            f"{path}: not a readable tar archive ({e}); expected {CIFAR10_URL}"
        ) from None
    missing = [b for b in CIFAR10_BATCHES if b not in found]
    if missing:
        raise DataError(f"{path}: has no {missing[0]}; expected the archive {CIFAR10_URL}")


def _stamp(path: Path, archive: bool) -> tuple:
    files = [path] if archive else [path / b for b in CIFAR10_BATCHES]
    return tuple((st.st_size, st.st_mtime_ns) for st in (f.stat() for f in files))


def _cifar_split() -> tuple[int, int]:
    path, archive = _cifar_location()
    counts = _cifar_counts(str(path), archive, _stamp(path, archive))
    return sum(counts[:5]), counts[5]


def _cifar_arrays() -> tuple[np.ndarray, ...]:
    """With Keras' own ``load_batch``, as ``keras.datasets.cifar10.load_data`` reads the
    batches (an archive is extracted into a temporary folder first), in channels-last
    order, Keras' default."""
    import tempfile

    from keras.src.datasets.cifar import load_batch

    path, archive = _cifar_location()
    with tempfile.TemporaryDirectory() as tmp:
        if archive:
            for name, fp in _archive(path):
                (Path(tmp) / name).write_bytes(fp.read())
            path = Path(tmp)
        parts = [load_batch(str(path / batch)) for batch in CIFAR10_BATCHES]
    x_train = np.concatenate([x for x, _ in parts[:5]]).transpose(0, 2, 3, 1)
    y_train = np.concatenate([np.asarray(y, dtype=np.uint8) for _, y in parts[:5]])
    x_test = parts[5][0].transpose(0, 2, 3, 1)
    y_test = np.asarray(parts[5][1], dtype=np.uint8)
    return x_train, y_train, x_test, y_test


_SPLIT = {"mnist": _mnist_split, "fashion_mnist": _fashion_split, "cifar10": _cifar_split}
_ARRAYS = {"mnist": _mnist_arrays, "fashion_mnist": _fashion_arrays, "cifar10": _cifar_arrays}


def keras_split(name: str) -> tuple[int, int]:
    """(train rows, test rows) of a Keras set, from its cached files, checked; no
    TensorFlow. A file missing from the cache is refused in one line."""
    return _SPLIT[name]()


def keras_arrays(name: str) -> tuple[np.ndarray, ...]:
    """``x_train, y_train, x_test, y_test`` of a Keras set as Keras' ``load_data`` gives
    them (uint8 images, channels last), from the cache only."""
    keras_split(name)  # the same checks as validation, on the files as they are now
    return _ARRAYS[name]()
