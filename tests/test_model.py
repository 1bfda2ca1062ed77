"""model.py: loader, architectures, statistics, results I/O, save/load, CLI."""
import csv
import gzip
import json
import os
import select
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta

from conftest import assert_one_line_error, run_script
import model as core


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
    np.testing.assert_array_equal(core.read_idx(tmp_path / f"img{suffix}"), images)
    np.testing.assert_array_equal(core.read_idx(tmp_path / f"lab{suffix}"), labels)


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "img", np.zeros((5, 28, 28)), gz=False)
    data = (tmp_path / "img").read_bytes()
    (tmp_path / "img").write_bytes(data[:-100])
    with pytest.raises(core.UserError, match="truncated"):
        core.read_idx(tmp_path / "img")


def test_wrong_magic_is_a_clear_error(tmp_path):
    (tmp_path / "img").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 100)
    with pytest.raises(core.UserError, match="magic"):
        core.read_idx(tmp_path / "img")


def test_loader_reports_a_corrupt_file_in_data_dir(tmp_path):
    for key, name in core.IDX_FILES.items():
        shape = (core.EXPECTED_COUNTS[key],) + ((28, 28) if key.startswith("x") else ())
        write_idx(tmp_path / name, np.zeros(shape, dtype=np.uint8), gz=False)
    assert core.load_fashion_mnist(tmp_path, allow_download=False)[0].shape == (60000, 28, 28)
    labels = tmp_path / core.IDX_FILES["y_test"]
    labels.write_bytes(labels.read_bytes()[:5000])
    with pytest.raises(core.UserError, match="truncated"):
        core.load_fashion_mnist(tmp_path, allow_download=False)


def test_loader_checks_counts(tmp_path):
    for key, name in core.IDX_FILES.items():
        shape = (10,) + ((28, 28) if key.startswith("x") else ())
        write_idx(tmp_path / (name + ".gz"), np.zeros(shape, dtype=np.uint8), gz=True)
    with pytest.raises(core.UserError, match="expected 60000"):
        core.load_fashion_mnist(tmp_path, allow_download=False)


def test_loader_names_what_it_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(core, "DEBIAN_DATA_DIR", tmp_path / "debian")
    monkeypatch.setattr(core, "KERAS_CACHE_DIR", tmp_path / "keras")
    with pytest.raises(core.UserError) as err:
        core.load_fashion_mnist(tmp_path, allow_download=False)
    message = str(err.value)
    assert str(tmp_path / "debian") in message and "apt-get install dataset-fashion-mnist" in message


def test_real_data_split(quick_data):
    full = core.load_data(core.PROTOCOLS["standard"])
    assert (len(full.y_train), len(full.y_val), len(full.y_test)) == (55000, 5000, 10000)
    assert not set(full.train_index) & set(full.val_index)
    assert full.x_train.dtype == np.float32 and 0 <= full.x_train.min() and full.x_train.max() <= 1
    paper = core.load_data(core.PROTOCOLS["paper"])
    np.testing.assert_array_equal(paper.train_index, np.arange(5000))
    assert len(paper.y_val) == 55000


def test_paper_cnn_matches_the_study():
    m = core.build_paper_cnn()
    assert m.count_params() == 2_096_330
    flatten = [layer for layer in m.layers if isinstance(layer, core.keras.layers.Flatten)][0]
    assert flatten.output.shape[1] == 15_488
    assert isinstance(m.layers[0], core.keras.layers.Rescaling) and m.layers[0].scale == 255.0
    pools = [layer for layer in m.layers if isinstance(layer, core.keras.layers.MaxPooling2D)]
    assert len(pools) == 1


def test_models_output_logits():
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    for build in (core.build_paper_cnn, core.build_standard_cnn):
        out = np.asarray(build()(x, training=False))
        assert out.shape == (4, 10)
        assert not np.allclose(out.sum(axis=1), 1.0)  # not softmax probabilities


def test_accuracy_interval_is_clopper_pearson():
    stats = core.accuracy_ci([1] * 13 + [0] * 7)   # the study's 65% on 20 images
    assert stats["n"] == 20 and stats["acc"] == 0.65
    assert stats["ci_low"] == pytest.approx(beta.ppf(0.025, 13, 8), abs=1e-9)
    assert stats["ci_high"] == pytest.approx(beta.ppf(0.975, 14, 7), abs=1e-9)
    assert (round(stats["ci_low"], 4), round(stats["ci_high"], 4)) == (0.4078, 0.8461)
    all_right = core.accuracy_ci(np.ones(1000))
    assert all_right["ci_high"] == 1.0 and all_right["ci_low"] == pytest.approx(0.025 ** (1 / 1000))


def test_write_table_csv_and_markdown(tmp_path):
    rows = [{"model": "a", "n": 10, "acc": 0.5}, {"model": "b", "n": 20, "acc": 0.25}]
    core.write_table(rows, tmp_path / "t", title="T")
    with open(tmp_path / "t.csv") as f:
        back = list(csv.DictReader(f))
    assert [r["model"] for r in back] == ["a", "b"] and back[1]["acc"] == "0.25"
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("# T") and "| b | 20 | 0.2500 |" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]  # no temp files left


def test_save_and_load_round_trip(tmp_path):
    m = core.build_standard_cnn()
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    core.save_model(m, tmp_path, "tiny", {"protocol": "standard", "seed": 5})
    loaded, sidecar = core.load_model(tmp_path, "tiny")
    np.testing.assert_allclose(loaded(x), m(x), atol=1e-6)
    assert sidecar["seed"] == 5 and "tensorflow" in sidecar["versions"]
    assert json.loads((tmp_path / "tiny.json").read_text())["name"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.keras"]
    assert core.load_model(tmp_path, "absent") == (None, None)


@pytest.mark.parametrize("argv", [["model.py", "--protocol", "nonsense"],
                                  ["model.py", "--data-dir", "/no/such/folder"],
                                  ["model.py", "--seed", "abc"],
                                  ["model.py", "--seed", "-5"],
                                  ["model.py", "--results-dir", "/dev/null/results"],
                                  ["model.py", "--models-dir", "/dev/null"],
                                  ["attacks.py", "--eps", "-0.1"],
                                  ["attacks.py", "--n", "0"]])
def test_bad_arguments_end_with_one_line(argv):
    assert_one_line_error(run_script(*argv))


def test_model_quick_end_to_end(tmp_path, quick_data):
    proc = run_script("model.py", "--quick", "--results-dir", tmp_path / "res",
                      "--models-dir", tmp_path / "models")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # TensorFlow's start-up noise is hidden
    with open(tmp_path / "res" / "base_model_standard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows] == ["train", "validation", "test"]
    for r in rows:
        assert float(r["ci_low"]) <= float(r["acc"]) <= float(r["ci_high"])
    assert int(rows[2]["n"]) == core.PROTOCOLS["standard"].quick_test
    assert (tmp_path / "res" / "training_curve_standard.png").stat().st_size > 10_000
    sidecar = json.loads((tmp_path / "models" / "standard_cnn.json").read_text())
    assert sidecar["protocol"] == "standard" and sidecar["epochs_run"] == 1
    again = run_script("model.py", "--quick", "--results-dir", tmp_path / "res",
                       "--models-dir", tmp_path / "models")
    assert "loaded" in again.stdout  # the cached model is reused


def test_corrupt_cached_model_is_a_clear_error(tmp_path, quick_data):
    (tmp_path / "standard_cnn.keras").write_bytes(b"PK\x03\x04 not really a zip")
    proc = run_script("model.py", "--quick", "--models-dir", tmp_path, "--results-dir", tmp_path / "r")
    assert_one_line_error(proc)
    assert "delete it" in proc.stderr


def test_interrupted_training_resumes_from_its_last_epoch(tmp_path, quick_data):
    """Killed after epoch 2 of 3, training restarted with the same backup folder runs
    only epoch 3, starting from the weights epoch 2 ended with."""
    protocol = core.PROTOCOLS["standard"]

    class StopAfterSecondEpoch(core.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.weights = [w.copy() for w in self.model.get_weights()]
                raise KeyboardInterrupt

    class FirstBatchWeights(core.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not hasattr(self, "weights"):
                self.weights = [w.copy() for w in self.model.get_weights()]

    core.keras.utils.set_random_seed(0)
    stopper = StopAfterSecondEpoch()
    first = core.compile_model(core.build_standard_cnn(), protocol)
    with pytest.raises(KeyboardInterrupt):
        core.train(first, quick_data, protocol, 3, tmp_path / "backup", callbacks=[stopper])
    probe = FirstBatchWeights()
    second = core.compile_model(core.build_standard_cnn(), protocol)
    history, epochs_run, _ = core.train(second, quick_data, protocol, 3, tmp_path / "backup",
                                        callbacks=[probe])
    # every epoch is reported, the two before the interruption included
    assert epochs_run == 3 and len(history["loss"]) == 3 and len(history["val_accuracy"]) == 3
    for saved, resumed in zip(stopper.weights, probe.weights):
        np.testing.assert_allclose(saved, resumed, atol=1e-6)


def test_progress_reaches_a_log_file_before_the_script_ends():
    # stdout to a file or pipe is block-buffered by default: `make all > run.log` would
    # show no progress until a stage ends. The first line must arrive while it runs.
    repo = Path(__file__).resolve().parent.parent
    code = "import model, sys; model.run_main(lambda: (print('started'), sys.stdin.readline()))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as on a user's machine
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        arrived, _, _ = select.select([proc.stdout], [], [], 60)
        assert arrived, "the progress line stayed in the script's buffer"
        assert proc.stdout.readline() == "started\n"
    finally:
        proc.communicate("\n", timeout=120)
    assert proc.returncode == 0
