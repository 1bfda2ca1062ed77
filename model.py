"""The CNNs of both protocols, compiling and (resumable) training, saving and loading
with JSON sidecars, and the base-model experiment. Importing it imports TensorFlow
and Keras without their start-up noise.

Run it to train (or load) and test the base model of a protocol:

    python model.py [--protocol standard|paper] [--quick] [--retrain]
"""
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from cli import UserError, check_flags_early, common_parser, parse_args, run_main
from data import load_data
from reporting import accuracy_ci, atomic_write_text, format_acc, pyplot, save_figure, write_table


def build_parser():
    parser = common_parser("Train (or load) and test the protocol's undefended base CNN.")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached model")
    return parser


check_flags_early(__name__, build_parser)


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras with their C++ start-up lines (absl, oneDNN, CPU
    features) sent to /dev/null: TF_CPP_MIN_LOG_LEVEL does not hide them, and
    TF_ENABLE_ONEDNN_OPTS=0 would make training 3x slower."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow
        import keras
        tensorflow.constant(0.0) + 1.0  # runtime initialisation logs here too
        tensorflow.get_logger().setLevel("ERROR")  # e.g. retracing notices of Keras' predict
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
    return tensorflow, keras


tf, keras = _import_tensorflow_quietly()


# ------------------------------------------------------------------------- models

def build_paper_cnn():
    """The study's CNN (2,096,330 parameters). It was fed raw 0..255 pixels, so a
    rescaling by 255 comes first; it outputs logits instead of softmax (same loss)."""
    reg = keras.regularizers.L2(0.01)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Rescaling(255.0, name="to_0_255"),
        layers.Conv2D(64, 3, activation="relu", kernel_regularizer=reg),
        layers.BatchNormalization(),
        layers.Conv2D(64, 3, activation="relu", kernel_regularizer=reg),
        layers.BatchNormalization(),
        layers.Conv2D(128, 3, activation="relu", kernel_regularizer=reg),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.Dropout(0.5),
        layers.Flatten(),
        layers.Dense(128, activation="relu", kernel_regularizer=reg),
        layers.Dropout(0.5),
        layers.Dense(10, name="logits"),
    ], name="paper_cnn")


def build_standard_cnn():
    """A compact CNN (~0.4M parameters): two conv-pool stages and one hidden dense
    layer, fast enough on a CPU for adversarial training and shadow models."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dropout(0.3),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(10, name="logits"),
    ], name="standard_cnn")


ARCHITECTURES = {"paper_cnn": build_paper_cnn, "standard_cnn": build_standard_cnn}


def build_model(protocol):
    return ARCHITECTURES[protocol.architecture]()


def make_optimizer(protocol):
    """A fresh optimizer of the protocol's kind and learning rate."""
    return {"adam": keras.optimizers.Adam, "nadam": keras.optimizers.Nadam}[protocol.optimizer](protocol.learning_rate)


def compile_model(model, protocol):
    model.compile(optimizer=make_optimizer(protocol),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def predict_logits(model, x, batch_size=1000):
    """Logits of a model on many images, batched, inference mode."""
    return model.predict(x, batch_size=batch_size, verbose=0)


def predict_labels(model, x, batch_size=1000):
    return np.argmax(predict_logits(model, x, batch_size), axis=1)


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
    last_logs = _LastLogs()
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
                  validation_data=validation_data, callbacks=[*callbacks, last_logs], verbose=keras_verbosity())
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
    hist = {k: [entry[k] for entry in log.log] for k in (log.log[0] if log.log else {}) if k not in ("epoch", "seconds")}
    return hist, len(log.log), log.seconds()


# ------------------------------------------------------------------- save / load

def library_versions():
    import scipy
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "platform": platform.platform(), "devices": [d.name for d in tf.config.list_physical_devices()]}


def model_path(models_dir, name):
    return Path(models_dir) / f"{name}.keras"


def save_model(model, models_dir, name, sidecar):
    """Save models/<name>.keras and its JSON sidecar atomically (temp file + rename)."""
    path = model_path(models_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    sidecar = {"name": name, **sidecar, "versions": library_versions(),
               "saved_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    atomic_write_text(path.with_suffix(".json"), json.dumps(sidecar, indent=2, default=str) + "\n")
    return path


def load_model(models_dir, name):
    """Load a saved model in Keras' safe mode, with its sidecar; (None, None) if absent.
    Every layer class of the repository is registered with Keras where it is defined,
    so the module that defines it must have been imported."""
    path = model_path(models_dir, name)
    if not path.exists():
        return None, None
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as e:  # a truncated or foreign file: say which, and how to recover
        raise UserError(f"cannot load cached model {path} ({type(e).__name__}); delete it to "
                        "retrain") from None
    sidecar_path = path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
    return model, sidecar


def nested_layers(model):
    """Every layer of a (nested) Keras model, depth first."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found += nested_layers(layer)
    return found


def base_classifier(model):
    """The CNN inside a wrapped model (a filter or noise layer in front of it); a plain
    CNN is its own base classifier."""
    inner = model.layers[-1]
    return inner if isinstance(inner, keras.Model) else model


# ------------------------------------------------------------- the base model

def base_model_name(protocol):
    return protocol.architecture


def get_or_train(ctx, name, build, data=None, retrain=False, extra=None, seed=None):
    """A model from ctx.models_dir, or built by build(), trained on the protocol's
    data (resuming from its last finished epoch) and saved with its sidecar. seed: the
    training seed when it must differ from the run's (e.g. one per shadow model)."""
    protocol = ctx.protocol
    seed = ctx.seed if seed is None else seed
    if not retrain:
        model, sidecar = load_model(ctx.models_dir, name)
        if model is not None:
            print(f"loaded {model_path(ctx.models_dir, name)}")
            if sidecar.get("seed") not in (None, seed):
                print(f"note: it was trained with seed {sidecar['seed']}; --seed {ctx.seed} applies to this "
                      "run's own randomness only (use --retrain or another --models-dir to retrain)")
            return model, sidecar
    data = data or load_data(protocol, ctx.data_dir, ctx.quick)
    keras.utils.set_random_seed(seed)
    model = compile_model(build(), protocol)
    epochs = protocol.quick_epochs if ctx.quick else protocol.epochs
    print(f"training {name} ({model.count_params():,} parameters) on {len(data.y_train):,} "
          f"images, {epochs} epochs, seed {seed}")
    history, epochs_run, seconds = train(model, data, protocol, epochs, ctx.models_dir / f".{name}_backup", seed)
    sidecar = {"protocol": protocol.name, "config": dataclasses.asdict(protocol),
               "seed": seed, "quick": ctx.quick, "data": data.describe(),
               "epochs_run": epochs_run, "train_seconds": round(seconds, 1),
               "seconds_per_epoch": round(seconds / max(epochs_run, 1), 1), "history": history,
               **(extra or {})}
    save_model(model, ctx.models_dir, name, sidecar)
    print(f"saved {model_path(ctx.models_dir, name)} ({seconds:.0f} s)")
    return model, sidecar


def get_base_model(ctx, data=None, retrain=False):
    """The protocol's undefended CNN: loaded from the cache, or trained and saved."""
    return get_or_train(ctx, base_model_name(ctx.protocol), lambda: build_model(ctx.protocol), data, retrain)


def plot_training_curve(history, title, path, weight_penalty=False):
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], "o-", label="train")
    ax_loss.plot(epochs, history["val_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss" + (" + L2 weight penalty" if weight_penalty else ""),
                title="loss")
    ax_acc.plot(epochs, 100 * np.array(history["accuracy"]), "o-", label="train (dropout on)")
    ax_acc.plot(epochs, 100 * np.array(history["val_accuracy"]), "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def run_base_model(ctx, retrain=False):
    """Train (or load) the base CNN; its accuracy on each split, with the training curve."""
    protocol = ctx.protocol
    data = load_data(protocol, ctx.data_dir, ctx.quick)
    model, sidecar = get_base_model(ctx, data, retrain=retrain)
    rows = []
    for split, x, y in (("train", data.x_train, data.y_train), ("validation", data.x_val, data.y_val),
                        ("test", data.x_test, data.y_test)):
        stats = accuracy_ci(predict_labels(model, x) == y)
        print(f"{split:>10} accuracy {format_acc(stats)}")
        rows.append({"protocol": protocol.name, "model": base_model_name(protocol), "split": split,
                     **stats, "seed": sidecar.get("seed", ctx.seed),
                     "epochs_run": sidecar.get("epochs_run"),
                     "seconds_per_epoch": sidecar.get("seconds_per_epoch")})
    stem = ctx.results_dir / f"base_model_{protocol.name}"
    write_table(rows, stem, title=f"Undefended base CNN, {protocol.name} protocol "
                                  f"(exact 95% Clopper-Pearson intervals)")
    if sidecar.get("history"):
        plot_training_curve(sidecar["history"], f"{base_model_name(protocol)} training, {protocol.name} protocol",
                            ctx.results_dir / f"training_curve_{protocol.name}.png", weight_penalty=bool(model.losses))
    print(f"wrote {stem}.csv, {stem}.md")


def main():
    args, ctx = parse_args(build_parser())
    run_base_model(ctx, retrain=args.retrain)


if __name__ == "__main__":
    run_main(main)
