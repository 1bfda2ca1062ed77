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

from cli import UserError, answer_help_early, common_parser, parse_args, run_main
from data import load_data
from reporting import accuracy_ci, atomic_write_text, format_acc, pyplot, save_figure, write_table


def build_parser():
    parser = common_parser("Train (or load) and test the protocol's undefended base CNN.")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached model")
    return parser


answer_help_early(__name__, build_parser)


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


def train(model, data, protocol, epochs, checkpoint_dir, batch_size=None, callbacks=()):
    """Fit with early stopping on validation accuracy (best weights restored) and a
    per-epoch backup in checkpoint_dir, so an interrupted run resumes from its last
    finished epoch. Returns (history dict, epochs run, seconds), every epoch counted."""
    log = EpochLog(f"{checkpoint_dir}_epochs.json")
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy",
                                               patience=protocol.early_stopping_patience,
                                               restore_best_weights=True),
                 keras.callbacks.BackupAndRestore(str(checkpoint_dir)), log,
                 *callbacks]
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
              epochs=epochs, batch_size=batch_size or protocol.batch_size,
              shuffle=True, callbacks=callbacks, verbose=keras_verbosity())
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
    history, epochs_run, seconds = train(model, data, protocol, epochs, ctx.models_dir / f".{name}_backup")
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
