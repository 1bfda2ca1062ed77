"""Fashion-MNIST: the IDX loader and its checks, the two protocols and their splits,
the fixed test images every attack runs on, and the study's published figures.
NumPy only; Keras is imported just to download the data where nothing else has it."""
import contextlib
import dataclasses
import gzip
import io
import os
import struct
from pathlib import Path

import numpy as np

from fashion_defenses.errors import UserError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "fashion-mnist"
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
EXPECTED_COUNTS = {"x_train": 60000, "y_train": 60000, "x_test": 10000, "y_test": 10000}
INSTALL_HINT = ("install it with 'apt-get install dataset-fashion-mnist' (Debian) or put the "
                "four IDX files (gzipped or not) in a folder and pass --data-dir")


# ------------------------------------------------------------------ the files

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
    if not allow_download:
        raise UserError(f"Fashion-MNIST not found in {tried}; {INSTALL_HINT}")
    try:
        import keras
        with contextlib.redirect_stdout(io.StringIO()):
            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # any network or file error: report it as one line
        raise UserError(f"Fashion-MNIST not found in {tried} and Keras' download failed "
                        f"({type(e).__name__}); {INSTALL_HINT}") from None
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    _validate(arrays, "Keras download")
    return x_train, y_train, x_test, y_test


def to_unit_float(images):
    """uint8 images (N, 28, 28) -> float32 in [0, 1], shape (N, 28, 28, 1)."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., None]


# ------------------------------------------------------------------ protocols

@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything that differs between the study's setup and the rigorous one."""
    name: str
    architecture: str           # key of model.ARCHITECTURES
    n_train: int                # training images; the rest of the 60,000 validate
    split: str                  # "first": first n_train train, rest validate; "random": seeded permutation
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    early_stopping_patience: int
    seed: int
    n_attack: int               # test images every attack is evaluated on
    fgsm_k_loss: str            # the loss FGSM-k ascends: "study" (its clipped softmax) or "ce" (logits)
    quick_train: int = 2000     # --quick: data subset sizes and epochs
    quick_val: int = 500
    quick_test: int = 1000
    quick_epochs: int = 1


SPLIT_SEED = 20231201  # fixed: the standard train/validation split never changes with --seed

PROTOCOLS = {
    # The study's Fashion-MNIST setup (docs/study.md), checked against its code.
    "paper": Protocol(name="paper", architecture="paper_cnn", n_train=5000, split="first",
                      epochs=10, batch_size=128, optimizer="nadam", learning_rate=1e-3,
                      early_stopping_patience=10, seed=62861020, n_attack=1000,
                      fgsm_k_loss="study", quick_train=1000, quick_val=500, quick_test=500),
    # The rigorous setup: 55,000 training images, the compact CNN, 1,000 attack images.
    "standard": Protocol(name="standard", architecture="standard_cnn", n_train=55000,
                         split="random", epochs=15, batch_size=128, optimizer="adam",
                         learning_rate=1e-3, early_stopping_patience=5, seed=62861020,
                         n_attack=1000, fgsm_k_loss="ce"),
}

STUDY_EPS = 20 / 255     # the study's FGSM-k budget (20 of 255 grey levels)

# The study's published Fashion-MNIST results (its Table 4), in percent; the FGSM-k
# columns are on its 20 test images drawn with replacement.
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


# ---------------------------------------------------------------------- splits

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


@dataclasses.dataclass(frozen=True)
class ImageSample:
    """A set of attacked test images; is_study marks the study's own 20 (drawn with
    replacement), the only ones its published figures can be set beside."""
    label: str
    indices: np.ndarray
    is_study: bool


def paper_samples(n_test, n, seed):
    """The paper protocol's two attack sets: the study's 20 and our n fixed images."""
    return [ImageSample("20 with replacement (study)", study_sample(n_test, seed), True),
            ImageSample(f"{n} fixed", attack_subset(n_test, n), False)]
