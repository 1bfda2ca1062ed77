"""fashion_defenses/data.py: the IDX loader and its checks, the protocols' splits."""
import gzip
import struct

import numpy as np
import pytest

from fashion_defenses.data import EXPECTED_COUNTS, IDX_FILES, PROTOCOLS, load_data, load_fashion_mnist, read_idx
from fashion_defenses.errors import UserError


def write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 2, 8], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"img{suffix}", images, gz)
    write_idx(tmp_path / f"lab{suffix}", labels, gz)
    np.testing.assert_array_equal(read_idx(tmp_path / f"img{suffix}"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"lab{suffix}"), labels)


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "img", np.zeros((5, 28, 28)), gz=False)
    data = (tmp_path / "img").read_bytes()
    (tmp_path / "img").write_bytes(data[:-100])
    with pytest.raises(UserError, match="truncated"):
        read_idx(tmp_path / "img")


def test_wrong_magic_is_a_clear_error(tmp_path):
    (tmp_path / "img").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 100)
    with pytest.raises(UserError, match="magic"):
        read_idx(tmp_path / "img")


def test_loader_reports_a_corrupt_file_in_data_dir(tmp_path):
    for key, name in IDX_FILES.items():
        shape = (EXPECTED_COUNTS[key],) + ((28, 28) if key.startswith("x") else ())
        write_idx(tmp_path / name, np.zeros(shape, dtype=np.uint8), gz=False)
    assert load_fashion_mnist(tmp_path, allow_download=False)[0].shape == (60000, 28, 28)
    labels = tmp_path / IDX_FILES["y_test"]
    labels.write_bytes(labels.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated"):
        load_fashion_mnist(tmp_path, allow_download=False)


def test_loader_checks_counts(tmp_path):
    for key, name in IDX_FILES.items():
        shape = (10,) + ((28, 28) if key.startswith("x") else ())
        write_idx(tmp_path / (name + ".gz"), np.zeros(shape, dtype=np.uint8), gz=True)
    with pytest.raises(UserError, match="expected 60000"):
        load_fashion_mnist(tmp_path, allow_download=False)


def test_loader_names_what_it_tried(tmp_path, monkeypatch):
    monkeypatch.setattr("fashion_defenses.data.DEBIAN_DATA_DIR", tmp_path / "debian")
    monkeypatch.setattr("fashion_defenses.data.KERAS_CACHE_DIR", tmp_path / "keras")
    with pytest.raises(UserError) as err:
        load_fashion_mnist(tmp_path, allow_download=False)
    message = str(err.value)
    assert str(tmp_path / "debian") in message and "apt-get install dataset-fashion-mnist" in message


def test_real_data_split(quick_data):
    full = load_data(PROTOCOLS["standard"])
    assert (len(full.y_train), len(full.y_val), len(full.y_test)) == (55000, 5000, 10000)
    assert not set(full.train_index) & set(full.val_index)
    assert full.x_train.dtype == np.float32 and 0 <= full.x_train.min() and full.x_train.max() <= 1
    paper = load_data(PROTOCOLS["paper"])
    np.testing.assert_array_equal(paper.train_index, np.arange(5000))
    assert len(paper.y_val) == 55000
