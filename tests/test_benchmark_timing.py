"""The benchmarks' timing helpers do the work they claim to time."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from timing import bare_training_steps  # noqa: E402

from fashion_defenses.framework import keras


def small_model(weights=None):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if weights is not None:
        model.set_weights(weights)
    return model


def test_bare_training_steps_train_as_one_epoch_of_fit_does():
    """Bare steps over the batches in order end at the weights of one unshuffled epoch
    of Keras' fit from the same start: what the benchmark times is training."""
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 300).astype(np.int32)
    start = small_model().get_weights()
    fitted, bare = small_model(start), small_model(start)
    fitted.fit(x, y, batch_size=128, epochs=1, shuffle=False, verbose=0)
    bare_training_steps(bare, x, y, 128)()
    for w_fit, w_bare, w_start in zip(fitted.get_weights(), bare.get_weights(), start):
        assert not np.allclose(w_bare, w_start)
        np.testing.assert_allclose(w_bare, w_fit, rtol=1e-4, atol=1e-5)
