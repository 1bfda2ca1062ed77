"""The CNNs of both protocols: building, compiling, predicting, saving and loading
with JSON sidecars, and the cache that trains a model only when it is missing."""
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from fashion_defenses.data import load_data
from fashion_defenses.errors import UserError
from fashion_defenses.framework import keras, library_versions
from fashion_defenses.reporting import atomic_write_text
from fashion_defenses.training import train


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
