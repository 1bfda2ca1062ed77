"""Trains one small model of a kind (plain, adversarial, study, noise) into a models
folder, as the library trains it, and can SIGKILL itself at a chosen moment of that
training; tests/test_resume.py runs it killed, then again, and compares the weights with
an uninterrupted run's.

    python tests/resume_worker.py KIND MODELS_DIR [EPOCH BATCH]   # BATCH -1: as EPOCH begins
"""
import dataclasses
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion_defenses.context import RunContext
from fashion_defenses.data import PROTOCOLS, load_data
from fashion_defenses.framework import keras
from fashion_defenses.models import build_model, get_base_model, get_or_train

KINDS = ("plain", "adversarial", "study", "noise")
EPOCHS = 3
PROTOCOL = dataclasses.replace(PROTOCOLS["standard"], quick_epochs=EPOCHS, early_stopping_patience=1)


def small_data():
    data = load_data(PROTOCOL, quick=True)
    return dataclasses.replace(data, x_train=data.x_train[:320], y_train=data.y_train[:320],
                               x_val=data.x_val[:64], y_val=data.y_val[:64], train_index=data.train_index[:320])


class KillAt(keras.callbacks.Callback):
    """SIGKILL this process as batch `batch` of epoch `epoch` begins (batch -1: as the epoch begins)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.at == (epoch, -1):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_begin(self, batch, logs=None):
        if self.at == (self.epoch, batch):
            os.kill(os.getpid(), signal.SIGKILL)


def kill_during_training(epoch, batch):
    """Every fit from now on carries a KillAt callback."""
    fit = keras.Model.fit

    def fit_then_die(self, *args, callbacks=None, **kwargs):
        return fit(self, *args, callbacks=[*(callbacks or []), KillAt(epoch, batch)], **kwargs)
    keras.Model.fit = fit_then_die


def train(kind, models_dir, kill=None):
    """Train the kind's model into models_dir (resuming what a killed run left); returns its weights."""
    from fashion_defenses.defenses import adversarial_training as at
    from fashion_defenses.defenses import smoothing
    from fashion_defenses.defenses.recipes import Recipe
    ctx = RunContext(protocol=PROTOCOL, seed=7, quick=True, results_dir=Path(models_dir) / "results",
                     models_dir=Path(models_dir))
    data = small_data()
    if kind == "study":
        get_base_model(ctx, data)          # the study fine-tunes a trained base CNN (not killed)
    if kill:
        kill_during_training(*kill)
    if kind == "plain":
        model, _ = get_or_train(ctx, "plain", lambda: build_model(PROTOCOL), data)
    elif kind == "noise":
        model, _ = smoothing.get_noise_model(ctx, 0.25, data)
    elif kind == "adversarial":
        model, _ = at.train_adversarially(ctx, Recipe("pgd", epochs=EPOCHS, batch_size=64, steps=2), data)
    else:
        model, _ = at.train_adversarially(ctx, Recipe("study", epochs=EPOCHS, batch_size=64, snapshots=(2,)), data)
    return model.get_weights()


if __name__ == "__main__":
    kind, folder, *kill = sys.argv[1:]
    train(kind, folder, tuple(map(int, kill)) or None)
