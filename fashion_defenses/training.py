"""Training that resumes to the same model: one Keras fit per epoch, every random
stream seeded from (seed, epoch), a checkpoint after each epoch, early stopping
whose state is checkpointed too."""
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from fashion_defenses.framework import keras
from fashion_defenses.reporting import atomic_write_text


def keras_verbosity():
    """Keras' live progress bar on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2


class EpochLog(keras.callbacks.Callback):
    """One record per finished epoch (its logs and seconds), kept in a JSON file when
    given one, so that a run resumed by BackupAndRestore still reports every epoch,
    not only those after the interruption."""

    def __init__(self, path=None):
        super().__init__()
        self.path = Path(path) if path else None
        self.log, self.first_epoch, self.started = [], None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:  # this run starts at `epoch`: keep the records of the ones before
            self.first_epoch = epoch
            saved = json.loads(self.path.read_text()) if self.path and self.path.exists() else []
            self.log = [entry for entry in saved if entry["epoch"] <= epoch]
        self.started = time.time()

    def record(self, epoch, **fields):
        entry = {"epoch": epoch + 1, **fields,
                 "seconds": round(time.time() - self.started, 1) if self.started else 0.0}
        self.log.append(entry)
        if self.path:
            atomic_write_text(self.path, json.dumps(self.log))
        return entry

    def on_epoch_end(self, epoch, logs=None):
        self.record(epoch, **{k: float(v) for k, v in (logs or {}).items()})

    def finish(self):
        """Training is over: drop the file, so that the next training starts afresh."""
        if self.path:
            self.path.unlink(missing_ok=True)

    def seconds(self):
        return sum(entry["seconds"] for entry in self.log)


def epoch_seed(seed, epoch, stream=0):
    """The seed of one epoch's randomness (of one stream of it): a function of the run's
    seed and the epoch alone, so a run resumed at epoch k draws what an uninterrupted
    run draws from epoch k on."""
    return int(np.random.SeedSequence([int(seed) % 2 ** 32, epoch, stream]).generate_state(1)[0] % 2 ** 31)


def seed_epoch(model, seed, epoch, steps_per_epoch):
    """Set every random stream that training draws from to epoch `epoch`'s start:
    NumPy's, Python's and TensorFlow's global generators, each Keras seed generator of
    the model (dropout masks, Gaussian noise), and the step counter that seeds an
    adversarial trainer's random starts."""
    keras.utils.set_random_seed(epoch_seed(seed, epoch))
    generators = [v for v in model.variables if v.name == "seed_generator_state"]
    for stream, state in enumerate(generators, start=1):
        state.assign(np.array([epoch_seed(seed, epoch, stream), 0], dtype=state.dtype))
    counter = getattr(model, "step_counter", None)
    if counter is not None:
        counter.assign(epoch * steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class KeepBest:
    """Which epoch's weights a training ends with. Keras' EarlyStopping with
    restore_best_weights (patience: stop after that many epochs without a higher
    `metric`; always end at the best epoch), or Wong et al.'s guard against
    catastrophic overfitting (drop: stop once `metric` falls more than this below its
    best, and only then go back to the best epoch)."""
    metric: str
    patience: int = None
    drop: float = None


class _WholeTrainingProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress display, counting epochs against the whole training: each of
    fit_epochs' one-epoch fits would otherwise show epoch k as "Epoch k/k" (and the
    first with no header at all)."""

    def __init__(self, epochs):
        super().__init__()
        self.total_epochs = epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.total_epochs})


class _LastLogs(keras.callbacks.Callback):
    """The logs of the epoch that just ended, after every other callback added to them."""

    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs or {})


class Checkpoint:
    """A training's state after its last finished epoch, in one folder: the weights and
    the optimizer (Keras' weights file), the best epoch's weights, and a JSON record
    (epochs done, the best so far, the epochs waited), the record written last and
    naming the files it goes with, so a kill at any moment leaves a consistent state."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.record_path = self.folder / "state.json"

    def load(self, model):
        """The record, with the model and optimizer restored to it; None if there is none."""
        if not self.record_path.exists():
            return None
        record = json.loads(self.record_path.read_text())
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / record["weights"])
        return record

    def best_weights(self, record):
        with np.load(self.folder / record["best_weights"]) as saved:
            return [saved[f"w{i}"] for i in range(len(saved.files))]

    def save(self, model, record, best_weights=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        epoch = record["epochs_done"]
        record = {**record, "weights": f"epoch{epoch}.weights.h5"}
        model.save_weights(self.folder / record["weights"], overwrite=True)
        if best_weights is not None:
            record["best_weights"] = f"best{epoch}.npz"
            np.savez(self.folder / record["best_weights"], **{f"w{i}": w for i, w in enumerate(best_weights)})
        atomic_write_text(self.record_path, json.dumps(record))
        for old in self.folder.iterdir():   # the files no record names any more
            if old.name not in (record["weights"], record.get("best_weights"), self.record_path.name):
                old.unlink()

    def remove(self):
        if self.folder.exists():
            for old in self.folder.iterdir():
                old.unlink()
            self.folder.rmdir()


def fit_epochs(model, x, y, *, epochs, batch_size, seed, checkpoint_dir, validation_data=None, keep_best=None,
               callbacks=()):
    """Train one epoch at a time, each epoch's randomness (shuffle order, dropout,
    noise, random starts) drawn from seed_epoch(seed, epoch), and save a Checkpoint
    after every epoch: a run killed at any moment and run again resumes after its last
    finished epoch and ends at the weights an uninterrupted run ends at. keep_best says
    which epoch it ends with (None: the last). Returns (epochs done, epoch that
    triggered keep_best's stop or None)."""
    checkpoint = Checkpoint(checkpoint_dir)
    last_logs, progress = _LastLogs(), _WholeTrainingProgbar(epochs)
    record = checkpoint.load(model) or {"epochs_done": 0, "best": None, "best_epoch": None, "wait": 0,
                                        "stopped_at": None}
    best_weights = checkpoint.best_weights(record) if record.get("best_weights") else None
    steps_per_epoch = -(-len(y) // batch_size)
    for epoch in range(record["epochs_done"], epochs):
        if record["stopped_at"]:
            break
        seed_epoch(model, seed, epoch, steps_per_epoch)
        order = np.random.default_rng(epoch_seed(seed, epoch, stream=0)).permutation(len(y))
        model.fit(x[order], y[order], batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                  validation_data=validation_data, callbacks=[*callbacks, last_logs, progress],
                  verbose=keras_verbosity())
        record["epochs_done"] = epoch + 1
        if keep_best is not None:
            value = float(last_logs.logs[keep_best.metric])
            if record["best"] is None or value > record["best"]:
                record.update(best=value, best_epoch=epoch + 1, wait=0)
                best_weights = model.get_weights()
            else:
                record["wait"] += 1
                if keep_best.patience is not None and record["wait"] >= keep_best.patience:
                    record["stopped_at"] = epoch + 1
                if keep_best.drop is not None and value < record["best"] - keep_best.drop:
                    record["stopped_at"] = epoch + 1
        if model.stop_training:
            record["stopped_at"] = record["stopped_at"] or epoch + 1
        checkpoint.save(model, record, best_weights)
    if keep_best is not None and best_weights is not None and (keep_best.drop is None or record["stopped_at"]):
        model.set_weights(best_weights)
    checkpoint.remove()
    return record["epochs_done"], record["stopped_at"]


def train(model, data, protocol, epochs, checkpoint_dir, seed, batch_size=None, callbacks=()):
    """The protocol's training: Keras' early stopping on validation accuracy (patience,
    best weights restored), resumable and exact (fit_epochs). Returns (history dict,
    epochs run, seconds), every epoch counted."""
    log = EpochLog(f"{checkpoint_dir}_epochs.json")
    fit_epochs(model, data.x_train, data.y_train, epochs=epochs, batch_size=batch_size or protocol.batch_size,
               seed=seed, checkpoint_dir=checkpoint_dir, validation_data=(data.x_val, data.y_val),
               keep_best=KeepBest("val_accuracy", patience=protocol.early_stopping_patience),
               callbacks=[log, *callbacks])
    log.finish()
    keys = [k for k in (log.log[0] if log.log else {}) if k not in ("epoch", "seconds")]
    hist = {k: [entry[k] for entry in log.log] for k in keys}
    return hist, len(log.log), log.seconds()
