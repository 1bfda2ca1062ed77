"""models.py, training.py and model.py: the architectures, save/load, resumable training, the base-model run."""
import csv
import json
import re

import numpy as np
import pytest
from conftest import assert_one_line_error, run_script

from fashion_defenses.data import PROTOCOLS
from fashion_defenses.framework import keras
from fashion_defenses.models import (
    base_classifier,
    build_paper_cnn,
    build_standard_cnn,
    compile_model,
    load_model,
    save_model,
)
from fashion_defenses.training import fit_epochs, train


def test_paper_cnn_matches_the_study():
    m = build_paper_cnn()
    assert m.count_params() == 2_096_330
    flatten = [layer for layer in m.layers if isinstance(layer, keras.layers.Flatten)][0]
    assert flatten.output.shape[1] == 15_488
    assert isinstance(m.layers[0], keras.layers.Rescaling) and m.layers[0].scale == 255.0
    pools = [layer for layer in m.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 1


def test_models_output_logits():
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    for build in (build_paper_cnn, build_standard_cnn):
        out = np.asarray(build()(x, training=False))
        assert out.shape == (4, 10)
        assert not np.allclose(out.sum(axis=1), 1.0)  # not softmax probabilities


def test_base_classifier_is_the_cnn_behind_a_wrapper():
    cnn = build_standard_cnn()
    wrapped = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GaussianNoise(0.1), cnn])
    assert base_classifier(wrapped) is cnn and base_classifier(cnn) is cnn


def test_save_and_load_round_trip(tmp_path):
    m = build_standard_cnn()
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    save_model(m, tmp_path, "tiny", {"protocol": "standard", "seed": 5})
    loaded, sidecar = load_model(tmp_path, "tiny")
    np.testing.assert_allclose(loaded(x), m(x), atol=1e-6)
    assert sidecar["seed"] == 5 and "tensorflow" in sidecar["versions"]
    assert json.loads((tmp_path / "tiny.json").read_text())["name"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.keras"]
    assert load_model(tmp_path, "absent") == (None, None)


def test_model_quick_end_to_end(quick_run):
    proc = quick_run.runs["model.py"]
    assert proc.returncode == 0, proc.stderr
    # TensorFlow's start-up noise is hidden (absl's I/W/E0000 lines, oneDNN's and CUDA's notes); a
    # library's own warning about our calls would still show, and is not what this checks
    noise = re.compile(r"^[IWE]\d{4} |oneDNN|cuda|TF_ENABLE_ONEDNN_OPTS|computation placer|absl", re.M)
    assert not noise.search(proc.stderr), proc.stderr[-2000:]
    with open(quick_run.results / "base_model_standard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows] == ["train", "validation", "test"]
    for r in rows:
        assert float(r["ci_low"]) <= float(r["acc"]) <= float(r["ci_high"])
    assert int(rows[2]["n"]) == PROTOCOLS["standard"].quick_test
    assert (quick_run.results / "training_curve_standard.png").stat().st_size > 10_000
    sidecar = json.loads((quick_run.models / "standard_cnn.json").read_text())
    assert sidecar["protocol"] == "standard" and sidecar["epochs_run"] == 1
    assert f"loaded {quick_run.models / 'standard_cnn.keras'}" in quick_run.runs["attacks.py"].stdout  # reused


def test_corrupt_cached_model_is_a_clear_error(tmp_path, quick_data):
    (tmp_path / "standard_cnn.keras").write_bytes(b"PK\x03\x04 not really a zip")
    proc = run_script("model.py", "--quick", "--models-dir", tmp_path, "--results-dir", tmp_path / "r")
    assert_one_line_error(proc.returncode, proc.stderr)
    assert "delete it" in proc.stderr


def test_interrupted_training_resumes_from_its_last_epoch(tmp_path, quick_data):
    """Interrupted after epoch 2 of 3, training restarted with the same checkpoint
    folder runs only epoch 3, starting from the weights epoch 2 ended with, and reports
    all three epochs (tests/test_resume.py kills it with SIGKILL and checks the weights)."""
    protocol = PROTOCOLS["standard"]

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                self.weights = [w.copy() for w in self.model.get_weights()]
                raise KeyboardInterrupt

    class FirstBatchWeights(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not hasattr(self, "weights"):
                self.weights = [w.copy() for w in self.model.get_weights()]

    keras.utils.set_random_seed(0)
    stopper = StopAfterSecondEpoch()
    first = compile_model(build_standard_cnn(), protocol)
    with pytest.raises(KeyboardInterrupt):
        train(first, quick_data, protocol, 3, tmp_path / "backup", seed=0, callbacks=[stopper])
    probe = FirstBatchWeights()
    second = compile_model(build_standard_cnn(), protocol)
    history, epochs_run, _ = train(second, quick_data, protocol, 3, tmp_path / "backup", seed=0, callbacks=[probe])
    assert epochs_run == 3 and len(history["loss"]) == 3 and len(history["val_accuracy"]) == 3
    for saved, resumed in zip(stopper.weights, probe.weights):
        np.testing.assert_allclose(saved, resumed, atol=1e-6)


def test_progress_counts_epochs_against_the_whole_training(tmp_path, capsys):
    """One Keras fit per epoch still shows "Epoch k/N" with N the training's epochs."""
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    m.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit_epochs(m, np.zeros((8, 4), np.float32), np.zeros(8, np.int64), epochs=3, batch_size=4, seed=0,
               checkpoint_dir=tmp_path / "c")
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch ")]
    assert shown == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
