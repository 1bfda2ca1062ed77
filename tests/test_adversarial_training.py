"""defenses/adversarial_training.py and its script: each method's step, per-batch examples, the
study's uint8 truncation, the catastrophic-overfitting guard, and end to end runs."""
import csv
import dataclasses
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, run_script
from test_plots import drawn

from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS
from fashion_defenses.defenses import adversarial_training as at
from fashion_defenses.defenses.recipes import Recipe
from fashion_defenses.framework import keras, tf
from fashion_defenses.models import compile_model, get_base_model, load_model
from fashion_defenses.training import KeepBest, fit_epochs


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@pytest.mark.parametrize("method", ["fgsm", "fgsm-rs", "pgd", "trades"])
def test_training_steps_lower_the_methods_loss(method, small_model, attack_set):
    x, y = tf.constant(attack_set[0][:64]), tf.constant(attack_set[1][:64])
    trainer = at.AdversarialTrainer(clone(small_model), Recipe(method, eps=0.1, steps=3), seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    x_adv = trainer.make_adversarial(x, y)
    before = float(trainer.method_loss(x, y, x_adv, training=False)[0])
    for _ in range(5):
        trainer.train_on_batch(x, y)
    after = float(trainer.method_loss(x, y, x_adv, training=False)[0])
    assert after < before


def test_fgsm_examples_are_remade_for_every_batch_within_eps(small_model, attack_set):
    x, y = tf.constant(attack_set[0][:64]), tf.constant(attack_set[1][:64])
    trainer = at.AdversarialTrainer(clone(small_model), Recipe("fgsm", eps=0.1), seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    first = trainer.make_adversarial(x, y).numpy()
    trainer.train_on_batch(x, y)
    second = trainer.make_adversarial(x, y).numpy()
    assert not np.array_equal(first, second)  # made for the current weights, not once
    for x_adv in (first, second):
        assert np.abs(x_adv - x.numpy()).max() <= 0.1 + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_study_perturbation_reproduces_the_uint8_truncation():
    """Logit 0 = s . x with a +-1 pattern s; for label 0 the loss gradient is -s, so
    pixels with s = +1 step down by 0.085 grey levels, stored as uint8: minus one level
    (0 stays 0); pixels with s = -1 step up by 0.085 and are truncated back."""
    rng = np.random.default_rng(0)
    s = rng.choice([-1.0, 1.0], size=784).astype(np.float32)
    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    w = np.zeros((784, 10), dtype=np.float32)
    w[:, 0] = s * 0.001
    m.layers[-1].set_weights([w, np.zeros(10, dtype=np.float32)])
    levels = rng.integers(0, 256, size=(3, 28, 28, 1))
    levels[:, :3] = 0  # zero pixels, some of which would go negative
    x = (levels / 255.0).astype(np.float32)
    out = at.study_perturbation(m, x, np.zeros(3, dtype=np.int64))
    down = (s.reshape(28, 28, 1) > 0)[None]
    expected = np.where(down, np.maximum(levels - 1, 0), levels) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-7)
    assert np.abs(out - x).max() <= 1 / 255 + 1e-7


class Readings(keras.callbacks.Callback):
    """Puts the next of a list of PGD accuracies into each epoch's logs, as
    RobustnessMonitor does, and keeps each epoch's weights."""

    def __init__(self, readings):
        super().__init__()
        self.readings, self.weights = list(readings), []

    def on_epoch_end(self, epoch, logs=None):
        logs["pgd_acc"] = self.readings[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def guarded_training(small_model, readings, folder):
    m = compile_model(clone(small_model), PROTOCOLS["standard"])
    x, y = np.zeros((64, 28, 28, 1), np.float32), np.zeros(64, np.int64)
    probe = Readings(readings)
    epochs, stopped = fit_epochs(m, x, y, epochs=len(readings), batch_size=32, seed=0, checkpoint_dir=folder,
                                 keep_best=KeepBest("pgd_acc", drop=at.GUARD_DROP), callbacks=[probe])
    return m, probe, epochs, stopped


def test_catastrophic_overfitting_guard_fires_on_a_collapse(small_model, tmp_path):
    m, probe, epochs, stopped = guarded_training(small_model, [0.40, 0.45, 0.02, 0.5], tmp_path / "c")
    assert stopped == 3 and epochs == 3           # PGD accuracy collapsed at epoch 3: no epoch 4
    for restored, best in zip(m.get_weights(), probe.weights[1]):  # epoch 2 had the best PGD accuracy
        np.testing.assert_array_equal(restored, best)


def test_guard_stays_quiet_without_a_collapse(small_model, tmp_path):
    m, probe, epochs, stopped = guarded_training(small_model, [0.40, 0.35, 0.30], tmp_path / "c")
    assert stopped is None and epochs == 3          # a slow decline is no collapse: the last epoch's weights
    for kept, last in zip(m.get_weights(), probe.weights[-1]):
        np.testing.assert_array_equal(kept, last)


@pytest.mark.parametrize("argv", [["--method", "pgd", "--eps", "-0.1"], ["--method", "nope"],
                                  ["--method", "pgd", "--clean-weight", "2"],
                                  ["--method", "pgd", "--filter", "median0"],
                                  ["--epochs", "30"], ["--beta", "3"]])
def test_bad_arguments_end_with_one_line(argv, main_in_process):
    """Recipe flags without --method would be silently ignored: they are refused."""
    assert_one_line_error(*main_in_process("runtime_adversarial_training", *argv))


def test_every_recipe_setting_is_in_the_model_name():
    """A cached model is never another recipe's: a setting that differs from the
    method's defaults changes the name; the defaults keep the names the catalogue uses."""
    assert Recipe("pgd").name("cnn") == "cnn_at-pgd_eps0.1"
    assert Recipe("pgd", filter="dual").name("cnn") == "cnn_dual_at-pgd_eps0.1"
    variants = [Recipe("pgd", epochs=30), Recipe("pgd", batch_size=64), Recipe("pgd", steps=10),
                Recipe("pgd", clean_weight=0.5), Recipe("trades", beta=3.0), Recipe("pgd", init="base"),
                Recipe("pgd", eps=0.2)]
    names = {recipe.name("cnn") for recipe in variants}
    assert len(names) == len(variants) and "cnn_at-pgd_eps0.1" not in names
    assert Recipe("study", epochs=20, batch_size=16).name("cnn") == "cnn_at-study_20ep-b16"


def test_quick_standard_stage_end_to_end(quick_run):
    """The pipeline's stage (no --method): under --quick, FGSM and PGD training, each
    model attacked, its epochs logged and the clean-vs-robust plot drawn."""
    proc = quick_run.runs["runtime_adversarial_training.py"]
    assert proc.returncode == 0, proc.stderr
    with open(quick_run.results / "adversarial_training_standard.csv") as f:
        rows = {(r["model"], r["attack"]): r for r in csv.DictReader(f)}
    models = ("standard_cnn_at-fgsm_eps0.1_ep1", "standard_cnn_at-pgd_eps0.1_ep1")
    assert set(rows) == {(m, a) for m in models for a in ("clean", "FGSM", "PGD-20", "APGD-CE")}
    # beyond noise, as the evaluation's own check reads them (kill-check chain, 2026-12-07: clean 49.0% of 1,000,
    # FGSM 42% [32.2, 52.3] and PGD-20 39% of 100: PGD-20 13 images under FGSM's interval, FGSM's 17 under clean)
    pgd = {attack: rows[models[1], attack] for attack in ("clean", "FGSM", "PGD-20")}
    assert float(pgd["PGD-20"]["acc"]) <= float(pgd["FGSM"]["ci_high"])
    assert float(pgd["FGSM"]["ci_low"]) <= float(pgd["clean"]["acc"])
    assert "0.0125" in rows[models[1], "PGD-20"]["settings"]   # the suite's PGD-20: 2.5 eps / 20
    assert all((quick_run.models / f"{m}.keras").exists() for m in models)
    with open(quick_run.results / "adversarial_training_standard_epochs.csv") as f:
        epochs = list(csv.DictReader(f))   # one epoch each under --quick, logged with its held-out images and budget
    shown = [(e["recipe"], e["epoch"], e["held_out_images"], e["pgd10_eps"]) for e in epochs]
    assert shown == [("FGSM AT", "1", "100", "0.1"), ("PGD AT", "1", "100", "0.1")]
    assert all(float(e["pgd10_acc"]) <= float(e["clean_acc"]) for e in epochs)
    assert drawn(quick_run.results / "adversarial_training_standard_clean_vs_robust.png")


def test_quick_study_method_in_the_paper_protocol(tmp_path, paper_quick_run):
    """The study's method fine-tunes the paper CNN (here the paper quick run's, copied)."""
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(paper_quick_run.models / f"paper_cnn{suffix}", models)
    proc = run_script("runtime_adversarial_training.py", "--quick", "--protocol", "paper",
                      "--method", "study", "--epochs", "10", "--batch-size", "16",
                      "--results-dir", tmp_path, "--models-dir", models)
    assert proc.returncode == 0, proc.stderr
    assert (models / "paper_cnn_at-study_1ep-b16.keras").exists()   # a tenth of the epochs
    assert f"loaded {models / 'paper_cnn.keras'}" in proc.stdout and "training paper_cnn " not in proc.stdout


def test_a_snapshot_is_the_shorter_runs_model(tmp_path, quick_data):
    """The study's 20-epoch models are its 50-epoch run after 20 epochs: here a 3-epoch
    run's snapshot after epoch 2 equals a separately trained 2-epoch run (the study's
    method, on the standard CNN for speed)."""
    data = dataclasses.replace(quick_data, x_train=quick_data.x_train[:256], y_train=quick_data.y_train[:256])
    runs = {folder: RunContext(PROTOCOLS["standard"], seed=5, quick=True, models_dir=tmp_path / folder)
            for folder in ("long", "short")}
    get_base_model(runs["long"], data)
    (tmp_path / "short").mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(tmp_path / "long" / f"standard_cnn{suffix}", tmp_path / "short")
    at.train_adversarially(runs["long"], Recipe("study", epochs=3, batch_size=16, snapshots=(2,)), data)
    shorter, _ = at.train_adversarially(runs["short"], Recipe("study", epochs=2, batch_size=16), data)
    snapshot, sidecar = load_model(tmp_path / "long", "standard_cnn_at-study_2ep-b16")
    assert sidecar["snapshot_of"] == "standard_cnn_at-study_3ep-b16" and sidecar["epochs_run"] == 2
    for a, b in zip(snapshot.get_weights(), shorter.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    final, _ = load_model(tmp_path / "long", "standard_cnn_at-study_3ep-b16")
    assert not all(np.allclose(a, b) for a, b in zip(final.get_weights(), shorter.get_weights()))


def test_quick_runs_train_a_tenth_of_the_epochs():
    recipe = Recipe("study", epochs=50, batch_size=16, snapshots=(20, 25))
    assert recipe.for_run(False) == recipe
    assert (recipe.for_run(True).epochs, recipe.for_run(True).snapshots) == (5, (2, 3))
    assert Recipe("pgd").for_run(True).epochs == 1
