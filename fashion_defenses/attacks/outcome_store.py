"""Per-image attack outcomes, stored once and reused: which images a defense still
classified right after one attack, keyed by everything that decides it (the defense's
weights and configuration, how it is attacked and judged, the attack and its settings,
the budget, the seed, the images, and the source code of the attack modules). Every
stage that measures the same attack on the same model reads the same outcome, and a
stage killed mid-way redoes only the attacks it had not stored. Examples crafted on one
model to be transferred to others are stored the same way."""
import hashlib
import json
from pathlib import Path

import numpy as np

from fashion_defenses.models import nested_layers
from fashion_defenses.reporting import atomic_write

# a change to any of these files changes every key: no outcome of older code is reused
CODE = ("attacks/suite.py", "attacks/gradient.py", "attacks/autoattack.py", "defenses/filters.py",
        "defenses/smoothing.py", "defenses/certificates.py", "models.py")


def model_fingerprint(model):
    """A hash of a Keras model's weights and of its layers' classes and configurations,
    not of the Python module a layer class is defined in (Keras writes it into a
    model's config): moving code does not change what a model is, nor the noise seeded
    from it."""
    digest = hashlib.sha1()
    for weight in model.weights:
        digest.update(np.asarray(weight).tobytes())
    for layer in [model] + nested_layers(model):
        digest.update(type(layer).__name__.encode())
        try:
            digest.update(json.dumps(_without_modules(layer.get_config()), sort_keys=True, default=str).encode())
        except (NotImplementedError, TypeError, AttributeError):
            pass   # a layer without a serialisable config: its class and weights still count
    return digest.hexdigest()


def _without_modules(config):
    if isinstance(config, dict):
        return {k: _without_modules(v) for k, v in config.items() if k != "module"}
    if isinstance(config, (list, tuple)):
        return [_without_modules(v) for v in config]
    return config


def array_fingerprint(*arrays):
    digest = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(str((a.dtype, a.shape)).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def code_fingerprint(root=Path(__file__).resolve().parent.parent):   # the package
    digest = hashlib.sha1()
    for name in CODE:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


class OutcomeStore:
    """Outcomes as .npy files under folder (None: remember nothing)."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder else None
        self._code = None

    def key(self, *parts):
        if self._code is None:
            self._code = code_fingerprint()
        return hashlib.sha1(json.dumps([self._code, *parts], default=str).encode()).hexdigest()

    def path(self, key):
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key):
        if self.folder is None:
            return None
        try:
            return np.load(self.path(key))
        except (OSError, ValueError):   # not stored yet, or a file cut short: measure again
            return None

    def remember(self, parts, compute, fits):
        """compute()'s array, read back when stored under parts and fits(stored) holds,
        otherwise computed and stored (when the store is on)."""
        if self.folder is None:
            return compute()
        key = self.key(*parts)
        stored = self.get(key)
        if stored is not None and fits(stored):
            return stored
        array = compute()
        self.put(key, array)
        return array

    def put(self, key, array):
        """Store an outcome (booleans) or examples an attack crafted (floats)."""
        if self.folder is None:
            return
        atomic_write(self.path(key), lambda f: np.save(f, np.asarray(array)))
