"""Shared core: Fashion-MNIST loading, the two protocols and their CNNs, training,
saving and loading, statistics, atomic results I/O and the common command line.

Run it to train (or load) and test the base model of a protocol:

    python model.py [--protocol standard|paper] [--quick] [--retrain]
"""
import argparse
import contextlib
import csv
import dataclasses
import gzip
import io
import json
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


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
sys.stdout.reconfigure(line_buffering=True)  # progress shows up in logs as it happens

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "fashion-mnist"
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
EXPECTED_COUNTS = {"x_train": 60000, "y_train": 60000, "x_test": 10000, "y_test": 10000}
INSTALL_HINT = ("install it with 'apt-get install dataset-fashion-mnist' (Debian) or put the "
                "four IDX files (gzipped or not) in a folder and pass --data-dir")


class UserError(Exception):
    """A problem the user can fix (bad argument, missing or corrupt data): reported as
    one line and exit code 2, never as a traceback."""


# --------------------------------------------------------------------------- data

def read_idx(path):
    """Read one IDX file (gzipped or raw) into a uint8 array, checking its header."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserError(f"{path} is truncated (incomplete header)")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise UserError(f"{path} is truncated or corrupt: header says {size} bytes of data, "
                        f"file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_paths(folder):
    """The four IDX files in a folder (gzipped or raw), or None if any is missing."""
    found = {}
    for key, name in IDX_FILES.items():
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _validate(arrays, source):
    for key, expected in EXPECTED_COUNTS.items():
        if arrays[key].shape[0] != expected:
            raise UserError(f"{source}: {key} has {arrays[key].shape[0]} items, expected {expected}")
    for key in ("x_train", "x_test"):
        if arrays[key].shape[1:] != (28, 28):
            raise UserError(f"{source}: {key} images are {arrays[key].shape[1:]}, expected 28x28")
    for key in ("y_train", "y_test"):
        if arrays[key].ndim != 1 or arrays[key].max() > 9:
            raise UserError(f"{source}: {key} must hold labels 0..9")


def load_fashion_mnist(data_dir=None, allow_download=True):
    """Fashion-MNIST as uint8 arrays (x_train, y_train, x_test, y_test).

    Looks in data_dir, then Debian's /usr/share/datasets/fashion-mnist, then Keras'
    cache, then lets Keras download it. Raises UserError naming what was tried."""
    folders = ([Path(data_dir)] if data_dir else []) + [DEBIAN_DATA_DIR, KERAS_CACHE_DIR]
    for folder in folders:
        paths = _idx_paths(folder) if folder.is_dir() else None
        if paths:
            arrays = {key: read_idx(p) for key, p in paths.items()}
            _validate(arrays, folder)
            return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    tried = ", ".join(str(f) for f in folders)
    if allow_download:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
        except Exception as e:  # any network or file error: report it as one line
            raise UserError(f"Fashion-MNIST not found in {tried} and Keras' download failed "
                            f"({type(e).__name__}); {INSTALL_HINT}") from None
        arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        _validate(arrays, "Keras download")
        return x_train, y_train, x_test, y_test
    raise UserError(f"Fashion-MNIST not found in {tried}; {INSTALL_HINT}")


def to_unit_float(images):
    """uint8 images (N, 28, 28) -> float32 in [0, 1], shape (N, 28, 28, 1)."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., None]


# ---------------------------------------------------------------------- protocols

@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything that differs between the study's setup and the rigorous one."""
    name: str
    architecture: str           # key of ARCHITECTURES
    n_train: int                # training images; the rest of the 60,000 validate
    split: str                  # "first": first n_train train, rest validate; "random": seeded permutation
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    early_stopping_patience: int
    seed: int
    n_attack: int               # test images every attack is evaluated on
    quick_train: int = 2000     # --quick: data subset sizes and epochs
    quick_val: int = 500
    quick_test: int = 1000
    quick_epochs: int = 1


# The study's published Fashion-MNIST results (its Table 4, PAPER.md), in percent;
# FGSM-k columns are on its 20 test images drawn with replacement.
STUDY_TABLE4 = {
    "median filter only": dict(train_acc=70.56, test_acc=67.41, fgsmk_benign=75.0, fgsmk_adv=60.0,
                               mia_acc=51.10, mia_f1=0.210),
    "adversarial training only (0.085, 20 ep, batch 16)": dict(
        train_acc=86.98, test_acc=83.24, fgsmk_benign=100.0, fgsmk_adv=45.0, mia_acc=50.12, mia_f1=0.222),
    "dual median + AT (0.085, 20 ep, batch 16)": dict(
        train_acc=65.70, test_acc=64.38, fgsmk_benign=75.0, fgsmk_adv=65.0, mia_acc=50.48, mia_f1=0.059),
    "dual median + AT (50 ep, batch 16)": dict(
        train_acc=71.74, test_acc=69.23, fgsmk_benign=75.0, fgsmk_adv=45.0, mia_acc=50.30, mia_f1=0.039),
    "dual median + AT (25 ep, batch 16), the final pick": dict(
        train_acc=78.16, test_acc=74.44, fgsmk_benign=80.0, fgsmk_adv=70.0, mia_acc=50.08, mia_f1=0.012),
    "dual median + AT (25 ep, batch 32)": dict(
        train_acc=75.52, test_acc=72.97, fgsmk_benign=85.0, fgsmk_adv=45.0, mia_acc=49.93, mia_f1=0.020),
}

SPLIT_SEED = 20231201  # fixed: the standard train/validation split never changes with --seed

PROTOCOLS = {
    # The study's Fashion-MNIST setup (PAPER.md), checked against its code.
    "paper": Protocol(name="paper", architecture="paper_cnn", n_train=5000, split="first",
                      epochs=10, batch_size=128, optimizer="nadam", learning_rate=1e-3,
                      early_stopping_patience=10, seed=62861020, n_attack=1000,
                      quick_train=1000, quick_val=500, quick_test=500),
    # The rigorous setup: 55,000 training images, the compact CNN, 1,000 attack images.
    "standard": Protocol(name="standard", architecture="standard_cnn", n_train=55000,
                         split="random", epochs=15, batch_size=128, optimizer="adam",
                         learning_rate=1e-3, early_stopping_patience=5, seed=62861020,
                         n_attack=1000),
}


@dataclasses.dataclass
class Data:
    """One protocol's split, float32 in [0, 1] with integer labels, plus the index of
    each image in the original Fashion-MNIST arrays (for membership inference)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray

    def describe(self):
        return {"n_train": len(self.y_train), "n_val": len(self.y_val), "n_test": len(self.y_test),
                "train_index_head": self.train_index[:5].tolist(), "split_seed": SPLIT_SEED}


def load_data(protocol, data_dir=None, quick=False):
    """The protocol's train / validation / test split (subsets of it under quick)."""
    x_train, y_train, x_test, y_test = load_fashion_mnist(data_dir)
    if protocol.split == "first":
        order = np.arange(len(y_train))
    else:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(y_train))
    train_index, val_index = order[:protocol.n_train], order[protocol.n_train:]
    test_index = np.arange(len(y_test))
    if quick:
        train_index = train_index[:protocol.quick_train]
        val_index = val_index[:protocol.quick_val]
        test_index = test_index[:protocol.quick_test]
    return Data(to_unit_float(x_train[train_index]), y_train[train_index].astype(np.int64),
                to_unit_float(x_train[val_index]), y_train[val_index].astype(np.int64),
                to_unit_float(x_test[test_index]), y_test[test_index].astype(np.int64),
                train_index, val_index, test_index)


def attack_subset(n_test, n, seed=SPLIT_SEED):
    """Indices of the fixed, seeded test images every attack is evaluated on."""
    return np.sort(np.random.default_rng(seed).permutation(n_test)[:min(n, n_test)])


def study_sample(n_test, seed, size=20):
    """The study's attack set: `size` test indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n_test, size)


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


def compile_model(model, protocol):
    optimizers = {"adam": keras.optimizers.Adam, "nadam": keras.optimizers.Nadam}
    model.compile(optimizer=optimizers[protocol.optimizer](protocol.learning_rate),
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


def load_model(models_dir, name, custom_objects=None):
    """Load a saved model in Keras' safe mode, with its sidecar; None if absent."""
    path = model_path(models_dir, name)
    if not path.exists():
        return None, None
    try:
        model = keras.models.load_model(path, safe_mode=True, custom_objects=custom_objects)
    except Exception as e:  # a truncated or foreign file: say which, and how to recover
        raise UserError(f"cannot load cached model {path} ({type(e).__name__}); delete it to "
                        "retrain") from None
    sidecar_path = path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
    return model, sidecar


# -------------------------------------------------------------------- statistics

def accuracy_ci(correct, confidence=0.95):
    """Accuracy of a 0/1 vector with its exact (Clopper-Pearson) interval."""
    from scipy.stats import binomtest
    correct = np.asarray(correct).astype(bool).ravel()
    n, k = correct.size, int(correct.sum())
    if n == 0:
        return {"n": 0, "acc": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return {"n": n, "acc": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def format_acc(stats):
    """'91.23% [90.66, 91.77] (n=10000)' from accuracy_ci's dict."""
    return (f"{100 * stats['acc']:.2f}% [{100 * stats['ci_low']:.2f}, "
            f"{100 * stats['ci_high']:.2f}] (n={stats['n']})")


# ------------------------------------------------------------------- results I/O

def atomic_write_text(path, text):
    """Write a file so that readers see the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_table(rows, path_stem, title=None, note=None):
    """Write rows (a list of dicts with the same keys) as <stem>.csv and <stem>.md;
    a note, if given, is a paragraph under the Markdown table."""
    path_stem = Path(path_stem)
    columns = list(rows[0].keys()) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path_stem.with_suffix(".csv"), buffer.getvalue())
    lines = [f"# {title}", ""] if title else []
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    lines += ["", note.strip()] if note else []
    atomic_write_text(path_stem.with_suffix(".md"), "\n".join(lines) + "\n")


def save_figure(fig, path):
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# -------------------------------------------------------------------------- CLI

class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def seed_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**32-1, got {text}")
    return value


def common_parser(description):
    """The flags every script shares; each script adds its own."""
    parser = ArgumentParser(description=description,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="standard",
                        help="'paper' mirrors the study exactly; 'standard' is the rigorous setup")
    parser.add_argument("--seed", type=seed_int, default=None,
                        help="random seed (default: the protocol's, 62861020)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of a minute or two on a data subset; writes to "
                             "results_quick/ and models/quick/ unless the dirs are given")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four Fashion-MNIST IDX files (searched first)")
    parser.add_argument("--results-dir", default=None, help="where tables and plots go (default: results)")
    parser.add_argument("--models-dir", default=None, help="model cache (default: models)")
    return parser


def parse_args(parser, argv=None):
    """Parse, check the common flags, and fill in defaults that depend on --quick
    (a quick run never writes over the full results or models)."""
    args = parser.parse_args(argv)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} does not exist")
    args.protocol_config = PROTOCOLS[args.protocol]
    if args.seed is None:
        args.seed = args.protocol_config.seed
    if args.results_dir is None:
        args.results_dir = "results_quick" if args.quick else "results"
    if args.models_dir is None:
        args.models_dir = os.path.join("models", "quick") if args.quick else "models"
    args.results_dir, args.models_dir = Path(args.results_dir), Path(args.models_dir)
    for flag, folder in (("--results-dir", args.results_dir), ("--models-dir", args.models_dir)):
        if folder.exists() and not folder.is_dir():
            parser.error(f"{flag} {folder} is not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            parser.error(f"{flag} {folder} cannot be created ({e.strerror})")
        if not os.access(folder, os.W_OK):
            parser.error(f"{flag} {folder} is not writable")
    keras.utils.set_random_seed(args.seed)
    return args


def run_main(main):
    """Run a script's main(): a UserError becomes one line on stderr and exit 2, an
    interrupt exit 130 (every stage resumes from what it saved)."""
    try:
        main()
    except UserError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\n{Path(sys.argv[0]).name}: interrupted; run again to resume", file=sys.stderr)
        sys.exit(130)


# ------------------------------------------------------------- the base model

def base_model_name(protocol):
    return protocol.architecture


def get_or_train(args, name, build, data=None, retrain=False, custom_objects=None, extra=None, seed=None):
    """A model from the cache, or built by build(), trained on the protocol's data
    (resuming from its last finished epoch) and saved with its sidecar. seed: the
    training seed when it must differ from --seed (e.g. one per shadow model)."""
    protocol = args.protocol_config
    seed = args.seed if seed is None else seed
    if not retrain:
        model, sidecar = load_model(args.models_dir, name, custom_objects)
        if model is not None:
            print(f"loaded {model_path(args.models_dir, name)}")
            if sidecar.get("seed") not in (None, seed):
                print(f"note: it was trained with seed {sidecar['seed']}; --seed {args.seed} applies to this "
                      "run's own randomness only (use --retrain or another --models-dir to retrain)")
            return model, sidecar
    data = data or load_data(protocol, args.data_dir, args.quick)
    keras.utils.set_random_seed(seed)
    model = compile_model(build(), protocol)
    epochs = protocol.quick_epochs if args.quick else protocol.epochs
    print(f"training {name} ({model.count_params():,} parameters) on {len(data.y_train):,} "
          f"images, {epochs} epochs, seed {seed}")
    history, epochs_run, seconds = train(model, data, protocol, epochs,
                                         args.models_dir / f".{name}_backup")
    sidecar = {"protocol": protocol.name, "config": dataclasses.asdict(protocol),
               "seed": seed, "quick": args.quick, "data": data.describe(),
               "epochs_run": epochs_run, "train_seconds": round(seconds, 1),
               "seconds_per_epoch": round(seconds / max(epochs_run, 1), 1), "history": history,
               **(extra or {})}
    save_model(model, args.models_dir, name, sidecar)
    print(f"saved {model_path(args.models_dir, name)} ({seconds:.0f} s)")
    return model, sidecar


def get_base_model(args, data=None, retrain=False):
    """The protocol's undefended CNN: loaded from the cache, or trained and saved."""
    protocol = args.protocol_config
    return get_or_train(args, base_model_name(protocol), lambda: build_model(protocol), data, retrain)


def plot_training_curve(history, title, path):
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], "o-", label="train")
    ax_loss.plot(epochs, history["val_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss (incl. L2 penalty)", title="loss")
    ax_acc.plot(epochs, 100 * np.array(history["accuracy"]), "o-", label="train (dropout on)")
    ax_acc.plot(epochs, 100 * np.array(history["val_accuracy"]), "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def main():
    parser = common_parser("Train (or load) and test the protocol's undefended base CNN.")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached model")
    args = parse_args(parser)
    protocol = args.protocol_config
    data = load_data(protocol, args.data_dir, args.quick)
    model, sidecar = get_base_model(args, data, retrain=args.retrain)
    rows = []
    for split, x, y in (("train", data.x_train, data.y_train), ("validation", data.x_val, data.y_val),
                        ("test", data.x_test, data.y_test)):
        stats = accuracy_ci(predict_labels(model, x) == y)
        print(f"{split:>10} accuracy {format_acc(stats)}")
        rows.append({"protocol": protocol.name, "model": base_model_name(protocol), "split": split,
                     **stats, "seed": sidecar.get("seed", args.seed),
                     "epochs_run": sidecar.get("epochs_run"),
                     "seconds_per_epoch": sidecar.get("seconds_per_epoch")})
    stem = args.results_dir / f"base_model_{protocol.name}"
    write_table(rows, stem, title=f"Undefended base CNN, {protocol.name} protocol "
                                  f"(exact 95% Clopper-Pearson intervals)")
    if sidecar.get("history"):
        plot_training_curve(sidecar["history"], f"{base_model_name(protocol)} training, "
                            f"{protocol.name} protocol", args.results_dir /
                            f"training_curve_{protocol.name}.png")
    print(f"wrote {stem}.csv, {stem}.md")


if __name__ == "__main__":
    run_main(main)
